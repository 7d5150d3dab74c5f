package upstream

import (
	"container/list"
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrBreakerOpen is the cause of a call refused without touching the
// provider because the model's circuit breaker is open.
var ErrBreakerOpen = errors.New("circuit breaker open")

// BreakerSettings configures the circuit breaker of each model.
type BreakerSettings struct {
	// Failures is how many consecutive failed attempts open a model's
	// breaker: connection errors, timeouts, 5xx and 529 answers, and
	// malformed 200s. 4xx answers (429 included) and calls the caller
	// cancelled never count. If zero, 5 is used.
	Failures int

	// Cooldown is how long an open breaker stays open; then one trial call
	// goes through, and its outcome closes or reopens it. If zero, 30s is
	// used.
	Cooldown time.Duration
}

// Breaker states, as OnBreakerChange reports them.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// breaker is one model's circuit breaker, with the time it last opened so
// that a refused caller can be told when to come back.
type breaker struct {
	model    string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt atomic.Int64 // unix nanoseconds
	used     time.Time    // last asked for; for models not in the config, under breakers.mu
}

// breakers holds a provider's breakers, one per model, made on first use.
// Those of the configured models are kept for the provider's lifetime;
// those of any other model a client names are at most maxOthers, the
// least recently used evicted first, and dropped once idle for
// othersIdle, so that random model names cannot grow memory.
type breakers struct {
	settings BreakerSettings
	onChange func(model, state string)
	mu       sync.Mutex
	byModel  map[string]*breaker // the configured models'
	others   map[string]*list.Element
	lru      list.List // of *breaker, most recently used first
}

// The bounds of the breakers of models not in the configuration. An
// evicted breaker that was open forgets it: one more call reaches the
// provider, which a model nobody configured is worth.
const (
	maxOthers  = 1024
	othersIdle = 10 * time.Minute
)

func newBreakers(settings BreakerSettings, onChange func(model, state string), models []string) *breakers {
	bs := &breakers{settings: settings, onChange: onChange, byModel: map[string]*breaker{}, others: map[string]*list.Element{}}
	for _, m := range models {
		bs.byModel[m] = bs.newBreaker(m)
	}
	return bs
}

func (bs *breakers) get(model string) *breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.byModel[model]; b != nil {
		return b
	}
	now := time.Now()
	if el := bs.others[model]; el != nil {
		bs.lru.MoveToFront(el)
		b := el.Value.(*breaker)
		b.used = now
		return b
	}
	// Evict from the back: the least recently used, while past the bound
	// or idle.
	for el := bs.lru.Back(); el != nil; el = bs.lru.Back() {
		b := el.Value.(*breaker)
		if bs.lru.Len() < maxOthers && now.Sub(b.used) < othersIdle {
			break
		}
		bs.lru.Remove(el)
		delete(bs.others, b.model)
	}
	b := bs.newBreaker(model)
	b.used = now
	bs.others[model] = bs.lru.PushFront(b)
	return b
}

// len returns how many breakers are held.
func (bs *breakers) len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return len(bs.byModel) + len(bs.others)
}

func (bs *breakers) newBreaker(model string) *breaker {
	b := &breaker{model: model}
	failures := uint32(bs.settings.Failures)
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        model,
		MaxRequests: 1,
		Timeout:     bs.settings.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return err == nil || !countsAgainst(err)
		},
		// A refusal (4xx), a call the caller cancelled, and a call that
		// never reached the provider say nothing of its health: they
		// neither count as failures nor reset the run of failures.
		IsExcluded: func(err error) bool {
			if err == nil {
				return false
			}
			if errors.Is(err, context.Canceled) && !errors.Is(err, ErrTimeout) {
				return true
			}
			var e *Error
			return errors.As(err, &e) && (e.Status >= 400 && e.Status < 500 || e.Status == 0 && !countsAgainst(err))
		},
		OnStateChange: func(name string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
			}
			if bs.onChange != nil {
				bs.onChange(name, stateName(to))
			}
		},
	})
	return b
}

// allow asks the breaker for one attempt. When it refuses, the error says
// how long until the trial call.
func (b *breaker) allow(cooldown time.Duration) (done func(error), retryAfter time.Duration, err error) {
	done, err = b.cb.Allow()
	if err == nil {
		return done, 0, nil
	}
	left := cooldown - time.Since(time.Unix(0, b.openedAt.Load()))
	if left < time.Second {
		left = time.Second
	}
	return nil, left, ErrBreakerOpen
}

// countsAgainst reports whether a failed attempt says the model is
// unhealthy: no answer, a timeout, a malformed answer, or a 5xx or 529.
// The provider refusing a request (4xx) says nothing of its health.
func countsAgainst(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return true
	}
	if e.Status == 0 {
		return !errors.Is(e.Err, ErrBreakerOpen) && !isLimited(e.Err)
	}
	return e.Status >= 500
}

// isLimited reports a call refused by the provider's own rpm or
// concurrency limit in this process.
func isLimited(err error) bool {
	return errors.Is(err, ErrLimited)
}

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// retryable reports whether a failed attempt may be tried again: no
// connection, or one of the statuses that mean "later".
func retryable(e *Error) bool {
	if e.Status == 0 {
		return !errors.Is(e.Err, ErrTimeout) && !errors.Is(e.Err, ErrMalformed) &&
			!errors.Is(e.Err, ErrBreakerOpen) && !errors.Is(e.Err, context.Canceled) && !isLimited(e.Err)
	}
	switch e.Status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 529:
		return true
	}
	return false
}
