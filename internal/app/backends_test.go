package app

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/internal/redistest"
)

// TestRedisClientOfEachBackend opens the proxy's client from each
// backend's store section, and from one Cluster node alone: addrs without
// master_name are Cluster nodes however many are listed. Before, one node
// made a single-server client, and the keys of other nodes' slots failed
// with MOVED.
func TestRedisClientOfEachBackend(t *testing.T) {
	ctx := context.Background()
	for _, b := range redistest.Backends(t) {
		stores := map[string]config.Store{b.Name: {URL: b.URL, Addrs: b.Addrs, MasterName: b.MasterName}}
		if b.URL != "" {
			stores[b.Name] = config.Store{URL: b.URL}
		}
		if b.Name == "cluster" {
			stores["cluster-one-node"] = config.Store{Addrs: b.Addrs[:1]}
		}
		for name, store := range stores {
			t.Run(name, func(t *testing.T) {
				c, err := redisClient(store)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, ok := c.(*redis.ClusterClient); ok != (b.Name == "cluster") {
					t.Errorf("client %T", c)
				}
				for i := range 30 {
					if err := c.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
						t.Fatalf("key %d: %v", i, err)
					}
				}
			})
		}
	}
}
