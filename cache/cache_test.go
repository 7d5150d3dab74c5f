package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m))
}

// backends runs a test against each Store: memory, and Redis as one
// server, a Cluster and a Sentinel-watched master with a replica.
func backends(t *testing.T, test func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { test(t, NewMemory(time.Hour, 100)) })
	for _, b := range redistest.Backends(t) {
		t.Run("redis-"+b.Name, func(t *testing.T) {
			test(t, NewRedis(b.Client, RedisConfig{TTL: time.Hour}))
		})
	}
}

func transcript(turns ...string) []Message {
	var out []Message
	for i, text := range turns {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		out = append(out, Message{Role: role, Content: text})
	}
	return out
}

func TestStore(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		first := &Turn{Conversation: "conv_1", Consortium: "council", Transcript: transcript("hi", "hello"), RunID: "run_1"}
		if err := s.Save(ctx, "alice", first, &RunRecord{JSON: []byte(`{"run_id":"run_1"}`), Summary: RunSummary{RunID: "run_1"}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Match(ctx, "alice", "council", Hash("council", transcript("hi", "hello")))
		if err != nil || got.Conversation != "conv_1" || len(got.Transcript) != 2 {
			t.Fatalf("match: %+v, %v", got, err)
		}
		if _, err := s.Match(ctx, "alice", "other", Hash("other", transcript("hi", "hello"))); !errors.Is(err, ErrNotFound) {
			t.Errorf("another consortium matched: %v", err)
		}
		// Tenants never see each other's data.
		if _, err := s.Match(ctx, "bob", "council", Hash("council", transcript("hi", "hello"))); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob matched alice's turn: %v", err)
		}
		if _, err := s.Latest(ctx, "bob", "conv_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob saw alice's conversation: %v", err)
		}
		if _, err := s.Run(ctx, "bob", "run_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob saw alice's run: %v", err)
		}
		run, err := s.Run(ctx, "alice", "run_1")
		if err != nil || string(run) != `{"run_id":"run_1"}` {
			t.Errorf("run: %s, %v", run, err)
		}

		// A later turn becomes the latest; the earlier stays matchable (a
		// fork from it keeps the other branch).
		second := &Turn{Conversation: "conv_1", Consortium: "council", Transcript: transcript("hi", "hello", "more", "sure"), RunID: "run_2"}
		if err := s.Save(ctx, "alice", second, nil); err != nil {
			t.Fatal(err)
		}
		latest, err := s.Latest(ctx, "alice", "conv_1")
		if err != nil || latest.RunID != "run_2" {
			t.Fatalf("latest: %+v, %v", latest, err)
		}
		if got, err := s.Match(ctx, "alice", "council", Hash("council", transcript("hi", "hello"))); err != nil || got.RunID != "run_1" {
			t.Fatalf("earlier turn lost: %+v, %v", got, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTenantNamesCannotCollide checks that tenant and consortium names
// holding the key separator cannot address another's keys.
func TestTenantNamesCannotCollide(t *testing.T) {
	if turnKey("a:b", "c", "h") == turnKey("a", "b:c", "h") {
		t.Fatal("two tenants share a key")
	}
	if convKey("a:1", "x") == convKey("a", "1:x") {
		t.Fatal("two tenants share a conversation key")
	}
}

func TestHashCountsEveryTurn(t *testing.T) {
	a := Hash("c", transcript("one", "two", "three"))
	b := Hash("c", transcript("uno", "two", "three"))
	if a == b {
		t.Fatal("an earlier turn does not count in the hash")
	}
	if Hash("c", transcript("ab", "c")) == Hash("c", transcript("a", "bc")) {
		t.Fatal("turn boundaries do not count in the hash")
	}
	if Hash("c", transcript("x")) == Hash("d", transcript("x")) {
		t.Fatal("the consortium does not count in the hash")
	}
}

func TestMemoryBoundsAndTTL(t *testing.T) {
	m := NewMemory(time.Minute, 4)
	now := time.Now()
	m.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 3 {
		turn := &Turn{Conversation: fmt.Sprintf("conv_%d", i), Consortium: "c", Transcript: transcript(fmt.Sprint(i)), RunID: fmt.Sprint(i)}
		m.Save(ctx, "t", turn, nil) // two entries each
	}
	if m.order.Len() != 4 {
		t.Fatalf("%d entries, want the bound of 4", m.order.Len())
	}
	if _, err := m.Latest(ctx, "t", "conv_0"); !errors.Is(err, ErrNotFound) {
		t.Error("the least recently used entry was kept")
	}
	if _, err := m.Latest(ctx, "t", "conv_2"); err != nil {
		t.Errorf("the newest entry was dropped: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := m.Latest(ctx, "t", "conv_2"); !errors.Is(err, ErrNotFound) {
		t.Error("an expired entry was returned")
	}
}

// TestRedisDown checks that a Redis that stops answering is reported as
// ErrUnavailable within the timeout, and that the store recovers when it
// comes back.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s := NewRedis(srv.Client(200*time.Millisecond), RedisConfig{TTL: time.Hour, Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	_, err := s.Latest(ctx, "t", "conv_x")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with Redis down: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("waited %v on a dead Redis", took)
	}
	if err := s.Save(ctx, "t", &Turn{Conversation: "c", Consortium: "k", RunID: "r"}, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("save with Redis down: %v", err)
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the store did not recover when Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := NewRedis(srv.Client(0), RedisConfig{TTL: 90 * time.Second})
	ctx := context.Background()
	turn := &Turn{Conversation: "conv_t", Consortium: "c", Transcript: transcript("q", "a"), RunID: "run_t"}
	if err := s.Save(ctx, "alice", turn, &RunRecord{JSON: []byte(`{"run_id":"run_t"}`), Summary: RunSummary{RunID: "run_t"}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{convKey("alice", "conv_t"), runKey("alice", "run_t"), runsKey("alice"), turnKey("alice", "c", Hash("c", turn.Transcript))} {
		ttl, err := s.client.TTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > 90*time.Second {
			t.Errorf("%s: ttl %v, %v", key, ttl, err)
		}
	}
}

// TestRedisWaitsForReplicas checks that with Replicas a write is
// acknowledged once the replicas hold it, and reported unavailable, in
// bounded time, when fewer confirm it: the Sentinel backend's master has
// one replica, so waiting for two must fail.
func TestRedisWaitsForReplicas(t *testing.T) {
	var b redistest.Backend
	for _, b = range redistest.Backends(t) {
		if b.Name == "sentinel" {
			break
		}
	}
	ctx := context.Background()
	store := NewRedis(b.Client, RedisConfig{TTL: time.Hour, Replicas: 1})
	turn := &Turn{Conversation: "conv_w", Consortium: "c", Transcript: transcript("q", "a"), RunID: "run_w"}
	if err := store.Save(ctx, "alice", turn, &RunRecord{JSON: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveResponse(ctx, "alice", "resp_w", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// The replica holds them the moment the saves return.
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: b.Addrs[0]})
	defer sentinel.Close()
	replicas, err := sentinel.Replicas(ctx, redistest.MasterName).Result()
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas %v, %v", replicas, err)
	}
	replica := redistest.Client(t, replicas[0]["ip"]+":"+replicas[0]["port"])
	if n, err := replica.Exists(ctx, convKey("alice", "conv_w"), runKey("alice", "run_w"), responseKey("alice", "resp_w")).Result(); err != nil || n != 3 {
		t.Fatalf("the replica holds %d of 3 keys: %v", n, err)
	}

	store = NewRedis(b.Client, RedisConfig{TTL: time.Hour, Replicas: 2})
	began := time.Now()
	err = store.Save(ctx, "alice", turn, nil)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "1 of 2 replicas") {
		t.Fatalf("save with one replica of two: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("save waited %v", took)
	}
	if err := store.SaveResponse(ctx, "alice", "resp_w", []byte("{}")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("response saved with one replica of two: %v", err)
	}
}
