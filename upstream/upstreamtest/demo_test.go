package upstreamtest

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// demoChat is a chat request to model with messages given as role, text
// pairs.
func demoChat(t *testing.T, model string, messages ...string) *Request {
	t.Helper()
	var ms []map[string]string
	for i := 0; i+1 < len(messages); i += 2 {
		ms = append(ms, map[string]string{"role": messages[i], "content": messages[i+1]})
	}
	body, _ := json.Marshal(map[string]any{"model": model, "messages": ms})
	chat, err := openai.ParseChatRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{Method: "POST", Path: "/v1/chat/completions", Body: body, Model: model, Chat: chat}
}

// judgePromptOf renders consortia's default judge prompt over answers,
// labelled in the order given.
func judgePromptOf(t *testing.T, labels, answers []string) string {
	t.Helper()
	d := consortia.JudgeData{Consortium: "demo-rank", Request: "Why is the sky blue?", RankingExample: strings.Join(labels, " > ")}
	for i, a := range answers {
		d.Responses = append(d.Responses, consortia.Response{Label: labels[i], Text: a})
	}
	var b strings.Builder
	if err := template.Must(template.New("judge").Parse(consortia.DefaultJudgePrompt)).Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var demoRanking = regexp.MustCompile(`(?s)^<critique>(.+)</critique>\n<ranking>(.+)</ranking>$`)

// TestDemoJudge: a demo judge answers the real judge prompt with a
// critique that says it is a demo and a ranking that names every label
// once; its ranking follows the answers' text, not their labels or order:
// judge-1 puts the more specific (longer) answer first, and judge-2, whose
// count has a taste of its own, differs from it on close answers.
func TestDemoJudge(t *testing.T) {
	answers := []string{
		"Rayleigh scattering.",
		"Sunlight scatters off air molecules, and blue light, with its short wavelength, scatters most; so the sky looks blue.",
		"Because of scattering:\n\n### Notes\n\nshorter wavelengths scatter more.",
		"Blue.",
	}
	rank := func(model string, labels []string, order []int) []string {
		shown := make([]string, len(order))
		for n, i := range order {
			shown[n] = answers[i]
		}
		r := Demo()(demoChat(t, model, "user", judgePromptOf(t, labels, shown)))
		m := demoRanking.FindStringSubmatch(r.Content)
		if m == nil || !strings.Contains(m[1], "demo") {
			t.Fatalf("%s: reply %q is not a demo critique and a ranking", model, r.Content)
		}
		got := strings.Split(m[2], " > ")
		if want := slices.Sorted(slices.Values(labels)); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Fatalf("%s: ranking %q is not a permutation of %q", model, got, labels)
		}
		// The ranking as answer indexes, best first.
		out := make([]string, len(got))
		for n, l := range got {
			out[n] = answers[order[slices.Index(labels, l)]]
		}
		return out
	}
	abcd := []string{"A", "B", "C", "D"}
	first := rank("judge-1", abcd, []int{0, 1, 2, 3})
	if first[0] != answers[1] || first[3] != answers[3] {
		t.Errorf("judge-1 does not put the longer answer first: %q", first)
	}
	if again := rank("judge-1", []string{"Z", "AA", "AB", "Q"}, []int{3, 1, 0, 2}); !slices.Equal(again, first) {
		t.Errorf("judge-1 ranks by position or label: %q, then %q", first, again)
	}
	second := rank("judge-2", abcd, []int{2, 0, 3, 1})
	if slices.Equal(second, first) {
		t.Errorf("the two demo judges agree on everything: %q", first)
	}
	if again := rank("judge-2", abcd, []int{1, 3, 0, 2}); !slices.Equal(again, second) {
		t.Errorf("judge-2 ranks by position: %q, then %q", second, again)
	}

	// Asked again (its prompt is earlier in the conversation), a judge
	// still judges; an arbiter's prompt, which wants a synthesis, is not
	// a judge's.
	prompt := judgePromptOf(t, abcd, answers)
	r := Demo()(demoChat(t, "judge-1", "user", prompt, "assistant", "no tags", "user", "Your reply has no usable ranking."))
	if !demoRanking.MatchString(r.Content) {
		t.Errorf("asked again: %q", r.Content)
	}
	// The arbiter ranks tied votes with the judge prompt: it judges too.
	if r := Demo()(demoChat(t, DemoArbiter, "user", prompt)); !demoRanking.MatchString(r.Content) {
		t.Errorf("the arbiter given a judge prompt: %q", r.Content)
	}
	r = Demo()(demoChat(t, "alpha", "user", prompt+"\n<synthesis>the answer</synthesis>"))
	if !strings.Contains(r.Content, "demo answer") {
		t.Errorf("an arbiter-like prompt was judged: %q", r.Content)
	}
}

// TestDemoAnswerLine: asked by its system prompt for a last "Answer:"
// line, a demo member ends with one; members mostly agree on it, per
// question, and sometimes one dissents. Without the ask there is none.
func TestDemoAnswerLine(t *testing.T) {
	const system = `End your answer with a last line "Answer: " followed by your short answer.`
	if r := Demo()(demoChat(t, "alpha", "user", "Is Go garbage collected?")); strings.Contains(r.Content, "Answer:") {
		t.Errorf("an answer line nobody asked for: %q", r.Content)
	}
	unanimous, split := 0, 0
	for _, q := range []string{"Is Go garbage collected?", "Is 2^61-1 prime?", "Will it rain tomorrow?", "Tabs or spaces?", "Is P equal to NP?", "Should I rewrite it in Rust?", "Is the sky blue?", "Does 1+1 make 2?"} {
		lines := map[string]bool{}
		for _, m := range []string{"alpha", "beta", "gamma"} {
			r := Demo()(demoChat(t, m, "system", system, "user", q))
			body, last, ok := strings.Cut(r.Content, "\n\nAnswer: ")
			if !ok || !strings.Contains(body, "demo answer") || !slices.Contains(demoVerdicts, last) {
				t.Fatalf("%s on %q: %q has no demo answer line", m, q, r.Content)
			}
			lines[last] = true
		}
		switch len(lines) {
		case 1:
			unanimous++
		case 2:
			split++
		default:
			t.Errorf("%q: the members agree on nothing: %v", q, lines)
		}
	}
	if unanimous == 0 || split == 0 {
		t.Errorf("%d questions unanimous, %d split: want some of each", unanimous, split)
	}
}
