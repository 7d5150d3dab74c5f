package consortia_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestPriceCost(t *testing.T) {
	cached := 0.5
	for _, tc := range []struct {
		name                       string
		price                      consortia.Price
		prompt, cached, completion int
		want                       float64
	}{
		{"input and output", consortia.Price{Input: 2.5, Output: 10}, 1000, 0, 500, (1000*2.5 + 500*10) / 1e6},
		{"cached at its own price", consortia.Price{Input: 2.5, Output: 10, CachedInput: &cached}, 1000, 400, 0, (600*2.5 + 400*0.5) / 1e6},
		{"cached without a cached price is input", consortia.Price{Input: 2.5, Output: 10}, 1000, 400, 0, 1000 * 2.5 / 1e6},
		{"more cached than prompt is bounded", consortia.Price{Input: 2, CachedInput: &cached}, 10, 50, 0, 10 * 0.5 / 1e6},
		{"free model", consortia.Price{}, 1000, 0, 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.price.Cost(tc.prompt, tc.cached, tc.completion); math.Abs(got-tc.want) > 1e-15 {
				t.Errorf("cost %v, want %v", got, tc.want)
			}
		})
	}
}

// pricedSet builds the consortiums cfgs over an in-memory fake provider
// "fake", each with pricing.
func pricedSet(t *testing.T, fake *upstreamtest.Server, pricing consortia.Pricing, cfgs map[string]consortia.Config) map[string]*consortia.Engine {
	t.Helper()
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxRetries: -1, Transport: fake.RoundTripper()})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range cfgs {
		c.Pricing = pricing
		cfgs[name] = c
	}
	set, err := consortia.NewSet(cfgs, map[string]consortia.Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// usageReply answers with fixed usage.
func usageReply(content string, prompt, completion int) upstreamtest.Reply {
	return upstreamtest.Reply{Content: content, Usage: &openai.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}}
}

func runEngine(t *testing.T, e *consortia.Engine) (*consortia.Result, error) {
	t.Helper()
	req, err := openai.ParseChatRequest([]byte(hello))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Run(ctx, req, nil)
}

func near(got *float64, want float64) bool {
	return got != nil && math.Abs(*got-want) < 1e-12
}

// TestCostOfEveryCall prices every call of a run: members of every round
// (a fallback at its own price), the arbiter of every round, judges, and a
// cascade's tiers' runs and calls.
func TestCostOfEveryCall(t *testing.T) {
	pricing := consortia.Pricing{
		"fake/alpha":   {Input: 1, Output: 2},
		"fake/beta":    {Input: 10, Output: 20},
		"fake/backup":  {Input: 100, Output: 200},
		"fake/arbiter": {Input: 1000, Output: 2000},
		"fake/judge":   {Input: 3, Output: 4},
		"fake/big":     {Input: 7, Output: 9},
	}
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("an answer", 1, 2) })
	fake.Handle("beta", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("beta's", 10, 20) })
	fake.Handle("down", func(r *upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Status: 400, Error: "no"} })
	fake.Handle("backup", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("backup's", 5, 6) })
	fake.Handle("big", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("the big answer", 40, 50) })
	fake.Handle("judge", func(r *upstreamtest.Request) upstreamtest.Reply {
		return usageReply("<ranking>"+strings.Join(labelsIn(r.LastUserText()), " > ")+"</ranking>", 30, 3)
	})
	rounds := 0
	fake.Handle("arbiter", func(r *upstreamtest.Request) upstreamtest.Reply {
		rounds++
		if rounds%2 == 1 {
			return usageReply("<confidence>0.2</confidence><refinement_areas>more</refinement_areas>", 100, 10)
		}
		return usageReply(verdict("0.95", "done"), 100, 20)
	})

	set := pricedSet(t, fake, pricing, map[string]consortia.Config{
		"council": {
			Members:    []consortia.Member{{Model: "fake/alpha", Count: 2, Weight: 1}, {Model: "fake/down", Count: 1, Weight: 1, Fallbacks: []string{"fake/backup"}}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter"}, ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 2},
			MinAnswers: 1,
		},
		"panel": {
			Strategy: "rank",
			Members:  []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}, {Model: "fake/beta", Count: 1, Weight: 1}},
			Judges:   []consortia.Judge{{Model: "fake/judge", Weight: 1}},
		},
		"ladder": {
			Strategy: "cascade",
			Cascade:  consortia.Cascade{Tiers: []string{"panel", "fake/big"}, EscalateBelow: 1.1},
		},
	})

	// council: two rounds of alpha×2 at (1, 2) tokens and the backup at
	// (5, 6) in place of down, and two arbiter replies.
	res, err := runEngine(t, set["council"])
	if err != nil {
		t.Fatal(err)
	}
	member := 2*(1*1+2*2) + (5*100 + 6*200)
	arbiter := (100*1000 + 10*2000) + (100*1000 + 20*2000)
	want := float64(2*member+arbiter) / 1e6
	if !near(res.Usage.CostUSD, want) || !near(res.Run.Usage.CostUSD, want) {
		t.Errorf("council cost %v (run %v), want %v", deref(res.Usage.CostUSD), deref(res.Run.Usage.CostUSD), want)
	}

	// panel: alpha and beta, one judge call.
	panelCost := float64((1*1+2*2)+(10*10+20*20)+(30*3+3*4)) / 1e6
	res, err = runEngine(t, set["panel"])
	if err != nil {
		t.Fatal(err)
	}
	if !near(res.Usage.CostUSD, panelCost) {
		t.Errorf("panel cost %v, want %v", deref(res.Usage.CostUSD), panelCost)
	}

	// ladder: the panel's run escalates (below 1.1), then big answers.
	res, err = runEngine(t, set["ladder"])
	if err != nil {
		t.Fatal(err)
	}
	want = panelCost + float64(40*7+50*9)/1e6
	if !near(res.Usage.CostUSD, want) {
		t.Errorf("ladder cost %v, want %v", deref(res.Usage.CostUSD), want)
	}
	body, _ := json.Marshal(res.Run)
	if !strings.Contains(string(body), `"cost_usd":`) {
		t.Errorf("the run record has no cost_usd: %s", body)
	}
}

// TestCostUnknown: an unpriced model that reported usage, or no pricing,
// leaves the cost out, never 0; a failed run has its cost too.
func TestCostUnknown(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply(verdict("0.9", "ok"), 1, 2) })
	fake.Handle("broken", func(r *upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Status: 400, Error: "no"} })
	council := func(members ...string) consortia.Config {
		c := consortia.Config{Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter"}, MinIterations: 1, MaxIterations: 1}, MinAnswers: 1}
		for _, m := range members {
			c.Members = append(c.Members, consortia.Member{Model: m, Count: 1, Weight: 1})
		}
		return c
	}
	priced := consortia.Pricing{"fake/alpha": {Input: 1, Output: 1}, "fake/arbiter": {Input: 1, Output: 1}}
	set := pricedSet(t, fake, priced, map[string]consortia.Config{
		"unpriced": council("fake/alpha", "fake/other"),
		"priced":   council("fake/alpha", "fake/broken"),
		"failing":  {Synthesize: council().Synthesize, Members: []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}, {Model: "fake/broken", Count: 1, Weight: 1}}, MinAnswers: 2},
	})
	res, err := runEngine(t, set["unpriced"])
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage.CostUSD != nil {
		t.Errorf("cost %v with an unpriced model", *res.Usage.CostUSD)
	}
	if body, _ := json.Marshal(res.Usage); strings.Contains(string(body), "cost_usd") {
		t.Errorf("usage %s has cost_usd", body)
	}
	// A failed member reported no usage: it costs nothing known, and the
	// rest is priced.
	res, err = runEngine(t, set["priced"])
	if err != nil {
		t.Fatal(err)
	}
	if !near(res.Usage.CostUSD, 6/1e6) {
		t.Errorf("cost %v, want %v", deref(res.Usage.CostUSD), 6/1e6)
	}
	_, err = runEngine(t, set["failing"])
	re, ok := errors.AsType[*consortia.RunError](err)
	if !ok {
		t.Fatalf("err %v, want a RunError", err)
	}
	if !near(re.Run.Usage.CostUSD, 3/1e6) {
		t.Errorf("failed run's cost %v, want %v", deref(re.Run.Usage.CostUSD), 3/1e6)
	}

	unpricedSet := pricedSet(t, fake, nil, map[string]consortia.Config{"c": council("fake/alpha")})
	if res, err := runEngine(t, unpricedSet["c"]); err != nil || res.Usage.CostUSD != nil {
		t.Errorf("without pricing: cost %v, err %v", res.Usage.CostUSD, err)
	}
}

// labelsIn returns the labels of the answers a judge prompt shows, in
// order: "Response A", "Response B" ...
func labelsIn(prompt string) []string {
	var out []string
	for l := 'A'; l <= 'Z'; l++ {
		if strings.Contains(prompt, "Response "+string(l)) {
			out = append(out, string(l))
		}
	}
	return out
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestCostOfCachedTokens: the prompt tokens a provider reports as read
// from its cache cost cached_input when the model has one, input when not.
func TestCostOfCachedTokens(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	cachedReply := func(content string) upstreamtest.Reply {
		return upstreamtest.Reply{Content: content, Usage: &openai.Usage{PromptTokens: 100, CompletionTokens: 10, TotalTokens: 110,
			PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: 60}}}
	}
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply { return cachedReply(verdict("0.9", "ok")) })
	quarter := 0.25
	set := pricedSet(t, fake, consortia.Pricing{
		"fake/alpha":   {Input: 1, Output: 2, CachedInput: &quarter},
		"fake/arbiter": {Input: 1, Output: 2},
	}, map[string]consortia.Config{"c": {
		Members:    []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}},
		Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter"}, MinIterations: 1, MaxIterations: 1},
	}})
	res, err := runEngine(t, set["c"])
	if err != nil {
		t.Fatal(err)
	}
	want := (40*1 + 60*0.25 + 10*2 + 100*1 + 10*2) / 1e6
	if !near(res.Usage.CostUSD, want) {
		t.Errorf("cost %v, want %v", deref(res.Usage.CostUSD), want)
	}
	if res.Usage.Cached() != 120 {
		t.Errorf("usage %+v: the cached tokens are not summed", res.Usage)
	}
}
