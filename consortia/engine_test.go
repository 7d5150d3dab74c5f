package consortia_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const hello = `{"model":"council","messages":[{"role":"user","content":"what is the answer?"}]}`

// verdict is an arbiter reply in the default order with the given
// confidence and synthesis.
func verdict(confidence, synthesis string) string {
	return "<analysis>The answers agree.</analysis>\n<dissent>none</dissent>\n<confidence>" + confidence +
		"</confidence>\n<needs_iteration>false</needs_iteration>\n<refinement_areas>none</refinement_areas>\n" +
		"<ranking>A</ranking>\n<synthesis>" + synthesis + "</synthesis>"
}

var roundRe = regexp.MustCompile(`\(round (\d+) of at most (\d+)\)`)

// roundOf reads the round number from a default arbiter prompt; 1 when
// the prompt names none (max_iterations 1).
func roundOf(prompt string) int {
	m := roundRe.FindStringSubmatch(prompt)
	if m == nil {
		return 1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// byRound answers the arbiter of round n with replies[n-1]; the last reply
// serves every later round.
func byRound(replies ...upstreamtest.Reply) upstreamtest.Responder {
	return func(r *upstreamtest.Request) upstreamtest.Reply {
		return replies[min(roundOf(r.LastUserText()), len(replies))-1]
	}
}

// roles counts the messages of a request with role.
func roles(r upstreamtest.Request, role string) int {
	n := 0
	for _, m := range r.Chat.Messages {
		if m.Role == role {
			n++
		}
	}
	return n
}

// statuses lists the consortium object's members as "model#instance:status".
func statuses(s consortia.Summary) []string {
	var out []string
	for _, m := range s.Members {
		out = append(out, fmt.Sprintf("%s#%d:%s", m.Model, m.Instance, m.Status))
	}
	return out
}

func TestFanOutCountsAndUsage(t *testing.T) {
	f := newFixture(t, `
members:
  - model: fake/alpha
    count: 2
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 2
`)
	// Round-1 members answer only once all three have asked, so the test
	// hangs (and fails at its deadline) unless the instances run at once.
	member := func(u openai.Usage) upstreamtest.Responder {
		return func(r *upstreamtest.Request) upstreamtest.Reply {
			if roles(*r, "assistant") == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := f.fake.WaitRequests(ctx, 3); err != nil {
					return upstreamtest.Reply{Status: 500, Error: "the members were not asked at once"}
				}
			}
			return upstreamtest.Reply{Content: "an answer from " + r.Model, Usage: &u}
		}
	}
	f.fake.Handle("alpha", member(openai.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}))
	f.fake.Handle("beta", member(openai.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}))
	judgeUsage := &openai.Usage{PromptTokens: 100, CompletionTokens: 200, TotalTokens: 300}
	// Round 1 writes no synthesis, so its reply is read to the end and its
	// usage counts.
	f.fake.Script("judge",
		upstreamtest.Reply{Content: "<confidence>0.4</confidence><refinement_areas>be precise</refinement_areas>", Usage: judgeUsage},
		upstreamtest.Reply{Content: verdict("0.9", "the synthesis"), Usage: judgeUsage})

	res, _ := f.mustRun(t, hello)
	if res.Synthesis != "the synthesis" {
		t.Errorf("synthesis %q", res.Synthesis)
	}
	for model, perRound := range map[string]int{"alpha": 2, "beta": 1} {
		var rounds [2]int
		for _, r := range f.fake.RequestsFor(model) {
			rounds[min(roles(r, "assistant"), 1)]++
		}
		if rounds != [2]int{perRound, perRound} {
			t.Errorf("%s got %v calls in rounds 1 and 2, want %d each", model, rounds, perRound)
		}
	}
	if n := len(f.fake.RequestsFor("judge")); n != 2 {
		t.Errorf("%d arbiter calls, want 2", n)
	}
	s := res.Run.Summary()
	if want := []string{"fake/alpha#1:ok", "fake/alpha#2:ok", "fake/beta#1:ok"}; !slices.Equal(statuses(s), want) {
		t.Errorf("members %v, want %v", statuses(s), want)
	}
	if s.Iterations != 2 || !strings.HasPrefix(s.RunID, "run_") || s.Strategy != "synthesize" {
		t.Errorf("summary %+v", s)
	}
	// Two rounds of 2 alpha + 1 beta, and two arbiter replies.
	want := openai.Usage{PromptTokens: 2 * (2*1 + 10 + 100), CompletionTokens: 2 * (2*2 + 20 + 200), TotalTokens: 2 * (2*3 + 30 + 300)}
	if res.Usage != want || res.Run.Usage != want {
		t.Errorf("usage %+v (run %+v), want %+v", res.Usage, res.Run.Usage, want)
	}
}

func TestArbiterIsSourceBlind(t *testing.T) {
	// Distinctive names: none may reach the arbiter.
	models := []string{"zephyr-alpha-7b", "quokka-beta-large", "marmot-gamma-mini"}
	answers := []string{"first-answer", "second-answer", "third-answer"}
	f := newFixture(t, `
members:
  - model: fake/zephyr-alpha-7b
  - model: fake/quokka-beta-large
  - model: fake/marmot-gamma-mini
arbiter: {model: fake/judge}
max_iterations: 1
`)
	for i, m := range models {
		f.fake.Script(m, upstreamtest.Reply{Content: answers[i]})
	}
	heading := regexp.MustCompile(`### Response ([A-Z])\n\n([a-z]+-answer)\n`)
	// The arbiter ranks the answer of quokka first, by its label.
	f.fake.Handle("judge", func(r *upstreamtest.Request) upstreamtest.Reply {
		best := "?"
		for _, m := range heading.FindAllStringSubmatch(r.LastUserText(), -1) {
			if m[2] == "second-answer" {
				best = m[1]
			}
		}
		return upstreamtest.Reply{Content: strings.Replace(verdict("0.9", "ok"), "<ranking>A</ranking>", "<ranking>"+best+"</ranking>", 1)}
	})

	const runs = 20 // 3! orders: the chance that 20 runs show one is 6^-19
	orders := map[string]bool{}
	for range runs {
		res, _ := f.mustRun(t, hello)
		if got := res.Run.Rounds[0].Arbiter.RankedModels; !slices.Equal(got, []string{"fake/quokka-beta-large#1"}) {
			t.Errorf("ranked models %v: a label does not lead back to its answer", got)
		}
	}
	for _, r := range f.fake.RequestsFor("judge") {
		for _, m := range models {
			if bytes.Contains(r.Body, []byte(m)) {
				t.Fatalf("the arbiter's request names the member %s:\n%s", m, r.Body)
			}
		}
		prompt := r.LastUserText()
		for _, l := range []string{"Response A", "Response B", "Response C"} {
			if !strings.Contains(prompt, l) {
				t.Fatalf("the prompt lacks %q:\n%s", l, prompt)
			}
		}
		if strings.Contains(prompt, "Response D") {
			t.Fatalf("the prompt has a fourth response:\n%s", prompt)
		}
		var order []string
		for i, m := range heading.FindAllStringSubmatch(prompt, -1) {
			if want := string(rune('A' + i)); m[1] != want {
				t.Fatalf("response %s where %s was due:\n%s", m[1], want, prompt)
			}
			order = append(order, m[2])
		}
		if len(order) != 3 {
			t.Fatalf("%d answers under labels, want 3:\n%s", len(order), prompt)
		}
		orders[strings.Join(order, ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("the answers came in one order in %d runs: %v", runs, orders)
	}
}

func TestArbiterSeesWeightsOnlyWhenTheyDiffer(t *testing.T) {
	for _, tc := range []struct {
		name, weights string
		want          []string
	}{
		{"equal", "[1, 1]", nil},
		{"different", "[2, 0.5]", []string{"(weight 2)", "(weight 0.5)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w []float64
			json.Unmarshal([]byte(tc.weights), &w)
			f := newFixture(t, fmt.Sprintf(`
members:
  - {model: fake/a, weight: %v}
  - {model: fake/b, weight: %v}
arbiter: {model: fake/judge}
max_iterations: 1
`, w[0], w[1]))
			f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
			f.mustRun(t, hello)
			prompt := f.fake.RequestsFor("judge")[0].LastUserText()
			if tc.want == nil && strings.Contains(prompt, "(weight") {
				t.Errorf("equal weights shown:\n%s", prompt)
			}
			for _, s := range tc.want {
				if !strings.Contains(prompt, s) {
					t.Errorf("the prompt lacks %q:\n%s", s, prompt)
				}
			}
		})
	}
}

func TestSystemPrompts(t *testing.T) {
	f := newFixture(t, `
system: CONSORTIUM-SYS
members:
  - model: fake/alpha
    system: ALPHA-SYS
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	const body = `{"model":"council","messages":[{"role":"system","content":"CLIENT-SYS"},{"role":"user","content":"hi"},` +
		`{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`
	f.mustRun(t, body)
	client, _ := openai.ParseChatRequest([]byte(body))
	for model, want := range map[string][]string{"alpha": {"CONSORTIUM-SYS", "ALPHA-SYS"}, "beta": {"CONSORTIUM-SYS"}} {
		msgs := f.fake.RequestsFor(model)[0].Chat.Messages
		// The member's system prompts come first; the client's messages
		// follow, all of them, unchanged.
		n := len(msgs) - len(client.Messages)
		if n < 1 {
			t.Fatalf("%s got %d messages: %+v", model, len(msgs), msgs)
		}
		got, _ := json.Marshal(msgs[n:])
		wantClient, _ := json.Marshal(client.Messages)
		if !bytes.Equal(got, wantClient) {
			t.Errorf("%s: the client's messages became %s", model, got)
		}
		var text strings.Builder
		for _, m := range msgs[:n] {
			if m.Role != "system" {
				t.Errorf("%s: a %s message before the client's", model, m.Role)
			}
			text.WriteString(m.Content.String() + "\n")
		}
		prev := -1
		for _, s := range want {
			i := strings.Index(text.String(), s)
			if i <= prev {
				t.Errorf("%s: system prompts %q, want %q in that order", model, text.String(), want)
			}
			prev = i
		}
		if model == "beta" && strings.Contains(text.String(), "ALPHA-SYS") {
			t.Errorf("beta got alpha's system prompt")
		}
	}
}

func TestNoSystemPromptLeavesTheConversationAlone(t *testing.T) {
	f := newFixture(t, `
members: [{model: fake/alpha}]
arbiter: {model: fake/judge}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	f.mustRun(t, hello)
	var sent struct{ Messages json.RawMessage }
	json.Unmarshal(f.fake.RequestsFor("alpha")[0].Body, &sent)
	if want := `[{"role":"user","content":"what is the answer?"}]`; string(sent.Messages) != want {
		t.Errorf("messages %s, want %s", sent.Messages, want)
	}
}

// rawMessages returns the messages array of a request body as sent.
func rawMessages(t testing.TB, body []byte) []byte {
	t.Helper()
	var f struct {
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &f); err != nil || len(f.Messages) < 2 {
		t.Fatalf("no messages in %s: %v", body, err)
	}
	return f.Messages
}

func TestIterationContinuesOwnThreads(t *testing.T) {
	f := newFixture(t, `
system: Be careful.
members:
  - model: fake/alpha
    count: 2
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 3
`)
	// Every answer is unique, so that a thread shows whose answer it holds.
	var (
		mu    sync.Mutex
		seq   int
		first = map[string][]string{} // round-1 answers by model
		next  = map[string]string{}   // round-2 answer by the round-1 answer it follows
	)
	member := func(r *upstreamtest.Request) upstreamtest.Reply {
		mu.Lock()
		defer mu.Unlock()
		seq++
		msgs := r.Chat.Messages
		if roles(*r, "assistant") == 0 {
			a := fmt.Sprintf("%s-round1-answer-%d", r.Model, seq)
			first[r.Model] = append(first[r.Model], a)
			return upstreamtest.Reply{Content: a}
		}
		a := fmt.Sprintf("%s-round2-answer-%d", r.Model, seq)
		next[msgs[len(msgs)-2].Content.String()] = a
		return upstreamtest.Reply{Content: a}
	}
	f.fake.Handle("alpha", member)
	f.fake.Handle("beta", member)
	f.fake.Handle("judge", byRound(
		upstreamtest.Reply{Content: "<analysis>they differ</analysis><dissent>DISSENT-KEEP-THE-CAVEAT</dissent>" +
			"<confidence>0.3</confidence><needs_iteration>true</needs_iteration>" +
			"<refinement_areas>REFINE-CHECK-THE-UNITS</refinement_areas><ranking>A, B, C</ranking>" +
			"<synthesis>ROUND1-SYNTHESIS</synthesis>"},
		upstreamtest.Reply{Content: verdict("0.9", "FINAL-SYNTHESIS")}))

	res, deltas := f.mustRun(t, hello)
	if res.Synthesis != "FINAL-SYNTHESIS" || strings.Contains(strings.Join(deltas, ""), "ROUND1") {
		t.Errorf("synthesis %q, deltas %q", res.Synthesis, deltas)
	}
	s := res.Run.Summary()
	if s.Iterations != 2 || s.Confidence == nil || *s.Confidence != 0.9 {
		t.Errorf("summary %+v", s)
	}
	if n := len(f.fake.RequestsFor("judge")); n != 2 {
		t.Errorf("%d arbiter calls, want 2", n)
	}

	for _, model := range []string{"alpha", "beta"} {
		var round1, round2 []upstreamtest.Request
		for _, r := range f.fake.RequestsFor(model) {
			if roles(r, "assistant") == 0 {
				round1 = append(round1, r)
			} else {
				round2 = append(round2, r)
			}
		}
		if len(round1) == 0 || len(round1) != len(round2) {
			t.Fatalf("%s: %d round-1 and %d round-2 calls", model, len(round1), len(round2))
		}
		var continued []string
		for _, r2 := range round2 {
			// The round-1 request is a byte-identical prefix of the round-2
			// one, so a provider's prompt cache applies.
			p1, p2 := rawMessages(t, round1[0].Body), rawMessages(t, r2.Body)
			if !bytes.HasPrefix(p2, p1[:len(p1)-1]) || p2[len(p1)-1] != ',' {
				t.Errorf("%s: round 2 does not continue round 1 byte for byte:\n round 1 %s\n round 2 %s", model, p1, p2)
			}
			msgs := r2.Chat.Messages
			n := len(round1[0].Chat.Messages)
			if len(msgs) != n+2 || msgs[n].Role != "assistant" || msgs[n+1].Role != "user" {
				t.Fatalf("%s: round-2 messages %+v", model, msgs)
			}
			continued = append(continued, msgs[n].Content.String())
			feedback := msgs[n+1].Content.String()
			for _, want := range []string{"REFINE-CHECK-THE-UNITS", "DISSENT-KEEP-THE-CAVEAT"} {
				if !strings.Contains(feedback, want) {
					t.Errorf("%s: the feedback turn lacks %s: %q", model, want, feedback)
				}
			}
			if strings.Contains(feedback, "round1-answer") {
				t.Errorf("%s: the feedback turn shows another member's answer: %q", model, feedback)
			}
		}
		// Each instance continues its own answer: together the round-2
		// threads hold each round-1 answer of the model once.
		mu.Lock()
		want := slices.Clone(first[model])
		mu.Unlock()
		slices.Sort(want)
		slices.Sort(continued)
		if !slices.Equal(continued, want) {
			t.Errorf("%s: round-2 threads continue %q, the round-1 answers were %q", model, continued, want)
		}
	}
	// And the run record keeps each instance's two answers together.
	mu.Lock()
	defer mu.Unlock()
	for i, m := range res.Run.Rounds[1].Members {
		if prev := res.Run.Rounds[0].Members[i]; next[prev.Content] != m.Content || prev.Model != m.Model || prev.Instance != m.Instance {
			t.Errorf("instance %s#%d answered %q then %q", m.Model, m.Instance, prev.Content, m.Content)
		}
	}
	prompt := f.fake.RequestsFor("judge")[1].LastUserText()
	if !strings.Contains(prompt, "(round 2 of at most 3)") || !strings.Contains(prompt, "round2-answer") || strings.Contains(prompt, "round1-answer") {
		t.Errorf("round-2 arbiter prompt:\n%s", prompt)
	}
}

func TestIterationBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   string
		replies  []string // the arbiter's reply per round, the last repeating
		rounds   int
		final    string
		wantConf float64
	}{
		{name: "confident stops", config: "max_iterations: 3", rounds: 1,
			replies: []string{verdict("0.9", "S1")}, final: "S1", wantConf: 0.9},
		{name: "threshold reached exactly", config: "max_iterations: 3\nconfidence_threshold: 0.7", rounds: 1,
			replies: []string{verdict("0.7", "S1")}, final: "S1", wantConf: 0.7},
		{name: "low confidence iterates", config: "max_iterations: 3", rounds: 2,
			replies: []string{verdict("0.5", "S1"), verdict("0.85", "S2")}, final: "S2", wantConf: 0.85},
		{name: "needs_iteration iterates despite confidence", config: "max_iterations: 3", rounds: 2,
			replies: []string{strings.Replace(verdict("0.95", "S1"), "false", "true", 1), verdict("0.95", "S2")}, final: "S2", wantConf: 0.95},
		{name: "min_iterations forces a round", config: "min_iterations: 2\nmax_iterations: 3", rounds: 2,
			replies: []string{verdict("0.99", "S1"), verdict("0.99", "S2")}, final: "S2", wantConf: 0.99},
		{name: "max_iterations caps", config: "max_iterations: 2", rounds: 2,
			replies: []string{verdict("0.1", "S1"), verdict("0.2", "S2")}, final: "S2", wantConf: 0.2},
		{name: "one round only", config: "max_iterations: 1", rounds: 1,
			replies: []string{verdict("0.1", "S1")}, final: "S1", wantConf: 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\n"+tc.config)
			var replies []upstreamtest.Reply
			for _, r := range tc.replies {
				replies = append(replies, upstreamtest.Reply{Content: r})
			}
			f.fake.Handle("judge", byRound(replies...))
			res, _ := f.mustRun(t, hello)
			if res.Synthesis != tc.final {
				t.Errorf("synthesis %q, want %q", res.Synthesis, tc.final)
			}
			s := res.Run.Summary()
			if s.Iterations != tc.rounds || s.Confidence == nil || *s.Confidence != tc.wantConf {
				t.Errorf("iterations %d confidence %v, want %d and %v", s.Iterations, s.Confidence, tc.rounds, tc.wantConf)
			}
			judge := f.fake.RequestsFor("judge")
			if len(judge) != tc.rounds || len(f.fake.RequestsFor("alpha")) != tc.rounds || len(f.fake.RequestsFor("beta")) != tc.rounds {
				t.Fatalf("%d arbiter calls and %d+%d member calls, want %d of each", len(judge),
					len(f.fake.RequestsFor("alpha")), len(f.fake.RequestsFor("beta")), tc.rounds)
			}
			for i, r := range judge {
				if got := roundOf(r.LastUserText()); got != i+1 {
					t.Errorf("arbiter call %d says round %d", i+1, got)
				}
			}
		})
	}
}

// filler is prose that a slow arbiter would go on writing after its
// synthesis opened, long enough that a call that is not cancelled is still
// running long after the engine had what it needed.
func filler(first ...string) []string {
	out := append([]string(nil), first...)
	for range 40 {
		out = append(out, " more")
	}
	return out
}

func TestCancelledRoundNeverLeaks(t *testing.T) {
	const decided = "<analysis>they conflict</analysis><dissent>d</dissent><confidence>0.3</confidence>" +
		"<needs_iteration>true</needs_iteration><refinement_areas>fix it</refinement_areas><ranking>A</ranking>\n"
	for _, tc := range []struct {
		name, config, head string
	}{
		{"low confidence", "max_iterations: 2", decided},
		{"needs_iteration", "max_iterations: 2", "<confidence>0.95</confidence><needs_iteration>true</needs_iteration>"},
		{"min_iterations", "min_iterations: 2\nmax_iterations: 2", "<confidence>0.99</confidence><needs_iteration>false</needs_iteration>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := upstreamtest.NewServer()
			defer fake.Close()
			// In memory, the arbiter cannot run ahead of the engine
			// reading it, so its call is still writing when the
			// synthesis opens: cancelling it must reach it.
			synctest.Test(t, func(t *testing.T) {
				f := newMemFixture(t, fake, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n"+tc.config)
				f.fake.Handle("judge", byRound(
					upstreamtest.Reply{Chunks: filler(tc.head+"<synthesis>", "SECRET-", "ROUND-1")},
					upstreamtest.Reply{Content: verdict("0.9", "the final answer")}))
				res, deltas := f.mustRun(t, hello)
				if res.Synthesis != "the final answer" || res.Run.Iterations != 2 {
					t.Errorf("synthesis %q after %d rounds", res.Synthesis, res.Run.Iterations)
				}
				for _, d := range deltas {
					if strings.Contains(d, "SECRET") || strings.Contains(d, "ROUND-1") {
						t.Errorf("the cancelled round leaked: %q", deltas)
					}
				}
				synctest.Wait()
				judge := f.fake.RequestsFor("judge")
				if len(judge) != 2 {
					t.Fatalf("%d arbiter calls, want 2", len(judge))
				}
				if !judge[0].Cancelled || judge[1].Cancelled {
					t.Errorf("arbiter calls cancelled: %v, %v; want the first only", judge[0].Cancelled, judge[1].Cancelled)
				}
				if a := res.Run.Rounds[0].Arbiter; !a.Cancelled || !a.Iterate {
					t.Errorf("round-1 arbiter record %+v", a)
				}
			})
		})
	}
}

func TestHeldSynthesis(t *testing.T) {
	// The synthesis opens before any decision, on a round that could still
	// iterate: it is held until the reply ends, then sent or dropped.
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string
		rounds int
	}{
		{"decides to iterate", []string{"<synthesis>HELD-", "TEXT</synthesis>", "<confidence>0.3</confidence>", "<needs_iteration>true</needs_iteration>"}, "ROUND-2", 2},
		{"decides it is final", []string{"<synthesis>HELD-", "TEXT</synthesis>", "<confidence>0.95</confidence>", "<needs_iteration>false</needs_iteration>"}, "HELD-TEXT", 1},
		{"needs_iteration after a high confidence", []string{"<synthesis>HELD-", "TEXT</synthesis>", "<confidence>0.95</confidence>", "\n", "<needs_iteration>true</needs_iteration>"}, "ROUND-2", 2},
		{"a later low confidence", []string{"<synthesis>HELD-TEXT</synthesis>", "<needs_iteration>false</needs_iteration>", "<confidence>0.2</confidence>"}, "ROUND-2", 2},
		{"no decision at all", []string{"<synthesis>HELD-", "TEXT</synthesis>"}, "HELD-TEXT", 1},
		// Tags after the synthesis decide at the end of the reply, even
		// when they arrive in the chunk that opened it.
		{"a decision in the synthesis's chunk, overturned", []string{"<synthesis>HELD-TEXT</synthesis><confidence>0.95</confidence>", "<needs_iteration>true</needs_iteration>"}, "ROUND-2", 2},
		{"a decision in the synthesis's chunk", []string{"<synthesis>HELD-TEXT</synthesis><confidence>0.95</confidence>"}, "HELD-TEXT", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 2")
			f.fake.Handle("judge", byRound(
				upstreamtest.Reply{Chunks: tc.chunks},
				upstreamtest.Reply{Content: verdict("0.9", "ROUND-2")}))
			res, deltas := f.mustRun(t, hello)
			if res.Synthesis != tc.want || res.Run.Iterations != tc.rounds {
				t.Errorf("synthesis %q after %d rounds, want %q after %d", res.Synthesis, res.Run.Iterations, tc.want, tc.rounds)
			}
			if tc.want != "HELD-TEXT" && strings.Contains(strings.Join(deltas, ""), "HELD") {
				t.Errorf("the held synthesis leaked: %q", deltas)
			}
		})
	}
}

func TestSynthesisStreamsAsWritten(t *testing.T) {
	// The synthesis reaches the client while the arbiter is still writing
	// when the round cannot iterate, or decided before it.
	for _, tc := range []struct {
		name, config, head string
	}{
		{"last round, synthesis first", "max_iterations: 1", ""},
		{"decided before the synthesis", "max_iterations: 3", "<confidence>0.9</confidence><needs_iteration>false</needs_iteration>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := upstreamtest.NewServer()
			defer fake.Close()
			synctest.Test(t, func(t *testing.T) {
				f := newMemFixture(t, fake, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n"+tc.config)
				f.fake.Script("judge", upstreamtest.Reply{Chunks: filler(tc.head+"<synthesis>NOW", "</synthesis>")})
				req, _ := openai.ParseChatRequest([]byte(hello))
				inFlight := -1
				res, err := f.engine.Run(context.Background(), req, func(d string) {
					if inFlight < 0 {
						inFlight = f.fake.InFlight()
					}
				})
				if err != nil || res.Synthesis != "NOW" {
					t.Fatalf("synthesis %v, %v", res, err)
				}
				if inFlight < 1 {
					t.Errorf("the first delta came after the arbiter's call had ended")
				}
			})
		})
	}
}

func TestTagsSplitAcrossChunks(t *testing.T) {
	const synthesis = "Compare a<b with <b>bold</b> & </synth not a tag; done."
	reply := "Some prose first.\n<analysis>ok</analysis>\n<confidence>0.9</confidence>\n<needs_iteration>false</needs_iteration>\n" +
		"<synthesis>\n" + synthesis + "\n</synthesis>\ntrailing prose"
	at := func(s string, delta int) int { return strings.Index(reply, s) + delta }
	split := func(cuts ...int) []string {
		var out []string
		prev := 0
		for _, c := range cuts {
			out = append(out, reply[prev:c])
			prev = c
		}
		return append(out, reply[prev:])
	}
	var bytewise []string
	for i := range len(reply) {
		bytewise = append(bytewise, reply[i:i+1])
	}
	cases := []struct {
		name   string
		chunks []string
	}{
		{"whole", []string{reply}},
		{"inside <synth", split(at("<synthesis>", len("<synth")))},
		{"between </synthesis and >", split(at("</synthesis>", len("</synthesis")))},
		{"inside </confidence and <synthesis", split(at("</confidence>", 3), at("<synthesis>", 1), at("<synthesis>", 10))},
		{"inside the decoy", split(at("</synth ", 2), at("</synth ", 7))},
		{"one byte per chunk", bytewise},
	}
	for _, config := range []string{"max_iterations: 1", "max_iterations: 3"} {
		f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n"+config)
		for _, tc := range cases {
			t.Run(config+"/"+tc.name, func(t *testing.T) {
				f.fake.Script("judge", upstreamtest.Reply{Chunks: tc.chunks})
				res, _ := f.mustRun(t, hello)
				if res.Synthesis != synthesis || res.Run.Iterations != 1 {
					t.Errorf("synthesis %q after %d rounds, want %q", res.Synthesis, res.Run.Iterations, synthesis)
				}
			})
		}
	}
}

func TestQuorum(t *testing.T) {
	f := newFixture(t, `
members: [{model: fake/fast1}, {model: fake/slow}, {model: fake/fast2}]
arbiter: {model: fake/judge}
max_iterations: 1
quorum: 2
`)
	// The fast members answer only once the slow one's call has reached the
	// provider: else the quorum could cancel it before it was sent, and
	// there would be no call to see cancelled.
	fast := func(content string) upstreamtest.Responder {
		return func(*upstreamtest.Request) upstreamtest.Reply {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			f.fake.WaitRequests(ctx, 3)
			return upstreamtest.Reply{Content: content}
		}
	}
	f.fake.Handle("fast1", fast("fast answer one"))
	f.fake.Handle("fast2", fast("fast answer two"))
	f.fake.Script("slow", upstreamtest.Reply{Hang: true})
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "from two")})
	res, _ := f.mustRun(t, hello)
	if res.Synthesis != "from two" {
		t.Errorf("synthesis %q", res.Synthesis)
	}
	if want := []string{"fake/fast1#1:ok", "fake/slow#1:cancelled", "fake/fast2#1:ok"}; !slices.Equal(statuses(res.Run.Summary()), want) {
		t.Errorf("members %v, want %v", statuses(res.Run.Summary()), want)
	}
	prompt := f.fake.RequestsFor("judge")[0].LastUserText()
	if !strings.Contains(prompt, "Response B") || strings.Contains(prompt, "Response C") {
		t.Errorf("the arbiter did not start with the two answers:\n%s", prompt)
	}
	waitIdle(t, f.fake)
	if slow := f.fake.RequestsFor("slow"); len(slow) != 1 || !slow[0].Cancelled {
		t.Errorf("the slow member's call was not cancelled: %+v", slow)
	}
}

// late is a member slower than any member_timeout: it answers only once
// the test closes released, after the run. (A bubble's clock stops when
// its test function returns, so a member that slept instead would never
// wake.)
func late(released <-chan struct{}) upstreamtest.Responder {
	return func(*upstreamtest.Request) upstreamtest.Reply {
		<-released
		return upstreamtest.Reply{Content: "too late"}
	}
}

func TestMemberTimeout(t *testing.T) {
	t.Run("some members", func(t *testing.T) {
		fake := upstreamtest.NewServer()
		defer fake.Close()
		synctest.Test(t, func(t *testing.T) {
			f := newMemFixture(t, fake, `
members: [{model: fake/fast}, {model: fake/slow}]
arbiter: {model: fake/judge}
max_iterations: 1
member_timeout: 300ms
`)
			released := make(chan struct{})
			defer close(released)
			f.fake.Script("fast", upstreamtest.Reply{Content: "in time"})
			f.fake.Handle("slow", late(released))
			f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "from the fast one")})
			start := time.Now()
			res, _ := f.mustRun(t, hello)
			// The bubble's clock: the arbiter started when member_timeout
			// passed, not when the slow member would have answered.
			if took := time.Since(start); took != 300*time.Millisecond {
				t.Errorf("the run took %v, want member_timeout (300ms)", took)
			}
			s := res.Run.Summary()
			if want := []string{"fake/fast#1:ok", "fake/slow#1:timeout"}; !slices.Equal(statuses(s), want) {
				t.Errorf("members %v, want %v", statuses(s), want)
			}
			if !strings.Contains(s.Members[1].Error, "member_timeout") || s.Members[1].LatencyMs != 300 {
				t.Errorf("timed-out member %+v", s.Members[1])
			}
			if res.Synthesis != "from the fast one" {
				t.Errorf("synthesis %q", res.Synthesis)
			}
			if prompt := f.fake.RequestsFor("judge")[0].LastUserText(); strings.Contains(prompt, "too late") || strings.Contains(prompt, "Response B") {
				t.Errorf("the arbiter saw more than the answer in time:\n%s", prompt)
			}
		})
	})
	t.Run("every member", func(t *testing.T) {
		fake := upstreamtest.NewServer()
		defer fake.Close()
		synctest.Test(t, func(t *testing.T) {
			f := newMemFixture(t, fake, `
members: [{model: fake/slow1}, {model: fake/slow2}]
arbiter: {model: fake/judge}
member_timeout: 100ms
`)
			released := make(chan struct{})
			defer close(released)
			f.fake.Handle("slow1", late(released))
			f.fake.Handle("slow2", late(released))
			start := time.Now()
			_, deltas, err := f.run(t, hello)
			if !errors.Is(err, consortia.ErrAllTimedOut) || len(deltas) > 0 {
				t.Fatalf("err %v, deltas %q; want ErrAllTimedOut", err, deltas)
			}
			if took := time.Since(start); took != 100*time.Millisecond {
				t.Errorf("the run failed after %v, want member_timeout (100ms)", took)
			}
			for _, s := range []string{"fake/slow1", "fake/slow2"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not name %s", err, s)
				}
			}
			if n := len(f.fake.RequestsFor("judge")); n != 0 {
				t.Errorf("the arbiter was called %d times", n)
			}
		})
	})
}

func TestMinAnswers(t *testing.T) {
	f := newFixture(t, `
members: [{model: fake/good}, {model: fake/bad}, {model: fake/gone}]
arbiter: {model: fake/judge}
min_answers: 2
`)
	f.fake.Script("good", upstreamtest.Reply{Content: "fine"})
	f.fake.Script("bad", upstreamtest.Reply{Status: 503, Error: "overloaded right now"})
	f.fake.Script("gone", upstreamtest.Reply{Drop: true})
	_, _, err := f.run(t, hello)
	if !errors.Is(err, consortia.ErrTooFewAnswers) || errors.Is(err, consortia.ErrAllTimedOut) {
		t.Fatalf("err %v, want ErrTooFewAnswers", err)
	}
	for _, s := range []string{"fake/bad", "503", "overloaded right now", "fake/gone", "1 of 3", "2 needed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "fake/good") {
		t.Errorf("%q names the member that answered", err)
	}
	// The run record as far as it went comes with the error, for the
	// caller's log line and run store.
	var re *consortia.RunError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Run.ID, "run_") || re.Run.Consortium != "council" || re.Run.Iterations != 1 {
		t.Fatalf("err %v carries no run record", err)
	}
	if got, want := statuses(re.Run.Summary()), []string{"fake/good#1:ok", "fake/bad#1:error", "fake/gone#1:error"}; !slices.Equal(got, want) {
		t.Errorf("the record's members %v, want %v", got, want)
	}
	if n := len(f.fake.RequestsFor("judge")); n != 0 {
		t.Errorf("the arbiter was called %d times", n)
	}
}

func TestArbiterFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply upstreamtest.Reply
		want  []string
	}{
		{"status", upstreamtest.Reply{Status: 500, Error: "the judge fell over"}, []string{"fake/judge", "500", "the judge fell over"}},
		{"cut mid-reply", upstreamtest.Reply{Chunks: []string{"<analysis>", "half"}, CutAfter: 1}, []string{"fake/judge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}")
			f.fake.Script("judge", tc.reply)
			_, deltas, err := f.run(t, hello)
			if !errors.Is(err, consortia.ErrArbiter) || len(deltas) > 0 {
				t.Fatalf("err %v, deltas %q; want ErrArbiter", err, deltas)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q lacks %q", err, s)
				}
			}
		})
	}
}

func TestSynthesisBounds(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		chunks       []string
		want, finish string
	}{
		{"max_tokens cuts", `"max_tokens":2`, []string{"<synthesis>abcdef", "ghijklmnop</synthesis>"}, "abcdefgh", "length"},
		{"max_completion_tokens cuts", `"max_completion_tokens":1`, []string{"<synthesis>abcdefgh</synthesis>"}, "abcd", "length"},
		{"max_tokens leaves room", `"max_tokens":100`, []string{"<synthesis>short</synthesis>"}, "short", "stop"},
		// 4*(2^62+1) wraps to 4: a huge limit must bound nothing, not four characters.
		{"max_tokens past int", `"max_tokens":4611686018427387905`, []string{"<synthesis>abcdefgh</synthesis>"}, "abcdefgh", "stop"},
		{"max_tokens cuts multi-byte runes", `"max_tokens":1`, strings.Split("<synthesis>日本語日本語</synthesis>", ""), "日本語日", "length"},
		{"multi-byte stop", `"stop":"。"`, strings.Split("<synthesis>日本語。後</synthesis>", ""), "日本語", "stop"},
		{"stop", `"stop":"STOP"`, []string{"<synthesis>before STOP after</synthesis>"}, "before ", "stop"},
		{"stop split across chunks", `"stop":["zzz","STOP"]`, []string{"<synthesis>before ST", "OP after</synthesis>"}, "before ", "stop"},
		{"stop one byte at a time", `"stop":"STOP"`, strings.Split("<synthesis>before STOP after</synthesis>", ""), "before ", "stop"},
		{"stop near miss", `"stop":"STOP"`, []string{"<synthesis>ST", "OOP then ST", "</synthesis>"}, "STOOP then ST", "stop"},
		{"earliest stop wins", `"stop":["\n\n","END"]`, []string{"<synthesis>line one E", "ND\n\nline two</synthesis>"}, "line one ", "stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
			f.fake.Script("judge", upstreamtest.Reply{Chunks: append([]string{"<confidence>0.9</confidence>"}, tc.chunks...)})
			res, deltas := f.mustRun(t, `{"model":"council",`+tc.params+`,"messages":[{"role":"user","content":"hi"}]}`)
			if res.Synthesis != tc.want || res.FinishReason != tc.finish {
				t.Errorf("synthesis %q (%s), want %q (%s); deltas %q", res.Synthesis, res.FinishReason, tc.want, tc.finish, deltas)
			}
			// The client's bounds are the synthesis's, never the
			// arbiter's: its analysis must not be cut.
			judge := f.fake.RequestsFor("judge")[0]
			if judge.Chat.MaxTokens != nil || judge.Chat.MaxCompletionTokens != nil || judge.Chat.Stop != nil {
				t.Errorf("the client's bounds reached the arbiter: %s", judge.Body)
			}
			if member := f.fake.RequestsFor("alpha")[0]; !bytes.Contains(member.Body, []byte(strings.SplitN(tc.params, ":", 2)[0])) {
				t.Errorf("the members did not get %s: %s", tc.params, member.Body)
			}
		})
	}
}

func TestResponseFormatJSON(t *testing.T) {
	for _, tc := range []struct {
		name, format, synthesis, want string
		wantErr                       bool
	}{
		{"plain", `{"type":"json_object"}`, `{"a": 1}`, `{"a": 1}`, false},
		{"fenced", `{"type":"json_object"}`, "```json\n{\"a\": [1, 2]}\n```", `{"a": [1, 2]}`, false},
		{"schema", `{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}`, ` {"b": true} `, `{"b": true}`, false},
		{"not JSON", `{"type":"json_object"}`, `here is {"a": 1}`, "", true},
		{"truncated", `{"type":"json_object"}`, `{"a": `, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
			f.fake.Script("alpha", upstreamtest.Reply{Content: `{"a": 1}`})
			f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", tc.synthesis)})
			res, deltas, err := f.run(t, `{"model":"council","response_format":`+tc.format+`,"messages":[{"role":"user","content":"json please"}]}`)
			switch {
			case tc.wantErr:
				if !errors.Is(err, consortia.ErrNotJSON) || !strings.Contains(err.Error(), "JSON") || len(deltas) > 0 {
					t.Errorf("err %v, deltas %q; want ErrNotJSON and nothing sent", err, deltas)
				}
			case err != nil:
				t.Fatal(err)
			case res.Synthesis != tc.want || !slices.Equal(deltas, []string{tc.want}):
				t.Errorf("synthesis %q, deltas %q; want %q in one delta", res.Synthesis, deltas, tc.want)
			}
			var sent struct {
				ResponseFormat json.RawMessage `json:"response_format"`
			}
			json.Unmarshal(f.fake.RequestsFor("alpha")[0].Body, &sent)
			if string(sent.ResponseFormat) != tc.format {
				t.Errorf("the member got response_format %s, want %s", sent.ResponseFormat, tc.format)
			}
			if prompt := f.fake.RequestsFor("judge")[0].LastUserText(); !strings.Contains(prompt, "only valid JSON") {
				t.Errorf("the arbiter was not told JSON is wanted:\n%s", prompt)
			}
		})
	}
}

func TestUntaggedArbiterReply(t *testing.T) {
	f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 3")
	f.fake.Script("judge", upstreamtest.Reply{Content: "  Just the plain answer, no tags: 1 < 2.\n"})
	res, _ := f.mustRun(t, hello)
	if res.Synthesis != "Just the plain answer, no tags: 1 < 2." {
		t.Errorf("synthesis %q", res.Synthesis)
	}
	if s := res.Run.Summary(); s.Iterations != 1 || s.Confidence != nil {
		t.Errorf("iterations %d, confidence %v; want 1 round, confidence unknown", s.Iterations, s.Confidence)
	}
	if n := len(f.fake.RequestsFor("judge")); n != 1 {
		t.Errorf("%d arbiter calls", n)
	}
}

func TestNoSynthesisFallsBackToTheBestAnswer(t *testing.T) {
	f := newFixture(t, "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
	f.fake.Script("alpha", upstreamtest.Reply{Content: "alpha says"})
	f.fake.Script("beta", upstreamtest.Reply{Content: "beta says"})
	f.fake.Handle("judge", func(r *upstreamtest.Request) upstreamtest.Reply {
		label := regexp.MustCompile(`### Response ([A-Z])\n\nbeta says`).FindStringSubmatch(r.LastUserText())
		if label == nil {
			return upstreamtest.Reply{Status: 500, Error: "no beta in the prompt"}
		}
		return upstreamtest.Reply{Content: "<confidence>0.9</confidence><ranking>" + label[1] + "</ranking>"}
	})
	res, deltas := f.mustRun(t, hello)
	if res.Synthesis != "beta says" || res.Run.Fallback == "" {
		t.Errorf("synthesis %q (fallback %q), deltas %q", res.Synthesis, res.Run.Fallback, deltas)
	}
}

func TestParams(t *testing.T) {
	f := newFixture(t, `
members:
  - model: fake/cold
    params: {temperature: 0.1, top_p: 0.5}
  - model: fake/warm
arbiter:
  model: fake/judge
  params: {temperature: 0, max_tokens: 4000}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	f.mustRun(t, `{"model":"council","temperature":0.9,"max_tokens":50,"seed":7,"messages":[{"role":"user","content":"hi"}]}`)
	get := func(model string) *openai.ChatRequest { return f.fake.RequestsFor(model)[0].Chat }
	cold, warm, judge := get("cold"), get("warm"), get("judge")
	if cold.Temperature == nil || *cold.Temperature != 0.1 || cold.TopP == nil || *cold.TopP != 0.5 {
		t.Errorf("cold member: %s", f.fake.RequestsFor("cold")[0].Body)
	}
	if warm.Temperature == nil || *warm.Temperature != 0.9 || warm.TopP != nil {
		t.Errorf("warm member: %s", f.fake.RequestsFor("warm")[0].Body)
	}
	for _, m := range []*openai.ChatRequest{cold, warm} {
		if m.MaxTokens == nil || *m.MaxTokens != 50 || m.Seed == nil || *m.Seed != 7 {
			t.Errorf("a member lost the client's max_tokens or seed: %+v", m)
		}
	}
	if judge.Temperature == nil || *judge.Temperature != 0 || judge.MaxTokens == nil || *judge.MaxTokens != 4000 || judge.Seed != nil {
		t.Errorf("arbiter: %s", f.fake.RequestsFor("judge")[0].Body)
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}")
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	for _, tc := range []struct{ name, body, param string }{
		{"n", `{"model":"council","n":2,"messages":[{"role":"user","content":"hi"}]}`, "n"},
		{"tools", `{"model":"council","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, "tools"},
		{"no user message", `{"model":"council","messages":[{"role":"system","content":"be nice"}]}`, "messages"},
		// A bound below one token is the client's mistake: members must
		// not be asked with it (issue 14, item 7).
		{"max_tokens zero", `{"model":"council","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"max_tokens negative", `{"model":"council","max_tokens":-5,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"max_completion_tokens zero", `{"model":"council","max_completion_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_completion_tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.run(t, tc.body)
			var fe *openai.FieldError
			if !errors.As(err, &fe) || fe.Param != tc.param || fe.Message == "" {
				t.Errorf("err %v, want a FieldError for %s", err, tc.param)
			}
		})
	}
	if n := len(f.fake.Requests()); n != 0 {
		t.Errorf("%d upstream calls for requests the consortium cannot serve", n)
	}
	for _, body := range []string{
		`{"model":"council","n":1,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"council","max_tokens":1,"max_completion_tokens":1,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		if _, _, err := f.run(t, body); err != nil {
			t.Errorf("%s refused: %v", body, err)
		}
	}
}

func TestClientCancelStopsEveryCall(t *testing.T) {
	f := newFixture(t, "members: [{model: fake/alpha, count: 2}, {model: fake/beta}]\narbiter: {model: fake/judge}")
	f.fake.Script("alpha", upstreamtest.Reply{Hang: true})
	f.fake.Script("beta", upstreamtest.Reply{Hang: true})
	req, _ := openai.ParseChatRequest([]byte(hello))
	ctx, cancel := context.WithCancel(context.Background())
	var err atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, e := f.engine.Run(ctx, req, nil)
		err.Store(fmt.Sprint(e))
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if e := f.fake.WaitRequests(wctx, 3); e != nil {
		t.Fatal(e)
	}
	cancel()
	<-done
	if got := err.Load().(string); !strings.Contains(got, "canceled") {
		t.Errorf("Run returned %s", got)
	}
	waitIdle(t, f.fake)
	for _, r := range f.fake.Requests() {
		if !r.Cancelled {
			t.Errorf("%s call not cancelled", r.Model)
		}
	}
}

func TestSummary(t *testing.T) {
	fake := upstreamtest.NewServer()
	defer fake.Close()
	// On the bubble's clock the members answer in no time: latency_ms is
	// 0, and must still be there (issue 14, item 13).
	synctest.Test(t, func(t *testing.T) {
		f := newMemFixture(t, fake, "members: [{model: fake/alpha, count: 2}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
		f.fake.Script("beta", upstreamtest.Reply{Status: 400, Error: "no"})
		f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.75", "ok")})
		res, _ := f.mustRun(t, hello)
		b, err := json.Marshal(res.Run.Summary())
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			RunID      string   `json:"run_id"`
			Strategy   string   `json:"strategy"`
			Iterations int      `json:"iterations"`
			Confidence *float64 `json:"confidence"`
			Members    []map[string]any
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.RunID != res.Run.ID || got.Strategy != "synthesize" || got.Iterations != 1 || got.Confidence == nil || *got.Confidence != 0.75 {
			t.Errorf("consortium object %s", b)
		}
		if len(got.Members) != 3 {
			t.Fatalf("members %s", b)
		}
		for _, m := range got.Members {
			if l, ok := m["latency_ms"]; !ok || l != 0.0 {
				t.Errorf("member %v: latency_ms missing or not 0 in %s", m, b)
			}
		}
		if s := got.Members[2]; s["status"] != "error" || s["error"] == "" {
			t.Errorf("the failed member reads %v", s)
		}
	})
}

// roleCaller records the role (upstream.RoleOf) of each call it passes on.
type roleCaller struct {
	consortia.Caller
	mu    sync.Mutex
	roles map[string][]string // by model
}

func (c *roleCaller) note(ctx context.Context, model string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roles[model] = append(c.roles[model], upstream.RoleOf(ctx))
}

func (c *roleCaller) Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	c.note(ctx, model)
	return c.Caller.Chat(ctx, model, req)
}

func (c *roleCaller) ChatStream(ctx context.Context, model string, req *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error] {
	c.note(ctx, model)
	return c.Caller.ChatStream(ctx, model, req)
}

func TestCallsCarryTheirRole(t *testing.T) {
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	rc := &roleCaller{Caller: p, roles: map[string][]string{}}
	cfg := consortiumConfig(t, "members: [{model: fake/alpha, fallbacks: [fake/spare]}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 2")
	e, err := consortia.New("council", cfg, map[string]consortia.Caller{"fake": rc})
	if err != nil {
		t.Fatal(err)
	}
	fake.Script("alpha", upstreamtest.Reply{Status: 400, Error: "no"})
	fake.Script("judge", upstreamtest.Reply{Content: verdict("0.1", "S1")}, upstreamtest.Reply{Content: verdict("0.9", "S2")})
	req, _ := openai.ParseChatRequest([]byte(hello))
	if _, err := e.Run(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"alpha": {"member", "member"}, "spare": {"member", "member"}, "beta": {"member", "member"},
		"judge": {"arbiter", "arbiter"},
	}
	if !reflect.DeepEqual(rc.roles, want) {
		t.Errorf("roles %v, want %v", rc.roles, want)
	}
}

func TestNewRefuses(t *testing.T) {
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: "http://fake.invalid/v1"})
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]consortia.Caller{"fake": p}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown strategy", "strategy: vote\nmembers: [{model: fake/a}]\narbiter: {model: fake/j}", `strategy "vote" is not built (built: synthesize)`},
		{"synthesize without an arbiter", "members: [{model: fake/a}]", "needs members and an arbiter"},
		{"synthesize without members", "arbiter: {model: fake/j}", "needs members and an arbiter"},
		{"a member of an unknown provider", "members: [{model: nope/a}]\narbiter: {model: fake/j}", `"nope/a" names no configured provider`},
		{"an arbiter of an unknown provider", "members: [{model: fake/a}]\narbiter: {model: nope/j}", `"nope/j" names no configured provider`},
		{"an arbiter prompt that names no field", "members: [{model: fake/a}]\narbiter: {model: fake/j, prompt: '{{.Question}}'}", "arbiter.prompt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consortia.New("council", consortiumConfig(t, tc.body), callers)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "council") {
				t.Errorf("New: %v, want an error naming council and %q", err, tc.want)
			}
		})
	}
	if _, err := consortia.New("council", consortiumConfig(t, "strategy: synthesize\nmembers: [{model: fake/a}]\narbiter: {model: fake/j}"), callers); err != nil {
		t.Errorf("strategy synthesize refused: %v", err)
	}
}
