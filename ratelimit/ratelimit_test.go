package ratelimit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := NewKeys(map[string]int{"alice": 60, "bob": 0})
		for i := range 60 {
			if err := k.Allow(context.Background(), "alice"); err != nil {
				t.Fatalf("request %d of the burst refused: %v", i, err)
			}
		}
		err := k.Allow(context.Background(), "alice")
		var le *LimitError
		if !errors.As(err, &le) || !errors.Is(err, ErrLimited) {
			t.Fatalf("61st request: %v", err)
		}
		if le.RetryAfter <= 0 || le.RetryAfter > time.Second {
			t.Errorf("RetryAfter %v, want about 1s at 60 rpm", le.RetryAfter)
		}
		// A refused request takes nothing: after the wait one more passes.
		time.Sleep(le.RetryAfter)
		if err := k.Allow(context.Background(), "alice"); err != nil {
			t.Errorf("after waiting: %v", err)
		}
		for range 1000 {
			if err := k.Allow(context.Background(), "bob"); err != nil {
				t.Fatal("rpm 0 is unlimited")
			}
		}
		if err := k.Allow(context.Background(), "carol"); err != nil {
			t.Fatal("a key without a limit is unlimited")
		}
	})
}

func TestGateRPMWaitsWithinDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate("p", 60, 0) // one a second after a burst of 60
		for range 60 {
			release, err := g.Enter(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			release()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		release, err := g.Enter(ctx)
		if err != nil {
			t.Fatalf("a wait that fits the deadline was refused: %v", err)
		}
		release()
		if waited := time.Since(start); waited < 900*time.Millisecond || waited > 1100*time.Millisecond {
			t.Errorf("waited %v, want about 1s", waited)
		}

		// A deadline shorter than the wait is refused at once.
		short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel2()
		start = time.Now()
		_, err = g.Enter(short)
		var le *LimitError
		if !errors.As(err, &le) || time.Since(start) != 0 {
			t.Fatalf("err %v after %v, want an immediate LimitError", err, time.Since(start))
		}
	})
}

func TestGateConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate("p", 0, 2)
		r1, _ := g.Enter(context.Background())
		r2, _ := g.Enter(context.Background())
		entered := make(chan struct{})
		go func() {
			r3, err := g.Enter(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			close(entered)
			r3()
		}()
		synctest.Wait()
		select {
		case <-entered:
			t.Fatal("a third call entered with two slots taken")
		default:
		}
		r1()
		synctest.Wait()
		select {
		case <-entered:
		default:
			t.Fatal("the third call did not enter when a slot freed")
		}
		r2()

		// A caller that goes away while waiting gets its context's error.
		a, _ := g.Enter(context.Background())
		b, _ := g.Enter(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := g.Enter(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled wait: %v", err)
		}
		a()
		b()
	})
}

func TestNilGate(t *testing.T) {
	var g *Gate
	release, err := g.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
	release, err = NewGate("p", 0, 0).Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
}

// TestGateConcurrencyDeadline checks that a caller waiting for a slot
// until its deadline is refused with a LimitError, also when a timer of
// its own cancels a parent context at that same instant (the upstream
// package's first-byte timeout does), which must not turn the answer into
// a plain cancellation.
func TestGateConcurrencyDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate("p", 0, 1)
		release, _ := g.Enter(context.Background())
		defer release()

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := g.Enter(ctx)
		var le *LimitError
		if !errors.As(err, &le) || le.RetryAfter <= 0 || le.What != "provider p" {
			t.Fatalf("err %v, want a LimitError", err)
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Errorf("waited %v, want the 2s the deadline allowed", waited)
		}

		for range 10 {
			parent, cancelParent := context.WithCancel(context.Background())
			timer := time.AfterFunc(time.Second, cancelParent)
			ctx, cancel := context.WithTimeout(parent, time.Second)
			_, err := g.Enter(ctx)
			if !errors.As(err, &le) {
				t.Fatalf("err %v at the deadline, want a LimitError", err)
			}
			cancel()
			timer.Stop()
			cancelParent()
		}

		// A caller that goes away before its deadline is not limited.
		ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
		time.AfterFunc(time.Second, cancel)
		if _, err := g.Enter(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrLimited) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
}
