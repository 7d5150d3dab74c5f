package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m))
}

// TestSharedAcrossReplicas checks that a key's rpm holds across two
// replicas, each with a client of its own to one Redis.
func TestSharedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	rpm := map[string]int{"alice": 3, "bob": 0, "a:1": 1}
	a := NewShared(srv.Client(0), rpm, 0, nil)
	b := NewShared(srv.Client(0), rpm, 0, nil)
	ctx := context.Background()
	for i, s := range []*Shared{a, b, a} {
		if err := s.Allow(ctx, "alice"); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	err := b.Allow(ctx, "alice")
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || le.What != "client key alice" {
		t.Fatalf("fourth request across replicas: %v", err)
	}
	// At 3 a minute the next request is due within 20s.
	if le.RetryAfter <= 0 || le.RetryAfter > 20*time.Second {
		t.Errorf("RetryAfter %v", le.RetryAfter)
	}
	for range 10 {
		if err := a.Allow(ctx, "bob"); err != nil {
			t.Fatalf("rpm 0 is unlimited: %v", err)
		}
	}
	// Names holding the separator do not share a limit.
	if err := a.Allow(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Allow(ctx, "a"); err != nil {
		t.Fatalf("a name without a limit was limited: %v", err)
	}
}

// TestSharedWithRedisDown checks that limits hold in this process while
// Redis does not answer, with a warning in the log.
func TestSharedWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	var logs bytes.Buffer
	s := NewShared(srv.Client(100*time.Millisecond), map[string]int{"alice": 2}, 100*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	srv.Stop()
	ctx := context.Background()
	for i := range 2 {
		if err := s.Allow(ctx, "alice"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := s.Allow(ctx, "alice"); !errors.Is(err, ErrLimited) {
		t.Fatalf("third request with Redis down: %v", err)
	}
	if !strings.Contains(logs.String(), "limiting in this process") {
		t.Errorf("no warning: %s", logs.String())
	}
}
