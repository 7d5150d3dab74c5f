package consortia

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// secondRound is a strategy for testing the seam: round 1 sends every
// instance feedback of its own into another round; round 2 answers with
// the first successful answer, with a confidence, usage of its own and a
// fallback note.
type secondRound struct{}

func (secondRound) decide(_ context.Context, _ *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	own := openai.Usage{PromptTokens: 1000, TotalTokens: 1000}
	if round.Number == 1 {
		d := decision{again: true, usage: own}
		for i := range round.Members {
			d.feedback = append(d.feedback, fmt.Sprintf("feedback for instance %d", i))
		}
		return d, nil
	}
	for _, a := range round.Members {
		if a.Status == StatusOK {
			write(a.Content)
			break
		}
	}
	c := 0.5
	return decision{outcome: Outcome{Confidence: &c}, usage: own, fallback: "the test's"}, nil
}

// TestStrategySeam plugs a strategy in without touching the engine: the
// engine carries its per-instance feedback into each instance's own
// thread, records its outcome and usage, and bounds its answer as it
// bounds every strategy's.
func TestStrategySeam(t *testing.T) {
	strategies["second-round"] = func(setup) (strategy, error) { return secondRound{}, nil }
	t.Cleanup(func() { delete(strategies, "second-round") })
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New("trial", Config{
		Strategy: "second-round",
		Members:  []Member{{Model: "fake/alpha", Count: 2, Weight: 1}, {Model: "fake/beta", Count: 1, Weight: 1}},
	}, map[string]Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	memberUsage := openai.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: "the answer of " + r.Model, Usage: &memberUsage}
	})

	run := func(body string) (*Result, string, error) {
		req, err := openai.ParseChatRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var deltas strings.Builder
		res, err := e.Run(context.Background(), req, func(s string) { deltas.WriteString(s) })
		return res, deltas.String(), err
	}

	res, deltas, err := run(`{"model":"trial","messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Synthesis != "the answer of alpha" || deltas != res.Synthesis || res.FinishReason != "stop" {
		t.Errorf("synthesis %q (%s), deltas %q", res.Synthesis, res.FinishReason, deltas)
	}
	s := res.Run.Summary()
	if s.Strategy != "second-round" || s.Iterations != 2 || s.Confidence == nil || *s.Confidence != 0.5 || res.Run.Fallback != "the test's" {
		t.Errorf("summary %+v, fallback %q", s, res.Run.Fallback)
	}
	// Three instances in two rounds, and the strategy's own usage twice.
	want := openai.Usage{PromptTokens: 6*1 + 2000, CompletionTokens: 6 * 2, TotalTokens: 6*3 + 2000}
	if res.Usage != want {
		t.Errorf("usage %+v, want %+v", res.Usage, want)
	}
	// Each instance continued its own thread with its own feedback.
	got := map[string]int{}
	for _, r := range fake.Requests() {
		msgs := r.Chat.Messages
		if len(msgs) != 3 {
			continue
		}
		if msgs[1].Role != "assistant" || msgs[1].Content.String() != "the answer of "+r.Model {
			t.Errorf("%s: round 2 does not continue its own answer: %+v", r.Model, msgs)
		}
		got[msgs[2].Content.String()]++
	}
	for i := range 3 {
		if f := fmt.Sprintf("feedback for instance %d", i); got[f] != 1 {
			t.Errorf("%q reached %d instances, want 1 (all: %v)", f, got[f], got)
		}
	}

	// The client's bounds hold for whatever the strategy writes.
	res, deltas, err = run(`{"model":"trial","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil || res.Synthesis != "the " || deltas != "the " || res.FinishReason != "length" {
		t.Errorf("max_tokens 1: %+v, deltas %q, %v", res, deltas, err)
	}
	_, deltas, err = run(`{"model":"trial","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}`)
	var re *RunError
	if !errors.Is(err, ErrNotJSON) || !errors.As(err, &re) || re.Run.Strategy != "second-round" || deltas != "" {
		t.Errorf("JSON asked, prose written: err %v, deltas %q", err, deltas)
	}
}

// noMembers answers from the request alone, as a cascade of tiers will.
type noMembers struct{}

func (noMembers) decide(_ context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	write(fmt.Sprintf("%d members, asked %q", len(round.Members), req.Messages[0].Content.String()))
	return decision{}, nil
}

// TestStrategyWithoutMembers: a consortium whose strategy needs no members
// skips the fan-out, and min_answers has nothing to count.
func TestStrategyWithoutMembers(t *testing.T) {
	strategies["no-members"] = func(setup) (strategy, error) { return noMembers{}, nil }
	t.Cleanup(func() { delete(strategies, "no-members") })
	e, err := New("tiers", Config{Strategy: "no-members", MinAnswers: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := openai.ParseChatRequest([]byte(`{"model":"tiers","messages":[{"role":"user","content":"hi"}]}`))
	res, err := e.Run(context.Background(), req, nil)
	if err != nil || res.Synthesis != `0 members, asked "hi"` || res.Run.Iterations != 1 || len(res.Run.Rounds[0].Members) != 0 {
		t.Errorf("result %+v, %v", res, err)
	}
}
