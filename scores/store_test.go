package scores

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/redistest"
)

// stores are the backends every store test runs against.
func stores(t *testing.T) map[string]func(ttl time.Duration, window int) Store {
	srv := redistest.Start(t)
	return map[string]func(time.Duration, int) Store{
		"memory": func(ttl time.Duration, window int) Store { return NewMemory(ttl, window) },
		"redis": func(ttl time.Duration, window int) Store {
			c := srv.Client(0)
			c.FlushAll(context.Background())
			return NewRedis(c, RedisConfig{TTL: ttl, Window: window})
		},
	}
}

// sample is a synthesize run: a beats b beats c, c failed once.
func sample(consortium string) *Tally {
	return TallyRun(&consortia.Run{Consortium: consortium, Strategy: "synthesize", Rounds: []consortia.Round{{
		Members: []consortia.MemberAnswer{ok("p/a", 1, "A"), ok("p/b", 1, "B"), failed("p/c", 1), {Model: "p/c", Instance: 2, Status: consortia.StatusOK, Label: "C", LatencyMs: 2000}},
		Arbiter: &consortia.ArbiterReply{Ranking: []string{"A", "B", "C"}},
	}}}, nil)
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := open(time.Hour, 3)
			empty, err := s.Load(ctx, "x")
			if err != nil || empty.Runs != 0 || len(empty.Models) != 0 {
				t.Fatalf("empty: %+v, %v", empty, err)
			}
			for range 5 {
				if err := s.Add(ctx, sample("x")); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Add(ctx, sample("y")); err != nil {
				t.Fatal(err)
			}
			got, err := s.Load(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			if got.Runs != 5 || got.Paired != 5 || len(got.Recent) != 3 {
				t.Errorf("runs %d, paired %d, recent %d (window 3)", got.Runs, got.Paired, len(got.Recent))
			}
			a, c := got.Models["p/a"], got.Models["p/c"]
			if a == nil || c == nil {
				t.Fatalf("models: %v", got.Models)
			}
			if a.Runs != 5 || a.Answers != 5 || a.Wins != 15 || a.FirstPlaces != 5 || a.Tokens != 75 || a.CostUnknown != 5 {
				t.Errorf("a: %+v", a)
			}
			// c: one instance failed (a loss to a and to b, its regret),
			// the other answered last (two more losses).
			if c.Runs != 5 || c.Answers != 5 || c.Failures != 5 || c.Regret != 10 || c.Losses != 20 {
				t.Errorf("c: %+v", c)
			}
			if got.Pairs[[2]string{"p/a", "p/c"}] != 10 || got.Pairs[[2]string{"p/a", "p/b"}] != 5 {
				t.Errorf("pairs: %v", got.Pairs)
			}
			if p50, ok := median(c.Latency); !ok || p50 < 1900 || p50 > 2100 {
				t.Errorf("c's median latency %v", p50)
			}
			if len(got.Recent[0]) != 3 {
				t.Errorf("a run's pairs: %v", got.Recent[0])
			}
		})
	}
}

// TestRedisKeys: a consortium's keys share one hash tag (one Cluster
// slot) whatever its name, carry the TTL, and hold no answer text.
func TestRedisKeys(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client(0)
	s := NewRedis(c, RedisConfig{TTL: time.Hour})
	for _, name := range []string{"x", "}odd{name", ""} {
		counts, pairs, recent := keys(name)
		tag := func(k string) string {
			i := strings.Index(k, "{")
			j := strings.Index(k[i+1:], "}")
			return k[i+1 : i+1+j]
		}
		if tag(counts) == "" || tag(counts) != tag(pairs) || tag(pairs) != tag(recent) {
			t.Errorf("%q: keys %s %s %s do not share a hash tag", name, counts, pairs, recent)
		}
	}
	if err := s.Add(ctx, sample("x")); err != nil {
		t.Fatal(err)
	}
	all, _ := c.Keys(ctx, "*").Result()
	if len(all) != 3 {
		t.Errorf("keys: %v", all)
	}
	for _, k := range all {
		if ttl := c.TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s: ttl %v", k, ttl)
		}
		dump := strings.Join(append(append(c.HKeys(ctx, k).Val(), c.HVals(ctx, k).Val()...), c.LRange(ctx, k, 0, -1).Val()...), " ")
		if strings.Contains(dump, "SENTINEL") {
			t.Errorf("%s holds text: %s", k, dump)
		}
	}
}

// TestRedisConcurrentWriters: two clients adding at once lose no count.
func TestRedisConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	var wg sync.WaitGroup
	for range 2 {
		s := NewRedis(srv.Client(0), RedisConfig{})
		wg.Go(func() {
			for range 100 {
				if err := s.Add(ctx, sample("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := NewRedis(srv.Client(0), RedisConfig{}).Load(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Runs != 200 || got.Models["p/a"].Wins != 600 || got.Pairs[[2]string{"p/b", "p/c"}] != 400 {
		t.Errorf("runs %d, a's wins %d, b>c %d", got.Runs, got.Models["p/a"].Wins, got.Pairs[[2]string{"p/b", "p/c"}])
	}
}

func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s := NewRedis(srv.Client(100*time.Millisecond), RedisConfig{Timeout: 200 * time.Millisecond})
	srv.Stop()
	if err := s.Add(context.Background(), sample("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("add: %v", err)
	}
	if _, err := s.Load(context.Background(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("load: %v", err)
	}
}

func TestMemoryExpires(t *testing.T) {
	m := NewMemory(time.Hour, 0)
	now := time.Now()
	m.now = func() time.Time { return now }
	m.Add(context.Background(), sample("x"))
	now = now.Add(59 * time.Minute)
	m.Add(context.Background(), sample("x")) // the expiry counts from here
	now = now.Add(59 * time.Minute)
	if s, _ := m.Load(context.Background(), "x"); s.Runs != 2 {
		t.Errorf("runs %d before the TTL since the last update", s.Runs)
	}
	now = now.Add(2 * time.Minute)
	if s, _ := m.Load(context.Background(), "x"); s.Runs != 0 {
		t.Errorf("runs %d after the TTL", s.Runs)
	}
}

// TestRedisBackends runs the Redis store on a single server, a Cluster
// and a Sentinel setup: a run's keys share one hash slot, so its
// MULTI/EXEC works on a Cluster too, and two clients (two replicas)
// adding at once lose no count.
func TestRedisBackends(t *testing.T) {
	ctx := context.Background()
	for _, b := range redistest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			var wg sync.WaitGroup
			for _, c := range []redis.UniversalClient{b.Client, b.Connect(t)} {
				s := NewRedis(c, RedisConfig{Timeout: 2 * time.Second})
				wg.Go(func() {
					for range 50 {
						if err := s.Add(ctx, sample("x")); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			got, err := NewRedis(b.Client, RedisConfig{Timeout: 2 * time.Second}).Load(ctx, "x")
			if err != nil {
				t.Fatal(err)
			}
			if got.Runs != 100 || got.Models["p/a"].Wins != 300 || got.Pairs[[2]string{"p/b", "p/c"}] != 200 || len(got.Recent) != 100 {
				t.Errorf("runs %d, a's wins %d, b>c %d, recent %d", got.Runs, got.Models["p/a"].Wins, got.Pairs[[2]string{"p/b", "p/c"}], len(got.Recent))
			}
		})
	}
}

// TestRedisExpiresTogether: a run without pairs restarts the expiry of
// every key of its consortium, the pairs' too, so that the statistics
// expire whole, counted from their last update, as Memory's do; never
// counts whose pairs (and so ratings) were dropped under them.
func TestRedisExpiresTogether(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client(0)
	c.FlushAll(ctx)
	s := NewRedis(c, RedisConfig{TTL: time.Hour})
	if err := s.Add(ctx, sample("x")); err != nil {
		t.Fatal(err)
	}
	// 59 minutes later, as the keys' TTLs say, a run with no pairs (one
	// member answered alone).
	counts, pairs, recent := keys("x")
	for _, k := range []string{counts, pairs, recent} {
		c.Expire(ctx, k, time.Minute)
	}
	alone := TallyRun(&consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{{
		Members: []consortia.MemberAnswer{ok("p/a", 1, "A")}}}}, nil)
	if len(alone.Pairs) != 0 {
		t.Fatalf("pairs %v", alone.Pairs)
	}
	if err := s.Add(ctx, alone); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{counts, pairs, recent} {
		if ttl := c.TTL(ctx, k).Val(); ttl < 59*time.Minute {
			t.Errorf("%s: ttl %v after an update, want the full hour again", k, ttl)
		}
	}
}
