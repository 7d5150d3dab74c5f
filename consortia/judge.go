package consortia

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// Judging is what rank does each round and vote does to break a tie: a
// panel of judges ranks answers source-blind, and the rankings are
// tallied by normalized Borda (DESIGN.md, "Strategies").
//
//   - Every judge sees the conversation and the answers under opaque
//     labels (Response A, B ...), in an order of its own drawn at random,
//     never the models' names: a judge that prefers a position or a label
//     cannot make one member win every time.
//   - It is asked for a short critique, then <ranking>C > A > B</ranking>
//     (',' or '>' between labels), best first; judges run at temperature
//     0 unless their params set it. A ranking that does not name every
//     label shown exactly once is asked for once more; a second failure,
//     an error after the provider's retries, or no reply within
//     member_timeout drops the judge (recorded).
//   - A judge whose model wrote an answer (the member's model, or the
//     fallback that answered in its place) has its placements of such
//     answers dropped before scoring; a judge whose model wrote every
//     answer shown is not asked. A set of answers that no judge's ranking
//     scores (dropped judges, or too few answers left once a judge's own
//     are dropped) ends the run (ErrJudges).
//   - Scores: a judge that placed k ≥ 2 answers gives the answer at
//     0-based place i the points (k-1-i)/(k-1); an answer's score is the
//     weighted mean over the judges that scored it, so a dropped
//     placement neither helps nor hurts (an answer no judge scored has 0).
//     Ties go to the answer with more first places, then to the member
//     configured earlier.

// ErrJudges: no judge gave a usable ranking of a set of answers.
var ErrJudges = errors.New("no judge gave a usable ranking")

// DefaultJudgePrompt is the default judge prompt, a text/template that
// judge_prompt can replace. Its data is JudgeData.
//
//go:embed judge.tmpl
var DefaultJudgePrompt string

// JudgeData is what the judge prompt template is executed with.
type JudgeData struct {
	// Consortium is the consortium's name.
	Consortium string
	// Conversation is the conversation before the latest request, system
	// messages included, each turn's content as text.
	Conversation []Turn
	// Request is the text of the latest user message.
	Request string
	// Responses are the answers in this judge's order, labelled A, B ...
	// (Weight is not set: judges rank on content alone).
	Responses []Response
	// ResponseFormat says what JSON the client asked for ("" for none), as
	// PromptData.ResponseFormat.
	ResponseFormat string
	// RankingExample is an example ranking over the labels shown, such as
	// "C > A > B".
	RankingExample string
}

// CheckJudgePrompt reports a judge prompt template that does not parse or
// names a field JudgeData lacks; "" is the default prompt, which is fine.
// Validation calls it without building an engine.
func CheckJudgePrompt(text string) error {
	return checkTemplate("judge", text, DefaultJudgePrompt, sampleJudge)
}

// sampleJudge is the data a judge prompt template is tried with at start.
var sampleJudge = JudgeData{
	Consortium:     "sample",
	Conversation:   []Turn{{Role: "system", Text: "Be brief."}},
	Request:        "What is 2+2?",
	Responses:      []Response{{Label: "A", Text: "4"}, {Label: "B", Text: "Four."}},
	RankingExample: "B > A",
}

// JudgeReply is one judge's ranking of one set of answers, in the run
// record.
type JudgeReply struct {
	Model  string  `json:"model"`
	Weight float64 `json:"weight"`
	// Group names the answers ranked when a round ranks more than one set
	// (within_model_first: a model's ref in the first phase, "final" in
	// the second; vote: "tie").
	Group string `json:"group,omitempty"`
	// Reply is the judge's last reply as received; Rejected its first
	// one, when that ranking was not usable and the judge was asked again.
	Reply    string `json:"reply"`
	Rejected string `json:"rejected,omitempty"`
	Retries  int    `json:"retries"`
	// Ranking is the judge's ranking, best first, in the labels it saw;
	// RankedMembers the same as "provider/model#instance".
	Ranking       []string `json:"ranking,omitempty"`
	RankedMembers []string `json:"ranked_members,omitempty"`
	// Dropped are the placements dropped because the judge's model wrote
	// those answers, as "provider/model#instance".
	Dropped []string `json:"dropped,omitempty"`
	// Error says why the judge was dropped (or not asked); its ranking
	// then counts for nothing.
	Error     string        `json:"error,omitempty"`
	LatencyMs int64         `json:"latency_ms"`
	StartMs   int64         `json:"start_ms"` // when the call began, in ms from the start of the run
	Usage     *openai.Usage `json:"usage,omitempty"`

	ranked []int // the ranking as answer indexes, dropped placements included
}

// panel is the judges of a consortium and how they are asked.
type panel struct {
	consortium string
	judges     []judge
	prompt     promptTemplate
	timeout    time.Duration // member_timeout; 0: the provider's own bound
}

// judge is one judge: a model and its weight.
type judge struct {
	target
	weight float64
}

// newPanel builds the judges of s's configuration (or, when judges is
// given, those), with the consortium's judge prompt.
func newPanel(s setup, judges []Judge) (*panel, error) {
	p := &panel{consortium: s.name, timeout: s.cfg.MemberTimeout}
	for i, j := range judges {
		t, err := s.resolve(j.Model, j.Params)
		if err != nil {
			return nil, fmt.Errorf("judges[%d]: %w", i, err)
		}
		w := j.Weight
		if w == 0 {
			w = 1
		}
		p.judges = append(p.judges, judge{target: t, weight: w})
	}
	if err := CheckJudgePrompt(s.cfg.JudgePrompt); err != nil {
		return nil, fmt.Errorf("consortium %s: judge_prompt: %w", s.name, err)
	}
	p.prompt, _ = parseTemplate("judge", s.cfg.JudgePrompt, DefaultJudgePrompt)
	return p, nil
}

// ballot is one judge's usable ranking: answer indexes best first, its
// dropped placements removed.
type ballot struct {
	weight float64
	order  []int
}

// judgement is what a panel made of one set of answers.
type judgement struct {
	replies []JudgeReply
	ballots []ballot
	usage   openai.Usage
}

// rank asks every judge, at once, to rank the answers cands (indexes into
// answers, at least two). group names the set in the run record. It fails
// with ErrJudges when no judge gave a usable ranking: one that scores,
// placing two answers or more once the judge's own were dropped (a judge
// whose model wrote every answer is not asked); and with ctx's error when
// ctx ended.
func (p *panel) rank(ctx context.Context, req *openai.ChatRequest, answers []MemberAnswer, cands []int, group string) (judgement, error) {
	ctx = upstream.WithRole(ctx, "judge")
	replies := make([]JudgeReply, len(p.judges))
	ballots := make([]*ballot, len(p.judges))
	var wg sync.WaitGroup
	for i, j := range p.judges {
		replies[i] = JudgeReply{Model: j.ref, Weight: j.weight, Group: group}
		if !slices.ContainsFunc(cands, func(c int) bool { return writer(answers[c]) != j.ref }) {
			replies[i].Error = "not asked: its own model wrote every answer"
			continue
		}
		wg.Go(func() {
			ballots[i] = p.ask(ctx, j, req, answers, cands, &replies[i])
			notify(ctx, Event{Kind: EventJudge, Judge: &replies[i]})
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return judgement{}, err
	}
	jm := judgement{replies: replies}
	var why []string
	for i, r := range replies {
		if r.Usage != nil {
			jm.usage.Add(*r.Usage)
		}
		switch b := ballots[i]; {
		case b != nil && len(b.order) >= 2:
			jm.ballots = append(jm.ballots, *b)
		case b != nil:
			why = append(why, r.Model+": fewer than two answers left once its own were dropped")
		default:
			why = append(why, r.Model+": "+r.Error)
		}
	}
	if len(jm.ballots) == 0 {
		return jm, fmt.Errorf("consortium %s: %w (%s)", p.consortium, ErrJudges, strings.Join(why, "; "))
	}
	return jm, nil
}

// writer is the model that wrote an answer: the fallback that answered,
// or the member's model.
func writer(a MemberAnswer) string {
	if a.Fallback != "" {
		return a.Fallback
	}
	return a.Model
}

// ask asks one judge, filling rec, and returns its ballot, or nil when the
// judge is dropped.
func (p *panel) ask(ctx context.Context, j judge, req *openai.ChatRequest, answers []MemberAnswer, cands []int, rec *JudgeReply) *ballot {
	start := time.Now()
	rec.StartMs = startMs(ctx, start)
	defer func() { rec.LatencyMs = time.Since(start).Milliseconds() }()
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}

	// This judge's own order: labels say nothing of position in the
	// configuration, and no two judges share a bias toward one answer.
	order := slices.Clone(cands)
	rand.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
	labels := make([]string, len(order))
	for n := range order {
		labels[n] = label(n)
	}
	prompt, err := p.renderPrompt(req, answers, order, labels)
	if err != nil {
		rec.Error = "its prompt template failed: " + err.Error()
		return nil
	}
	jreq := &openai.ChatRequest{
		Messages:    []openai.Message{{Role: "user", Content: openai.TextContent(prompt)}},
		Temperature: new(0.0), // the judge's params, set over it, may change it
		Extra:       j.params,
	}
	for attempt := 0; ; attempt++ {
		reply, err := p.call(ctx, j, jreq, rec)
		if err != nil {
			switch {
			case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && p.timeout > 0:
				rec.Error = fmt.Sprintf("no ranking within member_timeout (%s)", p.timeout)
			default:
				rec.Error = describe(err)
			}
			return nil
		}
		rec.Reply = reply
		ranking := parseVerdict(reply).Ranking
		if isPermutation(ranking, labels) {
			return rec.fill(j, ranking, labels, order, answers)
		}
		if attempt == 1 {
			rec.Error = fmt.Sprintf("no usable ranking after a retry: it must name each of %s exactly once", strings.Join(labels, ", "))
			return nil
		}
		rec.Rejected, rec.Retries = reply, 1
		jreq.Messages = append(slices.Clone(jreq.Messages),
			openai.Message{Role: "assistant", Content: openai.TextContent(reply)},
			openai.Message{Role: "user", Content: openai.TextContent(reask(labels))})
	}
}

// renderPrompt renders a judge's prompt: the answers order, labelled
// labels.
func (p *panel) renderPrompt(req *openai.ChatRequest, answers []MemberAnswer, order []int, labels []string) (string, error) {
	data := judgeData(p.consortium, req, answers, order, labels)
	return p.prompt.render(data, data.size())
}

// call makes one judge call and adds its usage to rec.
func (p *panel) call(ctx context.Context, j judge, req *openai.ChatRequest, rec *JudgeReply) (string, error) {
	cc, err := j.caller.Chat(ctx, j.model, req)
	if err != nil {
		return "", err
	}
	if cc.Usage != nil {
		if rec.Usage == nil {
			rec.Usage = &openai.Usage{}
		}
		rec.Usage.Add(*cc.Usage)
	}
	if len(cc.Choices) == 0 || cc.Choices[0].Message.Content == nil {
		return "", nil
	}
	return *cc.Choices[0].Message.Content, nil
}

// fill records a usable ranking and returns its ballot, without the
// placements of the answers the judge's own model wrote.
func (rec *JudgeReply) fill(j judge, ranking, labels []string, order []int, answers []MemberAnswer) *ballot {
	b := &ballot{weight: j.weight}
	rec.Ranking = ranking
	for _, l := range ranking {
		i := order[slices.Index(labels, l)]
		name := fmt.Sprintf("%s#%d", answers[i].Model, answers[i].Instance)
		rec.RankedMembers = append(rec.RankedMembers, name)
		rec.ranked = append(rec.ranked, i)
		if writer(answers[i]) == j.ref {
			rec.Dropped = append(rec.Dropped, name)
			continue
		}
		b.order = append(b.order, i)
	}
	return b
}

// isPermutation reports whether ranking names every label exactly once.
// (parseRanking keeps each label once, so the lengths and membership
// decide.)
func isPermutation(ranking, labels []string) bool {
	if len(ranking) != len(labels) {
		return false
	}
	for _, l := range ranking {
		if !slices.Contains(labels, l) {
			return false
		}
	}
	return true
}

// reask is the user turn that asks a judge once more for a ranking.
func reask(labels []string) string {
	return fmt.Sprintf("Your reply has no usable ranking. The ranking must name each of %s exactly once, best first, inside the tags, for example <ranking>%s</ranking>. Reply again with your critique and the ranking.",
		strings.Join(labels, ", "), exampleRanking(labels))
}

// judgeData gathers a judge's template data: the answers order, labelled
// labels.
func judgeData(consortium string, req *openai.ChatRequest, answers []MemberAnswer, order []int, labels []string) JudgeData {
	d := JudgeData{Consortium: consortium, ResponseFormat: responseFormat(req)}
	d.Conversation, d.Request = conversation(req)
	d.Responses = slices.Grow(d.Responses, len(order))
	for n, i := range order {
		d.Responses = append(d.Responses, Response{Label: labels[n], Text: answers[i].Content})
	}
	d.RankingExample = exampleRanking(labels)
	return d
}

// size is about how many bytes the data adds to the template's text once
// rendered (see textLen).
func (d *JudgeData) size() int {
	return textLen(d.Conversation, d.Request, d.Responses) + len(d.ResponseFormat) + len(d.RankingExample)
}

// exampleRanking is an example ranking over labels: reversed, so that it
// does not suggest the order shown is the answer.
func exampleRanking(labels []string) string {
	rev := slices.Clone(labels)
	slices.Reverse(rev)
	return joinRanking(rev)
}

// joinRanking writes labels as a ranking, best first: "C > A > B".
func joinRanking(labels []string) string { return strings.Join(labels, " > ") }

// standing is one answer's place after a tally.
type standing struct {
	answer int     // index into the round's answers
	score  float64 // the weighted mean of its Borda points; 0 when unscored
	firsts int     // ballots that put it first
	scored bool    // some ballot placed it
}

// scoreEpsilon is how close two weighted means are to count as a tie:
// sums of products of weights differ in their last bits by the order of
// the terms.
const scoreEpsilon = 1e-9

// tally scores the answers cands from the ballots by normalized Borda and
// returns them best first. A ballot that places fewer than two answers
// scores none.
func tally(cands []int, ballots []ballot) []standing {
	sum := map[int]float64{}
	wsum := map[int]float64{}
	firsts := map[int]int{}
	for _, b := range ballots {
		k := len(b.order)
		if k < 2 {
			continue
		}
		for i, a := range b.order {
			sum[a] += b.weight * float64(k-1-i) / float64(k-1)
			wsum[a] += b.weight
		}
		firsts[b.order[0]]++
	}
	out := make([]standing, len(cands))
	for n, a := range cands {
		out[n] = standing{answer: a, firsts: firsts[a], scored: wsum[a] > 0}
		if wsum[a] > 0 {
			out[n].score = sum[a] / wsum[a]
		}
	}
	slices.SortStableFunc(out, better)
	return out
}

// better orders standings best first: by score, then by more first
// places, then the member configured earlier.
func better(x, y standing) int {
	switch {
	case math.Abs(x.score-y.score) > scoreEpsilon:
		if x.score > y.score {
			return -1
		}
		return 1
	case x.firsts != y.firsts:
		return y.firsts - x.firsts
	}
	return x.answer - y.answer
}

// firstShare is the weighted share of the ballots that placed answer and
// put it first; nil when no ballot placed it.
func firstShare(answer int, ballots []ballot) *float64 {
	var first, all float64
	for _, b := range ballots {
		if len(b.order) < 2 || !slices.Contains(b.order, answer) {
			continue
		}
		all += b.weight
		if b.order[0] == answer {
			first += b.weight
		}
	}
	if all == 0 {
		return nil
	}
	s := first / all
	return &s
}

// conversation splits a request into the turns before its latest user
// message and that message's text.
func conversation(req *openai.ChatRequest) ([]Turn, string) {
	last := lastUser(req.Messages)
	var turns []Turn
	for i, m := range req.Messages {
		if i != last {
			turns = append(turns, Turn{Role: m.Role, Text: m.Content.String()})
		}
	}
	return turns, req.Messages[last].Content.String()
}

// responseFormat says what JSON the client asked for, for a prompt: "a
// JSON object", "JSON matching this schema: {...}", or "".
func responseFormat(req *openai.ChatRequest) string {
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			return "a JSON object"
		case "json_schema":
			return "JSON matching this schema: " + string(rf.JSONSchema)
		}
	}
	return ""
}
