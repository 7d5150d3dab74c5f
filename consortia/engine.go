package consortia

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/openai"
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
	strategy  strategy
	// strategyName is the strategy's name, as the consortium object
	// reports it.
	strategyName string
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
	weight    float64  // relative trust, for the strategy to use
	system    string   // the consortium's system prompt, then the member's own
	fallbacks []target // tried in order when the model fails or its breaker is open
}

// New builds the engine of the consortium name from its validated
// configuration; callers maps provider names to their clients. An unknown
// strategy, or a ref to a provider callers lacks, is an error.
func New(name string, cfg Config, callers map[string]Caller) (*Engine, error) {
	return newEngine(name, cfg, callers, nil)
}

// newEngine builds an engine; engines, when not nil, finds the other
// consortiums' engines (a cascade's tiers).
func newEngine(name string, cfg Config, callers map[string]Caller, engines func(string) (*Engine, bool)) (*Engine, error) {
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
		for range m.Count {
			e.instances = append(e.instances, instance{target: t, weight: m.Weight, system: system, fallbacks: fallbacks})
		}
	}
	// Instances of the same model are numbered on across member entries.
	seen := map[string]int{}
	for i := range e.instances {
		seen[e.instances[i].ref]++
		e.instances[i].number = seen[e.instances[i].ref]
	}
	e.strategyName = cfg.Strategy
	if e.strategyName == "" {
		e.strategyName = defaultStrategy
	}
	var err error
	e.strategy, err = newStrategy(setup{name: name, cfg: &e.cfg, instances: e.instances, resolve: resolve, engine: engines})
	if err != nil {
		return nil, err
	}
	return e, nil
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
	// Choices, when the client asked for n > 1 (rank), are the answers in
	// rank order, Choices[0] being Synthesis; nil otherwise.
	Choices []string
	// FinishReason is "stop", or "length" when max_tokens cut the synthesis.
	FinishReason string
	// Usage is the sum over every upstream call that reported usage.
	Usage openai.Usage
	// Run is the record of the whole run. It holds what a log line of the
	// run needs: its ID, Consortium, Iterations and Confidence, and each
	// member's Status and LatencyMs in every round.
	Run *Run
	// Waited is the time spent waiting on providers (each round's members
	// and the strategy's own calls), so that the proxy's own overhead is
	// the rest.
	Waited time.Duration
}

// checkAny reports a request no consortium can serve, whatever its
// strategy.
func checkAny(req *openai.ChatRequest) error {
	if len(req.Tools) > 0 {
		return &openai.FieldError{Param: "tools", Message: "consortiums do not support tools yet; call a provider/model directly for tool use"}
	}
	// Members would each refuse a bound below one token, or (some
	// providers) read it as no bound at all; the answer is the client's
	// mistake, told once, before any call.
	for _, b := range []struct {
		param string
		value *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if b.value != nil && *b.value < 1 {
			return &openai.FieldError{Param: b.param, Message: fmt.Sprintf("%s must be at least 1, got %d", b.param, *b.value)}
		}
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

// Check reports a request this consortium cannot serve, before any call,
// as an *openai.FieldError naming the field: tools, bounds below one
// token, no user message, and what its strategy refuses (n > 1 but for
// rank, within its bounds).
func (e *Engine) Check(req *openai.ChatRequest) error {
	if err := checkAny(req); err != nil {
		return err
	}
	if c, ok := e.strategy.(requestChecker); ok {
		return c.check(req)
	}
	return checkOne(req)
}

// Run answers req. deltas, when not nil, receives the synthesis as it
// becomes final, in order, from the goroutine that called Run; the
// concatenation of every delta is Result.Synthesis.
//
// A request (*Engine).Check refuses is its *openai.FieldError, before any
// call. Once
// the run has begun, an error is a *RunError holding the run record as far
// as it went.
func (e *Engine) Run(ctx context.Context, req *openai.ChatRequest, deltas func(string)) (*Result, error) {
	if err := e.Check(req); err != nil {
		return nil, err
	}
	start := time.Now()
	id, _ := ctx.Value(runIDKey{}).(string)
	if id == "" {
		id = cache.NewID("run_")
	}
	run := &Run{ID: id, Consortium: e.name, Strategy: e.strategyName, Created: start.UTC()}
	if e.cfg.OnRun != nil {
		// Deferred, so that it sees the record complete, whatever the
		// outcome: after the last delta, with duration and usage. A run
		// its caller cancelled (a client that went away) is not one: its
		// members' "failures" say nothing of them.
		defer func() {
			if !errors.Is(ctx.Err(), context.Canceled) {
				e.cfg.OnRun(run)
			}
		}()
	}
	_, nested := ctx.Value(startKey{}).(time.Time) // a cascade's tier
	res, err := e.rounds(withStart(ctx, start), req, run, deltas, nested)
	run.DurationMs = time.Since(start).Milliseconds()
	run.Usage.CostUSD = e.cfg.Pricing.cost(run)
	if res != nil {
		res.Usage.CostUSD = run.Usage.CostUSD
	}
	if err != nil {
		return nil, &RunError{Run: run, Err: err}
	}
	return res, nil
}

// rounds runs the rounds of run until the strategy decides. A nested
// run (a cascade's tier) does not end its caller's run when it ends.
func (e *Engine) rounds(ctx context.Context, req *openai.ChatRequest, run *Run, deltas func(string), nested bool) (*Result, error) {
	out := newOutput(req, deltas)
	threads := make([][]openai.Message, len(e.instances))
	for i, in := range e.instances {
		threads[i] = withSystem(in.system, req.Messages)
	}
	var waited time.Duration
	weights, record := e.runWeights()
	run.Weights = record
	for n := 1; ; n++ {
		run.Iterations = n
		ctx := withRound(ctx, n)
		t0 := time.Now()
		answers := e.fanOut(ctx, req, threads)
		waited += time.Since(t0)
		run.Rounds = append(run.Rounds, Round{Number: n, Members: answers, weights: weights})
		round := &run.Rounds[len(run.Rounds)-1]
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
			return nil, err
		}
		// A strategy that fans out to no members (a cascade of tiers)
		// decides from the request alone.
		if len(answers) > 0 && ok < max(e.cfg.MinAnswers, 1) {
			return nil, e.tooFew(answers, ok)
		}

		t0 = time.Now()
		d, err := e.strategy.decide(ctx, req, round, out.write)
		waited += time.Since(t0)
		run.Usage.Add(d.usage)
		if err != nil {
			return nil, err
		}
		if d.outcome.Confidence == nil {
			d.outcome.Confidence = run.Confidence
		}
		run.Outcome = d.outcome
		notify(ctx, Event{Kind: EventRound, Confidence: d.outcome.Confidence, Iterate: d.again, More: !d.again && !nested})
		if d.again {
			threads = nextThreads(threads, answers, d.feedback)
			continue
		}
		run.Fallback = d.fallback
		synthesis, finish := out.close()
		if d.finish == "length" {
			finish = d.finish
		}
		synthesis, err = out.checkJSON(synthesis)
		if err != nil {
			return nil, err
		}
		choices, err := bounded(req, synthesis, d.choices)
		if err != nil {
			return nil, err
		}
		return &Result{Synthesis: synthesis, Choices: choices, FinishReason: finish, Usage: run.Usage, Run: run, Waited: waited}, nil
	}
}

// bounded returns a final decision's choices under the client's bounds,
// choices[0] replaced by the synthesis (already bounded); nil when the
// decision has none. A choice cut by max_tokens is cut, whatever the
// synthesis's finish reason.
func bounded(req *openai.ChatRequest, synthesis string, choices []string) ([]string, error) {
	if len(choices) == 0 {
		return nil, nil
	}
	out := []string{synthesis}
	for i, c := range choices[1:] {
		o := newOutput(req, nil)
		o.write(c)
		text, _ := o.close()
		text, err := o.checkJSON(text)
		if err != nil {
			return nil, fmt.Errorf("choice %d: %w", i+1, err)
		}
		out = append(out, text)
	}
	return out, nil
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

// RunError is the error of a run that had begun. It carries the run
// record as far as the run went (the members' statuses and latencies, the
// arbiter's reply), so that the caller can log and keep what happened; its
// message and errors.Is and errors.As read through to Err.
type RunError struct {
	Run *Run
	Err error
}

func (e *RunError) Error() string { return e.Err.Error() }

func (e *RunError) Unwrap() error { return e.Err }

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
		e.name, cause, ok, len(answers), max(e.cfg.MinAnswers, 1), strings.Join(failures, "; "))
}

func orStatus(msg, status string) string {
	if msg != "" {
		return msg
	}
	return status
}

type runIDKey struct{}

// WithRunID returns a context under which Run uses id as the run's id, so
// that a caller can announce the id (in a stream's headers) before the run
// begins.
func WithRunID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, runIDKey{}, id)
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
