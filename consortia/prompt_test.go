package consortia

import (
	"bytes"
	"strings"
	"testing"
	"text/template"

	"github.com/consortium-dev/consortium/openai"
)

// promptCase is one round's input to the arbiter and judge prompts.
type promptCase struct {
	name    string
	req     *openai.ChatRequest
	answers []string // one member answer each, all successful
	weights []float64
	custom  string // a custom template for both prompts; "" for the defaults
	ranked  bool   // the judges ranked the answers first (rank's then: synthesize)
}

// typicalAnswer is about the 300 bytes a member's answer typically has.
var typicalAnswer = strings.Repeat("A member's answer, a sentence or two long, with a fact or a number. ", 5)

func promptCases(t testing.TB) []promptCase {
	t.Helper()
	parse := func(body string) *openai.ChatRequest {
		req, err := openai.ParseChatRequest([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	hello := parse(`{"model":"council","messages":[{"role":"user","content":"what is the answer?"}]}`)
	return []promptCase{
		{name: "typical", req: hello, answers: []string{typicalAnswer, typicalAnswer, typicalAnswer}},
		{name: "empty answers", req: hello, answers: []string{"", "", ""}},
		{name: "one answer", req: hello, answers: []string{"4"}},
		{name: "huge answers", req: hello, answers: []string{strings.Repeat("x", 1<<20), strings.Repeat("y ", 300000), typicalAnswer}},
		{name: "weights differ, judges ranked", req: hello, answers: []string{"a", "b", "c"}, weights: []float64{1, 2.5, 0.5}, ranked: true},
		{name: "conversation and JSON", answers: []string{`{"a":1}`, `{"a":2}`},
			req: parse(`{"model":"council","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}},
				"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},
				{"role":"user","content":[{"type":"text","text":"now the answer"}]}]}`)},
		{name: "many answers", req: hello, answers: strings.Fields(strings.Repeat("answer ", 30))},
		{name: "custom template repeating fields", req: parse(`{"model":"council","messages":[{"role":"user","content":"` + strings.Repeat("long request ", 500) + `"}]}`),
			answers: []string{typicalAnswer, "short"},
			custom:  "{{.Request}}{{.Request}}{{.Request}}{{range .Responses}}{{.Text}}{{.Text}}{{end}}{{.RankingExample}}"},
		{name: "custom template with no fields", req: hello, answers: []string{typicalAnswer}, custom: "Judge."},
	}
}

// arbiterFor builds the synthesize strategy and round of a case.
func (c promptCase) arbiterFor(t testing.TB) (*synthesize, *Round, []int, func(*PromptData)) {
	t.Helper()
	prompt, err := parseTemplate("arbiter", c.custom, DefaultPrompt)
	if err != nil {
		t.Fatal(err)
	}
	sy := &synthesize{consortium: "council", prompt: prompt,
		cfg: Synthesize{ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 3}}
	round := &Round{Number: 1}
	for i, a := range c.answers {
		round.Members = append(round.Members, MemberAnswer{Model: "p/m", Instance: i + 1, Status: StatusOK, Content: a})
		w := 1.0
		if c.weights != nil {
			w = c.weights[i]
		}
		sy.weights = append(sy.weights, w)
	}
	order := shuffleLabels(round.Members)
	var ranked func(*PromptData)
	if c.ranked {
		ranked = func(p *PromptData) {
			for n, i := range order {
				p.Scores = append(p.Scores, LabelScore{Label: round.Members[i].Label, Score: 1 / float64(n+1), Place: n + 1})
			}
			p.JudgeRankings = []string{"B > A > C", "A > C > B"}
		}
	}
	return sy, round, order, ranked
}

// panelFor builds the judges' panel of a case, and the answers' order and
// labels as one judge sees them.
func (c promptCase) panelFor(t testing.TB) (*panel, []MemberAnswer, []int, []string) {
	t.Helper()
	prompt, err := parseTemplate("judge", c.custom, DefaultJudgePrompt)
	if err != nil {
		t.Fatal(err)
	}
	p := &panel{consortium: "council", prompt: prompt}
	var answers []MemberAnswer
	var order []int
	var labels []string
	for i, a := range c.answers {
		answers = append(answers, MemberAnswer{Model: "p/m", Instance: i + 1, Status: StatusOK, Content: a})
		order = append(order, len(c.answers)-1-i)
		labels = append(labels, label(i))
	}
	return p, answers, order, labels
}

// execute renders a template as the engine first did, into a buffer that
// grows: the bytes the prompts must keep.
func execute(t *testing.T, tmpl *template.Template, data any) string {
	t.Helper()
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPromptBytes: the prompts the arbiter and the judges get are the
// templates executed on their data, byte for byte, whatever the size of
// the answers and whichever template.
func TestPromptBytes(t *testing.T) {
	for _, c := range promptCases(t) {
		t.Run(c.name, func(t *testing.T) {
			sy, round, order, ranked := c.arbiterFor(t)
			got, err := sy.renderPrompt(c.req, round, order, ranked)
			if err != nil {
				t.Fatal(err)
			}
			data := sy.promptData(c.req, round, order)
			if ranked != nil {
				ranked(&data)
			}
			if want := execute(t, sy.prompt.Template, data); got != want {
				t.Errorf("arbiter prompt differs from the template's output (%d bytes, want %d)", len(got), len(want))
			}

			p, answers, order, labels := c.panelFor(t)
			got, err = p.renderPrompt(c.req, answers, order, labels)
			if err != nil {
				t.Fatal(err)
			}
			if want := execute(t, p.prompt.Template, judgeData(p.consortium, c.req, answers, order, labels)); got != want {
				t.Errorf("judge prompt differs from the template's output (%d bytes, want %d)", len(got), len(want))
			}
		})
	}
}

// TestPromptSize: the buffer a default prompt is rendered into is large
// enough from the start, so that rendering allocates it once.
func TestPromptSize(t *testing.T) {
	for _, c := range promptCases(t) {
		if c.custom != "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			sy, round, order, ranked := c.arbiterFor(t)
			data := sy.promptData(c.req, round, order)
			if ranked != nil {
				ranked(&data)
			}
			if n, room := len(execute(t, sy.prompt.Template, data)), sy.prompt.size+data.size(); n > room {
				t.Errorf("arbiter prompt of %d bytes, buffer of %d", n, room)
			}
			p, answers, jorder, labels := c.panelFor(t)
			jdata := judgeData(p.consortium, c.req, answers, jorder, labels)
			if n, room := len(execute(t, p.prompt.Template, jdata)), p.prompt.size+jdata.size(); n > room {
				t.Errorf("judge prompt of %d bytes, buffer of %d", n, room)
			}
		})
	}
}

// TestPromptError: a template that fails while it runs is an error, as
// before, and leaves nothing behind for the next prompt.
func TestPromptError(t *testing.T) {
	c := promptCases(t)[0]
	c.custom = "{{.Request}}{{index .Responses 9}}"
	sy, round, order, ranked := c.arbiterFor(t)
	if _, err := sy.renderPrompt(c.req, round, order, ranked); err == nil {
		t.Error("an arbiter template indexing past the answers rendered")
	}
	p, answers, jorder, labels := c.panelFor(t)
	if _, err := p.renderPrompt(c.req, answers, jorder, labels); err == nil {
		t.Error("a judge template indexing past the answers rendered")
	}
	c.custom = ""
	sy, round, order, ranked = c.arbiterFor(t)
	got, err := sy.renderPrompt(c.req, round, order, ranked)
	if err != nil || !strings.HasPrefix(got, "You are the arbiter") {
		t.Errorf("the next prompt: %v, %.40q", err, got)
	}
}

// BenchmarkPrompt renders the default arbiter prompt and the default
// judge prompt for three typical answers, as every synthesize round and
// every judge of a rank round does.
func BenchmarkPrompt(b *testing.B) {
	c := promptCases(b)[0]
	sy, round, order, _ := c.arbiterFor(b)
	p, answers, jorder, labels := c.panelFor(b)
	for _, bc := range []struct {
		name   string
		render func() (string, error)
	}{
		{"arbiter", func() (string, error) { return sy.renderPrompt(c.req, round, order, nil) }},
		{"judge", func() (string, error) { return p.renderPrompt(c.req, answers, jorder, labels) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.render(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
