package consortia_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

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

// filler is prose that an arbiter goes on writing after its synthesis
// opened: a call that is not cancelled is still writing long after the
// engine had what it needed.
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
			// In memory, the arbiter cannot run ahead of the engine
			// reading it, so its call is still writing when the
			// synthesis opens: cancelling it must reach it.
			inBubble(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n"+tc.config, func(t *testing.T, f *fixture) {
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
			inBubble(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n"+tc.config, func(t *testing.T, f *fixture) {
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
