package redistest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backend is one way of running Redis, as the proxy's store section names
// it and as a client the test can use.
type Backend struct {
	// Name is "single", "cluster" or "sentinel".
	Name string
	// Client is a client of the backend with the proxy's options, closed
	// when the test ends.
	Client redis.UniversalClient
	// URL is the single server's redis:// URL; "" for the others.
	URL string
	// Addrs are the Cluster's nodes or the Sentinels.
	Addrs []string
	// MasterName is the name the Sentinels monitor; "" for the others.
	MasterName string
}

// Store returns the backend as the proxy's store section, in YAML flow
// style: `{backend: redis, url: '…'}` or with addrs and master_name.
func (b Backend) Store() string {
	if b.URL != "" {
		return "{backend: redis, url: '" + b.URL + "'}"
	}
	s := "{backend: redis, addrs: ['" + strings.Join(b.Addrs, "', '") + "']"
	if b.MasterName != "" {
		s += ", master_name: " + b.MasterName
	}
	return s + "}"
}

// Connect returns another client of the backend, with the proxy's
// options, closed when the test ends: a second replica's own client.
func (b Backend) Connect(t testing.TB) redis.UniversalClient {
	c := redis.NewUniversalClient(options(time.Second, b.Addrs, b.MasterName))
	t.Cleanup(func() { c.Close() })
	return c
}

// setups are the backends one test binary shares: started by the first
// Backends call, stopped when Main's Run returns.
type setups struct {
	single   *Server
	cluster  *Cluster
	sentinel *Sentinel
}

var shared struct {
	sync.Mutex
	main bool // Main wraps this binary's tests
	once sync.Once
	*setups
	err error
}

// M is what TestMain runs; see Main.
type M struct {
	m interface{ Run() int }
}

// Main wraps a package's tests so that the backends Backends starts are
// shared by all of them and stopped when they end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
//
// Without it, each Backends call starts and stops backends of its own,
// which is correct but takes a few seconds more per test.
func Main(m interface{ Run() int }) *M {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	return &M{m: m}
}

// Run runs the tests, then stops the shared backends.
func (m *M) Run() int {
	code := m.m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.setups != nil {
		shared.setups.stop()
	}
	return code
}

// start runs the three backends at once: the Cluster and the Sentinels
// each take about a second to agree.
func start() (*setups, error) {
	s := &setups{}
	var wg sync.WaitGroup
	var errs [3]error
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.single, errs[0] = launch(false, nil)
	}()
	go func() { defer wg.Done(); s.cluster, errs[1] = startCluster() }()
	go func() { defer wg.Done(); s.sentinel, errs[2] = startSentinel() }()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *setups) stop() {
	if s.single != nil {
		s.single.Stop()
	}
	if s.cluster != nil {
		s.cluster.Stop()
	}
	if s.sentinel != nil {
		s.sentinel.Stop()
	}
}

// Backends returns a single server, a three-node Cluster and a Sentinel
// setup (a master, a replica, three Sentinels), each emptied, with a
// client closed when the test ends. A test ranges over them:
//
//	for _, b := range redistest.Backends(t) {
//		t.Run(b.Name, func(t *testing.T) { … b.Client … b.Store() … })
//	}
//
// The backends are shared by the package's tests when TestMain uses Main;
// so tests that call Backends must not run in parallel with each other.
// A test that kills a server starts its own (StartSentinel, StartCluster).
func Backends(t testing.TB) []Backend {
	t.Helper()
	shared.Lock()
	useShared := shared.main
	shared.Unlock()
	var s *setups
	if useShared {
		shared.once.Do(func() { shared.setups, shared.err = start() })
		if shared.err != nil {
			t.Fatal(shared.err)
		}
		s = shared.setups
	} else {
		var err error
		if s, err = start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.stop)
	}
	out := []Backend{
		{Name: "single", URL: s.single.URL(), Addrs: []string{s.single.Addr}},
		{Name: "cluster", Addrs: s.cluster.Addrs},
		{Name: "sentinel", Addrs: s.sentinel.Addrs, MasterName: MasterName},
	}
	ctx := context.Background()
	for i := range out {
		b := &out[i]
		b.Client = b.Connect(t)
		if err := flush(ctx, b.Client); err != nil {
			t.Fatalf("emptying %s: %v", b.Name, err)
		}
	}
	return out
}

// flush empties a backend: every master of a Cluster.
func flush(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.FlushAll(ctx).Err()
		})
	}
	return c.FlushAll(ctx).Err()
}
