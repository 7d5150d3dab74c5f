package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// demoAnswer is a response of serve --demo: its choices and consortium
// object.
type demoAnswer struct {
	Choices []struct {
		Message struct{ Content string }
	}
	Consortium consortia.Summary
}

// ask posts a chat request and decodes the answer, which must be a 200.
func ask(t *testing.T, base, body string) demoAnswer {
	t.Helper()
	resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out demoAnswer
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) == 0 {
		t.Fatalf("%s: %s, %v", body, resp.Status, err)
	}
	return out
}

// TestServeDemoStrategies: serve --demo has a runnable consortium per
// strategy, listed by /v1/models, each showing what its strategy adds to
// the consortium object: demo-rank its scores (and n: 2 its two best
// answers), demo-vote its votes and agreement, demo-cascade its tiers,
// escalating when the vote is split and not when it is unanimous.
func TestServeDemoStrategies(t *testing.T) {
	clean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base, log, cmd := startServe(t, ctx, "--demo", "--listen", "127.0.0.1:0")
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("serve log:\n%s", log)
		}
	}()

	resp, err := http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	var models struct{ Data []struct{ ID string } }
	err = json.NewDecoder(resp.Body).Decode(&models)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
	}
	for _, id := range []string{"demo", "demo-rank", "demo-vote", "demo-cascade", "demo/judge-1", "demo/judge-2"} {
		if !slices.Contains(ids, id) {
			t.Errorf("/v1/models lacks %s: %q", id, ids)
		}
	}

	rank := ask(t, base, `{"model":"demo-rank","messages":[{"role":"user","content":"Why is the sky blue?"}]}`)
	if s := rank.Consortium; s.Strategy != "rank" || len(s.Scores) != 3 || s.Scores[0].Place != 1 || s.Scores[0].Score <= s.Scores[2].Score || s.Confidence == nil {
		t.Errorf("demo-rank consortium = %+v", s)
	} else if !strings.Contains(rank.Choices[0].Message.Content, strings.TrimPrefix(s.Scores[0].Model, "demo/")) {
		t.Errorf("demo-rank answered %q, not the answer of %s, its best", rank.Choices[0].Message.Content, s.Scores[0].Model)
	}
	two := ask(t, base, `{"model":"demo-rank","n":2,"messages":[{"role":"user","content":"Why is the sky blue?"}]}`)
	if len(two.Choices) != 2 || two.Choices[0].Message.Content == two.Choices[1].Message.Content {
		t.Errorf("demo-rank with n: 2 answered %+v", two.Choices)
	}

	vote := ask(t, base, `{"model":"demo-vote","messages":[{"role":"user","content":"Is 2^61-1 prime?"}]}`)
	if s := vote.Consortium; s.Strategy != "vote" || len(s.Votes) != 2 || s.Agreement == nil || *s.Agreement < 0.6 || *s.Agreement > 0.7 {
		t.Errorf("demo-vote consortium = %+v", s)
	} else if !strings.HasSuffix(vote.Choices[0].Message.Content, "Answer: "+s.Votes[0].Answer) {
		t.Errorf("demo-vote answered %q, not its winning vote %q", vote.Choices[0].Message.Content, s.Votes[0].Answer)
	}

	for _, tc := range []struct {
		question string
		tiers    []string
	}{
		{"Is 2^61-1 prime?", []string{"demo-vote", "demo"}}, // split: escalates
		{"Is Go garbage collected?", []string{"demo-vote"}}, // unanimous
	} {
		s := ask(t, base, `{"model":"demo-cascade","messages":[{"role":"user","content":"`+tc.question+`"}]}`).Consortium
		var tiers []string
		for _, tier := range s.Tiers {
			tiers = append(tiers, tier.Tier)
		}
		if s.Strategy != "cascade" || !slices.Equal(tiers, tc.tiers) || s.Tiers[0].Escalated != (len(tc.tiers) > 1) {
			t.Errorf("demo-cascade on %q: consortium %+v, want tiers %q", tc.question, s, tc.tiers)
		}
	}
}

// TestDemoNames: the demo models config lists are the ones the demo
// responder answers as it should.
func TestDemoNames(t *testing.T) {
	if !slices.Equal(config.DemoJudges, upstreamtest.DemoJudges) {
		t.Errorf("config.DemoJudges %q, upstreamtest.DemoJudges %q", config.DemoJudges, upstreamtest.DemoJudges)
	}
}
