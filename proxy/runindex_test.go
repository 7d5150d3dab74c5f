package proxy_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/redistest"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/proxy"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// decodeSummary reads a run's line of the index from its record, as the
// stores did before the proxy handed them the summary: the reference the
// summary taken from the run must equal, so the two cannot drift apart.
func decodeSummary(t *testing.T, record []byte) cache.RunSummary {
	t.Helper()
	var r struct {
		RunID          string    `json:"run_id"`
		Consortium     string    `json:"consortium"`
		ConversationID string    `json:"conversation_id"`
		Strategy       string    `json:"strategy"`
		Created        time.Time `json:"created"`
		Iterations     int       `json:"iterations"`
		Confidence     *float64  `json:"confidence"`
		DurationMs     int64     `json:"duration_ms"`
		Usage          struct {
			TotalTokens int      `json:"total_tokens"`
			CostUSD     *float64 `json:"cost_usd"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(record, &r); err != nil || r.RunID == "" {
		t.Fatalf("run record %s: %v", record, err)
	}
	return cache.RunSummary{RunID: r.RunID, Consortium: r.Consortium, ConversationID: r.ConversationID, Strategy: r.Strategy,
		Created: r.Created, Rounds: r.Iterations, Confidence: r.Confidence, DurationMs: r.DurationMs,
		TotalTokens: r.Usage.TotalTokens, CostUSD: r.Usage.CostUSD}
}

// TestRunSummaryIsTheRecords: the index line taken from a run is the one
// its record reads as, for each strategy's kind of run, and shares no
// memory with the run.
func TestRunSummaryIsTheRecords(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	created := time.Date(2026, 12, 6, 4, 30, 0, 123456789, time.UTC)
	answer := consortia.MemberAnswer{Model: "fake/alpha", Status: consortia.StatusOK, LatencyMs: 120, Content: "an answer",
		Usage: &wire.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}}
	for _, tc := range []struct {
		name string
		run  consortia.Run
	}{
		{"synthesize, priced, two rounds", consortia.Run{ID: "run_a", Consortium: "council", ConversationID: "conv_a", Strategy: "synthesize",
			Created: created, Iterations: 2, Outcome: consortia.Outcome{Confidence: f(0.86)},
			Rounds: []consortia.Round{
				{Number: 1, Members: []consortia.MemberAnswer{answer, answer}, Arbiter: &consortia.ArbiterReply{Model: "fake/judge", Reply: "<confidence>0.4</confidence>", Confidence: f(0.4), Iterate: true}},
				{Number: 2, Members: []consortia.MemberAnswer{answer, answer}, Arbiter: &consortia.ArbiterReply{Model: "fake/judge", Reply: "<confidence>0.86</confidence>", Confidence: f(0.86)}},
			},
			Usage:      wire.Usage{PromptTokens: 9000, CompletionTokens: 3401, TotalTokens: 12401, CostUSD: f(0.0123456789)},
			DurationMs: 8421}},
		{"rank without a confidence, unpriced", consortia.Run{ID: "run_b", Consortium: "best", Strategy: "rank", Created: created, Iterations: 1,
			Outcome: consortia.Outcome{Scores: []consortia.Score{{Model: "fake/alpha", Score: 2, Place: 1}}},
			Rounds:  []consortia.Round{{Number: 1, Members: []consortia.MemberAnswer{answer}}}, Usage: wire.Usage{TotalTokens: 30}, DurationMs: 95}},
		{"vote", consortia.Run{ID: "run_c", Consortium: "poll", Strategy: "vote", Created: created, Iterations: 1,
			Outcome: consortia.Outcome{Confidence: f(1), Votes: []consortia.VoteGroup{{Answer: "42", Weight: 2, Members: []string{"fake/alpha#0"}}}, Agreement: f(1)},
			Usage:   wire.Usage{TotalTokens: 60, CostUSD: f(0)}}},
		{"cascade", consortia.Run{ID: "run_d", Consortium: "tiers", Strategy: "cascade", Created: created, Iterations: 1,
			Outcome:  consortia.Outcome{Tiers: []consortia.Tier{{Tier: "fake/alpha", Confidence: f(0.3), Escalated: true}, {Tier: "council"}}},
			Fallback: "the arbiter wrote no synthesis"}},
		{"empty", consortia.Run{ID: "run_e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			record, err := json.Marshal(&tc.run)
			if err != nil {
				t.Fatal(err)
			}
			got, want := proxy.RunSummary(&tc.run), decodeSummary(t, record)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("summary %+v\nrecord's %+v", got, want)
			}
			if got.Confidence != nil && got.Confidence == tc.run.Confidence || got.CostUSD != nil && got.CostUSD == tc.run.Usage.CostUSD {
				t.Error("the summary shares the run's values")
			}
		})
	}
}

// TestRunIndexIsTheRecords: on each store, the index lists every run a
// consortium request saved (JSON, stream, Responses API; priced or not,
// with a confidence or not) with the line its record reads as.
func TestRunIndexIsTheRecords(t *testing.T) {
	stores := map[string]func() cache.Store{"memory": func() cache.Store { return cache.NewMemory(time.Hour, 0) }}
	for _, b := range redistest.Backends(t) {
		stores["redis-"+b.Name] = func() cache.Store { return cache.NewRedis(b.Client, cache.RedisConfig{TTL: time.Hour}) }
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			store := newStore()
			e := start(t, pricedYAML, func(o *app.Options) { o.Store = store })
			requests := []struct{ path, body string }{
				{"/v1/chat/completions", councilBody},
				{"/v1/chat/completions", `{"model":"council","stream":true,"messages":[{"role":"user","content":"and again?"}]}`},
				{"/v1/responses", `{"model":"council","input":"a response"}`},
				{"/v1/chat/completions", `{"model":"loose","messages":[{"role":"user","content":"untagged"}]}`},
			}
			for i, r := range requests {
				if i < len(requests)-1 {
					scriptCouncil(e.fake, "the answer")
				} else {
					// An untagged arbiter reply: no confidence, and m1 is
					// unpriced: no cost.
					e.fake.Script("m1", upstreamtest.Reply{Content: "m1's answer"})
					e.fake.Script("judge", upstreamtest.Reply{Content: "no tags at all"})
				}
				if resp, body := e.post(r.path, r.body); resp.StatusCode != 200 {
					t.Fatalf("%s %s: %d %s", r.path, r.body, resp.StatusCode, body)
				}
			}
			index, err := store.Runs(context.Background(), "anonymous", 0)
			if err != nil || len(index) != len(requests) {
				t.Fatalf("index of %d runs: %+v, %v", len(requests), index, err)
			}
			var confident, priced int
			for _, got := range index {
				resp, record := e.do("GET", "/v1/consortium/runs/"+got.RunID, "", "")
				if resp.StatusCode != 200 {
					t.Fatalf("run %s: %d %s", got.RunID, resp.StatusCode, record)
				}
				if want := decodeSummary(t, record); !reflect.DeepEqual(got, want) {
					t.Errorf("index line %+v\nrecord's   %+v", got, want)
				}
				if got.Confidence != nil {
					confident++
				}
				if got.CostUSD != nil {
					priced++
				}
			}
			if confident != len(requests)-1 || priced != len(requests)-1 {
				t.Errorf("%d runs with a confidence, %d with a cost: want %d each", confident, priced, len(requests)-1)
			}
		})
	}
}
