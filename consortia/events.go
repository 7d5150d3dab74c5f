package consortia

import (
	"context"
	"time"
)

// Event kinds, as Event.Kind names them.
const (
	// EventMember: a member answer landed (or failed), Event.Member.
	EventMember = "member"
	// EventRound: a round was decided, with its Confidence and whether it
	// iterates.
	EventRound = "round"
	// EventJudge: a judge's ranking landed (or the judge failed),
	// Event.Judge.
	EventJudge = "judge"
)

// Event is one step of a run, told as it happens to the function that
// WithEvents put in the run's context: a member's answer, a judge's
// ranking, a round's decision. The records it points to are the run
// record's own, complete when the event is sent; the receiver reads them
// during the call only (the engine goes on filling the record after it:
// a member's Label, for one) and never changes them.
type Event struct {
	Kind  string
	Round int // from 1
	// Member is the answer of an EventMember.
	Member *MemberAnswer
	// Judge is the reply of an EventJudge.
	Judge *JudgeReply
	// Confidence (EventRound) is the round's confidence, nil when
	// unknown; Iterate whether another round follows.
	Confidence *float64
	Iterate    bool
	// More is set when what comes next is already here: another member's
	// answer, or (on the last round's event) the end of the run. A
	// receiver that writes to the network may hold this event and send
	// it with the next write instead of one of its own.
	More bool
}

type eventsKey struct{}

// WithEvents returns a context under which a run tells fn each of its
// steps as it happens (see Event). fn may be called from several
// goroutines at once and must not block for long: members and judges wait
// on it.
func WithEvents(ctx context.Context, fn func(Event)) context.Context {
	return context.WithValue(ctx, eventsKey{}, fn)
}

// notify tells ctx's event function, if any, of ev. The round comes from
// the context (withRound).
func notify(ctx context.Context, ev Event) {
	fn, _ := ctx.Value(eventsKey{}).(func(Event))
	if fn == nil {
		return
	}
	if ev.Round == 0 {
		ev.Round, _ = ctx.Value(roundKey{}).(int)
	}
	fn(ev)
}

type roundKey struct{}

// withRound returns ctx for the calls of round n, so that their events
// and records name it.
func withRound(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, roundKey{}, n)
}

type startKey struct{}

// withStart returns ctx marked with the start of a run, unless an outer
// run (a cascade's) already marked it: a tier's calls are placed on the
// outer run's timeline.
func withStart(ctx context.Context, t time.Time) context.Context {
	if _, ok := ctx.Value(startKey{}).(time.Time); ok {
		return ctx
	}
	return context.WithValue(ctx, startKey{}, t)
}

// startMs is t as milliseconds from the start of ctx's run, for the
// records' StartMs (the run page's waterfall); 0 outside a run.
func startMs(ctx context.Context, t time.Time) int64 {
	s, ok := ctx.Value(startKey{}).(time.Time)
	if !ok {
		return 0
	}
	return t.Sub(s).Milliseconds()
}
