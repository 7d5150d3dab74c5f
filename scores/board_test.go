package scores

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/redistest"
)

// run is a synthesize run of consortium x where the arbiter ranks the
// members in order, best first.
func run(order ...string) *consortia.Run {
	r := &consortia.Run{Consortium: "x", Strategy: "synthesize", Rounds: []consortia.Round{{Arbiter: &consortia.ArbiterReply{}}}}
	for i, m := range order {
		label := string(rune('A' + i))
		r.Rounds[0].Members = append(r.Rounds[0].Members, ok(m, 1, label))
		r.Rounds[0].Arbiter.Ranking = append(r.Rounds[0].Arbiter.Ranking, label)
	}
	return r
}

// skips counts the runs a Board skipped, by reason.
type skips struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *skips) add(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[reason]++
}

func (s *skips) get(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[reason]
}

func TestBoard(t *testing.T) {
	ctx := context.Background()
	b := New(Config{Consortia: []string{"x", "y"}, Refresh: time.Hour})
	for range 30 {
		b.Record(run("p/a", "p/b", "p/c"))
		b.Record(run("p/b", "p/a", "p/c"))
		b.Record(run("p/a", "p/c", "p/b"))
	}
	b.Record(&consortia.Run{Consortium: "unknown", Rounds: []consortia.Round{{}}}) // not listed: ignored
	b.Close()

	got, err := b.Leaderboard(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "x" || got[1].Name != "y" || len(got[1].Models) != 0 {
		t.Fatalf("standings: %+v", got)
	}
	rows := got[0].Models
	if len(rows) != 3 || rows[0].Model != "p/a" || rows[1].Model != "p/b" || rows[2].Model != "p/c" {
		t.Fatalf("rows: %+v", rows)
	}
	a := rows[0]
	if a.Runs != 90 || a.Answers != 90 || a.FirstPlaces != 60 || *a.WinRate != 0.8333 || a.Tokens != 90*15 {
		t.Errorf("a: %+v", a)
	}
	if a.RatingCI95[0] > *a.Rating || a.RatingCI95[1] < *a.Rating || *a.LatencyP50 < 95 || *a.LatencyP50 > 105 {
		t.Errorf("a: rating %v %v, p50 %v", *a.Rating, *a.RatingCI95, *a.LatencyP50)
	}
	mean := (*rows[0].Rating + *rows[1].Rating + *rows[2].Rating) / 3
	if mean < 999 || mean > 1001 {
		t.Errorf("the ratings' mean is %v, not 1000", mean)
	}

	// The JSON is DESIGN's, the volume columns only when asked for.
	for _, volume := range []bool{true, false} {
		got, _ := b.Leaderboard(ctx, volume, "x")
		data, _ := json.Marshal(map[string]any{"consortia": got})
		var back struct {
			Consortia []struct {
				Name   string           `json:"name"`
				Models []map[string]any `json:"models"`
			} `json:"consortia"`
		}
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		row := back.Consortia[0].Models[0]
		want := []string{"model", "answers", "failures", "first_places", "win_rate", "rating", "rating_ci95", "regret", "latency_ms_p50"}
		if volume {
			want = append(want, "runs", "tokens", "cost_usd")
		}
		if len(row) != len(want) {
			t.Errorf("volume %v: %s", volume, data)
		}
		for _, k := range want {
			if _, ok := row[k]; !ok {
				t.Errorf("volume %v: no %s in %s", volume, k, data)
			}
		}
		if volume && row["cost_usd"] != nil {
			t.Errorf("cost_usd %v without prices", row["cost_usd"])
		}
	}

	if _, err := b.Leaderboard(ctx, false, "nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown consortium: %v", err)
	}
	// Closed: later runs are skipped, not recorded.
	b.Record(run("p/a", "p/b"))
	if again, _ := b.Leaderboard(ctx, true, "x"); again[0].Models[0].Runs != 90 {
		t.Errorf("a run recorded after Close")
	}
}

func TestBoardRatings(t *testing.T) {
	b := New(Config{Consortia: []string{"x"}, Refresh: 10 * time.Millisecond})
	defer b.Close()
	if r := b.Ratings("x"); len(r) != 0 {
		t.Errorf("ratings before any run: %v", r)
	}
	for range 20 {
		b.Record(run("p/a", "p/b"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Ratings("x")["p/a"].Comparisons < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r := b.Ratings("x")
	if r["p/a"].Comparisons != 20 || r["p/a"].Rating <= r["p/b"].Rating {
		t.Errorf("ratings %+v", r)
	}
	var _ consortia.Ratings = b
}

// slowStore blocks every Add until released.
type slowStore struct {
	*Memory
	release chan struct{}
}

func (s *slowStore) Add(ctx context.Context, t *Tally) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Memory.Add(ctx, t)
}

// TestRecordNeverBlocks: with the writer stuck, Record returns at once and
// counts what it drops; Close drains what was queued.
func TestRecordNeverBlocks(t *testing.T) {
	var sk skips
	store := &slowStore{Memory: NewMemory(0, 0), release: make(chan struct{})}
	b := New(Config{Store: store, Consortia: []string{"x"}, Queue: 4, OnSkip: sk.add, Refresh: time.Hour})
	start := time.Now()
	for range 50 {
		b.Record(run("p/a", "p/b"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("50 records took %v", d)
	}
	if n := sk.get(SkipQueueFull); n < 45 || n > 46 {
		t.Errorf("%d skipped as the queue was full, want 45 or 46 (4 queued, 1 at the writer)", n)
	}
	close(store.release)
	b.Close()
	s, _ := store.Load(context.Background(), "x")
	if s.Runs+int64(sk.get(SkipQueueFull)) != 50 {
		t.Errorf("%d written, %d skipped: a run was lost", s.Runs, sk.get(SkipQueueFull))
	}
	b.Record(run("p/a", "p/b"))
	if sk.get(SkipClosed) != 1 {
		t.Errorf("a record after Close was not counted as skipped")
	}
}

// TestCloseIsBounded: a store that never answers holds Close only for
// Config.Drain.
func TestCloseIsBounded(t *testing.T) {
	var sk skips
	store := &slowStore{Memory: NewMemory(0, 0), release: make(chan struct{})}
	b := New(Config{Store: store, Consortia: []string{"x"}, OnSkip: sk.add, Drain: 100 * time.Millisecond, Refresh: time.Hour})
	for range 10 {
		b.Record(run("p/a", "p/b"))
	}
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if sk.get(SkipStore) != 10 {
		t.Errorf("%d skipped for the store, want 10", sk.get(SkipStore))
	}
}

// TestBoardStoreDown: the leaderboard says the store is down; recording
// skips and counts.
func TestBoardStoreDown(t *testing.T) {
	var sk skips
	srv := redistest.Start(t)
	store := NewRedis(srv.Client(100*time.Millisecond), RedisConfig{Timeout: 200 * time.Millisecond})
	b := New(Config{Store: store, Consortia: []string{"x"}, OnSkip: sk.add, Refresh: time.Hour})
	srv.Stop()
	b.Record(run("p/a", "p/b"))
	b.Close()
	if sk.get(SkipStore) != 1 {
		t.Errorf("skipped: %v", sk.n)
	}
	_, err := b.Leaderboard(context.Background(), false, "x")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("leaderboard with the store down: %v", err)
	}
}

// TestBoardsShareRedis: two Boards (as two replicas) on one Redis see
// each other's runs, in the leaderboard and, after a refresh, in the
// ratings.
func TestBoardsShareRedis(t *testing.T) {
	srv := redistest.Start(t)
	one := New(Config{Store: NewRedis(srv.Client(0), RedisConfig{}), Consortia: []string{"x"}, Refresh: 20 * time.Millisecond})
	two := New(Config{Store: NewRedis(srv.Client(0), RedisConfig{}), Consortia: []string{"x"}, Refresh: 20 * time.Millisecond})
	defer two.Close()
	for range 25 {
		one.Record(run("p/a", "p/b"))
	}
	one.Close()
	got, err := two.Leaderboard(context.Background(), true, "x")
	if err != nil || got[0].Models[0].Runs != 25 {
		t.Fatalf("%+v %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for two.Ratings("x")["p/a"].Comparisons != 25 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := two.Ratings("x"); r["p/a"].Comparisons != 25 {
		t.Errorf("the other replica's ratings: %+v", r)
	}
}

func BenchmarkRecord(b *testing.B) {
	board := New(Config{Consortia: []string{"x"}, Queue: 1 << 20, Refresh: time.Hour})
	defer board.Close()
	r := run("p/a", "p/b", "p/c")
	b.ReportAllocs()
	for b.Loop() {
		board.Record(r)
	}
}
