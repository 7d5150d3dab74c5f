package consortia_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func estimate(t *testing.T, e *consortia.Engine, body string) *consortia.Estimate {
	t.Helper()
	req, err := openai.ParseChatRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	est, err := e.Estimate(req)
	if err != nil {
		t.Fatal(err)
	}
	return est
}

func calls(est *consortia.Estimate) []consortia.EstimateCall { return est.Calls }

func TestEstimate(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	// One price for every model, so that each end's cost is its tokens'.
	flat := consortia.Price{Input: 1, Output: 2}
	pricing := consortia.Pricing{}
	for _, m := range []string{"alpha", "beta", "gamma", "arbiter", "j1", "big"} {
		pricing["fake/"+m] = flat
	}
	bounded := map[string]any{"max_tokens": 300}
	set := pricedSet(t, fake, pricing, map[string]consortia.Config{
		"council": {
			Members: []consortia.Member{
				{Model: "fake/alpha", Count: 2, Weight: 1, Fallbacks: []string{"fake/gamma"}},
				{Model: "fake/beta", Count: 1, Weight: 1, Params: map[string]any{"max_tokens": 50}},
			},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter", Params: bounded}, MinIterations: 1, MaxIterations: 3},
		},
		"loose": {
			Members:    []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter"}, MinIterations: 1, MaxIterations: 1},
		},
		"unpriced": {
			Members:    []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}, {Model: "fake/free", Count: 1, Weight: 1}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter", Params: bounded}, MinIterations: 1, MaxIterations: 1},
		},
		"panel": {
			Strategy: "rank", Rank: consortia.Rank{WithinModelFirst: true},
			Members: []consortia.Member{
				{Model: "fake/alpha", Count: 2, Weight: 1}, {Model: "fake/beta", Count: 1, Weight: 1}, {Model: "fake/gamma", Count: 2, Weight: 1},
			},
			Judges: []consortia.Judge{{Model: "fake/j1", Weight: 1, Params: bounded}, {Model: "fake/alpha", Weight: 1, Params: bounded}},
		},
		"agree": {
			Strategy: "vote", Vote: consortia.Vote{TieBreak: "judge"},
			Members: []consortia.Member{{Model: "fake/alpha", Count: 3, Weight: 1}},
			Judges:  []consortia.Judge{{Model: "fake/j1", Weight: 1, Params: bounded}},
		},
		"ladder": {
			Strategy: "cascade",
			Cascade:  consortia.Cascade{Tiers: []string{"agree", "fake/big"}, EscalateBelow: 0.8},
		},
	})
	const ask = `{"model":"council","max_tokens":100,"messages":[{"role":"user","content":"what is the answer?"}]}`

	t.Run("synthesize", func(t *testing.T) {
		est := estimate(t, set["council"], ask)
		want := []consortia.EstimateCall{
			{Role: "member", Model: "fake/alpha", Count: 2, Rounds: [2]int{1, 3}},
			{Role: "member", Model: "fake/beta", Count: 1, Rounds: [2]int{1, 3}},
			{Role: "arbiter", Model: "fake/arbiter", Count: 1, Rounds: [2]int{1, 3}},
		}
		if !reflect.DeepEqual(calls(est), want) {
			t.Errorf("calls %+v, want %+v", calls(est), want)
		}
		// Low: one round, a token an answer. High: three rounds of two
		// alphas at 100 (the client's max_tokens), beta at 50 (its
		// params') and the arbiter at 300 (its params').
		if est.Tokens.Output == nil || *est.Tokens.Output != [2]int{4, 3 * (2*100 + 50 + 300)} {
			t.Errorf("output %v", est.Tokens.Output)
		}
		// A member's first round sends its thread: "user" and the
		// question, ≈ bytes / 4 each.
		thread := 1 + 5
		in := est.Tokens.Input
		if in[0] <= 3*thread || in[1] <= in[0]+3*(2*100+50) {
			t.Errorf("input %v", in)
		}
		out := *est.Tokens.Output
		if est.CostUSD == nil || math.Abs(est.CostUSD[0]-float64(in[0]+2*out[0])/1e6) > 1e-9 || math.Abs(est.CostUSD[1]-float64(in[1]+2*out[1])/1e6) > 1e-9 {
			t.Errorf("cost %v for tokens %+v", est.CostUSD, est.Tokens)
		}
		if len(fake.Requests()) != 0 {
			t.Errorf("the estimate called the provider %d times", len(fake.Requests()))
		}
	})

	t.Run("unbounded or unpriced is null", func(t *testing.T) {
		// The client bounds the members but not the arbiter.
		est := estimate(t, set["loose"], ask)
		if est.Tokens.Output != nil || est.CostUSD != nil {
			t.Errorf("loose: %+v", est)
		}
		b, _ := json.Marshal(est)
		if want := `"output":null},"cost_usd":null}`; !json.Valid(b) || !contains(string(b), want) {
			t.Errorf("json %s lacks %s", b, want)
		}
		est = estimate(t, set["unpriced"], ask)
		if est.Tokens.Output == nil || est.CostUSD != nil {
			t.Errorf("unpriced: %+v", est)
		}
		est = estimate(t, set["council"], hello)
		if est.Tokens.Output != nil || est.CostUSD != nil || est.Tokens.Input[0] == 0 {
			t.Errorf("no max_tokens: %+v", est)
		}
	})

	t.Run("rank within model first", func(t *testing.T) {
		est := estimate(t, set["panel"], ask)
		// j1 ranks alpha's two, gamma's two and the three finalists; the
		// judge alpha is not asked about alpha's own two.
		want := []consortia.EstimateCall{
			{Role: "member", Model: "fake/alpha", Count: 2, Rounds: [2]int{1, 1}},
			{Role: "member", Model: "fake/beta", Count: 1, Rounds: [2]int{1, 1}},
			{Role: "member", Model: "fake/gamma", Count: 2, Rounds: [2]int{1, 1}},
			{Role: "judge", Model: "fake/j1", Count: 3, Rounds: [2]int{1, 1}},
			{Role: "judge", Model: "fake/alpha", Count: 2, Rounds: [2]int{1, 1}},
		}
		if !reflect.DeepEqual(calls(est), want) {
			t.Errorf("calls %+v, want %+v", calls(est), want)
		}
		if est.Tokens.Output == nil || *est.Tokens.Output != [2]int{5 + 5, 5*100 + 5*300} {
			t.Errorf("output %v", est.Tokens.Output)
		}
	})

	t.Run("cascade and vote's tie-break", func(t *testing.T) {
		est := estimate(t, set["ladder"], `{"model":"ladder","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
		want := []consortia.EstimateCall{
			{Role: "member", Model: "fake/alpha", Count: 3, Rounds: [2]int{1, 1}, Tier: "agree"},
			{Role: "judge", Model: "fake/j1", Count: 1, Rounds: [2]int{0, 1}, Tier: "agree"},
			{Role: "member", Model: "fake/big", Count: 1, Rounds: [2]int{0, 1}, Tier: "fake/big"},
		}
		if !reflect.DeepEqual(calls(est), want) {
			t.Errorf("calls %+v, want %+v", calls(est), want)
		}
		// Low: the first tier's three members, no tie. High: a tie judged,
		// and the last tier.
		if est.Tokens.Output == nil || *est.Tokens.Output != [2]int{3, 3*10 + 300 + 10} {
			t.Errorf("output %v", est.Tokens.Output)
		}
		if est.CostUSD == nil || est.CostUSD[0] >= est.CostUSD[1] {
			t.Errorf("cost %v", est.CostUSD)
		}
	})

	t.Run("a request the consortium refuses", func(t *testing.T) {
		req, _ := openai.ParseChatRequest([]byte(`{"model":"council","messages":[{"role":"system","content":"no user"}]}`))
		_, err := set["council"].Estimate(req)
		if fe, ok := errors.AsType[*openai.FieldError](err); !ok || fe.Param != "messages" {
			t.Errorf("err %v, want a FieldError on messages", err)
		}
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
