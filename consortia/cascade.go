package consortia

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// cascade is the strategy "cascade": tiers answer in turn, the cheapest
// first, until one is confident enough. A tier is another consortium,
// whose engine runs the request as a run of its own, or (the last tier
// only, since it has no confidence) a provider/model called as a member.
// A cascade has no members: the engine's fan-out is empty and decide
// does all the work, in its one round.
//
// A tier's confidence is its run's Outcome.Confidence (the arbiter's for
// synthesize, the agreement for vote, the judges' share for rank), and an
// unknown one counts as 0. A tier that fails or is below EscalateBelow
// escalates to the next; the first that reaches it answers; the last
// always answers. A tier that is not the last holds its answer until its
// confidence is known, so the client sees only the answering tier's text;
// the last tier's streams through as it comes.
type cascade struct {
	consortium string
	below      float64 // escalate_below
	system     string  // the cascade's system prompt, for a provider/model tier
	tiers      []cascadeTier
}

// cascadeTier is one tier: a consortium's engine, or a model to call.
type cascadeTier struct {
	name   string
	engine *Engine // nil for a provider/model tier
	model  target
}

// TierRun is the record of one tier a cascade tried, in Round.Tiers: what
// the consortium object shows of it, and its consortium's own run (as far
// as it went) or its provider/model call.
type TierRun struct {
	Tier
	Run  *Run          `json:"run,omitempty"`
	Call *MemberAnswer `json:"call,omitempty"`

	finish string // the tier's run's finish_reason
}

func newCascade(s setup) (strategy, error) {
	cfg := s.cfg.Cascade
	if len(s.instances) > 0 {
		return nil, fmt.Errorf("consortium %s: the strategy cascade has no members: its tiers answer", s.name)
	}
	if len(cfg.Tiers) == 0 {
		return nil, fmt.Errorf("consortium %s: the strategy cascade needs tiers", s.name)
	}
	c := &cascade{consortium: s.name, below: cfg.EscalateBelow, system: s.cfg.System}
	for i, name := range cfg.Tiers {
		tier := cascadeTier{name: name}
		var found bool
		if s.engine != nil {
			tier.engine, found = s.engine(name)
		}
		switch {
		case found:
		case strings.Contains(name, "/") && i < len(cfg.Tiers)-1:
			return nil, fmt.Errorf("consortium %s: tier %q is a provider/model, which has no confidence: only the last tier may be one", s.name, name)
		case strings.Contains(name, "/"):
			t, err := s.resolve(name, nil)
			if err != nil {
				return nil, err
			}
			tier.model = t
		case s.engine == nil:
			return nil, fmt.Errorf("consortium %s: tier %q names a consortium, which only an engine built by NewSet can reach", s.name, name)
		default:
			return nil, fmt.Errorf("consortium %s: tier %q names no consortium", s.name, name)
		}
		c.tiers = append(c.tiers, tier)
	}
	return c, nil
}

func (c *cascade) decide(ctx context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	var d decision
	for i, tier := range c.tiers {
		last := i == len(c.tiers)-1
		var held strings.Builder
		emit := write
		if !last {
			emit = func(s string) { held.WriteString(s) }
		}
		rec, usage, err := c.try(ctx, req, tier, emit)
		d.usage.Add(usage)
		answers := err == nil && (last || orZero(rec.Confidence) >= c.below)
		rec.Escalated = !answers && !last
		round.Tiers = append(round.Tiers, rec)
		d.outcome.Tiers = append(d.outcome.Tiers, rec.Tier)
		switch {
		case err != nil && ctx.Err() != nil:
			return d, ctx.Err()
		case answers:
			write(held.String())
			d.finish = rec.finish
			d.outcome.Confidence = rec.Confidence
			return d, nil
		case last:
			return d, fmt.Errorf("consortium %s: the last tier, %s, failed: %w", c.consortium, tier.name, err)
		}
	}
	panic("unreachable: the last tier answers or fails")
}

// try runs one tier, writing its answer to emit, and returns its record
// and usage.
func (c *cascade) try(ctx context.Context, req *openai.ChatRequest, tier cascadeTier, emit func(string)) (TierRun, openai.Usage, error) {
	rec := TierRun{Tier: Tier{Tier: tier.name}}
	if tier.engine == nil {
		a, usage, err := c.call(ctx, req, tier.model, emit)
		rec.Call = &a
		if err != nil {
			rec.Error = a.Error
		}
		return rec, usage, err
	}
	// The tier's run gets an id of its own, not the cascade's.
	res, err := tier.engine.Run(WithRunID(ctx, ""), req, emit)
	if err != nil {
		rec.Error = err.Error()
		if re, ok := errors.AsType[*RunError](err); ok {
			rec.Run = re.Run
			return rec, re.Run.Usage, err
		}
		return rec, openai.Usage{}, err
	}
	rec.Run = res.Run
	rec.Confidence = res.Run.Confidence
	rec.finish = res.FinishReason
	return rec, res.Usage, nil
}

// call asks a provider/model tier, as a member, streaming its answer to
// emit as it comes.
func (c *cascade) call(ctx context.Context, req *openai.ChatRequest, t target, emit func(string)) (MemberAnswer, openai.Usage, error) {
	start := time.Now()
	a := MemberAnswer{Model: t.ref, Instance: 1, StartMs: startMs(ctx, start)}
	defer func() { notify(ctx, Event{Kind: EventMember, Member: &a}) }()
	var (
		text  strings.Builder
		usage openai.Usage
		err   error
	)
	chunks := t.caller.ChatStream(upstream.WithRole(ctx, "member"), t.model, memberRequest(req, withSystem(c.system, req.Messages), t.params))
	for chunk, cerr := range chunks {
		if cerr != nil {
			err = cerr
			break
		}
		if chunk.Usage != nil {
			usage = *chunk.Usage
		}
		for _, ch := range chunk.Choices {
			if ch.Index == 0 && ch.Delta.Content != nil && *ch.Delta.Content != "" {
				text.WriteString(*ch.Delta.Content)
				emit(*ch.Delta.Content)
			}
		}
	}
	a.LatencyMs = time.Since(start).Milliseconds()
	a.Content = text.String()
	if usage != (openai.Usage{}) {
		a.Usage = &usage
	}
	if err != nil {
		a.Status, a.Error = StatusError, describe(err)
		if errors.Is(err, upstream.ErrTimeout) {
			a.Status = StatusTimeout
		}
		return a, usage, fmt.Errorf("tier %s: %w", t.ref, err)
	}
	a.Status = StatusOK
	return a, usage, nil
}

// orZero reads a confidence that may be unknown as 0.
func orZero(c *float64) float64 {
	if c == nil {
		return 0
	}
	return *c
}
