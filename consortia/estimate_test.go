package consortia_test

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
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

// uncalled is a provider an estimate must never call.
type uncalled struct{ t testing.TB }

func (u uncalled) Chat(context.Context, string, *openai.ChatRequest) (*openai.ChatCompletion, error) {
	u.t.Error("an estimate called a provider")
	return nil, errors.New("not called")
}

func (u uncalled) ChatStream(context.Context, string, *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error] {
	u.t.Error("an estimate called a provider")
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {}
}

// FuzzEstimate estimates any request body on a consortium of each
// strategy: no panic, no call, and every range in order.
func FuzzEstimate(f *testing.F) {
	for _, body := range []string{
		hello,
		`{"model":"c","max_tokens":100,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
		`{"model":"c","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"c","max_completion_tokens":4294967296,"n":2,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
		`{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"` + strings.Repeat("é", 999) + `"}]}`,
	} {
		f.Add(body)
	}
	huge := map[string]any{"max_tokens": 1e300}
	cfgs := map[string]consortia.Config{
		"synthesize": {
			Members:    []consortia.Member{{Model: "p/a", Count: 2, Weight: 1}, {Model: "p/b", Count: 1, Weight: 2, Params: map[string]any{"max_tokens": -3}}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "p/j", Params: map[string]any{"max_tokens": 100}}, MinIterations: 2, MaxIterations: 4},
			Pricing:    consortia.Pricing{"p/a": {Input: 1, Output: 1}, "p/b": {Input: 1, Output: 1}, "p/j": {Input: 1, Output: 1}},
		},
		"rank": {
			Strategy: "rank", Rank: consortia.Rank{WithinModelFirst: true, Then: "synthesize"},
			Members:    []consortia.Member{{Model: "p/a", Count: 2, Weight: 1}, {Model: "p/b", Count: 2, Weight: 1}},
			Judges:     []consortia.Judge{{Model: "p/a", Weight: 1, Params: huge}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "p/j"}},
		},
		"vote": {
			Strategy: "vote", Vote: consortia.Vote{TieBreak: "judge"},
			Members:    []consortia.Member{{Model: "p/a", Count: 3, Weight: 1}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "p/j"}},
		},
		"cascade": {Strategy: "cascade", Cascade: consortia.Cascade{Tiers: []string{"vote", "rank", "synthesize", "p/z"}}},
	}
	set, err := consortia.NewSet(cfgs, map[string]consortia.Caller{"p": uncalled{f}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := openai.ParseChatRequest([]byte(body))
		if err != nil {
			return
		}
		for name, e := range set {
			est, err := e.Estimate(req)
			if err != nil {
				if _, ok := errors.AsType[*openai.FieldError](err); !ok {
					t.Fatalf("%s: %v is not a FieldError", name, err)
				}
				continue
			}
			in := est.Tokens.Input
			if in[0] < 0 || in[0] > in[1] {
				t.Fatalf("%s: input %v", name, in)
			}
			if out := est.Tokens.Output; out != nil && (out[0] < 0 || out[0] > out[1]) {
				t.Fatalf("%s: output %v", name, *out)
			}
			if c := est.CostUSD; c != nil && (c[0] < 0 || c[0] > c[1] || math.IsNaN(c[1]) || math.IsInf(c[1], 0)) {
				t.Fatalf("%s: cost %v", name, *c)
			}
			for _, c := range est.Calls {
				if c.Count < 1 || c.Rounds[0] < 0 || c.Rounds[0] > c.Rounds[1] {
					t.Fatalf("%s: call %+v", name, c)
				}
			}
		}
	})
}
