package scores

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

func ok(model string, instance int, label string) consortia.MemberAnswer {
	return consortia.MemberAnswer{Model: model, Instance: instance, Label: label, Status: consortia.StatusOK, LatencyMs: 100,
		Content: "SENTINEL answer text", Usage: &openai.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}
}

func failed(model string, instance int) consortia.MemberAnswer {
	return consortia.MemberAnswer{Model: model, Instance: instance, Status: consortia.StatusError, Error: "status 500"}
}

// pairsOf writes a tally's pairs as "w>l:n", sorted.
func pairsOf(t *Tally) []string {
	var out []string
	for _, p := range t.Pairs {
		out = append(out, p.Winner+">"+p.Loser+":"+strconv.FormatInt(p.N, 10))
	}
	slices.Sort(out)
	return out
}

func TestTallyRun(t *testing.T) {
	const a, b, c, f = "p/a", "p/b", "p/c", "p/fallback"
	for _, tc := range []struct {
		name  string
		run   consortia.Run
		pairs []string
		check func(t *testing.T, tl *Tally)
	}{{
		name: "synthesize: the last round's ranking, only the labels named",
		run: consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{
			{Members: []consortia.MemberAnswer{ok(a, 1, "A"), ok(b, 1, "B"), ok(c, 1, "C")},
				Arbiter: &consortia.ArbiterReply{Ranking: []string{"A", "B", "C"}}},
			{Members: []consortia.MemberAnswer{ok(a, 1, "B"), ok(b, 1, "C"), ok(c, 1, "A")},
				Arbiter: &consortia.ArbiterReply{Ranking: []string{"C", "A"}}},
		}},
		pairs: []string{"p/b>p/c:1"},
		check: func(t *testing.T, tl *Tally) {
			if tl.Models[b].FirstPlaces != 1 || tl.Models[a].FirstPlaces != 0 {
				t.Errorf("first places: %+v %+v", tl.Models[a], tl.Models[b])
			}
			if tl.Models[a].Runs != 1 || tl.Models[a].Answers != 1 || tl.Models[a].Tokens != 30 {
				t.Errorf("a: %+v (one run, one answer in the last round, tokens of both rounds)", tl.Models[a])
			}
			if tl.Models[a].Latency[latencyBucket(100)] != 2 {
				t.Errorf("latencies: %v", tl.Models[a].Latency)
			}
		},
	}, {
		name: "rank: each judge, dropped self-placements left out, same-model pairs not counted",
		run: consortia.Run{Consortium: "x", Strategy: "rank",
			Outcome: consortia.Outcome{Scores: []consortia.Score{{Model: b, Instance: 1, Place: 1}, {Model: a, Instance: 1, Place: 2}}},
			Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, ""), ok(a, 2, ""), ok(b, 1, "")},
				Judges: []consortia.JudgeReply{
					{Model: "p/j", RankedMembers: []string{"p/b#1", "p/a#1", "p/a#2"}},
					{Model: b, RankedMembers: []string{"p/b#1", "p/a#2", "p/a#1"}, Dropped: []string{"p/b#1"}},
					{Model: "p/k", Error: "dropped: no usable ranking", RankedMembers: []string{"p/a#1", "p/b#1"}},
				}}}},
		pairs: []string{"p/b>p/a:2"},
		check: func(t *testing.T, tl *Tally) {
			if tl.Models[b].FirstPlaces != 1 || tl.Models[b].Wins != 2 || tl.Models[a].Losses != 2 || tl.Models[a].Answers != 2 {
				t.Errorf("a %+v, b %+v", tl.Models[a], tl.Models[b])
			}
		},
	}, {
		name: "vote: the plurality beats each answer outside it, non-voters included",
		run: consortia.Run{Consortium: "x", Strategy: "vote",
			Outcome: consortia.Outcome{Votes: []consortia.VoteGroup{
				{Answer: "4", Weight: 2, Members: []string{"p/a#1", "p/b#1"}}, {Answer: "5", Weight: 1, Members: []string{"p/c#1"}}}},
			Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, ""), ok(b, 1, ""), ok(c, 1, ""), ok(c, 2, "")}}}},
		pairs: []string{"p/a>p/c:2", "p/b>p/c:2"},
		check: func(t *testing.T, tl *Tally) {
			if tl.Models[a].FirstPlaces != 1 || tl.Models[b].FirstPlaces != 0 {
				t.Errorf("the answer returned is a's: a %+v b %+v", tl.Models[a], tl.Models[b])
			}
		},
	}, {
		name: "vote: tied groups are all the plurality; the judges pick the winner",
		run: consortia.Run{Consortium: "x", Strategy: "vote",
			Outcome: consortia.Outcome{Votes: []consortia.VoteGroup{
				{Answer: "4", Weight: 1, Members: []string{"p/a#1"}}, {Answer: "5", Weight: 1, Members: []string{"p/b#1"}}}},
			Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, ""), ok(b, 1, ""), ok(c, 1, "")},
				Judges: []consortia.JudgeReply{{Model: "p/j", Group: "tie", RankedMembers: []string{"p/b#1", "p/a#1"}}}}}},
		pairs: []string{"p/a>p/c:1", "p/b>p/a:1", "p/b>p/c:1"},
		check: func(t *testing.T, tl *Tally) {
			if tl.Models[b].FirstPlaces != 1 || tl.Models[a].FirstPlaces != 0 {
				t.Errorf("the judges chose b's: a %+v b %+v", tl.Models[a], tl.Models[b])
			}
		},
	}, {
		name: "vote: the tie-break judges' weighted scores pick the winner, as the vote did",
		run: consortia.Run{Consortium: "x", Strategy: "vote",
			Outcome: consortia.Outcome{Votes: []consortia.VoteGroup{
				{Answer: "4", Weight: 1, Members: []string{"p/a#1"}}, {Answer: "5", Weight: 1, Members: []string{"p/b#1"}}}},
			Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, ""), ok(b, 1, "")},
				// One first place each, but the heavier judge's is b's:
				// b scores 0.75, a 0.25, and the vote returned b's answer.
				Judges: []consortia.JudgeReply{
					{Model: "p/j", Weight: 1, Group: "tie", RankedMembers: []string{"p/a#1", "p/b#1"}},
					{Model: "p/k", Weight: 3, Group: "tie", RankedMembers: []string{"p/b#1", "p/a#1"}}}}}},
		pairs: []string{"p/a>p/b:1", "p/b>p/a:1"},
		check: func(t *testing.T, tl *Tally) {
			if tl.Models[b].FirstPlaces != 1 || tl.Models[a].FirstPlaces != 0 {
				t.Errorf("the judges' scores chose b's: a %+v b %+v", tl.Models[a], tl.Models[b])
			}
		},
	}, {
		name: "failures: regret against each that answered; a fallback that answered is credited",
		run: consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{
			failed(a, 1), func() consortia.MemberAnswer { m := ok(b, 1, "A"); m.Fallback = f; return m }(), ok(c, 1, "B"),
			{Model: c, Instance: 2, Status: consortia.StatusCancelled}}}}},
		pairs: []string{"p/c>p/a:1", "p/fallback>p/a:1"},
		check: func(t *testing.T, tl *Tally) {
			if got := tl.Models[a]; got.Failures != 1 || got.Regret != 2 || got.Losses != 2 || got.Answers != 0 {
				t.Errorf("a: %+v", got)
			}
			if _, ok := tl.Models[b]; ok {
				t.Errorf("b was replaced by its fallback, yet credited: %+v", tl.Models[b])
			}
			if got := tl.Models[f]; got.Answers != 1 || got.Wins != 1 {
				t.Errorf("fallback: %+v", got)
			}
			if got := tl.Models[c]; got.Answers != 1 || got.Failures != 0 {
				t.Errorf("c (one answered, one cancelled by quorum): %+v", got)
			}
		},
	}, {
		name: "cascade: a provider/model tier is a member; no pairs",
		run: consortia.Run{Consortium: "x", Strategy: "cascade", Rounds: []consortia.Round{{Tiers: []consortia.TierRun{
			{Tier: consortia.Tier{Tier: "quick", Escalated: true}, Run: &consortia.Run{Consortium: "quick"}},
			{Tier: consortia.Tier{Tier: a}, Call: func() *consortia.MemberAnswer { m := ok(a, 1, ""); return &m }()}}}}},
		check: func(t *testing.T, tl *Tally) {
			if got := tl.Models[a]; got == nil || got.Answers != 1 || got.Runs != 1 {
				t.Errorf("a: %+v", got)
			}
			if len(tl.Models) != 1 {
				t.Errorf("models: %v", slices.Collect(maps.Keys(tl.Models)))
			}
		},
	}, {
		name: "cascade: a consortium tier's run feeds the cascade's statistics too; first places only from the tier that answered",
		run: consortia.Run{Consortium: "x", Strategy: "cascade", Rounds: []consortia.Round{{Tiers: []consortia.TierRun{
			{Tier: consortia.Tier{Tier: "quick", Escalated: true}, Run: &consortia.Run{Consortium: "quick", Strategy: "vote",
				Outcome: consortia.Outcome{Votes: []consortia.VoteGroup{{Answer: "4", Weight: 1, Members: []string{"p/a#1"}}}},
				Rounds:  []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, ""), failed(c, 1)}}}}},
			{Tier: consortia.Tier{Tier: "council"}, Run: &consortia.Run{Consortium: "council", Strategy: "synthesize",
				Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok(a, 1, "A"), ok(b, 1, "B")},
					Arbiter: &consortia.ArbiterReply{Ranking: []string{"B", "A"}}}}}}}}}},
		pairs: []string{"p/a>p/c:1", "p/b>p/a:1"},
		check: func(t *testing.T, tl *Tally) {
			if got := tl.Models[a]; got == nil || got.Runs != 1 || got.Answers != 2 || got.FirstPlaces != 0 || got.Tokens != 30 {
				t.Errorf("a (in both tiers, first in the one that escalated): %+v", got)
			}
			if got := tl.Models[b]; got == nil || got.Runs != 1 || got.FirstPlaces != 1 {
				t.Errorf("b (first in the tier that answered): %+v", got)
			}
			if got := tl.Models[c]; got == nil || got.Failures != 1 || got.Regret != 1 {
				t.Errorf("c: %+v", got)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tl := TallyRun(&tc.run, nil)
			if got := pairsOf(tl); !slices.Equal(got, tc.pairs) {
				t.Errorf("pairs %v, want %v", got, tc.pairs)
			}
			if tc.check != nil {
				tc.check(t, tl)
			}
			var wins, losses int64
			for _, c := range tl.Models {
				wins += c.Wins
				losses += c.Losses
				if (c.Tokens > 0) != (c.CostUnknown > 0) {
					t.Errorf("without pricing, a model with calls has an unknown cost: %+v", c)
				}
			}
			if wins != losses {
				t.Errorf("wins %d, losses %d", wins, losses)
			}
		})
	}
	if TallyRun(&consortia.Run{Consortium: "x"}, nil) != nil {
		t.Error("a run without rounds tallied")
	}
}

// TestNamed: a round's answer is found by its name exactly as an index of
// the answers by a.Model+"#"+strconv.Itoa(a.Instance) would find it.
func TestNamed(t *testing.T) {
	answers := []consortia.MemberAnswer{
		ok("p/a", 1, "A"), ok("p/a", 2, "B"), ok("p/b", 1, "C"), ok("p/x#1", 1, "D"), ok("p/x", 11, "E"),
		ok("p/big", 123456, "F"), ok("p/zero", 0, "G"), ok("p/neg", -3, "H"), ok("", 7, "I"),
		ok("p/a", 1, "J"), // a name given twice: the later answer
	}
	index := map[string]consortia.MemberAnswer{}
	for _, a := range answers {
		index[a.Model+"#"+strconv.Itoa(a.Instance)] = a
	}
	names := []string{"", "#", "p/a", "p/a#", "p/a#1", "p/a#2", "p/a#01", "p/a#+1", "p/a#1 ", "P/A#1", "p/b#1", "p/b#2",
		"p/x#1#1", "p/x#1", "p/x#11", "p/x#1#11", "p/big#123456", "p/zero#0", "p/zero#-0", "p/neg#-3", "#7", "p/a#1#1"}
	for name := range index {
		names = append(names, name)
	}
	for _, name := range names {
		want, wantOK := index[name]
		got, gotOK := named(answers, name)
		if gotOK != wantOK || got.Label != want.Label {
			t.Errorf("named(%q) = %q, %v; want %q, %v", name, got.Label, gotOK, want.Label, wantOK)
		}
	}
}

// BenchmarkTallyRun is what Record costs a run's goroutine: a rank run of
// six answers from three models, three judges; a synthesize run of three
// members, the arbiter's ranking naming each; and a vote of three members,
// two agreeing.
func BenchmarkTallyRun(b *testing.B) {
	rank := &consortia.Run{Consortium: "x", Strategy: "rank",
		Outcome: consortia.Outcome{Scores: []consortia.Score{{Model: "p/a", Instance: 1, Place: 1}}}}
	round := consortia.Round{}
	var names []string
	for _, m := range []string{"p/a", "p/b", "p/c"} {
		for i := 1; i <= 2; i++ {
			round.Members = append(round.Members, ok(m, i, ""))
			names = append(names, m+"#"+strconv.Itoa(i))
		}
	}
	for range 3 {
		round.Judges = append(round.Judges, consortia.JudgeReply{Model: "p/j", RankedMembers: names})
	}
	rank.Rounds = []consortia.Round{round}
	synthesize := &consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{{
		Members: []consortia.MemberAnswer{ok("p/a", 1, "B"), ok("p/b", 1, "C"), ok("p/c", 1, "A")},
		Arbiter: &consortia.ArbiterReply{Ranking: []string{"B", "A", "C"}}}}}
	vote := &consortia.Run{Consortium: "x", Strategy: "vote",
		Outcome: consortia.Outcome{Votes: []consortia.VoteGroup{
			{Answer: "4", Weight: 2, Members: []string{"p/a#1", "p/b#1"}}, {Answer: "5", Weight: 1, Members: []string{"p/c#1"}}}},
		Rounds: []consortia.Round{{Members: []consortia.MemberAnswer{ok("p/a", 1, ""), ok("p/b", 1, ""), ok("p/c", 1, "")}}}}
	for _, run := range []*consortia.Run{rank, synthesize, vote} {
		b.Run(run.Strategy, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				TallyRun(run, nil)
			}
		})
	}
}

// TestTallyCost: each member call that reported usage is priced at the
// model credited; a model without a price makes its cost unknown.
func TestTallyCost(t *testing.T) {
	cached := 0.5
	pricing := consortia.Pricing{"p/a": {Input: 1, Output: 2}, "p/f": {Input: 10, Output: 20, CachedInput: &cached}}
	fb := ok("p/b", 1, "B")
	fb.Fallback = "p/f"
	fb.Usage = &openai.Usage{PromptTokens: 100, CompletionTokens: 10, TotalTokens: 110,
		PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: 40}}
	noUsage := ok("p/c", 1, "C")
	noUsage.Usage = nil
	tl := TallyRun(&consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{
		{Members: []consortia.MemberAnswer{ok("p/a", 1, "A"), fb, noUsage, ok("p/d", 1, "D")}},
		{Members: []consortia.MemberAnswer{ok("p/a", 1, "A")}},
	}}, pricing)
	near := func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }
	if a := tl.Models["p/a"]; !near(a.CostUSD, 2*(10*1+5*2)/1e6) || a.CostUnknown != 0 {
		t.Errorf("a, two calls of 10 in and 5 out: %+v", a)
	}
	if f := tl.Models["p/f"]; !near(f.CostUSD, (60*10+40*0.5+10*20)/1e6) || f.CostUnknown != 0 {
		t.Errorf("the fallback that answered, 40 of its 100 prompt tokens cached: %+v", f)
	}
	if c := tl.Models["p/c"]; c.CostUnknown != 0 || c.Tokens != 0 {
		t.Errorf("a call without usage: %+v", c)
	}
	if d := tl.Models["p/d"]; d.CostUnknown != 1 {
		t.Errorf("a model without a price: %+v", d)
	}
}
