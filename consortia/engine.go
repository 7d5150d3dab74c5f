package consortia

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream"
)

// Caller calls one provider's chat models. *upstream.Provider satisfies it.
type Caller interface {
	// Chat returns a whole answer.
	Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error)
	// ChatStream yields a streamed answer's chunks; an error ends the
	// sequence, and breaking out of it ends the call.
	ChatStream(ctx context.Context, model string, req *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error]
}

// Engine answers requests with one consortium. It is safe for concurrent
// use; every request is a Run of its own.
type Engine struct {
	name      string
	cfg       Config
	instances []instance
	arbiter   target
	prompt    *template.Template
}

// target is a model to call.
type target struct {
	ref    string // provider/model, as configured
	caller Caller
	model  string // the provider's own name for it
	params map[string]any
}

// instance is one member instance.
type instance struct {
	target
	number    int      // 1-based among the instances of the same model
	weight    float64  // relative trust, shown to the arbiter when weights differ
	system    string   // the consortium's system prompt, then the member's own
	fallbacks []target // tried in order when the model fails or its breaker is open
}

// New builds the engine of the consortium name from its validated
// configuration; callers maps provider names to their clients.
func New(name string, cfg Config, callers map[string]Caller) (*Engine, error) {
	e := &Engine{name: name, cfg: cfg}
	resolve := func(ref string, params map[string]any) (target, error) {
		prov, model, ok := strings.Cut(ref, "/")
		c := callers[prov]
		if !ok || c == nil {
			return target{}, fmt.Errorf("consortium %s: %q names no configured provider", name, ref)
		}
		return target{ref: ref, caller: c, model: model, params: params}, nil
	}
	for _, m := range cfg.Members {
		t, err := resolve(m.Model, m.Params)
		if err != nil {
			return nil, err
		}
		system := joinNonEmpty("\n\n", cfg.System, m.System)
		var fallbacks []target
		for _, ref := range m.Fallbacks {
			f, err := resolve(ref, m.Params)
			if err != nil {
				return nil, err
			}
			fallbacks = append(fallbacks, f)
		}
		for i := 1; i <= m.Count; i++ {
			e.instances = append(e.instances, instance{target: t, number: i, weight: m.Weight, system: system, fallbacks: fallbacks})
		}
	}
	// Instances of the same model across member entries are numbered on.
	seen := map[string]int{}
	for i := range e.instances {
		seen[e.instances[i].ref]++
		e.instances[i].number = seen[e.instances[i].ref]
	}
	var err error
	if e.arbiter, err = resolve(cfg.Arbiter.Model, cfg.Arbiter.Params); err != nil {
		return nil, err
	}
	// A custom prompt that names a field PromptData lacks fails here, at
	// start, rather than on every request.
	if err := CheckPrompt(cfg.Arbiter.Prompt); err != nil {
		return nil, fmt.Errorf("consortium %s: arbiter.prompt: %w", name, err)
	}
	e.prompt, _ = parsePrompt(cfg.Arbiter.Prompt)
	return e, nil
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
}

// Name returns the consortium's name, the model id clients use.
func (e *Engine) Name() string { return e.name }

// Description returns the consortium's description.
func (e *Engine) Description() string { return e.cfg.Description }

// Result is the outcome of a Run.
type Result struct {
	// Synthesis is the answer the client received, cut by its max_tokens
	// or stop when it set them.
	Synthesis string
	// FinishReason is "stop", or "length" when max_tokens cut the synthesis.
	FinishReason string
	// Usage is the sum over every upstream call that reported usage.
	Usage openai.Usage
	// Run is the record of the whole run.
	Run *Run
	// Waited is the time spent waiting on providers (each round's members
	// and arbiter), so that the proxy's own overhead is the rest.
	Waited time.Duration
}

// Check reports a request this consortium cannot serve, as an
// *openai.FieldError naming the field.
func Check(req *openai.ChatRequest) error {
	if req.N != nil && *req.N > 1 {
		return &openai.FieldError{Param: "n", Message: "a consortium writes one synthesis: n must be 1"}
	}
	if len(req.Tools) > 0 {
		return &openai.FieldError{Param: "tools", Message: "consortiums do not support tools yet; call a provider/model directly for tool use"}
	}
	last := -1
	for i, m := range req.Messages {
		if m.Role == "user" {
			last = i
		}
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return &openai.FieldError{Param: fmt.Sprintf("messages[%d].role", i), Message: fmt.Sprintf("unknown role %q", m.Role)}
		}
	}
	if last < 0 {
		return &openai.FieldError{Param: "messages", Message: "a consortium needs at least one user message"}
	}
	return nil
}

// Run answers req. deltas, when not nil, receives the synthesis as it
// becomes final, in order, from the goroutine that called Run; the
// concatenation of every delta is Result.Synthesis.
func (e *Engine) Run(ctx context.Context, req *openai.ChatRequest, deltas func(string)) (*Result, error) {
	if err := Check(req); err != nil {
		return nil, err
	}
	start := time.Now()
	id, _ := ctx.Value(runIDKey{}).(string)
	if id == "" {
		id = NewID("run_")
	}
	run := &Run{ID: id, Consortium: e.name, Strategy: "synthesize", Created: start.UTC()}
	out := newOutput(req, deltas)

	base := memberBase(req)
	threads := make([][]openai.Message, len(e.instances))
	for i, in := range e.instances {
		threads[i] = withSystem(in.system, base)
	}

	var waited time.Duration
	for round := 1; ; round++ {
		run.Iterations = round
		t0 := time.Now()
		answers := e.fanOut(ctx, req, threads)
		waited += time.Since(t0)
		rec := Round{Number: round, Members: answers}
		ok := 0
		for _, a := range answers {
			if a.Status == StatusOK {
				ok++
			}
			if a.Usage != nil {
				run.Usage.Add(*a.Usage)
			}
		}
		if err := ctx.Err(); err != nil {
			run.Rounds = append(run.Rounds, rec)
			return nil, err
		}
		if ok < e.cfg.MinAnswers {
			run.Rounds = append(run.Rounds, rec)
			return nil, e.tooFew(answers, ok)
		}

		labels := shuffleLabels(answers)
		t0 = time.Now()
		arb, verdict, err := e.judge(ctx, req, round, answers, labels, out)
		waited += time.Since(t0)
		rec.Arbiter = arb
		if arb.Usage != nil {
			run.Usage.Add(*arb.Usage)
		}
		run.Rounds = append(run.Rounds, rec)
		if err != nil {
			return nil, err
		}
		if verdict.ConfidenceKnown {
			c := verdict.Confidence
			run.Confidence = &c
		}
		if arb.Iterate {
			threads = e.nextThreads(threads, answers, verdict)
			continue
		}

		if !out.sentAny && strings.TrimSpace(out.pending) == "" {
			// The arbiter wrote no synthesis: the best-ranked answer (or
			// the first) stands in, so the client still gets an answer.
			run.Fallback = "the arbiter wrote no synthesis; the best-ranked member answer was used"
			out.write(bestAnswer(answers, labels, verdict.Ranking))
		}
		synthesis, finish := out.close()
		synthesis, err = out.checkJSON(synthesis)
		if err != nil {
			return nil, err
		}
		run.DurationMs = time.Since(start).Milliseconds()
		return &Result{Synthesis: synthesis, FinishReason: finish, Usage: run.Usage, Run: run, Waited: waited}, nil
	}
}

// Errors that end a run, told apart by the proxy with errors.Is.
var (
	// ErrTooFewAnswers: fewer successful member answers than min_answers.
	ErrTooFewAnswers = errors.New("too few member answers")
	// ErrAllTimedOut: every member passed member_timeout.
	ErrAllTimedOut = errors.New("every member timed out")
	// ErrArbiter: the arbiter's call failed.
	ErrArbiter = errors.New("the arbiter failed")
	// ErrNotJSON: JSON was asked for and the synthesis is not JSON.
	ErrNotJSON = errors.New("the synthesis is not valid JSON")
)

// tooFew builds the error for a round with fewer than min_answers answers,
// naming each failed member and what it returned.
func (e *Engine) tooFew(answers []MemberAnswer, ok int) error {
	var failures []string
	timeouts := 0
	for _, a := range answers {
		if a.Status == StatusTimeout {
			timeouts++
		}
		if a.Status != StatusOK {
			failures = append(failures, fmt.Sprintf("%s#%d: %s", a.Model, a.Instance, orStatus(a.Error, a.Status)))
		}
	}
	cause := ErrTooFewAnswers
	if timeouts == len(answers) {
		cause = ErrAllTimedOut
	}
	return fmt.Errorf("consortium %s: %w: %d of %d members answered, %d needed (%s)",
		e.name, cause, ok, len(answers), e.cfg.MinAnswers, strings.Join(failures, "; "))
}

func orStatus(msg, status string) string {
	if msg != "" {
		return msg
	}
	return status
}

// Causes of a member call's cancellation, read back with context.Cause to
// report its status.
var (
	errQuorum        = errors.New("quorum reached")
	errMemberTimeout = errors.New("member_timeout passed")
)

// fanOut runs one round: every instance answers its own thread at once. It
// returns when every instance is done, or when quorum answers are in or
// member_timeout passes, cancelling the rest.
func (e *Engine) fanOut(ctx context.Context, req *openai.ChatRequest, threads [][]openai.Message) []MemberAnswer {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(e.cfg.MemberTimeout, func() { cancel(errMemberTimeout) })
	defer timer.Stop()

	type result struct {
		i      int
		answer MemberAnswer
	}
	results := make(chan result, len(e.instances))
	var wg sync.WaitGroup
	for i, in := range e.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- result{i, e.ask(ctx, in, req, threads[i])}
		}()
	}
	answers := make([]MemberAnswer, len(e.instances))
	ok := 0
	for range e.instances {
		r := <-results
		answers[r.i] = r.answer
		if r.answer.Status == StatusOK {
			ok++
			if e.cfg.Quorum > 0 && ok == e.cfg.Quorum {
				cancel(errQuorum)
			}
		}
	}
	wg.Wait()
	return answers
}

// ask calls one member instance, then its fallbacks in order while the
// calls fail, and reports what happened.
func (e *Engine) ask(ctx context.Context, in instance, req *openai.ChatRequest, thread []openai.Message) MemberAnswer {
	a := MemberAnswer{Model: in.ref, Instance: in.number}
	start := time.Now()
	var (
		cc       *openai.ChatCompletion
		err      error
		failures []string
	)
	for i, t := range append([]target{in.target}, in.fallbacks...) {
		if i > 0 {
			if ctx.Err() != nil {
				break
			}
			a.Fallback = t.ref
		}
		cc, err = t.caller.Chat(ctx, t.model, memberRequest(req, thread, t.params))
		if err == nil {
			break
		}
		failures = append(failures, t.ref+": "+memberError(err))
	}
	a.LatencyMs = time.Since(start).Milliseconds()
	if err != nil {
		switch cause := context.Cause(ctx); {
		case ctx.Err() != nil && errors.Is(cause, errQuorum):
			a.Status = StatusCancelled
		case ctx.Err() != nil && errors.Is(cause, errMemberTimeout):
			a.Status, a.Error = StatusTimeout, fmt.Sprintf("no answer within member_timeout (%s)", e.cfg.MemberTimeout)
		case errors.Is(err, upstream.ErrTimeout) && len(failures) == 1:
			a.Status, a.Error = StatusTimeout, memberError(err)
		case len(failures) == 1:
			a.Status, a.Error = StatusError, memberError(err)
		default:
			a.Status, a.Error = StatusError, strings.Join(failures, "; ")
		}
		return a
	}
	a.Status = StatusOK
	if cc.Choices[0].Message.Content != nil {
		a.Content = *cc.Choices[0].Message.Content
	}
	a.Usage = cc.Usage
	return a
}

// memberError describes a member's failure without the provider's
// internals: its status and message, or that it could not be reached.
func memberError(err error) string {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	switch {
	case ue.Status != 0, errors.Is(ue.Err, upstream.ErrTimeout), errors.Is(ue.Err, upstream.ErrMalformed),
		errors.Is(ue.Err, upstream.ErrBreakerOpen), errors.Is(ue.Err, ratelimit.ErrLimited):
		return ue.Describe()
	}
	if ue.Attempts > 1 {
		return fmt.Sprintf("no answer after %d attempts: the connection failed", ue.Attempts)
	}
	return "no answer: the connection failed"
}

// nextThreads continues each member's own thread: its answer stays as an
// assistant turn and the arbiter's refinement areas and dissent come as
// the next user turn. Earlier turns are untouched, so the prefix stays
// byte-identical and providers' prompt caches apply. A member that failed
// asks its previous thread again.
func (e *Engine) nextThreads(threads [][]openai.Message, answers []MemberAnswer, v Verdict) [][]openai.Message {
	feedback := feedbackTurn(v)
	next := make([][]openai.Message, len(threads))
	for i, t := range threads {
		if answers[i].Status != StatusOK {
			next[i] = t
			continue
		}
		n := make([]openai.Message, len(t), len(t)+2)
		copy(n, t)
		next[i] = append(n,
			openai.Message{Role: "assistant", Content: openai.TextContent(answers[i].Content)},
			openai.Message{Role: "user", Content: openai.TextContent(feedback)})
	}
	return next
}

// feedbackTurn is the user turn that opens a member's next round.
func feedbackTurn(v Verdict) string {
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

// memberBase is the conversation every member sees: the client's messages.
func memberBase(req *openai.ChatRequest) []openai.Message {
	return req.Messages
}

// withSystem puts a system prompt before a conversation.
func withSystem(system string, msgs []openai.Message) []openai.Message {
	if system == "" {
		return msgs
	}
	out := make([]openai.Message, 0, len(msgs)+1)
	out = append(out, openai.Message{Role: "system", Content: openai.TextContent(system)})
	return append(out, msgs...)
}

// memberRequest is the request one member gets: the client's sampling
// params under the member's own overrides.
func memberRequest(req *openai.ChatRequest, thread []openai.Message, params map[string]any) *openai.ChatRequest {
	r := &openai.ChatRequest{
		Messages:            thread,
		Temperature:         req.Temperature,
		TopP:                req.TopP,
		MaxTokens:           req.MaxTokens,
		MaxCompletionTokens: req.MaxCompletionTokens,
		PresencePenalty:     req.PresencePenalty,
		FrequencyPenalty:    req.FrequencyPenalty,
		Stop:                req.Stop,
		Seed:                req.Seed,
		ResponseFormat:      req.ResponseFormat,
	}
	r.Extra = params
	return r
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
	shuffle(order)
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

type runIDKey struct{}

// WithRunID returns a context under which Run uses id as the run's id, so
// that a caller can announce the id (in a stream's headers) before the run
// begins.
func WithRunID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, runIDKey{}, id)
}

// NewID returns prefix followed by 24 random hex digits.
func NewID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func joinNonEmpty(sep string, parts ...string) string {
	var kept []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, sep)
}

// jsonWanted reports whether the client asked for JSON output.
func jsonWanted(req *openai.ChatRequest) bool {
	return req.ResponseFormat != nil && (req.ResponseFormat.Type == "json_object" || req.ResponseFormat.Type == "json_schema")
}
