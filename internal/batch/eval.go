package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"text/template"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// Caller makes a chat call with one of a provider's models:
// *upstream.Provider satisfies it.
type Caller interface {
	Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error)
}

// Judge is a model that ranks eval's answers blind.
type Judge struct {
	// Ref is the judge's provider/model; Model the provider's own name
	// for it, which Caller is called with.
	Ref    string
	Model  string
	Caller Caller
}

// Eval answers every item with each member on its own and with the
// consortium, and scores the answers (eval).
type Eval struct {
	Job
	// Consortium is the consortium evaluated.
	Consortium Consortium
	// Members answer each item on their own, named by Name(): each member
	// model alone (or, for a cascade, each tier).
	Members []Consortium
	// Judges rank the answers of items without a reference. None: such
	// items are refused before any call.
	Judges []Judge
	// JudgePrompt is the judges' prompt template (consortia.JudgeData);
	// if empty, consortia.DefaultJudgePrompt.
	JudgePrompt string
	// Match is how an answer is compared to a reference: exact (the
	// default when empty), contains, numeric or regex.
	Match string
	// Extract is the vote consortium's extract: what its first group (or
	// whole match) reads from an answer is what exact, contains and
	// numeric compare, as vote compares it; an answer it does not match
	// is compared whole. Nil compares whole answers.
	Extract *regexp.Regexp
}

// evalLine is one item in eval's --out.
type evalLine struct {
	ID        string       `json:"id"`
	Reference *string      `json:"reference,omitempty"`
	ScoredBy  string       `json:"scored_by"` // "match:MODE" or "judges"
	Answers   []evalAnswer `json:"answers"`
	Judges    []evalJudge  `json:"judges,omitempty"`
}

// evalAnswer is one model's (or the consortium's) answer to an item.
type evalAnswer struct {
	Model      string          `json:"model"`
	Consortium bool            `json:"consortium,omitempty"`
	Answer     string          `json:"answer"`
	Score      float64         `json:"score"`
	LatencyMs  int64           `json:"latency_ms"`
	Usage      json.RawMessage `json:"usage"`
	Label      string          `json:"label,omitempty"` // what the judges saw it as
}

// evalJudge is one judge's ranking of an item's answers.
type evalJudge struct {
	Model   string   `json:"model"`
	Ranking []string `json:"ranking,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Row is one line of eval's table: a model, or the consortium.
type Row struct {
	Model      string
	Consortium bool
	// Score is the mean score over the items, with its 95% bootstrap
	// interval.
	Score float64
	CI95  [2]float64
	// LatencyMs is the mean latency; Tokens the total tokens.
	LatencyMs float64
	Tokens    int
	// CostUSD is the total cost, nil when any answer's cost is unknown.
	CostUSD *float64
}

// EvalReport is what an eval found: the job's report, and the table over
// every item scored (earlier runs' included).
type EvalReport struct {
	Report
	Items, ByMatch, ByJudges int
	Rows                     []Row
}

// Run evaluates the items out has not finished (out may be an Output
// with no file: OpenOutput is not needed without --out) and returns the
// table over every scored item.
func (e *Eval) Run(ctx context.Context, items []Item, out *Output) (*EvalReport, error) {
	match, err := newMatcher(e.Match)
	if err != nil {
		return nil, err
	}
	mode := e.Match
	if mode == "" {
		mode = "exact"
	}
	problems := checkReferences(mode, items)
	if len(e.Judges) == 0 {
		for _, it := range items {
			if it.Reference == nil {
				problems = append(problems, fmt.Sprintf("line %d: no reference, and consortium %s has no judges or arbiter to judge it", it.Line, e.Consortium.Name()))
			}
		}
	}
	if len(problems) > 0 {
		return nil, &InputError{Path: "the input", Problems: problems}
	}
	prompt := e.JudgePrompt
	if prompt == "" {
		prompt = consortia.DefaultJudgePrompt
	}
	tmpl, err := template.New("judge").Option("missingkey=error").Parse(prompt)
	if err != nil {
		return nil, fmt.Errorf("judge prompt: %w", err)
	}
	if out == nil {
		out = newMemoryOutput()
	}
	names := e.names()
	var (
		mu    sync.Mutex
		lines []evalLine
	)
	for n, raw := range out.Lines {
		var l evalLine
		if err := json.Unmarshal(raw, &l); err != nil || !sameModels(l.Answers, names) {
			return nil, fmt.Errorf("line %d of the output is not an eval of %s by %s: move the file away or choose another --out", n+1, e.Consortium.Name(), strings.Join(names, ", "))
		}
		lines = append(lines, l)
	}
	rep, err := e.run(ctx, "eval", items, out, func(ctx context.Context, it Item) (any, error) {
		l, err := e.item(ctx, it, mode, match, tmpl)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		lines = append(lines, *l)
		mu.Unlock()
		return l, nil
	})
	if rep == nil {
		return nil, err
	}
	return e.table(*rep, lines, names), err
}

// names are the table's models: the members, then the consortium.
func (e *Eval) names() []string {
	var names []string
	for _, m := range e.Members {
		names = append(names, m.Name())
	}
	return append(names, e.Consortium.Name())
}

func sameModels(answers []evalAnswer, names []string) bool {
	if len(answers) != len(names) {
		return false
	}
	for i, a := range answers {
		if a.Model != names[i] {
			return false
		}
	}
	return true
}

// item answers one item with every member and the consortium at once,
// then scores the answers.
func (e *Eval) item(ctx context.Context, it Item, mode string, match matcher, tmpl *template.Template) (*evalLine, error) {
	runners := append(append([]Consortium(nil), e.Members...), e.Consortium)
	answers := make([]evalAnswer, len(runners))
	errs := make([]error, len(runners))
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Go(func() {
			res, err := r.Run(ctx, &openai.ChatRequest{Model: r.Name(), Messages: it.Messages}, nil)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", r.Name(), err)
				return
			}
			usage, _ := json.Marshal(res.Usage)
			answers[i] = evalAnswer{Model: r.Name(), Consortium: i == len(runners)-1, Answer: res.Synthesis, LatencyMs: res.Run.DurationMs, Usage: usage}
		})
	}
	wg.Wait()
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return nil, errors.New(strings.Join(failed, "; "))
	}
	l := &evalLine{ID: it.ID, Reference: it.Reference, Answers: answers}
	if it.Reference != nil {
		l.ScoredBy = "match:" + mode
		for i := range answers {
			if match(e.extract(answers[i].Answer, mode), *it.Reference) {
				answers[i].Score = 1
			}
		}
		return l, nil
	}
	l.ScoredBy = "judges"
	return l, e.judge(ctx, it, l, tmpl)
}

// extract is what --match compares of an answer: the part Extract reads,
// except for regex, which searches the answer as written.
func (e *Eval) extract(answer, mode string) string {
	if e.Extract == nil || mode == "regex" {
		return answer
	}
	m := e.Extract.FindStringSubmatch(answer)
	if m == nil {
		return answer
	}
	return m[min(1, len(m)-1)]
}

// judge has every judge rank the item's answers blind, in an order drawn
// from the item's id, under labels A, B ...; an answer's score is its
// mean normalized Borda points over the judges that placed it: (k-1-i) /
// (k-1) at 0-based place i of k. A judge's placements of its own model's
// answer are dropped, as the consortium's judges do.
func (e *Eval) judge(ctx context.Context, it Item, l *evalLine, tmpl *template.Template) error {
	n := len(l.Answers)
	h := fnv.New64a()
	h.Write([]byte(it.ID))
	order := rand.New(rand.NewPCG(h.Sum64(), 0)).Perm(n) // order[k]: the answer shown k-th
	labels := make([]string, n)
	byLabel := map[string]int{}
	data := consortia.JudgeData{Consortium: e.Consortium.Name()}
	for k, i := range order {
		labels[k] = label(k)
		byLabel[labels[k]] = i
		l.Answers[i].Label = labels[k]
		data.Responses = append(data.Responses, consortia.Response{Label: labels[k], Text: l.Answers[i].Answer})
	}
	last := len(it.Messages) - 1
	for last > 0 && it.Messages[last].Role != "user" {
		last--
	}
	for _, m := range it.Messages[:last] {
		data.Conversation = append(data.Conversation, consortia.Turn{Role: m.Role, Text: m.Content.String()})
	}
	data.Request = it.Messages[last].Content.String()
	data.RankingExample = strings.Join(labels, " > ")
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("judge prompt: %w", err)
	}
	prompt := b.String()

	rankings := make([][]string, len(e.Judges))
	l.Judges = make([]evalJudge, len(e.Judges))
	var wg sync.WaitGroup
	for ji, j := range e.Judges {
		wg.Go(func() {
			l.Judges[ji].Model = j.Ref
			zero := 0.0
			cc, err := j.Caller.Chat(ctx, j.Model, &openai.ChatRequest{Model: j.Model, Temperature: &zero,
				Messages: []openai.Message{{Role: "user", Content: openai.TextContent(prompt)}}})
			if err != nil {
				l.Judges[ji].Error = err.Error()
				return
			}
			var reply string
			if len(cc.Choices) > 0 && cc.Choices[0].Message.Content != nil {
				reply = *cc.Choices[0].Message.Content
			}
			r := parseRanking(reply, labels)
			if r == nil {
				l.Judges[ji].Error = "no usable <ranking> naming every label once"
				return
			}
			l.Judges[ji].Ranking, rankings[ji] = r, r
		})
	}
	wg.Wait()

	sums := make([]float64, n)
	counts := make([]int, n)
	for ji, r := range rankings {
		var kept []int
		for _, lab := range r {
			i := byLabel[lab]
			if !l.Answers[i].Consortium && l.Answers[i].Model == e.Judges[ji].Ref {
				continue
			}
			kept = append(kept, i)
		}
		if len(kept) < 2 {
			continue
		}
		for place, i := range kept {
			sums[i] += float64(len(kept)-1-place) / float64(len(kept)-1)
			counts[i]++
		}
	}
	scored := false
	for i := range l.Answers {
		if counts[i] > 0 {
			l.Answers[i].Score = round(sums[i]/float64(counts[i]), 6)
			scored = true
		}
	}
	if !scored {
		var why []string
		for _, j := range l.Judges {
			why = append(why, j.Model+": "+j.Error)
		}
		return fmt.Errorf("no judge gave a usable ranking (%s)", strings.Join(why, "; "))
	}
	return nil
}

// label is the k-th label: A ... Z, then AA, AB ...
func label(k int) string {
	if k < 26 {
		return string(rune('A' + k))
	}
	return string(rune('A'+k/26-1)) + string(rune('A'+k%26))
}

// parseRanking reads the last <ranking>...</ranking> of a judge's reply:
// labels separated by ">", ",", ";" or new lines, each perhaps written
// "Response B" or numbered. It returns nil unless every label is named
// exactly once.
func parseRanking(reply string, labels []string) []string {
	lower := strings.ToLower(reply)
	open := strings.LastIndex(lower, "<ranking>")
	if open < 0 {
		return nil
	}
	body := reply[open+len("<ranking>"):]
	if end := strings.Index(strings.ToLower(body), "</ranking>"); end >= 0 {
		body = body[:end]
	}
	want := map[string]bool{}
	for _, l := range labels {
		want[l] = true
	}
	var r []string
	for item := range strings.FieldsFuncSeq(body, func(c rune) bool { return c == ',' || c == '>' || c == ';' || c == '\n' }) {
		item = strings.TrimSpace(strings.Trim(strings.TrimSpace(item), "*.:()[]"))
		if len(item) > len("response") && strings.EqualFold(item[:len("response")], "response") {
			item = strings.TrimSpace(item[len("response"):])
		}
		if d := strings.IndexAny(item, ".)"); d > 0 && strings.Trim(item[:d], "0123456789") == "" {
			item = strings.TrimSpace(item[d+1:])
		}
		if !want[item] {
			return nil
		}
		want[item] = false
		r = append(r, item)
	}
	if len(r) != len(labels) {
		return nil
	}
	return r
}

// table sums the lines into one row per model and one for the consortium.
func (e *Eval) table(rep Report, lines []evalLine, names []string) *EvalReport {
	er := &EvalReport{Report: rep, Items: len(lines)}
	scores := make([][]float64, len(lines))
	rows := make([]Row, len(names))
	costKnown := make([]bool, len(names))
	for c, name := range names {
		rows[c] = Row{Model: name, Consortium: c == len(names)-1}
		costKnown[c] = true
	}
	for i, l := range lines {
		if l.ScoredBy == "judges" {
			er.ByJudges++
		} else {
			er.ByMatch++
		}
		scores[i] = make([]float64, len(names))
		for c, a := range l.Answers {
			scores[i][c] = a.Score
			rows[c].Score += a.Score
			rows[c].LatencyMs += float64(a.LatencyMs)
			var u struct {
				TotalTokens int      `json:"total_tokens"`
				CostUSD     *float64 `json:"cost_usd"`
			}
			_ = json.Unmarshal(a.Usage, &u)
			rows[c].Tokens += u.TotalTokens
			if u.CostUSD == nil {
				costKnown[c] = false
			} else {
				cost := *u.CostUSD
				if rows[c].CostUSD != nil {
					cost += *rows[c].CostUSD
				}
				rows[c].CostUSD = &cost
			}
		}
	}
	ci := bootstrap(scores, len(names))
	for c := range rows {
		if n := float64(len(lines)); n > 0 {
			rows[c].Score /= n
			rows[c].LatencyMs /= n
		}
		rows[c].CI95 = ci[c]
		if !costKnown[c] {
			rows[c].CostUSD = nil
		}
	}
	er.Rows = rows
	return er
}

// WriteTable prints the table: one row per model, then the consortium.
func (r *EvalReport) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tscore\t95% CI\tlatency_ms\ttokens\tcost_usd")
	for _, row := range r.Rows {
		name := row.Model
		if row.Consortium {
			name += " (consortium)"
		}
		cost := "-"
		if row.CostUSD != nil {
			cost = fmt.Sprintf("%.4f", *row.CostUSD)
		}
		fmt.Fprintf(tw, "%s\t%.3f\t[%.3f, %.3f]\t%.0f\t%d\t%s\n", name, row.Score, row.CI95[0], row.CI95[1], row.LatencyMs, row.Tokens, cost)
	}
	tw.Flush()
}
