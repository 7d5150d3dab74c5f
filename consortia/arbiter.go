package consortia

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"text/template"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

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

// parsePrompt parses a custom arbiter prompt, or the default one.
func parsePrompt(custom string) (*template.Template, error) {
	text := custom
	if strings.TrimSpace(text) == "" {
		text = DefaultPrompt
	}
	return template.New("arbiter").Option("missingkey=error").Parse(text)
}

// promptData gathers the template's data for one round.
func (e *Engine) promptData(req *openai.ChatRequest, round int, answers []MemberAnswer, order []int) PromptData {
	d := PromptData{
		Consortium: e.name,
		Round:      round,
		MaxRounds:  e.cfg.MaxIterations,
		CanIterate: round < e.cfg.MaxIterations,
		Threshold:  e.cfg.ConfidenceThreshold,
	}
	last := lastUser(req.Messages)
	for i, m := range req.Messages {
		if i == last {
			continue
		}
		d.Conversation = append(d.Conversation, Turn{Role: m.Role, Text: m.Content.String()})
	}
	d.Request = req.Messages[last].Content.String()
	weights := map[float64]bool{}
	for _, in := range e.instances {
		weights[in.weight] = true
	}
	d.ShowWeights = len(weights) > 1
	var labels []string
	for _, i := range order {
		d.Responses = append(d.Responses, Response{Label: answers[i].Label, Text: answers[i].Content, Weight: e.instances[i].weight})
		labels = append(labels, answers[i].Label)
	}
	d.RankingExample = strings.Join(labels, ", ")
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			d.ResponseFormat = "a JSON object"
		case "json_schema":
			d.ResponseFormat = "JSON matching this schema: " + string(rf.JSONSchema)
		}
	}
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

// judge calls the arbiter for one round and reads its reply as it streams.
// When the reply decides another round, the call is cancelled as soon as
// its synthesis opens; otherwise the synthesis goes to out as it arrives,
// or, on a round that could still iterate and whose synthesis opened
// before any decision, once the reply has ended and decided.
func (e *Engine) judge(ctx context.Context, req *openai.ChatRequest, round int, answers []MemberAnswer, order []int, out *output) (*ArbiterReply, Verdict, error) {
	rec := &ArbiterReply{Model: e.arbiter.ref}
	var prompt bytes.Buffer
	if err := e.prompt.Execute(&prompt, e.promptData(req, round, answers, order)); err != nil {
		rec.Error = err.Error()
		return rec, Verdict{}, fmt.Errorf("consortium %s: %w: its prompt template failed: %v", e.name, ErrArbiter, err)
	}
	areq := &openai.ChatRequest{
		Messages: []openai.Message{{Role: "user", Content: openai.TextContent(prompt.String())}},
		Extra:    e.arbiter.params,
	}

	mustIterate := round < e.cfg.MinIterations
	canIterate := round < e.cfg.MaxIterations
	iterates := func(v Verdict) bool {
		if mustIterate {
			return true
		}
		if !canIterate {
			return false
		}
		return (v.ConfidenceKnown && v.Confidence < e.cfg.ConfidenceThreshold) || (v.NeedsIteration != nil && *v.NeedsIteration)
	}

	start := time.Now()
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	tags := NewTagStream()
	var reply strings.Builder
	var held strings.Builder // synthesis read but not yet known to be final
	streaming := false       // the synthesis goes to out as it arrives
	decided := false         // the round's fate is known
	holding := false         // the synthesis opened first: the whole reply decides
	var readErr error
	for chunk, err := range e.arbiter.caller.ChatStream(callCtx, e.arbiter.model, areq) {
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
		synth := tags.Write(text)
		if !decided && !holding && tags.SynthesisOpened() {
			switch {
			case mustIterate:
				rec.Iterate, decided = true, true
			case !canIterate:
				streaming, decided = true, true
			case tags.Decided():
				rec.Iterate, decided = iterates(tags.Verdict()), true
				streaming = !rec.Iterate
			default:
				// No decision yet: tags after the synthesis decide, and a
				// later one may overturn an earlier one, so only the end
				// of the reply does.
				holding = true
			}
			if rec.Iterate {
				// Its analysis, dissent and refinement areas are in;
				// nothing of this synthesis may reach the client.
				rec.Cancelled = true
				cancel()
				break
			}
		}
		switch {
		case streaming:
			if held.Len() > 0 {
				out.write(held.String())
				held.Reset()
			}
			out.write(synth)
		case synth != "":
			held.WriteString(synth)
		}
	}
	rec.LatencyMs = time.Since(start).Milliseconds()
	rec.Reply = reply.String()

	if rec.Cancelled {
		v := tags.Verdict()
		fillVerdict(rec, v, answers, order)
		return rec, v, nil
	}
	if readErr != nil {
		if ctx.Err() != nil {
			return rec, Verdict{}, ctx.Err()
		}
		rec.Error = memberError(readErr)
		return rec, Verdict{}, fmt.Errorf("consortium %s: %w: %s: %s", e.name, ErrArbiter, e.arbiter.ref, rec.Error)
	}
	v, rest := tags.Close()
	fillVerdict(rec, v, answers, order)
	if !decided {
		rec.Iterate = iterates(v)
		if !v.Tagged && !mustIterate {
			rec.Iterate = false // an untagged reply is the synthesis; no further round
		}
	}
	if rec.Iterate {
		return rec, v, nil
	}
	out.write(held.String())
	out.write(rest)
	return rec, v, nil
}

// fillVerdict copies a verdict into the run record, with the ranking also
// as member refs.
func fillVerdict(rec *ArbiterReply, v Verdict, answers []MemberAnswer, order []int) {
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

// shuffle permutes s at random.
func shuffle(s []int) {
	rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
}

// output is the synthesis on its way to the client, bounded by the
// client's stop sequences and max_tokens. When the client asked for JSON
// it is held whole, so that invalid JSON is refused rather than streamed.
type output struct {
	emit     func(string)
	stops    []string
	hold     int  // bytes kept back in case a stop sequence is forming
	maxRunes int  // 0: no bound
	wantJSON bool // hold everything until close
	pending  string
	sent     strings.Builder
	runes    int
	finish   string
	done     bool
	sentAny  bool
}

// charsPerToken converts the client's max_tokens into a length in
// characters: providers' tokenizers differ, and about four characters a
// token is the usual figure for English text.
const charsPerToken = 4

func newOutput(req *openai.ChatRequest, emit func(string)) *output {
	o := &output{emit: emit, finish: "stop", wantJSON: jsonWanted(req)}
	for _, s := range req.Stop {
		if s != "" {
			o.stops = append(o.stops, s)
			o.hold = max(o.hold, len(s)-1)
		}
	}
	limit := req.MaxCompletionTokens
	if limit == nil {
		limit = req.MaxTokens
	}
	// A limit too large to convert would overflow into a small or
	// negative bound; no synthesis is that long, so it bounds nothing.
	if limit != nil && *limit > 0 && *limit <= math.MaxInt/charsPerToken {
		o.maxRunes = *limit * charsPerToken
	}
	return o
}

// write adds synthesis text.
func (o *output) write(s string) {
	if o.done || s == "" {
		return
	}
	o.pending += s
	if idx := o.firstStop(); idx >= 0 {
		o.pending = o.pending[:idx]
		o.flush(len(o.pending))
		o.done = true
		return
	}
	if o.wantJSON {
		return
	}
	o.flush(len(o.pending) - o.hold)
}

// flush sends the first n bytes of pending (backing off to a rune
// boundary), cutting at maxRunes.
func (o *output) flush(n int) {
	for n > 0 && n < len(o.pending) && !utf8Start(o.pending[n]) {
		n--
	}
	if n <= 0 {
		return
	}
	text := o.pending[:n]
	o.pending = o.pending[n:]
	if o.maxRunes > 0 {
		room := o.maxRunes - o.runes
		if cut := runeIndex(text, room); cut >= 0 {
			text = text[:cut]
			o.finish, o.done = "length", true
			o.pending = ""
		}
	}
	o.runes += countRunes(text)
	o.sent.WriteString(text)
	if text != "" {
		o.sentAny = true
		if o.emit != nil && !o.wantJSON {
			o.emit(text)
		}
	}
}

// close sends what is held back and returns the whole synthesis and its
// finish reason.
func (o *output) close() (string, string) {
	if !o.done {
		o.flush(len(o.pending))
		o.done = true
	}
	return o.sent.String(), o.finish
}

// checkJSON refuses a synthesis that is not JSON when JSON was asked for,
// and otherwise sends it, whole, now. A Markdown code fence around the
// JSON, which models often add, is removed; the synthesis sent is
// returned.
func (o *output) checkJSON(synthesis string) (string, error) {
	if !o.wantJSON {
		return synthesis, nil
	}
	synthesis = stripFence(synthesis)
	if !json.Valid([]byte(synthesis)) {
		return "", fmt.Errorf("%w: the client asked for JSON (response_format) and the arbiter's synthesis does not parse", ErrNotJSON)
	}
	if o.emit != nil {
		o.emit(synthesis)
	}
	return synthesis, nil
}

// stripFence removes a ```json ... ``` fence around s.
func stripFence(s string) string {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "```") || !strings.HasSuffix(t, "```") || len(t) < 6 {
		return t
	}
	t = strings.TrimSuffix(t[3:], "```")
	if nl := strings.IndexByte(t, '\n'); nl >= 0 && !strings.ContainsAny(t[:nl], "{[\"") {
		t = t[nl+1:] // the fence's language tag
	}
	return strings.TrimSpace(t)
}

func (o *output) firstStop() int {
	first := -1
	for _, s := range o.stops {
		if i := strings.Index(o.pending, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// runeIndex returns the byte index of the n-th rune of s, or -1 when s has
// no more than n runes.
func runeIndex(s string, n int) int {
	if n < 0 {
		n = 0
	}
	i := 0
	for pos := range s {
		if i == n {
			return pos
		}
		i++
	}
	return -1
}

func countRunes(s string) int {
	n := 0
	for range s {
		n++
	}
	return n
}
