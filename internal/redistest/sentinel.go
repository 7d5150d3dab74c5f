package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinels of StartSentinel monitor.
const MasterName = "consortium"

// Sentinel is a master, one replica of it and three Sentinels watching
// them with a quorum of two, each a redis-server on a loopback port. The
// Sentinels declare the master down after 500ms without an answer, so a
// failover takes a few seconds rather than the default half minute.
type Sentinel struct {
	// Addrs are the Sentinels' host:port.
	Addrs []string
	// Master and Replica are the servers as started; after a failover
	// the replica is the master (see MasterAddr).
	Master, Replica *Server
	sentinels       []*Server
	dir             string
}

// StartSentinel runs a master, its replica and three Sentinels until the
// test ends, once the Sentinels know each other and the replica (so that
// they can agree on a failover).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s, err := startSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func startSentinel() (s *Sentinel, err error) {
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		return nil, err
	}
	s = &Sentinel{dir: dir}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.Master, err = launch(false, nil); err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(s.Master.Addr, ":")
	if s.Replica, err = launch(false, func(r *Server) error {
		r.args = []string{"--replicaof", host, port}
		return nil
	}); err != nil {
		return nil, err
	}
	for range 3 {
		sentinel, err := launch(false, func(sn *Server) error {
			// A Sentinel rewrites its file: one of its own.
			sn.conf = filepath.Join(dir, "sentinel-"+sn.port+".conf")
			sn.args = []string{"--sentinel"}
			text := fmt.Sprintf(`sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %[1]s 500
sentinel failover-timeout %[1]s 5000
`, MasterName, host, port)
			return os.WriteFile(sn.conf, []byte(text), 0o600)
		})
		if err != nil {
			return nil, err
		}
		s.sentinels = append(s.sentinels, sentinel)
		s.Addrs = append(s.Addrs, sentinel.Addr)
	}
	return s, s.waitReady(15 * time.Second)
}

// waitReady waits until the replica has synced and every Sentinel knows
// the replica and the two other Sentinels.
func (s *Sentinel) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.Replica.Addr, MaxRetries: -1})
	defer rc.Close()
	for {
		info, err := rc.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s did not sync within %v: %v", s.Replica.Addr, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, addr := range s.Addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		for {
			peers, err1 := sc.Sentinels(ctx, MasterName).Result()
			replicas, err2 := sc.Replicas(ctx, MasterName).Result()
			if err1 == nil && err2 == nil && len(peers) == 2 && len(replicas) == 1 {
				break
			}
			if time.Now().After(deadline) {
				sc.Close()
				return fmt.Errorf("sentinel %s does not know its peers and the replica within %v: %d peers (%v), %d replicas (%v)", addr, d, len(peers), err1, len(replicas), err2)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.Close()
	}
	return nil
}

// MasterAddr returns the master's address as the first Sentinel that
// answers sees it.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.Addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		hp, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names the master: %v", last)
}

// KillMaster kills the current master, as a crash would, and returns its
// address.
func (s *Sentinel) KillMaster(t testing.TB) string {
	t.Helper()
	addr, err := s.MasterAddr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.server(t, addr).Stop()
	return addr
}

// WaitFailover waits until the Sentinels name a master other than old and
// returns it.
func (s *Sentinel) WaitFailover(t testing.TB, old string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		addr, err := s.MasterAddr(context.Background())
		if err == nil && addr != old {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover from %s within %v (%s, %v)", old, d, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Rejoin restarts the server at addr, killed before, empty and as a
// replica of the current master, as an operator (or a StatefulSet's init
// step) brings a failed master back; it returns once it has synced.
func (s *Sentinel) Rejoin(t testing.TB, addr string) {
	t.Helper()
	master, err := s.MasterAddr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(master, ":")
	srv := s.server(t, addr)
	srv.args = []string{"--replicaof", host, port}
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	rc := Client(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := rc.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not sync with %s: %v", addr, master, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// server returns the Master or the Replica, whichever is at addr.
func (s *Sentinel) server(t testing.TB, addr string) *Server {
	t.Helper()
	for _, srv := range []*Server{s.Master, s.Replica} {
		if srv.Addr == addr {
			return srv
		}
	}
	t.Fatalf("%s is neither the master nor the replica", addr)
	return nil
}

// Client returns a Sentinel-backed client of the master, closed when the
// test ends, with the proxy's options (see Server.Client).
func (s *Sentinel) Client(t testing.TB, timeout time.Duration) *redis.Client {
	c := redis.NewFailoverClient(options(timeout, s.Addrs, MasterName).Failover())
	t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills every process and removes their files.
func (s *Sentinel) Stop() {
	for _, sn := range s.sentinels {
		sn.Stop()
	}
	s.sentinels = nil
	for _, srv := range []*Server{s.Master, s.Replica} {
		if srv != nil {
			srv.Stop()
		}
	}
	os.RemoveAll(s.dir)
}
