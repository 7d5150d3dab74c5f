package consortia

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// Synthesize configures the strategy "synthesize" (DESIGN.md, "Consortium
// engine"): an arbiter reads each round's answers source-blind, judges
// them in tags, and either writes the synthesis the client receives or
// asks the members for another round.
type Synthesize struct {
	// Arbiter judges the answers and writes the synthesis.
	Arbiter Arbiter
	// ConfidenceThreshold: an arbiter confidence below it asks for
	// another round (0..1).
	ConfidenceThreshold float64
	// MinIterations and MaxIterations bound the rounds. If zero, 1.
	MinIterations, MaxIterations int
}

// synthesize is the strategy "synthesize". Its contract, each round:
//
//   - The successful answers get the labels A, B, C ... in a random order
//     (MemberAnswer.Label), so that neither position nor label tells the
//     arbiter which model wrote one; the arbiter's prompt (DefaultPrompt,
//     or the configured template) shows them without the models' names,
//     with their weights when weights differ.
//   - The arbiter's reply streams through a replyReader, which decides the
//     round as DESIGN.md "Streaming" says: the synthesis goes out as it is
//     written on a round that is final; on a round that iterates, the call
//     is cancelled when the synthesis opens and nothing of it goes out.
//   - Another round follows while the confidence is below the threshold
//     or needs_iteration is true, up to max_iterations, and always up to
//     min_iterations; every member's feedback is the arbiter's refinement
//     areas and dissent.
//   - A final reply without a synthesis falls back to the best-ranked
//     answer (or the first), so the client still gets one; an untagged
//     reply is the synthesis, with no further round.
//   - The run record's round gets the arbiter's reply (ArbiterReply); the
//     outcome's confidence is the arbiter's.
type synthesize struct {
	consortium string
	cfg        Synthesize
	arbiter    target
	prompt     promptTemplate
	weights    []float64 // per instance, as configured; a run's own are its Round's
}

func newSynthesize(s setup) (strategy, error) {
	sy := &synthesize{consortium: s.name, cfg: s.cfg.Synthesize}
	sy.cfg.MinIterations = max(sy.cfg.MinIterations, 1)
	sy.cfg.MaxIterations = max(sy.cfg.MaxIterations, 1)
	if len(s.instances) == 0 || sy.cfg.Arbiter.Model == "" {
		return nil, fmt.Errorf("consortium %s: the strategy synthesize needs members and an arbiter model", s.name)
	}
	var err error
	if sy.arbiter, err = s.resolve(sy.cfg.Arbiter.Model, sy.cfg.Arbiter.Params); err != nil {
		return nil, err
	}
	// A custom prompt that names a field PromptData lacks fails here, at
	// start, rather than on every request.
	if err := CheckPrompt(sy.cfg.Arbiter.Prompt); err != nil {
		return nil, fmt.Errorf("consortium %s: arbiter.prompt: %w", s.name, err)
	}
	sy.prompt, _ = parseTemplate("arbiter", sy.cfg.Arbiter.Prompt, DefaultPrompt)
	for _, in := range s.instances {
		sy.weights = append(sy.weights, in.weight)
	}
	return sy, nil
}

func (sy *synthesize) decide(ctx context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	order := shuffleLabels(round.Members)
	var d decision
	wrote := false
	rec, v, err := sy.judge(ctx, req, round, order, nil, func(s string) {
		wrote = wrote || s != ""
		write(s)
	})
	round.Arbiter = rec
	if rec.Usage != nil {
		d.usage = *rec.Usage
	}
	if err != nil {
		return d, err
	}
	if v.ConfidenceKnown {
		c := v.Confidence
		d.outcome.Confidence = &c
	}
	if rec.Iterate {
		d.again = true
		d.feedback = sameFeedback(len(round.Members), feedbackTurn(v))
		return d, nil
	}
	if !wrote {
		// The arbiter wrote no synthesis: the best-ranked answer (or the
		// first) stands in, so the client still gets an answer.
		d.fallback = "the arbiter wrote no synthesis; the best-ranked member answer was used"
		write(bestAnswer(round.Members, order, v.Ranking))
	}
	return d, nil
}

// rules are the rules of round n.
func (sy *synthesize) rules(n int) roundRules {
	return roundRules{
		must:      n < sy.cfg.MinIterations,
		can:       n < sy.cfg.MaxIterations,
		threshold: sy.cfg.ConfidenceThreshold,
	}
}

// judge calls the arbiter for one round and reads its reply as it streams,
// through a replyReader that writes the synthesis when the round is final
// and cuts the call when it iterates.
// ranked, when not nil, adds the judges' ranking to the prompt's data.
func (sy *synthesize) judge(ctx context.Context, req *openai.ChatRequest, round *Round, order []int, ranked func(*PromptData), write func(string)) (*ArbiterReply, verdict, error) {
	rec := &ArbiterReply{Model: sy.arbiter.ref}
	prompt, err := sy.renderPrompt(req, round, order, ranked)
	if err != nil {
		rec.Error = err.Error()
		return rec, verdict{}, fmt.Errorf("consortium %s: %w: its prompt template failed: %v", sy.consortium, ErrArbiter, err)
	}
	areq := &openai.ChatRequest{
		Messages: []openai.Message{{Role: "user", Content: openai.TextContent(prompt)}},
		Extra:    sy.arbiter.params,
	}

	start := time.Now()
	rec.StartMs = startMs(ctx, start)
	callCtx, cancel := context.WithCancel(upstream.WithRole(ctx, "arbiter"))
	defer cancel()
	r := newReplyReader(sy.rules(round.Number), write)
	var reply strings.Builder
	var readErr error
	for chunk, err := range sy.arbiter.caller.ChatStream(callCtx, sy.arbiter.model, areq) {
		if err != nil {
			readErr = err
			break
		}
		if chunk.Usage != nil {
			u := *chunk.Usage
			rec.Usage = &u
		}
		if len(chunk.Choices) == 0 || chunk.Choices[0].Delta.Content == nil || *chunk.Choices[0].Delta.Content == "" {
			continue
		}
		text := *chunk.Choices[0].Delta.Content
		reply.WriteString(text)
		if r.feed(text) == iterating {
			// Its analysis, dissent and refinement areas are in; the rest
			// of the reply is a synthesis no one will read.
			rec.Cancelled = true
			cancel()
			break
		}
	}
	rec.LatencyMs = time.Since(start).Milliseconds()
	rec.Reply = reply.String()

	if readErr != nil {
		if ctx.Err() != nil {
			return rec, verdict{}, ctx.Err()
		}
		rec.Error = describe(readErr)
		return rec, verdict{}, fmt.Errorf("consortium %s: %w: %s: %s", sy.consortium, ErrArbiter, sy.arbiter.ref, rec.Error)
	}
	if !rec.Cancelled {
		r.end()
	}
	v := r.tags.current()
	rec.Iterate = r.state == iterating
	fillVerdict(rec, v, round.Members, order)
	return rec, v, nil
}

// renderPrompt renders the arbiter's prompt for one round; ranked, when
// not nil, adds the judges' ranking to the data.
func (sy *synthesize) renderPrompt(req *openai.ChatRequest, round *Round, order []int, ranked func(*PromptData)) (string, error) {
	data := sy.promptData(req, round, order)
	if ranked != nil {
		ranked(&data)
	}
	return sy.prompt.render(data, data.size())
}

// roundRules decide whether a round iterates.
type roundRules struct {
	must      bool // the round is before min_iterations: it iterates whatever the reply says
	can       bool // the round is before max_iterations: the reply may ask for another
	threshold float64
}

// iterates reports whether a reply that reads as v makes the round iterate.
func (r roundRules) iterates(v verdict) bool {
	switch {
	case r.must:
		return true
	case !r.can:
		return false
	}
	return v.ConfidenceKnown && v.Confidence < r.threshold || v.NeedsIteration != nil && *v.NeedsIteration
}

// replyState is where an arbiter reply stands in deciding its round. A
// reply starts undecided; the opening of its synthesis and its end move it
// on, and it never moves back.
type replyState uint8

const (
	// undecided: the synthesis has not opened. Tags are read; nothing goes
	// out. The end of the reply decides, by its tags: streaming (the rest
	// is written) or iterating.
	undecided replyState = iota

	// streaming: the round is final (it may not iterate, or the tags
	// before the synthesis said it is done). The synthesis goes out as it
	// arrives.
	streaming

	// holding: the synthesis opened before any decision, on a round that
	// could still iterate. It is kept, because the tags after it decide,
	// and a later one may overturn an earlier one; the end of the reply
	// sends it (streaming) or drops it (iterating).
	holding

	// iterating: the round iterates, and nothing of its synthesis reaches
	// the client. Reached as the synthesis opens, it tells the caller to
	// cancel the call: the analysis, dissent and refinement areas the next
	// round needs are in by then.
	iterating
)

// replyEvent is what the tag parser reports of a reply.
type replyEvent uint8

const (
	synthesisOpened replyEvent = iota // <synthesis> opened
	synthesisText                     // synthesis text became certain
	replyEnded                        // the reply ended: its tags are final
)

// replyReader is the state machine of one arbiter reply: the tag parser's
// events move it from state to state (step), and the state says what
// becomes of the synthesis.
type replyReader struct {
	state replyState
	rules roundRules
	tags  *tagStream
	held  strings.Builder // the synthesis, while holding
	write func(string)
}

func newReplyReader(rules roundRules, write func(string)) *replyReader {
	return &replyReader{rules: rules, tags: newTagStream(), write: write}
}

// feed reads the next chunk of the reply and returns the state it leaves
// the reply in.
func (r *replyReader) feed(chunk string) replyState {
	opened := r.tags.synthesisOpened()
	text := r.tags.write(chunk)
	if !opened && r.tags.synthesisOpened() {
		r.step(synthesisOpened, "")
	}
	if text != "" {
		r.step(synthesisText, text)
	}
	return r.state
}

// end reads the end of the reply.
func (r *replyReader) end() {
	_, rest := r.tags.close()
	r.step(replyEnded, rest)
}

// step is the transition function: it moves the reply on by one event.
// text is the synthesis text the event carries: what became certain, or at
// the end what the parser had held back (or all of an untagged reply).
func (r *replyReader) step(ev replyEvent, text string) {
	switch r.state {
	case undecided:
		switch ev {
		case synthesisOpened:
			// Only the tags before the synthesis may decide now, however
			// the reply was cut into chunks.
			v := r.tags.verdictAtOpen()
			switch {
			case r.rules.must || !r.rules.can || v.ConfidenceKnown || v.NeedsIteration != nil:
				r.state = r.decide(v)
			default:
				r.state = holding
			}
		case replyEnded:
			// No synthesis opened (none, or an untagged reply, which is all
			// synthesis and asks for nothing).
			if r.state = r.decide(r.tags.current()); r.state == streaming {
				r.write(text)
			}
		}
	case streaming:
		r.write(text)
	case holding:
		switch ev {
		case synthesisText:
			r.held.WriteString(text)
		case replyEnded:
			if r.state = r.decide(r.tags.current()); r.state == streaming {
				r.write(r.held.String())
				r.write(text)
			}
			r.held.Reset()
		}
	case iterating:
		// The round is decided and nothing of it goes out.
	}
}

// decide returns the state a reply that reads as v puts the round in.
func (r *replyReader) decide(v verdict) replyState {
	if r.rules.iterates(v) {
		return iterating
	}
	return streaming
}

// fillVerdict copies a verdict into the run record, with the ranking also
// as member refs.
func fillVerdict(rec *ArbiterReply, v verdict, answers []MemberAnswer, order []int) {
	if v.ConfidenceKnown {
		c := v.Confidence
		rec.Confidence = &c
	}
	rec.NeedsIteration = v.NeedsIteration
	rec.RefinementAreas = v.RefinementAreas
	rec.Dissent = v.Dissent
	rec.Ranking = v.Ranking
	for _, l := range v.Ranking {
		for _, i := range order {
			if answers[i].Label == l {
				rec.RankedModels = append(rec.RankedModels, fmt.Sprintf("%s#%d", answers[i].Model, answers[i].Instance))
			}
		}
	}
}

// feedbackTurn is the user turn that opens a member's next round.
func feedbackTurn(v verdict) string {
	var b strings.Builder
	b.WriteString("A reviewer compared your answer with other independent answers to the same request.")
	if areas := strings.TrimSpace(v.RefinementAreas); areas != "" && !strings.EqualFold(areas, "none") {
		b.WriteString("\n\nWhat to improve:\n")
		b.WriteString(areas)
	}
	if dissent := strings.TrimSpace(v.Dissent); dissent != "" && !strings.EqualFold(dissent, "none") {
		b.WriteString("\n\nViews worth weighing that not every answer shared:\n")
		b.WriteString(dissent)
	}
	b.WriteString("\n\nWrite your complete, improved answer to the original request. Answer the user directly; do not mention this review.")
	return b.String()
}

// shuffleLabels gives the successful answers the labels A, B, C ... in a
// random order, so that neither position nor label tells the arbiter which
// model wrote an answer. It sets each answer's Label and returns the
// labelled answers' indexes in label order.
func shuffleLabels(answers []MemberAnswer) []int {
	var order []int
	for i, a := range answers {
		if a.Status == StatusOK {
			order = append(order, i)
		}
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for n, i := range order {
		answers[i].Label = label(n)
	}
	return order
}

// label returns the n-th label: A ... Z, then AA, AB ...
func label(n int) string {
	if n < 26 {
		return string(rune('A' + n))
	}
	return label(n/26-1) + string(rune('A'+n%26))
}

// bestAnswer returns the best-ranked answer, or the first labelled one.
func bestAnswer(answers []MemberAnswer, order []int, ranking []string) string {
	for _, l := range ranking {
		for _, i := range order {
			if answers[i].Label == l {
				return answers[i].Content
			}
		}
	}
	if len(order) > 0 {
		return answers[order[0]].Content
	}
	return ""
}

// DefaultPrompt is the default arbiter prompt, a text/template that
// arbiter.prompt can replace. Its data is PromptData.
//
//go:embed arbiter.tmpl
var DefaultPrompt string

// PromptData is what the arbiter prompt template is executed with.
type PromptData struct {
	// Consortium is the consortium's name.
	Consortium string
	// Conversation is the conversation before the latest request, system
	// messages included, each turn's content as text.
	Conversation []Turn
	// Request is the text of the latest user message.
	Request string
	// Responses are the answers in label order (already shuffled).
	Responses []Response
	// ShowWeights is true when the members' weights differ.
	ShowWeights bool
	// Round is this round's number, from 1; MaxRounds is max_iterations.
	Round, MaxRounds int
	// CanIterate says whether the arbiter may ask for another round.
	CanIterate bool
	// Threshold is confidence_threshold.
	Threshold float64
	// ResponseFormat says what JSON the client asked for ("" for none):
	// "a JSON object", or "JSON matching this schema: {...}".
	ResponseFormat string
	// RankingExample is an example ranking over this round's labels.
	RankingExample string

	// Scores and JudgeRankings are set when judges ranked the answers
	// before the arbiter writes (rank's then: synthesize): every answer's
	// label, aggregated score and place, best first, and each usable
	// judge's ranking in the arbiter's labels ("B > A > C"). Empty for
	// synthesize.
	Scores        []LabelScore
	JudgeRankings []string
}

// LabelScore is one answer's aggregated judges' score, under the label the
// arbiter sees.
type LabelScore struct {
	Label string
	Score float64 // 0..1
	Place int     // from 1
}

// Turn is one turn of the conversation, as text.
type Turn struct {
	Role string
	Text string
}

// Response is one labelled answer.
type Response struct {
	Label  string
	Text   string
	Weight float64
}

// CheckPrompt reports an arbiter prompt template that does not parse or
// names a field PromptData lacks; "" is the default prompt, which is
// fine. Validation calls it without building an engine.
func CheckPrompt(text string) error {
	return checkTemplate("arbiter", text, DefaultPrompt, samplePrompt)
}

// samplePrompt is the data a prompt template is tried with at start.
var samplePrompt = PromptData{
	Consortium:     "sample",
	Conversation:   []Turn{{Role: "system", Text: "Be brief."}},
	Request:        "What is 2+2?",
	Responses:      []Response{{Label: "A", Text: "4", Weight: 1}, {Label: "B", Text: "Four.", Weight: 2}},
	ShowWeights:    true,
	Round:          1,
	MaxRounds:      2,
	CanIterate:     true,
	Threshold:      0.8,
	RankingExample: "A, B",
	Scores:         []LabelScore{{Label: "B", Score: 1, Place: 1}, {Label: "A", Score: 0, Place: 2}},
	JudgeRankings:  []string{"B > A"},
}

// promptTemplate is a parsed prompt template and the length of its text.
type promptTemplate struct {
	*template.Template
	size int
}

// parseTemplate parses a prompt template: custom, or def when custom is
// blank. A field the data lacks is an error when it runs.
func parseTemplate(name, custom, def string) (promptTemplate, error) {
	text := custom
	if strings.TrimSpace(text) == "" {
		text = def
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	return promptTemplate{Template: t, size: len(text)}, err
}

// render executes the template with data. Prompts are several kilobytes,
// and a buffer that starts small and doubles allocates about twice that,
// then copies it into a string: instead the buffer starts at the
// template's text plus dataSize, the bytes of text the data holds, so that
// a prompt is usually written in one allocation and handed over as it is.
// A template that shows a field twice just grows the buffer.
func (t promptTemplate) render(data any, dataSize int) (string, error) {
	var b strings.Builder
	b.Grow(t.size + dataSize)
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// itemMarkup is room for the markup a template writes around each item
// of a list (a turn's role, a response's heading and weight, a score):
// a guess on the generous side, since growing costs more than a few
// bytes left over.
const itemMarkup = 64

// textLen is about what a prompt's data adds to its template's text: the
// texts of the conversation, the request and the responses, with room for
// each item's markup.
func textLen(turns []Turn, request string, responses []Response) int {
	n := len(request)
	for _, t := range turns {
		n += len(t.Role) + len(t.Text) + itemMarkup
	}
	for _, r := range responses {
		n += len(r.Label) + len(r.Text) + itemMarkup
	}
	return n
}

// checkTemplate parses a prompt template (see parseTemplate) and runs it
// with sample, so that a template naming a field its data lacks fails at
// start rather than on every request.
func checkTemplate(name, custom, def string, sample any) error {
	t, err := parseTemplate(name, custom, def)
	if err != nil {
		return err
	}
	return t.Execute(io.Discard, sample)
}

// size is about how many bytes the data adds to the template's text once
// rendered (see textLen).
func (d *PromptData) size() int {
	n := textLen(d.Conversation, d.Request, d.Responses) + len(d.ResponseFormat) + len(d.RankingExample)
	n += len(d.Scores) * itemMarkup
	for _, r := range d.JudgeRankings {
		n += len(r) + itemMarkup
	}
	return n
}

// promptData gathers the template's data for one round.
func (sy *synthesize) promptData(req *openai.ChatRequest, round *Round, order []int) PromptData {
	rules := sy.rules(round.Number)
	// The weights the arbiter sees are the run's (adaptive ones when so
	// configured), shown when they differ.
	weights := round.memberWeights(sy.weights)
	d := PromptData{
		Consortium:  sy.consortium,
		Round:       round.Number,
		MaxRounds:   sy.cfg.MaxIterations,
		CanIterate:  rules.can,
		Threshold:   sy.cfg.ConfidenceThreshold,
		ShowWeights: differ(weights),
	}
	d.Conversation, d.Request = conversation(req)
	d.Responses = slices.Grow(d.Responses, len(order))
	labels := make([]string, 0, len(order))
	for _, i := range order {
		a := round.Members[i]
		d.Responses = append(d.Responses, Response{Label: a.Label, Text: a.Content, Weight: weights[i]})
		labels = append(labels, a.Label)
	}
	d.RankingExample = strings.Join(labels, ", ")
	d.ResponseFormat = responseFormat(req)
	return d
}

// lastUser returns the index of the last user message (Check ensures one).
func lastUser(msgs []openai.Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return i
		}
	}
	return len(msgs) - 1
}
