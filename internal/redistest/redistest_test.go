package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(Main(m))
}

// TestBackends checks that every backend stores and reads keys in every
// slot, and that its store section says how to reach it.
func TestBackends(t *testing.T) {
	began := time.Now()
	backends := Backends(t)
	t.Logf("backends ready in %v", time.Since(began))
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			for i := range 50 {
				key := fmt.Sprintf("key-%d", i)
				if err := b.Client.Set(ctx, key, i, time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
				if got, err := b.Client.Get(ctx, key).Int(); err != nil || got != i {
					t.Fatalf("%s: %d, %v", key, got, err)
				}
			}
			if s := b.Store(); !strings.HasPrefix(s, "{backend: redis, ") {
				t.Errorf("store %s", s)
			}
		})
	}
	// A second call finds them again, emptied.
	for _, b := range Backends(t) {
		if n, err := b.Client.Exists(ctx, "key-1").Result(); err != nil || n != 0 {
			t.Errorf("%s not emptied: %d, %v", b.Name, n, err)
		}
	}
}
