package consortia_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// The tiers of the cascades below: quick (one member) and council (two),
// both synthesize with one round, over the fake provider "fake".
const (
	quickBody   = "members: [{model: fake/q1}]\narbiter: {model: fake/qarb}\nmax_iterations: 1"
	councilBody = "members: [{model: fake/c1}, {model: fake/c2}]\narbiter: {model: fake/carb}\nmax_iterations: 1"
)

// cascadeSet is the consortiums quick, council and tiered (a cascade of
// tiers), built with NewSet over an in-memory fake provider, and the role
// of every call it made, by model.
type cascadeSet struct {
	fake    *upstreamtest.Server
	engines map[string]*consortia.Engine
	mu      sync.Mutex
	roles   map[string][]string
}

func newCascadeSet(t *testing.T, tiers []string, below float64) *cascadeSet {
	t.Helper()
	fake := upstreamtest.NewInMemory()
	t.Cleanup(fake.Close)
	s := &cascadeSet{fake: fake, roles: map[string][]string{}}
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Transport: fake.RoundTripper(),
		OnCall: func(c upstream.Call) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.roles[c.Model] = append(s.roles[c.Model], c.Role)
		}})
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]consortia.Config{
		"quick":   consortiumConfig(t, quickBody),
		"council": consortiumConfig(t, councilBody),
		"tiered":  {Strategy: "cascade", Cascade: consortia.Cascade{Tiers: tiers, EscalateBelow: below}},
	}
	s.engines, err = consortia.NewSet(cfgs, map[string]consortia.Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run asks the cascade hello and returns the result, the deltas it
// streamed and the error.
func (s *cascadeSet) run(t *testing.T) (*consortia.Result, []string, error) {
	t.Helper()
	req, err := openai.ParseChatRequest([]byte(hello))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var deltas []string
	res, err := s.engines["tiered"].Run(ctx, req, func(d string) { deltas = append(deltas, d) })
	if err == nil && strings.Join(deltas, "") != res.Synthesis {
		t.Errorf("deltas %q do not add up to the answer %q", deltas, res.Synthesis)
	}
	return res, deltas, err
}

// one is the usage every scripted call reports, so that a run's usage is
// twice its number of calls.
var one = &openai.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}

// answer scripts a member's answer; judged scripts an arbiter's verdict.
func answer(text string) upstreamtest.Reply { return upstreamtest.Reply{Content: text, Usage: one} }

func judged(confidence, synthesis string) upstreamtest.Reply {
	return upstreamtest.Reply{Content: verdict(confidence, synthesis), Usage: one}
}

// wantTier is what the consortium object must say of a tier: its name,
// its confidence ("" for none), whether it escalated, and a part of its
// error ("" for none).
type wantTier struct {
	tier, confidence string
	escalated        bool
	err              string
}

func TestCascade(t *testing.T) {
	failed := upstreamtest.Reply{Status: 400, Error: "no such thing", Usage: one}
	untagged := upstreamtest.Reply{Content: "<synthesis>QUICK-UNTAGGED</synthesis>", Usage: one}
	tests := []struct {
		name       string
		tiers      []string
		below      float64
		script     map[string]upstreamtest.Reply
		answer     string
		confidence string // of the answering tier; "" for none
		tiersWant  []wantTier
	}{
		{
			name: "a confident first tier answers", tiers: []string{"quick", "council"}, below: 0.8,
			script:     map[string]upstreamtest.Reply{"qarb": judged("0.9", "QUICK")},
			answer:     "QUICK",
			confidence: "0.9",
			tiersWant:  []wantTier{{tier: "quick", confidence: "0.9"}},
		},
		{
			name: "confidence exactly at escalate_below answers", tiers: []string{"quick", "council"}, below: 0.8,
			script:     map[string]upstreamtest.Reply{"qarb": judged("0.8", "QUICK")},
			answer:     "QUICK",
			confidence: "0.8",
			tiersWant:  []wantTier{{tier: "quick", confidence: "0.8"}},
		},
		{
			name: "an unsure tier escalates", tiers: []string{"quick", "council"}, below: 0.8,
			script:     map[string]upstreamtest.Reply{"qarb": judged("0.5", "QUICK"), "carb": judged("0.95", "COUNCIL")},
			answer:     "COUNCIL",
			confidence: "0.95",
			tiersWant:  []wantTier{{tier: "quick", confidence: "0.5", escalated: true}, {tier: "council", confidence: "0.95"}},
		},
		{
			name: "an unknown confidence counts as 0", tiers: []string{"quick", "council"}, below: 0.1,
			script:     map[string]upstreamtest.Reply{"qarb": untagged, "carb": judged("0.2", "COUNCIL")},
			answer:     "COUNCIL",
			confidence: "0.2",
			tiersWant:  []wantTier{{tier: "quick", escalated: true}, {tier: "council", confidence: "0.2"}},
		},
		{
			name: "a failing tier escalates", tiers: []string{"quick", "council"}, below: 0.8,
			script:     map[string]upstreamtest.Reply{"q1": failed, "carb": judged("0.9", "COUNCIL")},
			answer:     "COUNCIL",
			confidence: "0.9",
			tiersWant:  []wantTier{{tier: "quick", escalated: true, err: "too few member answers"}, {tier: "council", confidence: "0.9"}},
		},
		{
			name: "the last tier answers however unsure", tiers: []string{"quick", "council"}, below: 0.8,
			script:     map[string]upstreamtest.Reply{"qarb": judged("0.3", "QUICK"), "carb": judged("0.1", "COUNCIL")},
			answer:     "COUNCIL",
			confidence: "0.1",
			tiersWant:  []wantTier{{tier: "quick", confidence: "0.3", escalated: true}, {tier: "council", confidence: "0.1"}},
		},
		{
			name: "a provider/model last tier answers without confidence", tiers: []string{"quick", "council", "fake/big"}, below: 0.8,
			script: map[string]upstreamtest.Reply{
				"qarb": judged("0.3", "QUICK"), "carb": judged("0.6", "COUNCIL"),
				"big": {Content: "the big model answers in many words", Usage: one}},
			answer: "the big model answers in many words",
			tiersWant: []wantTier{
				{tier: "quick", confidence: "0.3", escalated: true}, {tier: "council", confidence: "0.6", escalated: true},
				{tier: "fake/big"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newCascadeSet(t, tc.tiers, tc.below)
			for _, m := range []string{"q1", "c1", "c2"} {
				if _, ok := tc.script[m]; !ok {
					s.fake.Script(m, answer(m+"-answer"))
				}
			}
			for model, r := range tc.script {
				s.fake.Script(model, r)
			}
			res, deltas, err := s.run(t)
			if err != nil {
				t.Fatal(err)
			}
			if res.Synthesis != tc.answer {
				t.Errorf("answer %q, want %q", res.Synthesis, tc.answer)
			}
			// A tier that escalated held its answer: the client saw only
			// the answering tier's.
			for _, d := range deltas {
				if d != "" && !strings.Contains(tc.answer, d) {
					t.Errorf("delta %q is not from the answering tier", d)
				}
			}
			sum := res.Run.Summary()
			if sum.Strategy != "cascade" || len(sum.Members) != 0 {
				t.Errorf("strategy %q, members %v; want cascade and none", sum.Strategy, sum.Members)
			}
			if got := confString(sum.Confidence); got != tc.confidence {
				t.Errorf("confidence %s, want %q", got, tc.confidence)
			}
			if len(sum.Tiers) != len(tc.tiersWant) {
				t.Fatalf("tiers %+v, want %+v", sum.Tiers, tc.tiersWant)
			}
			for i, w := range tc.tiersWant {
				got := sum.Tiers[i]
				if got.Tier != w.tier || confString(got.Confidence) != w.confidence || got.Escalated != w.escalated ||
					(w.err == "") != (got.Error == "") || !strings.Contains(got.Error, w.err) {
					t.Errorf("tier %d: %+v (confidence %s), want %+v", i, got, confString(got.Confidence), w)
				}
			}
			// The record keeps each tier's run (or call), and the usage
			// sums every call of every tier.
			tiers := res.Run.Rounds[0].Tiers
			if len(tiers) != len(tc.tiersWant) {
				t.Fatalf("recorded tiers %+v", tiers)
			}
			for i, tr := range tiers {
				if tr.Tier.Tier != tc.tiersWant[i].tier || (tr.Run == nil) == (tr.Call == nil) {
					t.Errorf("recorded tier %d: %+v", i, tr)
				}
				if tr.Run != nil && tr.Run.ID == res.Run.ID {
					t.Errorf("tier %d's run shares the cascade's id %s", i, tr.Run.ID)
				}
			}
			calls := 0
			for _, r := range s.fake.Requests() {
				if r.Model != "" && tc.script[r.Model].Status < 400 { // a failed call reports no usage
					calls++
				}
			}
			if want := (openai.Usage{PromptTokens: calls, CompletionTokens: calls, TotalTokens: 2 * calls}); res.Usage != want || res.Run.Usage != want {
				t.Errorf("usage %+v (run %+v), want %+v for %d calls", res.Usage, res.Run.Usage, want, calls)
			}
		})
	}
}

// confString prints a confidence as the tests write it.
func confString(c *float64) string {
	if c == nil {
		return ""
	}
	return strconv.FormatFloat(*c, 'g', -1, 64)
}

func TestCascadeFailedRequests(t *testing.T) {
	s := newCascadeSet(t, []string{"quick", "council"}, 0.8)
	s.fake.Script("q1", answer("q1-answer"))
	s.fake.Script("qarb", judged("0.2", "QUICK"))
	s.fake.Script("c1", upstreamtest.Reply{Status: 400})
	s.fake.Script("c2", upstreamtest.Reply{Status: 400})
	_, deltas, err := s.run(t)
	if !errors.Is(err, consortia.ErrTooFewAnswers) {
		t.Fatalf("error %v, want the last tier's too few answers", err)
	}
	if len(deltas) != 0 {
		t.Errorf("deltas %q from a cascade whose last tier failed", deltas)
	}
	re, ok := errors.AsType[*consortia.RunError](err)
	if !ok {
		t.Fatalf("error %T, want a *RunError", err)
	}
	tiers := re.Run.Rounds[0].Tiers
	if len(tiers) != 2 || !tiers[0].Escalated || tiers[1].Escalated || tiers[1].Error == "" || tiers[1].Run == nil {
		t.Errorf("recorded tiers %+v", tiers)
	}
	if re.Run.Usage.TotalTokens != 4 { // quick's member and arbiter
		t.Errorf("usage %+v of the failed run", re.Run.Usage)
	}
}

// TestCascadeStreamsOnlyTheLastTierAtOnce: a provider/model last tier is
// called as a member and its answer streams through as it comes, word by
// word, while an escalated tier's answer, written by its arbiter in the
// clear, never reaches the client.
func TestCascadeStreamsOnlyTheLastTierAtOnce(t *testing.T) {
	s := newCascadeSet(t, []string{"quick", "fake/big"}, 0.8)
	s.fake.Script("q1", answer("q1-answer"))
	s.fake.Script("qarb", judged("0.4", "QUICK-HELD"))
	s.fake.Script("big", upstreamtest.Reply{Chunks: []string{"one", " two", " three"}, Usage: one})
	res, deltas, err := s.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deltas, []string{"one", " two", " three"}) {
		t.Errorf("deltas %q, want the last tier's three as they came", deltas)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(s.roles["big"], []string{"member"}) || !slices.Equal(s.roles["qarb"], []string{"arbiter"}) {
		t.Errorf("roles %v", s.roles)
	}
	call := res.Run.Rounds[0].Tiers[1].Call
	if call == nil || call.Status != consortia.StatusOK || call.Content != "one two three" || call.Model != "fake/big" {
		t.Errorf("the last tier's call %+v", call)
	}
}

// TestCascadeHoldsAConfidentTier: a tier that is not the last sends
// nothing until its run has ended.
func TestCascadeHoldsAConfidentTier(t *testing.T) {
	s := newCascadeSet(t, []string{"quick", "council"}, 0.5)
	s.fake.Script("q1", answer("q1-answer"))
	s.fake.Script("qarb", upstreamtest.Reply{Content: verdict("0.9", "held until the end"), Usage: one})
	req, err := openai.ParseChatRequest([]byte(hello))
	if err != nil {
		t.Fatal(err)
	}
	// Its arbiter streams the synthesis word by word; the cascade sends
	// it in one piece once the tier's confidence is known.
	var deltas []string
	res, err := s.engines["tiered"].Run(context.Background(), req, func(d string) { deltas = append(deltas, d) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deltas, []string{"held until the end"}) || res.Synthesis != "held until the end" {
		t.Errorf("deltas %q, want the whole answer in one piece", deltas)
	}
}

// TestCascadeTierRoundIsNotTheEnd: a tier's run ending is not the
// cascade's, so only the cascade's own last round event says More (the
// end follows at once); a receiver holding a tier's would hold it while
// the next tier runs.
func TestCascadeTierRoundIsNotTheEnd(t *testing.T) {
	s := newCascadeSet(t, []string{"quick", "fake/big"}, 0.8)
	s.fake.Script("q1", answer("q1-answer"))
	s.fake.Script("qarb", judged("0.4", "QUICK-HELD"))
	s.fake.Script("big", upstreamtest.Reply{Content: "big answer", Usage: one})
	req, err := openai.ParseChatRequest([]byte(hello))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var rounds []bool // More of each round event, in order
	ctx := consortia.WithEvents(context.Background(), func(ev consortia.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == consortia.EventRound {
			rounds = append(rounds, ev.More)
		}
	})
	if _, err := s.engines["tiered"].Run(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true}; !slices.Equal(rounds, want) {
		t.Errorf("round events' More %v, want %v (the tier's, then the cascade's)", rounds, want)
	}
}
