package consortia_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// scored is a Score as the tests write one: the member's model, its
// score and its place.
type scored struct {
	model string
	score float64
	place int
}

// checkScores compares a run's scores with want, scores within rounding.
func checkScores(t *testing.T, got []consortia.Score, want []scored) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Model == want[i].model && got[i].Place == want[i].place && math.Abs(got[i].Score-want[i].score) < 1e-9
	}
	if !ok {
		t.Errorf("scores %+v, want %+v", got, want)
	}
}

// answerOf is what member model m answers in these tests.
func answerOf(m string) string { return "the answer of " + m }

// TestRankBorda: normalized Borda per judge, the weighted mean over the
// judges that scored an answer, self-placements dropped, and ties to more
// first places, then to the member configured earlier. Each judge ranks by
// the answers' texts, so the rankings are fixed whatever order each judge
// is shown.
func TestRankBorda(t *testing.T) {
	members := "members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]\n"
	for _, tc := range []struct {
		name       string
		judges     string
		prefer     map[string][]string // judge model → member models, best first
		want       []scored
		confidence float64
		dropped    map[string][]string // judge ref → its dropped placements
	}{
		{
			name:   "one judge",
			judges: "judges: [{model: fake/j1}]",
			prefer: map[string][]string{"j1": {"gamma", "alpha", "beta"}},
			want:   []scored{{"fake/gamma", 1, 1}, {"fake/alpha", 0.5, 2}, {"fake/beta", 0, 3}},
			// The only judge put the winner first.
			confidence: 1,
		},
		{
			name:   "weights: the weighted mean",
			judges: "judges: [{model: fake/j1, weight: 2}, {model: fake/j2}]",
			prefer: map[string][]string{"j1": {"alpha", "beta", "gamma"}, "j2": {"gamma", "beta", "alpha"}},
			// alpha (2·1 + 1·0)/3, beta (2·0.5 + 1·0.5)/3, gamma (2·0 + 1·1)/3.
			want:       []scored{{"fake/alpha", 2.0 / 3, 1}, {"fake/beta", 0.5, 2}, {"fake/gamma", 1.0 / 3, 3}},
			confidence: 2.0 / 3,
		},
		{
			name:   "a judge's placements of its own model are dropped",
			judges: "judges: [{model: fake/alpha, weight: 3}, {model: fake/j2}]",
			// alpha's ranking without alpha is gamma > beta (k = 2); j2's
			// is beta > alpha > gamma. alpha is scored by j2 alone.
			prefer: map[string][]string{"alpha": {"alpha", "gamma", "beta"}, "j2": {"beta", "alpha", "gamma"}},
			// alpha 0.5 (j2 only), beta (3·0 + 1)/4, gamma (3·1 + 0)/4.
			want: []scored{{"fake/gamma", 0.75, 1}, {"fake/alpha", 0.5, 2}, {"fake/beta", 0.25, 3}},
			// Both judges scored gamma; alpha (weight 3) put it first.
			confidence: 0.75,
			dropped:    map[string][]string{"fake/alpha": {"fake/alpha#1"}},
		},
		{
			name:   "ties: more first places, then the member configured earlier",
			judges: "judges: [{model: fake/j1}, {model: fake/j2}]",
			// Every answer scores 0.5; beta and gamma each have a first
			// place, alpha none; beta is configured before gamma.
			prefer:     map[string][]string{"j1": {"gamma", "alpha", "beta"}, "j2": {"beta", "alpha", "gamma"}},
			want:       []scored{{"fake/beta", 0.5, 1}, {"fake/gamma", 0.5, 2}, {"fake/alpha", 0.5, 3}},
			confidence: 0.5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newStrategyFixture(t, "strategy: rank\n"+members+tc.judges)
			for _, m := range []string{"alpha", "beta", "gamma"} {
				f.fake.Handle(m, prefers(answerOf(m)))
			}
			for j, order := range tc.prefer {
				var texts []string
				for _, m := range order {
					texts = append(texts, answerOf(m))
				}
				f.fake.Handle(j, prefers(answerOf(j), texts...))
			}
			res, deltas := f.mustRun(t, hello)
			checkScores(t, res.Run.Scores, tc.want)
			winner := strings.TrimPrefix(tc.want[0].model, "fake/")
			if res.Synthesis != answerOf(winner) || len(deltas) == 0 {
				t.Errorf("synthesis %q (deltas %q), want %q", res.Synthesis, deltas, answerOf(winner))
			}
			if c := res.Run.Confidence; c == nil || math.Abs(*c-tc.confidence) > 1e-9 {
				t.Errorf("confidence %v, want %v", c, tc.confidence)
			}
			if s := res.Run.Summary(); s.Strategy != "rank" || len(s.Scores) != 3 {
				t.Errorf("summary %+v", s)
			}
			for _, j := range judgesOf(res) {
				if !slices.Equal(j.Dropped, tc.dropped[j.Model]) || len(j.RankedMembers) != 3 || j.Error != "" {
					t.Errorf("judge %s: dropped %v, want %v; ranked %v", j.Model, j.Dropped, tc.dropped[j.Model], j.RankedMembers)
				}
			}
		})
	}
}

// TestRankFewerThanTwoAnswers: with one answer no judge is called and the
// answer stands.
func TestRankFewerThanTwoAnswers(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: rank
members: [{model: fake/alpha}, {model: fake/beta}]
judges: [{model: fake/j1}]`)
	f.fake.Script("alpha", upstreamtest.Reply{Content: answerOf("alpha")})
	f.fake.Script("beta", upstreamtest.Reply{Status: 400, Error: "no"})
	res, _ := f.mustRun(t, hello)
	if res.Synthesis != answerOf("alpha") {
		t.Errorf("synthesis %q", res.Synthesis)
	}
	if n := len(f.fake.RequestsFor("j1")); n != 0 {
		t.Errorf("the judge was called %d times for one answer", n)
	}
	checkScores(t, res.Run.Scores, []scored{{"fake/alpha", 1, 1}})
	if res.Run.Confidence != nil || len(judgesOf(res)) != 0 {
		t.Errorf("confidence %v, judges %+v: no judge ranked", res.Run.Confidence, judgesOf(res))
	}
}

// TestRankUsage: the judges' usage is summed into the run's.
func TestRankUsage(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: rank
members: [{model: fake/alpha}, {model: fake/beta}]
judges: [{model: fake/j1}, {model: fake/j2}]`)
	u := openai.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}
	f.fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply {
		reply := prefers(answerOf(r.Model))(r)
		reply.Usage = &u
		return reply
	})
	res, _ := f.mustRun(t, hello)
	if want := 4 * 15; res.Usage.TotalTokens != want {
		t.Errorf("usage %+v, want %d tokens (two members, two judges)", res.Usage, want)
	}
	for _, j := range judgesOf(res) {
		if j.Usage == nil || j.Usage.TotalTokens != 15 {
			t.Errorf("judge %s's usage %+v", j.Model, j.Usage)
		}
	}
}

// TestRankWithinModelFirst: each model's own samples are ranked first (a
// model with one sample needs no ranking), then the best of each model
// across models; the eliminated answers place after every finalist.
func TestRankWithinModelFirst(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: rank
within_model_first: true
members: [{model: fake/alpha, count: 2}, {model: fake/beta, count: 2}, {model: fake/gamma}]
judges: [{model: fake/j1}, {model: fake/j2}]`)
	f.fake.Script("alpha", upstreamtest.Reply{Content: "a1"}, upstreamtest.Reply{Content: "a2"})
	f.fake.Script("beta", upstreamtest.Reply{Content: "b1"}, upstreamtest.Reply{Content: "b2"})
	f.fake.Script("gamma", upstreamtest.Reply{Content: "c"})
	for _, j := range []string{"j1", "j2"} {
		f.fake.Handle(j, prefers("", "b2", "a1", "c", "a2", "b1"))
	}
	res, _ := f.mustRun(t, hello)
	if res.Synthesis != "b2" {
		t.Errorf("synthesis %q, want b2", res.Synthesis)
	}

	// Two judges, each asked three times: alpha's samples, beta's, and
	// the finalists (gamma's one answer goes straight to the final).
	var final [][]string
	for _, j := range []string{"j1", "j2"} {
		reqs := f.fake.RequestsFor(j)
		if len(reqs) != 3 {
			t.Fatalf("%s was asked %d times, want 3", j, len(reqs))
		}
		var sets []string
		for _, r := range reqs {
			_, texts := shown(&r)
			slices.Sort(texts)
			sets = append(sets, strings.Join(texts, ","))
			if len(texts) == 3 {
				final = append(final, texts)
			}
		}
		slices.Sort(sets)
		if want := []string{"a1,a2", "a1,b2,c", "b1,b2"}; !slices.Equal(sets, want) {
			t.Errorf("%s ranked the sets %v, want %v", j, sets, want)
		}
	}
	if len(final) != 2 {
		t.Errorf("the second phase reached %v, want a1, b2 and c for each judge", final)
	}

	groups := map[string]int{}
	for _, j := range judgesOf(res) {
		groups[j.Group]++
	}
	if want := map[string]int{"fake/alpha": 2, "fake/beta": 2, "final": 2}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("judge records by group %v, want %v", groups, want)
	}
	checkScores(t, res.Run.Scores, []scored{
		{"fake/beta", 1, 1}, {"fake/alpha", 0.5, 2}, {"fake/gamma", 0, 3},
		// Eliminated in the first phase, each with its first-phase score;
		// tied, the member configured earlier first.
		{"fake/alpha", 0, 4}, {"fake/beta", 0, 5},
	})
	if c := res.Run.Confidence; c == nil || *c != 1 {
		t.Errorf("confidence %v, want 1 (both judges put b2 first in the final)", c)
	}
}

// TestRankThenSynthesize: the arbiter writes the answer, given the
// ranking and scores in its prompt; without a synthesis the judges'
// winner stands in.
func TestRankThenSynthesize(t *testing.T) {
	f, rc := newStrategyFixture(t, `
strategy: rank
then: synthesize
members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
judges: [{model: fake/j1}]
arbiter: {model: fake/arb}`)
	for _, m := range []string{"alpha", "beta", "gamma"} {
		f.fake.Script(m, upstreamtest.Reply{Content: answerOf(m)})
	}
	f.fake.Handle("j1", prefers("", answerOf("gamma"), answerOf("alpha"), answerOf("beta")))
	f.fake.Script("arb", upstreamtest.Reply{Content: "<analysis>gamma is right</analysis><synthesis>the merged answer</synthesis>"})
	res, deltas := f.mustRun(t, hello)
	if res.Synthesis != "the merged answer" || len(deltas) < 2 {
		t.Errorf("synthesis %q, deltas %q: want the arbiter's, streamed", res.Synthesis, deltas)
	}
	labels := map[string]string{}
	for _, m := range res.Run.Rounds[0].Members {
		labels[m.Model] = m.Label
	}
	prompt := f.fake.RequestsFor("arb")[0].Chat.Messages[0].Content.String()
	for _, want := range []string{
		"## The judges' ranking",
		fmt.Sprintf("- Response %s: place 1, score 1.00", labels["fake/gamma"]),
		fmt.Sprintf("- Response %s: place 2, score 0.50", labels["fake/alpha"]),
		fmt.Sprintf("- Response %s: place 3, score 0.00", labels["fake/beta"]),
		fmt.Sprintf("- %s > %s > %s", labels["fake/gamma"], labels["fake/alpha"], labels["fake/beta"]),
		answerOf("beta"),
	} {
		if !strings.Contains(prompt, want) {
			t.Errorf("the arbiter's prompt lacks %q:\n%s", want, prompt)
		}
	}
	if res.Run.Rounds[0].Arbiter == nil || len(res.Run.Scores) != 3 || rc.roles["arb"][0] != "arbiter" {
		t.Errorf("arbiter %+v, scores %+v, roles %v", res.Run.Rounds[0].Arbiter, res.Run.Scores, rc.roles)
	}

	f.fake.Script("arb", upstreamtest.Reply{Content: "<analysis>no synthesis today</analysis>"})
	res, _ = f.mustRun(t, hello)
	if res.Synthesis != answerOf("gamma") || res.Run.Fallback == "" {
		t.Errorf("synthesis %q, fallback %q: want the judges' winner", res.Synthesis, res.Run.Fallback)
	}
}

// TestRankChoices: n > 1 returns the top n answers in rank order; n above
// the member instances, and n > 1 with then: synthesize or another
// strategy, are refused before any call; fewer answers than n fail.
func TestRankChoices(t *testing.T) {
	const members = "members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]\njudges: [{model: fake/j1}]\n"
	f, _ := newStrategyFixture(t, "strategy: rank\n"+members)
	for _, m := range []string{"alpha", "beta", "gamma"} {
		f.fake.Script(m, upstreamtest.Reply{Content: answerOf(m)})
	}
	f.fake.Handle("j1", prefers("", answerOf("gamma"), answerOf("alpha"), answerOf("beta")))

	res, _ := f.mustRun(t, runBody(`"n":2,`))
	if want := []string{answerOf("gamma"), answerOf("alpha")}; !slices.Equal(res.Choices, want) || res.Synthesis != want[0] {
		t.Errorf("choices %q (synthesis %q), want %q", res.Choices, res.Synthesis, want)
	}
	res, _ = f.mustRun(t, runBody(`"n":3,`))
	if want := []string{answerOf("gamma"), answerOf("alpha"), answerOf("beta")}; !slices.Equal(res.Choices, want) {
		t.Errorf("choices %q, want %q", res.Choices, want)
	}
	res, _ = f.mustRun(t, runBody(`"n":2,"max_tokens":1,`))
	if want := []string{"the ", "the "}; !slices.Equal(res.Choices, want) || res.FinishReason != "length" {
		t.Errorf("choices %q (%s), want each cut by max_tokens to %q", res.Choices, res.FinishReason, want)
	}
	res, _ = f.mustRun(t, hello)
	if res.Choices != nil {
		t.Errorf("choices %q without n", res.Choices)
	}

	f.fake.Reset()
	f.fake.Handle("j1", prefers("", answerOf("gamma")))
	if _, _, err := f.run(t, runBody(`"n":4,`)); !fieldError(err, "n") || !strings.Contains(err.Error(), "3 member instances") {
		t.Errorf("n above the instances: %v, want a FieldError for n", err)
	}
	if n := len(f.fake.Requests()); n != 0 {
		t.Errorf("%d calls for a request refused", n)
	}

	f.fake.Script("alpha", upstreamtest.Reply{Content: answerOf("alpha")})
	f.fake.Script("beta", upstreamtest.Reply{Status: 400, Error: "no"})
	f.fake.Script("gamma", upstreamtest.Reply{Status: 400, Error: "no"})
	if _, _, err := f.run(t, runBody(`"n":2,`)); !errors.Is(err, consortia.ErrTooFewAnswers) {
		t.Errorf("fewer answers than n: %v, want ErrTooFewAnswers", err)
	}

	for name, body := range map[string]string{
		"then synthesize": "strategy: rank\nthen: synthesize\narbiter: {model: fake/arb}\n" + members,
		"synthesize":      "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/arb}",
		"vote":            "strategy: vote\nmembers: [{model: fake/alpha}, {model: fake/beta}]",
	} {
		f, _ := newStrategyFixture(t, body)
		if _, _, err := f.run(t, runBody(`"n":2,`)); !fieldError(err, "n") {
			t.Errorf("%s: n = 2 gave %v, want a FieldError for n", name, err)
		}
		if n := len(f.fake.Requests()); n != 0 {
			t.Errorf("%s: %d calls for a request refused", name, n)
		}
	}
}

// TestRankJudgeOfAMembersModel: with within_model_first, a judge whose
// model wrote every answer of a set is not asked to rank it (recorded);
// in the final its placement of its own model's answer is dropped.
func TestRankJudgeOfAMembersModel(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: rank
within_model_first: true
members: [{model: fake/alpha, count: 2}, {model: fake/beta}, {model: fake/gamma}]
judges: [{model: fake/alpha}, {model: fake/j2}]`)
	var sample atomic.Int32
	f.fake.Handle("alpha", func(r *upstreamtest.Request) upstreamtest.Reply {
		if labels, _ := shown(r); labels == nil {
			return upstreamtest.Reply{Content: fmt.Sprintf("a%d", sample.Add(1))}
		}
		return prefers("", "a2", "a1", "c", "b")(r)
	})
	f.fake.Script("beta", upstreamtest.Reply{Content: "b"})
	f.fake.Script("gamma", upstreamtest.Reply{Content: "c"})
	f.fake.Handle("j2", prefers("", "b", "a1", "c", "a2"))
	res, _ := f.mustRun(t, hello)
	var notAsked, dropped int
	for _, j := range judgesOf(res) {
		if j.Model == "fake/alpha" && j.Group == "fake/alpha" && strings.HasPrefix(j.Error, "not asked") {
			notAsked++
		}
		if j.Model == "fake/alpha" && j.Group == "final" && len(j.Dropped) == 1 && strings.HasPrefix(j.Dropped[0], "fake/alpha#") {
			dropped++
		}
	}
	if notAsked != 1 || dropped != 1 {
		t.Errorf("judges %+v: want alpha not asked about its own samples, and its final placement of a1 dropped", judgesOf(res))
	}
	// j2 alone decides the first phase (a1). In the final j2 ranks
	// b > a1 > c and alpha, without a1, c > b: every finalist scores 0.5,
	// b and c have a first place each, and beta is configured first.
	if res.Synthesis != "b" {
		t.Errorf("synthesis %q, want b", res.Synthesis)
	}
}

// BenchmarkRankOverhead runs a rank consortium of three members and two
// judges over real HTTP, each call taking 50ms, and reports the latency
// beyond the 100ms critical path (members at once, then judges at once):
// what the fan-out, the judging and the tally cost.
func BenchmarkRankOverhead(b *testing.B) {
	const (
		delay    = 50 * time.Millisecond
		critical = 2 * delay
	)
	fake := upstreamtest.NewServer()
	b.Cleanup(fake.Close)
	fake.SetRecordLimit(-1)
	transport := upstream.NewTransport()
	b.Cleanup(transport.CloseIdleConnections)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL, Transport: transport})
	if err != nil {
		b.Fatal(err)
	}
	e, err := consortia.New("council", strategyConfig(b, `
strategy: rank
members: [{model: fake/a}, {model: fake/b}, {model: fake/c}]
judges: [{model: fake/j1}, {model: fake/j2}]`), map[string]consortia.Caller{"fake": p})
	if err != nil {
		b.Fatal(err)
	}
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply {
		reply := prefers("An answer of a few words, as a member would write it: " + r.Model)(r)
		reply.Delay = delay
		return reply
	})
	req, err := openai.ParseChatRequest([]byte(hello))
	if err != nil {
		b.Fatal(err)
	}
	// Warm the connection pool, so that dialing is not measured.
	if _, err := e.Run(context.Background(), req, nil); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := e.Run(context.Background(), req, func(string) {}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total/time.Duration(b.N)-critical)/float64(time.Millisecond), "overhead-ms")
}
