package scores

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Store keeps the statistics of each consortium: the counts per model,
// the pairwise wins, and a bounded window of the recent runs' pairs for
// the bootstrap. Memory keeps them in the process; Redis shares them
// between replicas.
type Store interface {
	// Add adds one run's tally, atomically, and restarts the
	// consortium's expiry.
	Add(ctx context.Context, t *Tally) error
	// Load returns the consortium's statistics; a consortium with none
	// has empty ones.
	Load(ctx context.Context, consortium string) (*Stats, error)
}

// ErrUnavailable wraps a failure of the store: the statistics cannot be
// read or written now.
var ErrUnavailable = errors.New("scores store unavailable")

// Stats are a consortium's statistics.
type Stats struct {
	// Runs are the runs recorded, and Paired those of them that had
	// pairs.
	Runs, Paired int64
	Models       map[string]*Counts
	// Pairs are the pairwise wins over every run, by winner and loser.
	Pairs map[[2]string]int64
	// Recent are the pairs of the most recent runs that had any, newest
	// first, at most the store's window.
	Recent [][]Pair
}

func newStats() *Stats {
	return &Stats{Models: map[string]*Counts{}, Pairs: map[[2]string]int64{}}
}

// add adds a run's tally; window bounds Recent.
func (s *Stats) add(t *Tally, window int) {
	s.Runs++
	for ref, c := range t.Models {
		m := s.Models[ref]
		if m == nil {
			m = &Counts{}
			s.Models[ref] = m
		}
		m.add(c)
	}
	if len(t.Pairs) == 0 {
		return
	}
	s.Paired++
	for _, p := range t.Pairs {
		s.Pairs[[2]string{p.Winner, p.Loser}] += p.N
	}
	s.Recent = append([][]Pair{t.Pairs}, s.Recent[:min(len(s.Recent), window-1)]...)
}

// Window is how many recent runs with pairs a store keeps for the
// bootstrap when its config says 0.
const Window = 1000

// Memory is the Store of one process, lost on restart. Each consortium's
// statistics expire ttl after their last update.
type Memory struct {
	ttl    time.Duration
	window int
	now    func() time.Time
	mu     sync.Mutex
	stats  map[string]*memoryStats
}

type memoryStats struct {
	*Stats
	updated time.Time
}

// NewMemory returns a Memory store. If ttl is zero, 168h is used; if
// window is zero, Window.
func NewMemory(ttl time.Duration, window int) *Memory {
	if ttl <= 0 {
		ttl = 168 * time.Hour
	}
	if window <= 0 {
		window = Window
	}
	return &Memory{ttl: ttl, window: window, now: time.Now, stats: map[string]*memoryStats{}}
}

// Add implements Store.
func (m *Memory) Add(_ context.Context, t *Tally) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.live(t.Consortium)
	if s == nil {
		s = &memoryStats{Stats: newStats()}
		m.stats[t.Consortium] = s
	}
	s.add(t, m.window)
	s.updated = m.now()
	return nil
}

// Load implements Store. The statistics returned are a copy.
func (m *Memory) Load(_ context.Context, consortium string) (*Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := newStats()
	s := m.live(consortium)
	if s == nil {
		return out, nil
	}
	out.Runs, out.Paired = s.Runs, s.Paired
	for ref, c := range s.Models {
		cp := &Counts{}
		cp.add(c)
		out.Models[ref] = cp
	}
	for k, n := range s.Pairs {
		out.Pairs[k] = n
	}
	// A run's pairs are never changed once recorded: sharing them is safe.
	out.Recent = append([][]Pair(nil), s.Recent...)
	return out, nil
}

// live returns a consortium's statistics unless they expired (then they
// are dropped).
func (m *Memory) live(consortium string) *memoryStats {
	s := m.stats[consortium]
	if s != nil && m.now().Sub(s.updated) > m.ttl {
		delete(m.stats, consortium)
		return nil
	}
	return s
}
