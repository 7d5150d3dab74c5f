package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// fakeConsortium answers with answer(prompt), or fails for prompts fail
// names.
type fakeConsortium struct {
	name   string
	answer func(prompt string) string
	fail   func(prompt string) bool
	calls  atomic.Int64
}

func (f *fakeConsortium) Name() string { return f.name }

func (f *fakeConsortium) Run(ctx context.Context, req *openai.ChatRequest, _ func(string)) (*consortia.Result, error) {
	f.calls.Add(1)
	prompt := req.Messages[len(req.Messages)-1].Content.String()
	if f.fail != nil && f.fail(prompt) {
		return nil, errors.New("status 500 after 3 attempts")
	}
	a := f.answer(prompt)
	u := openai.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}
	return &consortia.Result{Synthesis: a, Usage: u, Run: &consortia.Run{ID: "run_x", Consortium: f.name, Strategy: "vote", DurationMs: 20, Usage: u}}, nil
}

func items(t *testing.T, lines ...string) []Item {
	t.Helper()
	its, err := Read(strings.NewReader(strings.Join(lines, "\n")), "in.jsonl", false)
	if err != nil {
		t.Fatal(err)
	}
	return its
}

func TestMatch(t *testing.T) {
	tests := []struct {
		mode, answer, ref string
		want              bool
	}{
		{"exact", "  Paris. ", "paris", true},
		{"exact", "Paris is it", "paris", false},
		{"contains", "The answer is PARIS, of course", "paris", true},
		{"numeric", "17 + 25 = 42.\nAnswer: 42", "42", true},
		{"numeric", "Answer: 1,024", "1024", true},
		{"numeric", "Answer: 41", "42", false},
		{"numeric", "no number", "42", false},
		{"regex", "Answer: 42", `^Answer:\s*42$`, true},
		{"regex", "Answer: 421", `^Answer:\s*42$`, false},
	}
	for _, tt := range tests {
		m, err := newMatcher(tt.mode)
		if err != nil {
			t.Fatal(err)
		}
		if got := m(tt.answer, tt.ref); got != tt.want {
			t.Errorf("%s(%q, %q) = %v", tt.mode, tt.answer, tt.ref, got)
		}
	}
	if _, err := newMatcher("fuzzy"); err == nil {
		t.Error("fuzzy accepted")
	}
}

func TestBootstrap(t *testing.T) {
	scores := make([][]float64, 200)
	for i := range scores {
		scores[i] = []float64{float64(i % 2), 1}
	}
	ci := bootstrap(scores, 2)
	if ci[0][0] > 0.5 || ci[0][1] < 0.5 || ci[0][1]-ci[0][0] > 0.2 || ci[0][0] < 0.38 {
		t.Errorf("interval of a mean of 0.5 over 200 items: %v", ci[0])
	}
	if ci[1] != [2]float64{1, 1} {
		t.Errorf("a constant's interval %v", ci[1])
	}
	if again := bootstrap(scores, 2); again[0] != ci[0] {
		t.Errorf("not deterministic: %v, %v", ci[0], again[0])
	}
}

func TestEvalByReference(t *testing.T) {
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`{"id":"q%d","prompt":"What is %d + 1?","reference":"%d"}`, i, i, i+1))
	}
	right := func(p string) string {
		var n int
		fmt.Sscanf(p, "What is %d + 1?", &n)
		return fmt.Sprintf("It is\nAnswer: %d", n+1)
	}
	wrongOften := func(p string) string {
		if len(p)%3 == 0 {
			return "Answer: 0"
		}
		return right(p)
	}
	cons := &fakeConsortium{name: "best", answer: right}
	e := &Eval{Consortium: cons, Members: []Consortium{&fakeConsortium{name: "p/a", answer: wrongOften}, &fakeConsortium{name: "p/b", answer: right}}, Match: "numeric"}
	out := filepath.Join(t.TempDir(), "eval.jsonl")
	o, err := OpenOutput(out, false)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.Run(context.Background(), items(t, lines...), o)
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Items != 40 || rep.ByMatch != 40 || len(rep.Rows) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if r := rep.Rows[2]; !r.Consortium || r.Model != "best" || r.Score != 1 || r.Tokens != 600 || r.LatencyMs != 20 || r.CostUSD != nil {
		t.Errorf("consortium row %+v", r)
	}
	if r := rep.Rows[0]; r.Score >= 1 || r.CI95[0] > r.Score || r.CI95[1] < r.Score {
		t.Errorf("p/a row %+v", r)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "best (consortium)  1.000  [1.000, 1.000]") {
		t.Errorf("table:\n%s", b.String())
	}

	// A rerun skips every item and reports over all of them.
	o, _ = OpenOutput(out, false)
	before := cons.calls.Load()
	rep2, err := e.Run(context.Background(), items(t, lines...), o)
	o.Close()
	if err != nil || rep2.Skipped != 40 || rep2.Items != 40 || cons.calls.Load() != before || rep2.Rows[0].Score != rep.Rows[0].Score {
		t.Errorf("rerun %+v, %v", rep2, err)
	}
	// Another consortium's eval is not resumed from this file.
	e2 := &Eval{Consortium: &fakeConsortium{name: "other", answer: right}, Match: "numeric"}
	o, _ = OpenOutput(out, false)
	defer o.Close()
	if _, err := e2.Run(context.Background(), items(t, lines...), o); err == nil || !strings.Contains(err.Error(), "not an eval of other") {
		t.Errorf("foreign file: %v", err)
	}
}

func TestEvalFailures(t *testing.T) {
	cons := &fakeConsortium{name: "c", answer: func(string) string { return "4" }, fail: func(p string) bool { return p == "bad" }}
	e := &Eval{Consortium: cons, Match: "exact", Job: Job{Concurrency: 2}}
	out := filepath.Join(t.TempDir(), "eval.jsonl")
	o, _ := OpenOutput(out, false)
	rep, err := e.Run(context.Background(), items(t, `{"id":"a","prompt":"2+2","reference":"4"}`, `{"id":"b","prompt":"bad","reference":"4"}`), o)
	o.Close()
	if err != nil || rep.Items != 1 || len(rep.Failures) != 1 || rep.Failures[0].ID != "b" || rep.Failures[0].Line != 2 {
		t.Fatalf("%+v, %v", rep, err)
	}
	if data, _ := os.ReadFile(ErrorsPath(out)); !strings.Contains(string(data), `"id":"b"`) {
		t.Errorf("errors file %q", data)
	}
	// Items without a reference need judges.
	if _, err := e.Run(context.Background(), items(t, `{"prompt":"x"}`), nil); err == nil || !strings.Contains(err.Error(), "no judges") {
		t.Errorf("no judges: %v", err)
	}
	if _, err := (&Eval{Consortium: cons, Match: "regex"}).Run(context.Background(), items(t, `{"prompt":"x","reference":"("}`), nil); err == nil || !strings.Contains(err.Error(), "line 1: reference is not a regular expression") {
		t.Errorf("bad regex: %v", err)
	}
}

// judgeCaller ranks answers that say "good" first, reading the labels
// from the judge prompt.
type judgeCaller struct{ prompts atomic.Int64 }

func (j *judgeCaller) Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	j.prompts.Add(1)
	p := req.Messages[0].Content.String()
	var good, bad []string
	for _, part := range strings.Split(p, "### Response ")[1:] {
		lab, text, _ := strings.Cut(part, "\n")
		if strings.Contains(text, "good") {
			good = append(good, lab)
		} else {
			bad = append(bad, lab)
		}
	}
	reply := "<critique>fine</critique>\n<ranking>" + strings.Join(append(good, bad...), " > ") + "</ranking>"
	return &openai.ChatCompletion{Choices: []openai.Choice{{Message: openai.ResponseMessage{Role: "assistant", Content: &reply}}}}, nil
}

func TestEvalJudgesBlind(t *testing.T) {
	cons := &fakeConsortium{name: "c", answer: func(string) string { return "a good answer" }}
	judge := &judgeCaller{}
	e := &Eval{
		Consortium: cons,
		Members:    []Consortium{&fakeConsortium{name: "p/weak", answer: func(string) string { return "meh" }}, &fakeConsortium{name: "p/judge", answer: func(string) string { return "also good" }}},
		Judges:     []Judge{{Ref: "p/judge", Model: "judge", Caller: judge}},
	}
	rep, err := e.Run(context.Background(), items(t, `{"id":"1","prompt":"x"}`, `{"id":"2","prompt":"y"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ByJudges != 2 || judge.prompts.Load() != 2 {
		t.Fatalf("%+v; %d judge calls", rep, judge.prompts.Load())
	}
	// The judge's own model's answer is dropped: of the two left, the
	// consortium's (good) beats p/weak's.
	if rep.Rows[2].Score != 1 || rep.Rows[0].Score != 0 || rep.Rows[1].Score != 0 {
		t.Errorf("rows %+v", rep.Rows)
	}
}

func TestParseRanking(t *testing.T) {
	labels := []string{"A", "B", "C"}
	for reply, want := range map[string]string{
		"<ranking>C > A > B</ranking>":                   "C A B",
		"x <RANKING>Response B, Response A, C</RANKING>": "B A C",
		"<ranking>1. A\n2. C\n3. B</ranking>":            "A C B",
		"<ranking>A > B</ranking>":                       "",
		"<ranking>A > B > B</ranking>":                   "",
		"no tags":                                        "",
	} {
		if got := strings.Join(parseRanking(reply, labels), " "); got != want {
			t.Errorf("%q: %q; want %q", reply, got, want)
		}
	}
}

func TestGenerate(t *testing.T) {
	cons := &fakeConsortium{name: "c", answer: func(p string) string { return "answer to " + p }, fail: func(p string) bool { return p == "bad" }}
	its := items(t, `{"id":"a","prompt":"one"}`, `{"id":"b","prompt":"bad"}`, `{"id":"c","messages":[{"role":"user","content":"three"}]}`)
	for _, openAI := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "gen.jsonl")
		g := &Generate{Consortium: cons, OpenAI: openAI}
		o, _ := OpenOutput(out, openAI)
		rep, err := g.Run(context.Background(), its, o)
		o.Close()
		if err != nil || rep.Done != 2 || len(rep.Failures) != 1 {
			t.Fatalf("openai %v: %+v, %v", openAI, rep, err)
		}
		data, _ := os.ReadFile(out)
		if n := strings.Count(string(data), "\n"); n != 2 {
			t.Errorf("openai %v: %d lines", openAI, n)
		}
		if !strings.Contains(string(data), `{"role":"assistant","content":"answer to one"}`) {
			t.Errorf("openai %v: %s", openAI, data)
		}
		if strings.Contains(string(data), `"consortium"`) == openAI {
			t.Errorf("openai %v: consortium object present %v", openAI, !openAI)
		}
		// The rerun retries the failure only.
		cons.fail = nil
		o, _ = OpenOutput(out, openAI)
		rep, err = g.Run(context.Background(), its, o)
		o.Close()
		if err != nil || rep.Done != 1 || rep.Skipped != 2 {
			t.Errorf("openai %v rerun: %+v, %v", openAI, rep, err)
		}
		if _, err := os.Stat(ErrorsPath(out)); !os.IsNotExist(err) {
			t.Errorf("errors file left after a clean run")
		}
		cons.fail = func(p string) bool { return p == "bad" }
	}
}

// TestJobStop: once Stop closes, no new item starts, and those in flight
// are written.
func TestJobStop(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf(`{"id":"%d","prompt":"p%d"}`, i, i))
	}
	out := filepath.Join(t.TempDir(), "gen.jsonl")
	o, _ := OpenOutput(out, false)
	j := Job{Concurrency: 2, Stop: stop}
	done := make(chan *Report)
	go func() {
		rep, _ := j.run(context.Background(), "t", items(t, lines...), o, func(ctx context.Context, it Item) (any, error) {
			started <- struct{}{}
			<-release
			return map[string]string{"id": it.ID}, nil
		})
		done <- rep
	}()
	<-started
	<-started
	close(stop)
	close(release)
	rep := <-done
	o.Close()
	if !rep.Interrupted || rep.Done != 2 {
		t.Errorf("%+v; want 2 done, interrupted", rep)
	}
	data, _ := os.ReadFile(out)
	if strings.Count(string(data), "\n") != 2 {
		t.Errorf("file %q", data)
	}
}

// TestEvalEmptyReference: an empty reference is refused with its line,
// not matched (contains and regex would score every answer 1).
func TestEvalEmptyReference(t *testing.T) {
	its := items(t, `{"id":"a","prompt":"2+2?","reference":"4"}`, `{"id":"b","prompt":"3+3?","reference":"  "}`)
	for _, mode := range Matches {
		cons := &fakeConsortium{name: "c", answer: func(string) string { return "4" }}
		e := &Eval{Consortium: cons, Match: mode}
		_, err := e.Run(context.Background(), its, nil)
		var ie *InputError
		if !errors.As(err, &ie) || len(ie.Problems) != 1 || !strings.Contains(ie.Problems[0], "line 2: empty reference") {
			t.Errorf("%s: %v; want line 2's empty reference refused", mode, err)
		}
		if cons.calls.Load() != 0 {
			t.Errorf("%s: %d calls before refusing", mode, cons.calls.Load())
		}
	}
}
