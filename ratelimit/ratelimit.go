// Package ratelimit owns the proxy's limits: requests per minute per client
// key (answered 429 with Retry-After when exceeded), and per provider the
// requests per minute and calls in flight, which callers wait for while
// their deadline allows instead of hammering the provider. Limits are kept
// in this process with golang.org/x/time/rate, and client keys' limits in
// Redis when replicas share one (Shared). It knows nothing of HTTP,
// providers or tenants beyond the names it is given.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// ErrLimited is the cause of a request refused by a limit; the error is a
// *LimitError with the time to wait.
var ErrLimited = errors.New("rate limited")

// LimitError is a request a limit refused. RetryAfter is when the limit
// would let it through.
type LimitError struct {
	What       string // what is limited, e.g. "client key alice" or "provider openai"
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s is over its rate limit; retry after %s", e.What, e.RetryAfter.Round(time.Millisecond))
}

func (e *LimitError) Unwrap() error { return ErrLimited }

// perMinute returns a limiter of n events a minute with bursts up to n.
func perMinute(n int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(float64(n)/60), n)
}

// Keys limits requests per client key. The zero rpm of a key means
// unlimited. It is safe for concurrent use.
type Keys struct {
	limiters map[string]*rate.Limiter
}

// NewKeys returns the limits of the keys whose rpm is above zero, by key
// name.
func NewKeys(rpm map[string]int) *Keys {
	k := &Keys{limiters: map[string]*rate.Limiter{}}
	for name, n := range rpm {
		if n > 0 {
			k.limiters[name] = perMinute(n)
		}
	}
	return k
}

// Allow takes one request of the key name from its limit, or returns a
// *LimitError saying when to come back.
func (k *Keys) Allow(_ context.Context, name string) error {
	lim := k.limiters[name]
	if lim == nil {
		return nil
	}
	return take(lim, time.Now(), "client key "+name)
}

// take takes one event from lim now, or refuses with the wait.
func take(lim *rate.Limiter, now time.Time, what string) error {
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &LimitError{What: what, RetryAfter: d}
	}
	return nil
}

// Gate limits the calls to one provider: at most rpm a minute (bursts up to
// rpm) and at most maxConcurrency in flight. Zero means unlimited.
type Gate struct {
	what    string
	limiter *rate.Limiter // nil: no rpm limit
	slots   chan struct{} // nil: no concurrency limit
}

// NewGate returns the gate of a provider.
func NewGate(provider string, rpm, maxConcurrency int) *Gate {
	g := &Gate{what: "provider " + provider}
	if rpm > 0 {
		g.limiter = perMinute(rpm)
	}
	if maxConcurrency > 0 {
		g.slots = make(chan struct{}, maxConcurrency)
	}
	return g
}

// Enter waits for the call's turn: a free slot and a token. It waits while
// ctx allows; when ctx's deadline would pass first it returns a
// *LimitError at once rather than waiting in vain. release must be called
// when the call is over.
func (g *Gate) Enter(ctx context.Context) (release func(), err error) {
	if g == nil || (g.limiter == nil && g.slots == nil) {
		return func() {}, nil
	}
	if g.slots != nil {
		select {
		case g.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, g.limitErr(ctx, time.Second)
		}
	}
	release = func() {
		if g.slots != nil {
			<-g.slots
		}
	}
	if g.limiter == nil {
		return release, nil
	}
	now := time.Now()
	r := g.limiter.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return release, nil
	}
	if deadline, ok := ctx.Deadline(); ok && now.Add(d).After(deadline) {
		r.CancelAt(now)
		release()
		return nil, &LimitError{What: g.what, RetryAfter: d}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return release, nil
	case <-ctx.Done():
		r.Cancel()
		release()
		return nil, g.limitErr(ctx, d)
	}
}

// limitErr is the error of a wait that ctx ended: the context's own error
// when the caller went away, a LimitError when its deadline passed. The
// deadline is read from the clock, not from ctx.Err(): a timer of the
// caller's that fires at the deadline and cancels a parent context would
// otherwise make the same wait end in either error.
func (g *Gate) limitErr(ctx context.Context, wait time.Duration) error {
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return &LimitError{What: g.what, RetryAfter: wait}
	}
	return ctx.Err()
}
