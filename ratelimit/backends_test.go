package ratelimit

import (
	"context"
	"errors"
	"testing"

	"github.com/consortium-dev/consortium/internal/redistest"
)

// TestSharedOnEachBackend checks that a key's rpm holds across two
// replicas, each with a client of its own, on a single server, a Cluster
// and a Sentinel-watched master, and that Redis decided (no fallback to
// the local limits, which would let each replica allow the burst).
func TestSharedOnEachBackend(t *testing.T) {
	ctx := context.Background()
	for _, b := range redistest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			rpm := map[string]int{"alice": 3, "bob": 3}
			a := NewShared(b.Client, rpm, 0, nil)
			c := NewShared(b.Connect(t), rpm, 0, nil)
			for _, name := range []string{"alice", "bob"} {
				for i, s := range []*Shared{a, c, a} {
					if err := s.Allow(ctx, name); err != nil {
						t.Fatalf("%s: request %d of the burst: %v", name, i, err)
					}
				}
				if err := c.Allow(ctx, name); !errors.Is(err, ErrLimited) {
					t.Fatalf("%s: fourth request across replicas: %v", name, err)
				}
			}
			if n, err := b.Client.Exists(ctx, "rate:consortium:limit:5:alice").Result(); err != nil || n != 1 {
				t.Errorf("the limit is not kept in Redis: %d, %v", n, err)
			}
		})
	}
}
