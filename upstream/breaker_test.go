package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// stateLog records the breaker changes a Provider reports.
type stateLog struct {
	mu      sync.Mutex
	changes []string // "model state"
}

func (l *stateLog) record(model, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, model+" "+state)
}

func (l *stateLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}

// refused checks that a call is refused by the open breaker, without
// reaching the provider, with a RetryAfter within [min, max].
func refused(t *testing.T, p *Provider, fake *upstreamtest.Server, req *Request, min, max time.Duration) {
	t.Helper()
	before := len(fake.Requests())
	start := time.Now()
	_, err := p.Do(context.Background(), req)
	if !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("err %v, want ErrBreakerOpen", err)
	}
	e := upstreamError(t, err)
	if e.RetryAfter < min || e.RetryAfter > max {
		t.Errorf("RetryAfter %v, want between %v and %v", e.RetryAfter, min, max)
	}
	if e.Ref() != "fake/"+req.Model || e.Status != 0 {
		t.Errorf("error %+v", e)
	}
	if n := len(fake.Requests()); n != before {
		t.Errorf("an open breaker let %d calls reach the provider", n-before)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("refused after %v, want at once", d)
	}
}

func TestBreakerOpens(t *testing.T) {
	fake := newFake(t)
	var log stateLog
	p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 3, Cooldown: time.Hour}, OnBreakerChange: log.record})
	fake.Script("m", upstreamtest.Reply{Status: 500})
	for i := range 3 {
		if _, err := p.Do(context.Background(), chat("m")); upstreamError(t, err).Status != 500 {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if n := calls(fake, "m"); n != 3 {
		t.Fatalf("the provider saw %d calls, want 3", n)
	}
	for range 5 {
		refused(t, p, fake, chat("m"), 59*time.Minute, time.Hour)
	}
	if got := log.get(); !slices.Equal(got, []string{"m open"}) {
		t.Errorf("breaker changes %q", got)
	}
	// Streams are refused too, and other models of the provider have
	// breakers of their own.
	refused(t, p, fake, stream("m"), 59*time.Minute, time.Hour)
	if _, err := p.Do(context.Background(), chat("other")); err != nil {
		t.Errorf("another model: %v", err)
	}
}

// TestBreakerCountsAttempts checks that retries count one by one: a call
// that fails three times opens a breaker of three failures by itself, and
// its fourth attempt is refused without reaching the provider.
func TestBreakerCountsAttempts(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 5, Breaker: BreakerSettings{Failures: 3, Cooldown: time.Hour}})
	fake.Script("m", upstreamtest.Reply{Status: 503})
	_, err := p.Do(context.Background(), chat("m"))
	if err == nil {
		t.Fatal("no error")
	}
	if n := calls(fake, "m"); n != 3 {
		t.Errorf("the provider saw %d calls, want 3", n)
	}
	refused(t, p, fake, chat("m"), 59*time.Minute, time.Hour)
}

// TestBreakerHalfOpen runs on a fake clock: the cooldown passes without
// being slept through.
func TestBreakerHalfOpen(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		const cooldown = 30 * time.Second
		var log stateLog
		p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 1, Cooldown: cooldown}, OnBreakerChange: log.record})

		fake.Script("m", upstreamtest.Reply{Status: 502})
		p.Do(context.Background(), chat("m"))
		refused(t, p, fake, chat("m"), cooldown, cooldown)
		time.Sleep(cooldown - 500*time.Millisecond)
		// The client is told to come back in whole seconds at the soonest.
		refused(t, p, fake, chat("m"), time.Second, time.Second)

		// After the cooldown one trial call goes through; while it is
		// under way the breaker refuses every other call.
		time.Sleep(time.Second)
		fake.Script("m", upstreamtest.Reply{Content: "back", Delay: 200 * time.Millisecond}, upstreamtest.Reply{Content: "fast"})
		errc := make(chan error, 1)
		go func() {
			_, err := p.Do(context.Background(), chat("m"))
			errc <- err
		}()
		synctest.Wait()
		refused(t, p, fake, chat("m"), time.Second, time.Second)
		if err := <-errc; err != nil {
			t.Fatalf("trial call: %v", err)
		}

		// Its success closed the breaker.
		for range 3 {
			if _, err := p.Do(context.Background(), chat("m")); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := log.get(), []string{"m open", "m half-open", "m closed"}; !slices.Equal(got, want) {
			t.Errorf("breaker changes %q, want %q", got, want)
		}

		// A failed trial opens it again at once.
		fake.Script("m", upstreamtest.Reply{Status: 500})
		p.Do(context.Background(), chat("m"))
		time.Sleep(cooldown + time.Millisecond)
		p.Do(context.Background(), chat("m"))
		refused(t, p, fake, chat("m"), cooldown, cooldown)
		if got, want := log.get(), []string{"m open", "m half-open", "m closed", "m open", "m half-open", "m open"}; !slices.Equal(got, want) {
			t.Errorf("breaker changes %q, want %q", got, want)
		}
	})
}

// TestBreakerIgnores checks what never opens a breaker: the provider
// refusing requests (4xx, 429 included), calls the caller cancelled, and
// calls this process's own provider limits refused.
func TestBreakerIgnores(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 413, 422, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			p := newProvider(t, fake, Config{MaxRetries: 1, Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
			fake.Script("m", upstreamtest.Reply{Status: status})
			for range 4 {
				if _, err := p.Do(context.Background(), chat("m")); errors.Is(err, ErrBreakerOpen) || upstreamError(t, err).Status != status {
					t.Fatalf("err %v, want status %d", err, status)
				}
			}
			want := 4
			if status == 429 {
				want = 8 // retried once each
			}
			if n := calls(fake, "m"); n != want {
				t.Errorf("the provider saw %d calls, want %d", n, want)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
			fake.Script("m", upstreamtest.Reply{Hang: true})
			for range 3 {
				if err := doCancelled(context.Background(), p, chat("m")); !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v", err)
				}
			}
			fake.Script("m", upstreamtest.Reply{Content: "ok"})
			if _, err := p.Do(context.Background(), chat("m")); err != nil {
				t.Errorf("after cancelled calls: %v", err)
			}
		})
	})

	t.Run("cancelled stream", func(t *testing.T) {
		t.Parallel()
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
			fake.Script("m", upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			resp, err := p.Do(ctx, stream("m"))
			if err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(20*time.Millisecond, cancel)
			io.ReadAll(resp.Body) // ends when the caller goes away
			resp.Body.Close()
			fake.Script("m", upstreamtest.Reply{Content: "ok"})
			if _, err := p.Do(context.Background(), chat("m")); err != nil {
				t.Errorf("after a cancelled stream: %v", err)
			}
		})
	})

	t.Run("provider limit", func(t *testing.T) {
		t.Parallel()
		fake := newFake(t)
		p := newProvider(t, fake, Config{RPM: 1, Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
		fake.Script("m", upstreamtest.Reply{Content: "ok"})
		p.Do(context.Background(), chat("m"))
		for range 3 {
			if _, err := p.Do(context.Background(), chat("m")); !errors.Is(err, ratelimit.ErrLimited) {
				t.Fatalf("err %v, want ErrLimited", err)
			}
		}
		if b := p.breakers.get("m"); b.cb.State().String() != "closed" {
			t.Errorf("breaker %v after limited calls", b.cb.State())
		}
	})
}

// TestBreakerCounts checks the failures that do count, each opening a
// breaker of one failure.
func TestBreakerCounts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reply  upstreamtest.Reply
		stream bool
		read   bool // read the stream to its end before closing it
	}{
		{name: "500", reply: upstreamtest.Reply{Status: 500}},
		{name: "503", reply: upstreamtest.Reply{Status: 503}},
		{name: "529", reply: upstreamtest.Reply{Status: 529}},
		{name: "501", reply: upstreamtest.Reply{Status: 501}},
		{name: "dropped connection", reply: upstreamtest.Reply{Drop: true}},
		{name: "timeout", reply: upstreamtest.Reply{Hang: true}},
		{name: "malformed 200", reply: upstreamtest.Reply{Body: `{"choices": [`}},
		{name: "stream cut midway", reply: upstreamtest.Reply{Content: "one two three", CutAfter: 1}, stream: true, read: true},
		{name: "stream silent past idle_timeout", reply: upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: time.Hour}, stream: true, read: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
				p := newProvider(t, fake, Config{Timeout: 200 * time.Millisecond, IdleTimeout: 100 * time.Millisecond,
					Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
				fake.Script("m", tc.reply)
				req := chat("m")
				if tc.stream {
					req = stream("m")
				}
				resp, err := p.Do(context.Background(), req)
				if tc.stream {
					if err != nil {
						t.Fatalf("the stream did not begin: %v", err)
					}
					// The breaker hears of a stream only when it is closed.
					if _, err := io.ReadAll(resp.Body); err == nil {
						t.Fatal("the stream ended without an error")
					}
					if b := p.breakers.get("m"); b.cb.State().String() != "closed" {
						t.Errorf("breaker %v before the stream was closed", b.cb.State())
					}
					resp.Body.Close()
					resp.Body.Close() // closing twice reports once
				} else if err == nil {
					t.Fatal("no error")
				}
				refused(t, p, fake, chat("m"), time.Hour, time.Hour)
			})
		})
	}

	t.Run("a stream read to its end is a success", func(t *testing.T) {
		t.Parallel()
		fake := newFake(t)
		p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 2, Cooldown: time.Hour}})
		fake.Script("m", upstreamtest.Reply{Status: 500}, upstreamtest.Reply{Content: "fine"}, upstreamtest.Reply{Status: 500})
		p.Do(context.Background(), chat("m"))
		resp, err := p.Do(context.Background(), stream("m"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The success reset the count: one more failure does not open it.
		p.Do(context.Background(), chat("m"))
		if _, err := p.Do(context.Background(), chat("m")); errors.Is(err, ErrBreakerOpen) {
			t.Error("the breaker counted failures across a successful stream")
		}
	})
}

// TestBreakerClock drives one model's breaker on a fake clock: it opens
// after Failures consecutive failures, says how long is left of the
// cooldown, lets one trial through after it, and closes on its success.
func TestBreakerClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log stateLog
		bs := newBreakers(BreakerSettings{Failures: 3, Cooldown: 30 * time.Second}, log.record, nil)
		b := bs.get("m")
		if bs.get("m") != b || bs.get("n") == b {
			t.Fatal("one breaker per model")
		}
		fail := &Error{Status: 503}
		attempt := func(result error) error {
			done, _, err := b.allow(30 * time.Second)
			if err == nil {
				done(result)
			}
			return err
		}
		// Two failures, a success, then two more: not consecutive.
		for _, r := range []error{fail, fail, nil, fail, fail} {
			if err := attempt(r); err != nil {
				t.Fatal(err)
			}
		}
		// A cancelled call neither counts nor breaks the run.
		attempt(&Error{Err: context.Canceled})
		if err := attempt(fail); err != nil {
			t.Fatal(err)
		}
		// Now three in a row.
		_, wait, err := b.allow(30 * time.Second)
		if !errors.Is(err, ErrBreakerOpen) || wait != 30*time.Second {
			t.Fatalf("err %v, wait %v; want open for 30s", err, wait)
		}
		time.Sleep(20 * time.Second)
		if _, wait, _ := b.allow(30 * time.Second); wait != 10*time.Second {
			t.Errorf("wait %v 20s into a 30s cooldown", wait)
		}
		time.Sleep(9*time.Second + 500*time.Millisecond)
		if _, wait, _ := b.allow(30 * time.Second); wait != time.Second {
			t.Errorf("wait %v half a second before the end, want at least 1s", wait)
		}
		time.Sleep(time.Second)

		// One trial at a time; a trial that was cancelled frees the slot.
		done, _, err := b.allow(30 * time.Second)
		if err != nil {
			t.Fatalf("no trial after the cooldown: %v", err)
		}
		if _, _, err := b.allow(30 * time.Second); !errors.Is(err, ErrBreakerOpen) {
			t.Errorf("a second call during the trial: %v", err)
		}
		done(&Error{Err: context.Canceled})
		done, _, err = b.allow(30 * time.Second)
		if err != nil {
			t.Fatalf("no trial after a cancelled one: %v", err)
		}
		done(nil)
		if err := attempt(fail); err != nil {
			t.Errorf("closed after the trial: %v", err)
		}
		if got, want := log.get(), []string{"m open", "m half-open", "m closed"}; !slices.Equal(got, want) {
			t.Errorf("changes %q, want %q", got, want)
		}
	})
}

func TestCountsAgainst(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&Error{Status: 500}, true},
		{&Error{Status: 503}, true},
		{&Error{Status: 529}, true},
		{&Error{Status: 400}, false},
		{&Error{Status: 401}, false},
		{&Error{Status: 408}, false},
		{&Error{Status: 429}, false},
		{&Error{Err: errFirstByte}, true},
		{&Error{Err: errIdle}, true},
		{&Error{Err: ErrMalformed}, true},
		{&Error{Err: io.ErrUnexpectedEOF}, true},
		{&Error{Err: ErrBreakerOpen}, false},
		{&Error{Err: &ratelimit.LimitError{}}, false},
		{io.ErrUnexpectedEOF, true},
	} {
		if got := countsAgainst(tc.err); got != tc.want {
			t.Errorf("countsAgainst(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestBreakerRefusalsAreNeutral checks that a 4xx between failures neither
// counts nor resets the run: a model that alternates 503 and 429 still
// opens its breaker.
func TestBreakerRefusalsAreNeutral(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 2, Cooldown: time.Hour}})
	fake.Script("m", upstreamtest.Reply{Status: 503}, upstreamtest.Reply{Status: 429}, upstreamtest.Reply{Status: 503}, upstreamtest.Reply{Status: 200, Content: "ok"})
	for i, want := range []int{503, 429, 503} {
		if _, err := p.Do(context.Background(), chat("m")); upstreamError(t, err).Status != want {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	refused(t, p, fake, chat("m"), 59*time.Minute, time.Hour)
}
