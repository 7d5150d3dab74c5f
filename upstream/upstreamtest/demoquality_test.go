package upstreamtest

import (
	"bufio"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/consortium-dev/consortium/consortia"
)

// demoMembers are the demo's members, best first.
var demoMembers = []string{"alpha", "beta", "gamma"}

// demoSystem is demo-vote's system prompt (internal/config's
// demoAnswerLine).
const demoSystem = `End your answer with a last line "Answer: " followed by your short answer.`

var answerLine = regexp.MustCompile(`(?m)^Answer:\s*(.+?)\s*$`)

func readArith(t *testing.T) []arithItem {
	t.Helper()
	f, err := os.Open(filepath.Join(examplesDir, "arith.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []arithItem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it arithItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	return items
}

func readPrompts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir, "prompts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// answerOf is model's answer to question, asked as demo-vote asks it.
func answerOf(t *testing.T, model, question string) string {
	return Demo()(demoChat(t, model, "system", demoSystem, "user", question)).Content
}

// TestDemoArithmetic: on examples/arith.jsonl every demo member errs at
// about its scripted rate, the same with or without demo-vote's system
// prompt, and a majority of the three (the tie of three different results
// going to alpha, as vote's tie_break: first does) beats alpha alone.
func TestDemoArithmetic(t *testing.T) {
	items := readArith(t)
	wrong := map[string]int{}
	majority := 0
	for _, it := range items {
		q, ok := parseArith(it.Prompt)
		if !ok || q.result() != it.Reference {
			t.Fatalf("%s: %q does not parse to %s", it.ID, it.Prompt, it.Reference)
		}
		votes := map[string]int{}
		var first string
		for _, m := range demoMembers {
			content := answerOf(t, m, it.Prompt)
			line := answerLine.FindStringSubmatch(content)
			if line == nil {
				t.Fatalf("%s on %s: no answer line in %q", m, it.ID, content)
			}
			alone := Demo()(demoChat(t, m, "user", it.Prompt)).Content
			if got := resultOf(alone); got != line[1] || strings.Contains(alone, "Answer:") {
				t.Fatalf("%s on %s: alone it says %q (%q), with the system prompt %q", m, it.ID, got, alone, line[1])
			}
			if line[1] != it.Reference {
				wrong[m]++
			}
			votes[line[1]]++
			if first == "" {
				first = line[1]
			}
		}
		winner, most := first, votes[first]
		for answer, n := range votes {
			if n > most {
				winner, most = answer, n
			}
		}
		if winner == it.Reference {
			majority++
		}
	}
	n := float64(len(items))
	for _, m := range demoMembers {
		rate := float64(wrong[m]) / n
		t.Logf("%s: %d of %d wrong (%.1f%%, scripted %.0f%%)", m, wrong[m], len(items), 100*rate, 100*DemoErrorRates[m])
		if math.Abs(rate-DemoErrorRates[m]) > 0.05 {
			t.Errorf("%s errs on %.1f%% of the items, scripted %.0f%%", m, 100*rate, 100*DemoErrorRates[m])
		}
	}
	alpha := 1 - float64(wrong["alpha"])/n
	vote := float64(majority) / n
	t.Logf("majority of three: %d of %d right (%.1f%%); alpha alone %.1f%%", majority, len(items), 100*vote, 100*alpha)
	if vote < alpha+0.04 {
		t.Errorf("the majority is right on %.1f%% of the items, alpha alone on %.1f%%: want the majority ahead by 4 points", 100*vote, 100*alpha)
	}
}

// TestParseArith: the questions the demo computes, and some it does not.
func TestParseArith(t *testing.T) {
	for _, tc := range []struct{ question, op, result string }{
		{"What is 17 + 25?", "17 + 25", "42"},
		{"  compute 12 *  7. ", "12 * 7", "84"},
		{"How much is 144 divided by 12?", "144 / 12", "12"},
		{"What's 3 minus 10?", "3 - 10", "-7"},
		{"Calculate 7 / 2", "7 / 2", "3.5"},
		{"What is 6 x 7?", "6 * 7", "42"},
		{"Is 2^61-1 prime?", "", ""},
		{"Does 1+1 make 2?", "", ""},
		{"What is 5 / 0?", "", ""},
		{"What is 17 + 25 + 3?", "", ""},
	} {
		q, ok := parseArith(tc.question)
		if ok != (tc.op != "") || ok && (q.String() != tc.op || q.result() != tc.result) {
			t.Errorf("parseArith(%q) = %v %q %q, want %q %q", tc.question, ok, q, q.result(), tc.op, tc.result)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"So 17 + 25 = 42.", "42"},
		{"17 + 25 = 43.\n\nAnswer: 42", "42"},
		{"It is 3.5, roughly.", "3.5"},
		{"No idea.", ""},
	} {
		if got := resultOf(tc.text); got != tc.want {
			t.Errorf("resultOf(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

// judgePromptFor renders consortia's default judge prompt for question
// over answers, labelled A, B, C ... in the order given.
func judgePromptFor(t *testing.T, question string, answers []string) string {
	t.Helper()
	d := consortia.JudgeData{Consortium: "demo-rank", Request: question}
	var labels []string
	for i, a := range answers {
		l := string(rune('A' + i))
		labels = append(labels, l)
		d.Responses = append(d.Responses, consortia.Response{Label: l, Text: a})
	}
	d.RankingExample = strings.Join(labels, " > ")
	var b strings.Builder
	if err := template.Must(template.New("judge").Parse(consortia.DefaultJudgePrompt)).Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// arbiterPromptFor renders consortia's default arbiter prompt for question
// over answers, the last of two rounds.
func arbiterPromptFor(t *testing.T, question string, answers []string) string {
	t.Helper()
	d := consortia.PromptData{Consortium: "demo", Request: question, Round: 2, MaxRounds: 2, Threshold: 0.8}
	var labels []string
	for i, a := range answers {
		l := string(rune('A' + i))
		labels = append(labels, l)
		d.Responses = append(d.Responses, consortia.Response{Label: l, Text: a, Weight: 1})
	}
	d.RankingExample = strings.Join(labels, ", ")
	var b strings.Builder
	if err := template.Must(template.New("arbiter").Parse(consortia.DefaultPrompt)).Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var rankingTag = regexp.MustCompile(`<ranking>(.+)</ranking>`)

// rankedBy asks model to rank the members' answers to question (shown in
// the order of order, a permutation of demoMembers' indexes) as a judge
// or, for DemoArbiter, as the arbiter; it returns the members best first.
func rankedBy(t *testing.T, model, question string, answers []string, order []int) []string {
	t.Helper()
	shown := make([]string, len(order))
	for n, i := range order {
		shown[n] = answers[i]
	}
	prompt := judgePromptFor(t, question, shown)
	if model == DemoArbiter {
		prompt = arbiterPromptFor(t, question, shown)
	}
	reply := Demo()(demoChat(t, model, "user", prompt)).Content
	m := rankingTag.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("%s: no ranking in %q", model, reply)
	}
	var out []string
	for _, l := range regexp.MustCompile(`[A-Z]`).FindAllString(m[1], -1) {
		out = append(out, demoMembers[order[int(l[0]-'A')]])
	}
	if len(out) != len(order) {
		t.Fatalf("%s: ranking %q of %d answers", model, m[1], len(order))
	}
	return out
}

var demoRankers = append(slices.Clone(DemoJudges), DemoArbiter)

// TestDemoJudgesCorrectFirst: on the arithmetic items, the demo judges and
// the demo arbiter put every correct answer above every wrong one, blind;
// the arbiter's synthesis ends with the result of its best.
func TestDemoJudgesCorrectFirst(t *testing.T) {
	items := readArith(t)
	mixed := 0
	for n, it := range items {
		answers := make([]string, len(demoMembers))
		right := map[string]bool{}
		for i, m := range demoMembers {
			answers[i] = answerOf(t, m, it.Prompt)
			right[m] = resultOf(answers[i]) == it.Reference
		}
		if right["alpha"] && right["beta"] && right["gamma"] {
			continue
		}
		mixed++
		order := [][]int{{0, 1, 2}, {2, 0, 1}, {1, 2, 0}}[n%3]
		for _, model := range demoRankers {
			ranked := rankedBy(t, model, it.Prompt, answers, order)
			for i := 1; i < len(ranked); i++ {
				if right[ranked[i]] && !right[ranked[i-1]] {
					t.Errorf("%s on %q ranks %q, a wrong answer above a right one (%v)", model, it.Prompt, ranked, right)
				}
			}
		}
	}
	if mixed < 50 {
		t.Errorf("only %d items with a wrong answer", mixed)
	}
	// The arbiter's synthesis keeps the best answer's result.
	it := items[0]
	var answers []string
	for _, m := range demoMembers {
		answers = append(answers, answerOf(t, m, it.Prompt))
	}
	reply := Demo()(demoChat(t, DemoArbiter, "user", arbiterPromptFor(t, it.Prompt, answers))).Content
	syn := regexp.MustCompile(`(?s)<synthesis>(.+)</synthesis>`).FindStringSubmatch(reply)
	if syn == nil || resultOf(syn[1]) != it.Reference || !strings.Contains(syn[1], "demo") {
		t.Errorf("the arbiter on %q: %q", it.Prompt, reply)
	}
}

// TestDemoQualityOrder: on examples/prompts.txt, which the demo cannot
// compute, every demo judge and the demo arbiter rank alpha above beta
// above gamma more often than not, blind, while a weaker member now and
// then comes first, and the judges do not always agree.
func TestDemoQualityOrder(t *testing.T) {
	prompts := readPrompts(t)
	beats := map[string]map[[2]string]int{}
	disagree, upsets := 0, 0
	for n, p := range prompts {
		answers := make([]string, len(demoMembers))
		for i, m := range demoMembers {
			answers[i] = Demo()(demoChat(t, m, "user", p)).Content
		}
		order := [][]int{{0, 1, 2}, {2, 0, 1}, {1, 2, 0}, {2, 1, 0}}[n%4]
		var rankings [][]string
		for _, model := range demoRankers {
			ranked := rankedBy(t, model, p, answers, order)
			rankings = append(rankings, ranked)
			if beats[model] == nil {
				beats[model] = map[[2]string]int{}
			}
			for i := range ranked {
				for _, worse := range ranked[i+1:] {
					beats[model][[2]string{ranked[i], worse}]++
				}
			}
			if ranked[0] != "alpha" {
				upsets++
			}
		}
		if !slices.Equal(rankings[0], rankings[1]) {
			disagree++
		}
	}
	for _, model := range demoRankers {
		b := beats[model]
		t.Logf("%s over %d prompts: alpha>beta %d, beta>alpha %d; beta>gamma %d, gamma>beta %d; alpha>gamma %d, gamma>alpha %d",
			model, len(prompts), b[[2]string{"alpha", "beta"}], b[[2]string{"beta", "alpha"}], b[[2]string{"beta", "gamma"}],
			b[[2]string{"gamma", "beta"}], b[[2]string{"alpha", "gamma"}], b[[2]string{"gamma", "alpha"}])
		for _, pair := range [][2]string{{"alpha", "beta"}, {"beta", "gamma"}, {"alpha", "gamma"}} {
			if win, loss := b[pair], b[[2]string{pair[1], pair[0]}]; win < 3*loss/2 {
				t.Errorf("%s ranks %s above %s %d times, below %d times", model, pair[0], pair[1], win, loss)
			}
		}
	}
	t.Logf("the judges disagree on %d of %d prompts; someone other than alpha comes first %d times", disagree, len(prompts), upsets)
	if disagree == 0 || upsets == 0 {
		t.Errorf("judges disagree on %d prompts, alpha not first %d times: want some of each", disagree, upsets)
	}
}

func cosine(a, b []float64) float64 {
	var dot float64
	for i := range a {
		dot += a[i] * b[i]
	}
	return dot
}

// TestDemoEmbedding: the demo's vectors are unit vectors that reflect the
// text: a near-duplicate is nearer than a related prompt, which is nearer
// than an unrelated one.
func TestDemoEmbedding(t *testing.T) {
	base := "Explain photosynthesis to a ten-year-old."
	for _, tc := range []struct{ near, far string }{
		{"explain photosynthesis to a ten year old", "Explain volcanoes to a ten-year-old."},
		{"Please explain photosynthesis to a ten-year-old.", "Write a haiku about black holes."},
		{"Explain volcanoes to a ten-year-old.", "How do I make a vegetarian lasagna?"},
	} {
		b, near, far := demoEmbedding(base), demoEmbedding(tc.near), demoEmbedding(tc.far)
		if cn, cf := cosine(b, near), cosine(b, far); cn <= cf+0.1 {
			t.Errorf("cosine %.2f with %q, %.2f with %q", cn, tc.near, cf, tc.far)
		}
	}
	for _, s := range []string{"", "x", base} {
		v := demoEmbedding(s)
		if len(v) != DemoEmbeddingDims || math.Abs(cosine(v, v)-1) > 1e-9 {
			t.Errorf("%q: %d dims, norm² %v", s, len(v), cosine(v, v))
		}
	}
	if c := cosine(demoEmbedding("What is 17 + 25?"), demoEmbedding("Write a limerick about a cat who learns to code.")); math.Abs(c) > 0.3 {
		t.Errorf("unrelated prompts at cosine %.2f", c)
	}
}

// TestDemoEmbeddingsServed: POST /v1/embeddings to the demo answers a
// batch with one vector per input, each the input's demoEmbedding, in
// base64 too, with usage.
func TestDemoEmbeddingsServed(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.SetDefault(Demo())
	inputs := []string{"first text", "a second, longer text", "first text!"}
	for _, format := range []string{"float", "base64"} {
		body, _ := json.Marshal(map[string]any{"model": "alpha", "input": inputs, "encoding_format": format})
		resp, err := http.Post(s.URL+"/embeddings", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Data []struct {
				Index     int
				Embedding json.RawMessage
			}
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
				TotalTokens  int `json:"total_tokens"`
			} `json:"usage"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(out.Data) != len(inputs) {
			t.Fatalf("%s: %s, %v, %+v", format, resp.Status, err, out)
		}
		for i, d := range out.Data {
			want := demoEmbedding(inputs[i])
			var got string
			if format == "base64" {
				json.Unmarshal(d.Embedding, &got)
				if got != base64Floats(want) {
					t.Errorf("%s: input %d: not its demo embedding", format, i)
				}
				continue
			}
			var vec []float64
			if json.Unmarshal(d.Embedding, &vec); d.Index != i || !slices.Equal(vec, want) {
				t.Errorf("%s: input %d: index %d, not its demo embedding", format, i, d.Index)
			}
		}
		if out.Usage.PromptTokens != 8 || out.Usage.TotalTokens != 8 {
			t.Errorf("%s: usage %+v, want 8 tokens", format, out.Usage)
		}
	}
}

// FuzzDemoJudge: whatever answers a judge prompt shows (--demo answers
// any client's text), a demo judge ranks every label exactly once, and a
// member's answer to any question has its result last when it computes.
func FuzzDemoJudge(f *testing.F) {
	f.Add("What is 17 + 25?", "17 + 25 = 42.", "Answer: 41", "")
	f.Add("Compute 999999999 * 999999999", "### Response Z", "## The answers", "-1.5")
	f.Add("Why?", "\n### Response B\n", "<ranking>A</ranking>", "What is 3 / 0?")
	f.Fuzz(func(t *testing.T, question, a, b, c string) {
		prompt := judgePromptFor(t, question, []string{a, b, c})
		answers := judgedAnswers(prompt)
		demoRank("judge-2", prompt, answers)
		reply := Demo()(demoChat(t, "judge-1", "user", prompt)).Content
		m := rankingTag.FindStringSubmatch(reply)
		if m == nil {
			t.Fatalf("no ranking in %q", reply)
		}
		got := strings.Split(m[1], " > ")
		var want []string
		for _, a := range judgedAnswers(prompt) {
			want = append(want, a.label)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("ranking %q of labels %q", got, want)
		}
		if q, ok := parseArith(question); ok {
			answer := Demo()(demoChat(t, "gamma", "user", question)).Content
			if got := resultOf(answer); got != q.answer("gamma", question) {
				t.Fatalf("%q: the last number of %q is not gamma's result %q", question, answer, q.answer("gamma", question))
			}
		}
	})
}

func BenchmarkDemoEmbedding(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		demoEmbedding("Summarize the history of the Roman Empire in one paragraph, please.")
	}
}
