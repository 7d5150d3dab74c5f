package cache

import (
	"context"
	"fmt"
	"testing"
)

// TestRuns: Save adds each run to its tenant's index, which lists them
// newest first, bounded, and never another tenant's.
func TestRuns(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		save := func(tenant string, i int, sum RunSummary) {
			turn := &Turn{Conversation: fmt.Sprintf("conv_%d", i), Consortium: "council", Transcript: transcript(fmt.Sprint(i), "a"), RunID: sum.RunID}
			if err := s.Save(ctx, tenant, turn, &RunRecord{JSON: fmt.Appendf(nil, `{"run_id":%q}`, sum.RunID), Summary: sum}); err != nil {
				t.Fatal(err)
			}
		}
		confidence, cost := 0.9, 0.0012
		save("alice", 1, RunSummary{RunID: "run_1", Consortium: "council", Strategy: "synthesize", Rounds: 2, Confidence: &confidence, DurationMs: 120, TotalTokens: 30})
		save("alice", 2, RunSummary{RunID: "run_2", Consortium: "best", Strategy: "rank", Rounds: 1, DurationMs: 80, TotalTokens: 5, CostUSD: &cost})
		save("bob", 3, RunSummary{RunID: "run_3", Consortium: "council", Strategy: "synthesize", Rounds: 1})

		got, err := s.Runs(ctx, "alice", 0)
		if err != nil || len(got) != 2 {
			t.Fatalf("alice's runs: %+v, %v", got, err)
		}
		a, b := got[0], got[1]
		if a.RunID != "run_2" || a.Strategy != "rank" || a.Confidence != nil || a.CostUSD == nil || *a.CostUSD != 0.0012 || a.TotalTokens != 5 {
			t.Errorf("newest %+v", a)
		}
		if b.RunID != "run_1" || b.Rounds != 2 || b.Confidence == nil || *b.Confidence != 0.9 || b.DurationMs != 120 || b.CostUSD != nil {
			t.Errorf("oldest %+v", b)
		}
		if got, _ := s.Runs(ctx, "alice", 1); len(got) != 1 || got[0].RunID != "run_2" {
			t.Errorf("limit 1: %+v", got)
		}
		if got, _ := s.Runs(ctx, "bob", 0); len(got) != 1 || got[0].RunID != "run_3" {
			t.Errorf("bob's runs: %+v", got)
		}
		if got, err := s.Runs(ctx, "carol", 0); err != nil || len(got) != 0 {
			t.Errorf("carol's runs: %+v, %v", got, err)
		}
		// A turn saved without a run record adds nothing, nor does a
		// record whose summary has no run id.
		if err := s.Save(ctx, "alice", &Turn{Conversation: "conv_9", Consortium: "c", RunID: "run_9"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, "alice", &Turn{Conversation: "conv_10", Consortium: "c", RunID: "run_10"}, &RunRecord{JSON: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Runs(ctx, "alice", 0); len(got) != 2 {
			t.Errorf("a turn without a summary was indexed: %+v", got)
		}
	})
}

// TestRunsBounded: the index keeps the newest RunsPerTenant runs.
func TestRunsBounded(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		if m, ok := s.(*Memory); ok {
			m.max = 10 * RunsPerTenant
		}
		for i := range RunsPerTenant + 5 {
			turn := &Turn{Conversation: "conv", Consortium: "c", RunID: fmt.Sprintf("run_%d", i)}
			if err := s.Save(ctx, "alice", turn, &RunRecord{JSON: fmt.Appendf(nil, `{"run_id":"run_%d"}`, i), Summary: RunSummary{RunID: turn.RunID}}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Runs(ctx, "alice", 0)
		if err != nil || len(got) != RunsPerTenant {
			t.Fatalf("%d runs, %v", len(got), err)
		}
		for i, sum := range got {
			if want := fmt.Sprintf("run_%d", RunsPerTenant+4-i); sum.RunID != want {
				t.Fatalf("run %d of the index is %s, want %s (newest first, the oldest 5 dropped)", i, sum.RunID, want)
			}
		}
		if got, _ := s.Runs(ctx, "alice", 3); len(got) != 3 || got[2].RunID != fmt.Sprintf("run_%d", RunsPerTenant+2) {
			t.Errorf("limit 3: %+v", got)
		}
	})
}
