package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newFake starts a fake provider that the test closes when it ends.
func newFake(t *testing.T) *upstreamtest.Server {
	t.Helper()
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	return fake
}

// inBubble runs f in a testing/synctest bubble, with a fake provider from
// upstreamtest.NewInMemory: the provider's timers, backoffs and breaker
// cooldowns and the fake's delays all run on the bubble's fake clock, so
// that a test of "after 1s" neither waits a second nor flakes on a slow
// machine.
func inBubble(t *testing.T, f func(t *testing.T, fake *upstreamtest.Server)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		fake := upstreamtest.NewInMemory()
		defer fake.Close()
		f(t, fake)
	})
}

// newProvider returns a Provider named "fake" in front of fake, with cfg's
// settings and, unless cfg says otherwise, a 1ms backoff and a 2s timeout.
// A fake from NewInMemory is reached through its RoundTripper.
func newProvider(t *testing.T, fake *upstreamtest.Server, cfg Config) *Provider {
	t.Helper()
	cfg.Name, cfg.BaseURL = "fake", fake.URL
	if strings.Contains(fake.URL, ".invalid/") && cfg.Transport == nil {
		cfg.Transport = fake.RoundTripper()
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeIdle(p) })
	return p
}

// chat is a non-streamed chat completion request for model.
func chat(model string) *Request {
	return &Request{Model: model, Path: "/chat/completions",
		Body: fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, model)}
}

// stream is a streamed chat completion request for model.
func stream(model string) *Request {
	return &Request{Model: model, Path: "/chat/completions", Stream: true,
		Body: fmt.Appendf(nil, `{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, model)}
}

// upstreamError returns err as an *Error, failing the test when it is not
// one.
func upstreamError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *upstream.Error", err, err)
	}
	return e
}

// calls returns how many requests for model reached the fake.
func calls(fake *upstreamtest.Server, model string) int { return len(fake.RequestsFor(model)) }

func TestRetriesByStatus(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 2, Breaker: BreakerSettings{Failures: 100}})
	for _, tc := range []struct {
		status   int
		attempts int
	}{
		{408, 3}, {429, 3}, {500, 3}, {502, 3}, {503, 3}, {504, 3}, {529, 3},
		{400, 1}, {401, 1}, {403, 1}, {404, 1}, {409, 1}, {413, 1}, {422, 1}, {501, 1},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			model := fmt.Sprintf("m%d", tc.status)
			fake.Script(model, upstreamtest.Reply{Status: tc.status, Error: "scripted"})
			_, err := p.Do(context.Background(), chat(model))
			e := upstreamError(t, err)
			want := "scripted"
			if tc.status == 401 || tc.status == 403 {
				want = "the provider refused the proxy's credentials"
			}
			if e.Status != tc.status || e.Attempts != tc.attempts || e.Message != want {
				t.Errorf("status %d, attempts %d, message %q; want %d, %d, %q", e.Status, e.Attempts, e.Message, tc.status, tc.attempts, want)
			}
			if n := calls(fake, model); n != tc.attempts {
				t.Errorf("the provider saw %d calls, want %d", n, tc.attempts)
			}
		})
	}
}

func TestRetryThenSuccess(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 3})
	fake.Script("m", upstreamtest.Reply{Status: 503}, upstreamtest.Reply{Status: 529}, upstreamtest.Reply{Content: "at last"})
	resp, err := p.Do(context.Background(), chat("m"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 3 || resp.Status != 200 || resp.Body != nil || len(resp.Data) == 0 {
		t.Errorf("attempts %d, status %d, body %v, data %q", resp.Attempts, resp.Status, resp.Body, resp.Data)
	}
	if n := calls(fake, "m"); n != 3 {
		t.Errorf("the provider saw %d calls, want 3", n)
	}
}

func TestNoRetries(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{}) // MaxRetries 0
	fake.Script("m", upstreamtest.Reply{Status: 503})
	_, err := p.Do(context.Background(), chat("m"))
	if e := upstreamError(t, err); e.Status != 503 || e.Attempts != 1 {
		t.Errorf("status %d after %d attempts", e.Status, e.Attempts)
	}
	if n := calls(fake, "m"); n != 1 {
		t.Errorf("the provider saw %d calls, want 1", n)
	}
}

func TestConnectionDropRetried(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 2, Breaker: BreakerSettings{Failures: 100}})

	fake.Script("recovers", upstreamtest.Reply{Drop: true}, upstreamtest.Reply{Drop: true}, upstreamtest.Reply{Content: "ok"})
	resp, err := p.Do(context.Background(), chat("recovers"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 3 {
		t.Errorf("attempts %d, want 3", resp.Attempts)
	}

	fake.Script("down", upstreamtest.Reply{Drop: true})
	_, err = p.Do(context.Background(), chat("down"))
	e := upstreamError(t, err)
	if e.Status != 0 || e.Attempts != 3 || errors.Is(err, ErrTimeout) || e.Err == nil {
		t.Errorf("status %d, attempts %d, err %v; want a connection error after 3 attempts", e.Status, e.Attempts, e.Err)
	}
	if n := calls(fake, "down"); n != 3 {
		t.Errorf("the provider saw %d calls, want 3", n)
	}
}

// retryAfterMs asks for a wait in milliseconds, as OpenAI's and Azure's
// retry-after-ms does.
func retryAfterMs(ms int) http.Header { return http.Header{"Retry-After-Ms": {fmt.Sprint(ms)}} }

// TestRetryAfter runs on a fake clock: the waits are exact, and the
// provider's word replaces the backoff.
func TestRetryAfter(t *testing.T) {
	t.Run("retry-after-ms is waited out, not the backoff", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			// A backoff drawn below 10s would most likely take seconds:
			// the provider's word replaces it.
			p := newProvider(t, fake, Config{MaxRetries: 2, Backoff: time.Hour})
			fake.Script("m", upstreamtest.Reply{Status: 429, Header: retryAfterMs(50)}, upstreamtest.Reply{Content: "ok"})
			start := time.Now()
			resp, err := p.Do(context.Background(), chat("m"))
			if err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); resp.Attempts != 2 || elapsed != 50*time.Millisecond {
				t.Errorf("%d attempts in %v, want 2 after 50ms", resp.Attempts, elapsed)
			}
			if reqs := fake.RequestsFor("m"); len(reqs) != 2 || reqs[1].Received.Sub(reqs[0].Received) != 50*time.Millisecond {
				t.Errorf("%d requests; the second did not come 50ms after the first", len(reqs))
			}
		})
	})

	t.Run("seconds", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 2, Backoff: time.Hour, Timeout: 3 * time.Second})
			fake.Script("m", upstreamtest.Reply{Status: 503, Header: http.Header{"Retry-After": {"1"}}}, upstreamtest.Reply{Content: "ok"})
			start := time.Now()
			resp, err := p.Do(context.Background(), chat("m"))
			if err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); resp.Attempts != 2 || elapsed != time.Second {
				t.Errorf("%d attempts in %v, want 2 after 1s", resp.Attempts, elapsed)
			}
		})
	})

	// Each case fails at once: the wait asked for does not fit in the time
	// left, so the call gives up after one attempt and passes the wait on.
	for _, tc := range []struct {
		name    string
		header  func(now time.Time) http.Header
		timeout time.Duration
		ctx     time.Duration // a deadline of the caller's, if set
		want    time.Duration // RetryAfter
	}{
		{name: "seconds past the timeout", header: seconds("120"), want: 120 * time.Second},
		{name: "http date past the timeout", header: func(now time.Time) http.Header {
			return http.Header{"Retry-After": {now.Add(time.Hour).UTC().Format(http.TimeFormat)}}
		}, want: time.Hour},
		{name: "ms past the timeout", header: func(time.Time) http.Header { return retryAfterMs(5000) }, timeout: 500 * time.Millisecond, want: 5 * time.Second},
		{name: "past the caller's deadline", header: func(time.Time) http.Header { return retryAfterMs(1500) }, timeout: time.Minute, ctx: 300 * time.Millisecond, want: 1500 * time.Millisecond},
		// Past int64 nanoseconds: saturated, not overflowed into "no
		// Retry-After" (which would retry with backoff).
		{name: "seconds past int64", header: seconds("99999999999"), want: math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
				p := newProvider(t, fake, Config{MaxRetries: 5, Timeout: tc.timeout})
				fake.Script("m", upstreamtest.Reply{Status: 503, Header: tc.header(time.Now())})
				ctx := context.Background()
				if tc.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.ctx)
					defer cancel()
				}
				start := time.Now()
				_, err := p.Do(ctx, chat("m"))
				elapsed := time.Since(start)
				e := upstreamError(t, err)
				if e.Status != 503 || e.Attempts != 1 {
					t.Errorf("status %d after %d attempts, want 503 after 1", e.Status, e.Attempts)
				}
				// An HTTP date has whole seconds.
				if d := e.RetryAfter - tc.want; d < -time.Second || d > 0 {
					t.Errorf("RetryAfter %v, want %v", e.RetryAfter, tc.want)
				}
				if elapsed != 0 {
					t.Errorf("gave up after %v, want at once", elapsed)
				}
				if n := calls(fake, "m"); n != 1 {
					t.Errorf("the provider saw %d calls, want 1", n)
				}
			})
		})
	}

	t.Run("an http date in the past is no wait", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 2, Backoff: time.Nanosecond})
			past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
			fake.Script("m", upstreamtest.Reply{Status: 503, Header: http.Header{"Retry-After": {past}}}, upstreamtest.Reply{Content: "ok"})
			resp, err := p.Do(context.Background(), chat("m"))
			if err != nil || resp.Attempts != 2 {
				t.Fatalf("resp %+v, err %v; want success after 2 attempts", resp, err)
			}
		})
	})

	t.Run("read from the current failure", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 5})
			fake.Script("m",
				upstreamtest.Reply{Status: 503, Header: retryAfterMs(50)},
				upstreamtest.Reply{Status: 503, Header: http.Header{"Retry-After": {"3600"}}},
				upstreamtest.Reply{Content: "too late"})
			start := time.Now()
			_, err := p.Do(context.Background(), chat("m"))
			elapsed := time.Since(start)
			e := upstreamError(t, err)
			if e.Attempts != 2 || e.RetryAfter != time.Hour {
				t.Errorf("%d attempts, RetryAfter %v; want 2 and the second failure's 1h", e.Attempts, e.RetryAfter)
			}
			if elapsed != 50*time.Millisecond {
				t.Errorf("took %v, want the first 50ms wait and no more", elapsed)
			}
			if n := calls(fake, "m"); n != 2 {
				t.Errorf("the provider saw %d calls, want 2", n)
			}
		})
	})

	t.Run("not on a status that is never retried", func(t *testing.T) {
		t.Parallel()
		fake := newFake(t)
		p := newProvider(t, fake, Config{MaxRetries: 5})
		fake.Script("m", upstreamtest.Reply{Status: 400, Header: retryAfterMs(10)})
		_, err := p.Do(context.Background(), chat("m"))
		if e := upstreamError(t, err); e.Attempts != 1 || calls(fake, "m") != 1 {
			t.Errorf("a 400 with retry-after-ms was tried %d times", calls(fake, "m"))
		}
	})

	t.Run("not past max_retries", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 1})
			fake.Script("m", upstreamtest.Reply{Status: 503, Header: retryAfterMs(10)})
			_, err := p.Do(context.Background(), chat("m"))
			if e := upstreamError(t, err); e.Attempts != 2 || calls(fake, "m") != 2 {
				t.Errorf("%d attempts, %d calls; want 2", e.Attempts, calls(fake, "m"))
			}
		})
	})
}

// seconds is a Retry-After header of secs.
func seconds(secs string) func(time.Time) http.Header {
	return func(time.Time) http.Header { return http.Header{"Retry-After": {secs}} }
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"absent", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"seconds with spaces", http.Header{"Retry-After": {" 7 "}}, 7 * time.Second},
		{"fractional seconds", http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{"zero", http.Header{"Retry-After": {"0"}}, 0},
		{"negative", http.Header{"Retry-After": {"-3"}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"http date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"http date in the past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"ms", http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{"ms beats seconds", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{"bad ms falls back to seconds", http.Header{"Retry-After-Ms": {"x"}, "Retry-After": {"9"}}, 9 * time.Second},
		{"zero ms falls back to seconds", http.Header{"Retry-After-Ms": {"0"}, "Retry-After": {"9"}}, 9 * time.Second},
		{"seconds past int64", http.Header{"Retry-After": {"99999999999"}}, math.MaxInt64},
		{"ms past int64", http.Header{"Retry-After-Ms": {"1e300"}}, math.MaxInt64},
		{"infinite seconds", http.Header{"Retry-After": {"+Inf"}}, math.MaxInt64},
		{"NaN seconds", http.Header{"Retry-After": {"NaN"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.header, now); got != tc.want {
				t.Errorf("retryAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetryWait checks the backoff without the network: full jitter below
// a ceiling that doubles from Backoff up to 10s, at any attempt number.
func TestRetryWait(t *testing.T) {
	p := &Provider{maxRetries: 1000, backoff: time.Millisecond}
	far := time.Now().Add(time.Hour)
	e := &Error{Status: 503}
	for attempt := 1; attempt <= 1000; attempt++ {
		ceiling := maxBackoff
		if attempt <= 20 {
			ceiling = min(time.Millisecond<<(attempt-1), maxBackoff)
		}
		distinct := map[time.Duration]bool{}
		for range 20 {
			wait, ok := p.retryWait(context.Background(), e, attempt, far)
			if !ok || wait < 0 || wait > ceiling {
				t.Fatalf("attempt %d: wait %v (retry %v), want a retry after at most %v", attempt, wait, ok, ceiling)
			}
			distinct[wait] = true
		}
		if attempt > 3 && len(distinct) < 2 {
			t.Fatalf("attempt %d: 20 waits took %d values; full jitter draws them at random", attempt, len(distinct))
		}
	}

	// The backoff is drawn at random, not fixed at the ceiling.
	var sum time.Duration
	for range 1000 {
		wait, _ := p.retryWait(context.Background(), e, 30, far)
		sum += wait
	}
	if mean := sum / 1000; mean < 3*time.Second || mean > 7*time.Second {
		t.Errorf("mean wait %v at the 10s ceiling, want about 5s", mean)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	short, cancel2 := context.WithDeadline(context.Background(), time.Now())
	defer cancel2()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		e        *Error
		attempt  int
		deadline time.Time
	}{
		{"past max_retries", context.Background(), e, 1001, far},
		{"no error", context.Background(), nil, 1, far},
		{"a status never retried", context.Background(), &Error{Status: 400}, 1, far},
		{"a timeout", context.Background(), &Error{Err: errFirstByte}, 1, far},
		{"a malformed answer", context.Background(), &Error{Err: ErrMalformed}, 1, far},
		{"an open breaker", context.Background(), &Error{Err: ErrBreakerOpen}, 1, far},
		{"a provider limit", context.Background(), &Error{Err: &ratelimit.LimitError{RetryAfter: time.Second}}, 1, far},
		{"a cancelled call", cancelled, &Error{Err: context.Canceled}, 1, far},
		{"a caller gone", cancelled, e, 1, far},
		{"no time left", context.Background(), e, 1, time.Now()},
		{"the caller's deadline passed", short, e, 1, far},
		{"a Retry-After past the time left", context.Background(), &Error{Status: 503, RetryAfter: 2 * time.Hour}, 1, far},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if wait, ok := p.retryWait(tc.ctx, tc.e, tc.attempt, tc.deadline); ok {
				t.Errorf("retried after %v", wait)
			}
		})
	}
	if wait, ok := p.retryWait(context.Background(), &Error{Status: 429, RetryAfter: 42 * time.Minute}, 1, far); !ok || wait != 42*time.Minute {
		t.Errorf("Retry-After within the time left: wait %v, retry %v", wait, ok)
	}
	if wait, ok := p.retryWait(context.Background(), &Error{Err: io.ErrUnexpectedEOF}, 1, far); !ok || wait > time.Millisecond {
		t.Errorf("connection error: wait %v, retry %v", wait, ok)
	}
}

func TestDefaults(t *testing.T) {
	p, err := New(Config{Name: "p", BaseURL: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.backoff != 250*time.Millisecond || p.maxRetries != 0 || p.timeout != time.Minute || p.cooldown != 30*time.Second ||
		p.breakers.settings != (BreakerSettings{Failures: 5, Cooldown: 30 * time.Second}) {
		t.Errorf("defaults: backoff %v, retries %d, timeout %v, breaker %+v", p.backoff, p.maxRetries, p.timeout, p.breakers.settings)
	}
	if p, _ := New(Config{Name: "p", BaseURL: "http://127.0.0.1:1/v1", MaxRetries: -3}); p.maxRetries != 0 {
		t.Errorf("negative MaxRetries gave %d", p.maxRetries)
	}
}

// TestTimeout runs on a fake clock: the phase timeouts end calls exactly
// when they should.
func TestTimeout(t *testing.T) {
	t.Run("a hung provider", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 3, Timeout: 100 * time.Millisecond})
			fake.Script("m", upstreamtest.Reply{Hang: true})
			start := time.Now()
			_, err := p.Do(context.Background(), chat("m"))
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err %v, want ErrTimeout", err)
			}
			if elapsed := time.Since(start); elapsed != 100*time.Millisecond {
				t.Errorf("timed out after %v, want 100ms", elapsed)
			}
			// A timeout is not retried: the time is spent.
			if n := calls(fake, "m"); n != 1 {
				t.Errorf("the provider saw %d calls, want 1", n)
			}
			if err := fake.WaitIdle(context.Background()); err != nil || !fake.Requests()[0].Cancelled {
				t.Errorf("the hung call was not cancelled upstream: %v", err)
			}
		})
	})

	t.Run("across retries", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 3, Timeout: 500 * time.Millisecond, Backoff: time.Nanosecond})
			fake.Script("m", upstreamtest.Reply{Status: 503, Delay: 400 * time.Millisecond}, upstreamtest.Reply{Hang: true})
			start := time.Now()
			_, err := p.Do(context.Background(), chat("m"))
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err %v, want ErrTimeout", err)
			}
			// The second attempt had the 100ms left, not a fresh 500ms.
			if elapsed := time.Since(start); elapsed != 500*time.Millisecond {
				t.Errorf("timed out after %v, want 500ms in all", elapsed)
			}
			if n := calls(fake, "m"); n != 2 {
				t.Errorf("the provider saw %d calls, want 2", n)
			}
		})
	})

	t.Run("the caller's deadline", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{MaxRetries: 3, Timeout: time.Minute})
			fake.Script("m", upstreamtest.Reply{Hang: true})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := p.Do(ctx, chat("m"))
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 100*time.Millisecond {
				t.Errorf("err %v after %v, want the caller's deadline after 100ms", err, time.Since(start))
			}
		})
	})

	t.Run("the first byte stops the clock", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{Timeout: 100 * time.Millisecond, IdleTimeout: time.Second})
			fake.Script("m", upstreamtest.Reply{Chunks: []string{"a", "b", "c"}, ChunkDelay: 60 * time.Millisecond})
			resp, err := p.Do(context.Background(), stream("m"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// The stream lasts longer than the first-byte timeout.
			start := time.Now()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !strings.Contains(string(b), `"c"`) || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
				t.Errorf("read %q, %v", b, err)
			}
			if d := time.Since(start); d != 180*time.Millisecond {
				t.Errorf("the stream took %v, want 3 × 60ms", d)
			}
		})
	})

	t.Run("idle timeout between chunks", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{Timeout: time.Second, IdleTimeout: 100 * time.Millisecond})
			fake.Script("m", upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: 99 * time.Millisecond},
				upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: 101 * time.Millisecond})
			for _, want := range []bool{true, false} {
				var text strings.Builder
				var last error
				for c, err := range p.ChatStream(context.Background(), "m", ask("hi")) {
					if err != nil {
						last = err
						break
					}
					if len(c.Choices) > 0 && c.Choices[0].Delta.Content != nil {
						text.WriteString(*c.Choices[0].Delta.Content)
					}
				}
				if ok := last == nil && text.String() == "ab"; ok != want {
					t.Errorf("chunks 99ms apart or 101ms (%v): %q, %v", want, text.String(), last)
				}
				if !want && !errors.Is(last, ErrTimeout) {
					t.Errorf("err %v, want ErrTimeout", last)
				}
			}
		})
	})
}

// doCancelled makes a call in a synctest bubble and cancels it once every
// other goroutine of the bubble waits (the call has reached the
// provider), and returns its error.
func doCancelled(ctx context.Context, p *Provider, req *Request) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		synctest.Wait()
		cancel()
	}()
	_, err := p.Do(ctx, req)
	return err
}

// TestCancelledCall checks that a caller going away ends the call at once,
// upstream too, and that it is not retried.
func TestCancelledCall(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		p := newProvider(t, fake, Config{MaxRetries: 3})
		fake.Script("m", upstreamtest.Reply{Hang: true})
		err := doCancelled(context.Background(), p, chat("m"))
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		if err := fake.WaitIdle(context.Background()); err != nil || !fake.Requests()[0].Cancelled {
			t.Errorf("not cancelled upstream: %v", err)
		}
		if n := calls(fake, "m"); n != 1 {
			t.Errorf("a cancelled call was retried: %d calls", n)
		}
	})
}

func TestMalformed(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 3})
	fake.Script("m", upstreamtest.Reply{Body: `{"choices": [`})
	_, err := p.Do(context.Background(), chat("m"))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want ErrMalformed", err)
	}
	if n := calls(fake, "m"); n != 1 {
		t.Errorf("a malformed answer was retried: %d calls", n)
	}
}

func TestProviderConcurrencyLimit(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		p := newProvider(t, fake, Config{MaxConcurrency: 1})
		fake.Script("slow", upstreamtest.Reply{Content: "slow", Delay: 500 * time.Millisecond})
		fake.Script("fast", upstreamtest.Reply{Content: "fast"})

		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			if _, err := p.Do(context.Background(), chat("slow")); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait() // the slow call is at the provider

		// A caller whose deadline passes first is refused with a
		// LimitError, and the provider never sees it.
		short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Do(short, chat("fast"))
		var le *ratelimit.LimitError
		if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || le.RetryAfter <= 0 {
			t.Errorf("err %v, want a ratelimit.LimitError", err)
		}

		// So is a caller without a deadline of its own once the
		// provider's first-byte timeout passes: the provider was never
		// called, so this is a limit, not a timeout.
		q := &Provider{}
		*q = *p
		q.timeout = 50 * time.Millisecond
		_, err = q.Do(context.Background(), chat("fast"))
		if !errors.As(err, &le) || errors.Is(err, ErrTimeout) {
			t.Errorf("err %v, want a ratelimit.LimitError", err)
		}

		// A caller with time waits for the slot: it reaches the provider
		// only when the slow call is over, 500ms after it began.
		start := time.Now()
		if _, err := p.Do(context.Background(), chat("fast")); err != nil {
			t.Errorf("the waiting call: %v", err)
		}
		if r := fake.RequestsFor("fast"); len(r) != 1 || r[0].Received.Sub(start) != 400*time.Millisecond {
			t.Errorf("the fast call reached the provider %d times, %v after it was made; want once, when the slot freed", len(r), r[0].Received.Sub(start))
		}
	})
}

func TestProviderRPMLimit(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		// The first-byte timeout is the call's deadline: a turn a minute
		// away is refused at once rather than waited for in vain.
		p := newProvider(t, fake, Config{RPM: 1, Timeout: 300 * time.Millisecond, MaxRetries: 2})
		if _, err := p.Do(context.Background(), chat("m")); err != nil {
			t.Fatal(err)
		}
		for _, ctx := range []context.Context{context.Background(), t.Context()} {
			start := time.Now()
			_, err := p.Do(ctx, chat("m"))
			var le *ratelimit.LimitError
			if !errors.As(err, &le) || le.RetryAfter < 50*time.Second || le.RetryAfter > time.Minute {
				t.Fatalf("err %v, want a LimitError with about a minute to wait", err)
			}
			if errors.Is(err, ErrTimeout) || time.Since(start) != 0 {
				t.Errorf("refused after %v, want at once", time.Since(start))
			}
		}
		if n := calls(fake, "m"); n != 1 {
			t.Errorf("the provider saw %d calls, want 1", n)
		}
	})
}

// TestBodyCutRetried checks a JSON answer whose connection breaks midway
// through its body: the call is tried again, and the caller's buffer holds
// only the answer that came whole.
func TestBodyCutRetried(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 2})
	// The body is shorter than its Content-Length: the server closes the
	// connection once it is sent, mid-answer for the client.
	fake.Script("m",
		upstreamtest.Reply{Body: `{"id":"first","choices":[`, Header: http.Header{"Content-Length": {"500"}}},
		upstreamtest.Reply{Content: "whole"})
	var buf bytes.Buffer
	req := chat("m")
	req.Buffer = &buf
	resp, err := p.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 2 || !json.Valid(resp.Data) || bytes.Contains(resp.Data, []byte("first")) {
		t.Errorf("%d attempts, data %q", resp.Attempts, resp.Data)
	}
	if !bytes.Equal(buf.Bytes(), resp.Data) {
		t.Errorf("Data does not alias the buffer")
	}
}

// TestStreamKeepsItsConnection: a stream read to its [DONE] leaves its
// HTTP/1 connection to the next call, even when the end of the response
// comes a little after the last event; a response that never ends after
// [DONE] costs its connection, not the caller's time, and is no failure.
func TestStreamKeepsItsConnection(t *testing.T) {
	t.Run("net/http", func(t *testing.T) {
		transport := NewTransport()
		t.Cleanup(transport.CloseIdleConnections)
		testStreamKeepsItsConnection(t, transport)
	})
	t.Run("h1", func(t *testing.T) {
		transport := newH1Transport(NewTransport())
		t.Cleanup(transport.CloseIdleConnections)
		testStreamKeepsItsConnection(t, transport)
	})
}

func testStreamKeepsItsConnection(t *testing.T, transport http.RoundTripper) {
	var conns atomic.Int32
	hang := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
		http.NewResponseController(w).Flush()
		if strings.HasPrefix(r.URL.Path, "/hang/") {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		time.Sleep(10 * time.Millisecond) // the response's end comes after the event
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(func() { close(hang); srv.Close() })

	provider := func(base string) *Provider {
		p, err := New(Config{Name: "fake", BaseURL: base, Timeout: 2 * time.Second, Transport: transport})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	prompt := &openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: openai.TextContent("hi")}}}
	read := func(p *Provider) {
		t.Helper()
		s, err := p.openStream(context.Background(), "m", prompt)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range s.Chunks() {
			if err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close took %v", d)
		}
	}
	plain := provider(srv.URL)
	for range 3 {
		read(plain)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("three streams read to [DONE] used %d connections, want 1", n)
	}
	hanging := provider(srv.URL + "/hang")
	read(hanging)
	read(plain)
	if n := conns.Load(); n != 2 {
		t.Errorf("after a response that never ended: %d connections, want 2", n)
	}
	if st := hanging.breakers.get("m").cb.State().String(); st != "closed" {
		t.Errorf("breaker %s after a stream that ended at [DONE]", st)
	}
}

// closeIdle closes the idle connections of p's transport, when it keeps
// any.
func closeIdle(p *Provider) {
	if ci, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
