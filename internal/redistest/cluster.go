package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a running Redis Cluster of three masters and no replicas,
// each a redis-server with --cluster-enabled on a loopback port below
// 55535 (its bus port, 10000 higher, must be a port too), joined by
// `redis-cli --cluster create`.
type Cluster struct {
	// Addrs are the nodes' host:port, every slot served by one of them.
	Addrs []string
	nodes []*Server
	dir   string
}

// StartCluster runs a three-node Redis Cluster until the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func startCluster() (c *Cluster, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli is not installed (Debian's redis-tools, a dependency of redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for range 3 {
		n, err := launch(true, func(n *Server) error {
			n.args = []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes-" + n.port + ".conf",
				"--cluster-node-timeout", "2000",
			}
			n.dir = dir
			return nil
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	return c, c.waitOK(10 * time.Second)
}

// waitOK waits until every node says cluster_state:ok and knows every
// other node, so a client's first command finds every slot.
func (c *Cluster) waitOK(d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, addr := range c.Addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("cluster node %s is not ok within %v: %s %v", addr, d, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cl.Close()
	}
	return nil
}

// Client returns a Cluster client of every node, closed when the test
// ends, with the proxy's options (see Server.Client).
func (c *Cluster) Client(t testing.TB, timeout time.Duration) *redis.ClusterClient {
	cl := redis.NewClusterClient(options(timeout, c.Addrs, "").Cluster())
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Stop kills every node and removes their files.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
	os.RemoveAll(c.dir)
}
