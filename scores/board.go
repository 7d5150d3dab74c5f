package scores

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consortium-dev/consortium/consortia"
)

// Config is what New needs.
type Config struct {
	// Store keeps the statistics. If nil, a Memory store with its
	// defaults.
	Store Store
	// Consortia are the consortiums' names, in the order the leaderboard
	// lists them; others are unknown to it.
	Consortia []string
	// Queue is how many runs may wait to be written; a run that finds it
	// full is skipped (counted). If zero, 1024.
	Queue int
	// Refresh is how often the ratings that consortia.Ratings answers
	// from memory are fitted again from the store (which other replicas
	// feed too). If zero, 5s.
	Refresh time.Duration
	// Drain bounds how long Close waits for the queued runs to be
	// written; those still queued then are skipped. If zero, 10s.
	Drain time.Duration
	// OnSkip, if set, is told of every run whose scores were not
	// recorded, with why: "queue_full", "store" or "closed".
	OnSkip func(reason string)
	// Logger gets a warning when the store fails. If nil, slog.Default().
	Logger *slog.Logger
	// Pricing prices the members' calls for each model's cost_usd. A
	// model it does not list has an unknown cost (null), never 0.
	Pricing consortia.Pricing
}

// Skip reasons, as Config.OnSkip gets them.
const (
	SkipQueueFull = "queue_full"
	SkipStore     = "store"
	SkipClosed    = "closed"
)

// Board records runs into the store, off the runs' critical path, and
// answers the leaderboard and the ratings. Record is a consortia.Config
// OnRun; the Board is a consortia.Ratings.
type Board struct {
	cfg    Config
	store  Store
	known  map[string]bool
	log    *slog.Logger
	queue  chan *Tally
	mu     sync.RWMutex // guards closed against Record's send
	closed bool
	done   chan struct{}
	// drain is cancelled when Close's bound passes, failing the writes
	// still queued.
	drain  context.Context
	cancel context.CancelFunc

	ratings atomic.Pointer[map[string]map[string]consortia.Rating]

	cacheMu sync.Mutex
	cache   map[string]cached // by consortium: the last leaderboard fitted
}

// cached is a leaderboard computed for the statistics of version key.
type cached struct {
	key  string
	rows []Row
}

// New returns a Board and starts its writer, which Close stops.
func New(cfg Config) *Board {
	if cfg.Store == nil {
		cfg.Store = NewMemory(0, 0)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	b := &Board{cfg: cfg, store: cfg.Store, log: cfg.Logger, queue: make(chan *Tally, cfg.Queue), done: make(chan struct{}),
		known: map[string]bool{}, cache: map[string]cached{}}
	if b.log == nil {
		b.log = slog.Default()
	}
	for _, name := range cfg.Consortia {
		b.known[name] = true
	}
	b.drain, b.cancel = context.WithCancel(context.Background())
	empty := map[string]map[string]consortia.Rating{}
	b.ratings.Store(&empty)
	go b.write()
	return b
}

// Record queues a run's scores to be written, and returns at once: it is
// consortia.Config's OnRun. The run is read before Record returns and
// not kept.
func (b *Board) Record(run *consortia.Run) {
	if run == nil || !b.known[run.Consortium] {
		return
	}
	t := TallyRun(run, b.cfg.Pricing)
	if t == nil {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		b.skip(SkipClosed)
		return
	}
	select {
	case b.queue <- t:
	default:
		b.skip(SkipQueueFull)
	}
}

func (b *Board) skip(reason string) {
	if b.cfg.OnSkip != nil {
		b.cfg.OnSkip(reason)
	}
}

// Close writes the runs queued, for at most Config.Drain, and stops the
// writer. Batch commands rely on it: every run recorded before Close is
// written when it returns, unless the store failed.
func (b *Board) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	timer := time.AfterFunc(b.cfg.Drain, b.cancel)
	defer timer.Stop()
	<-b.done
	b.cancel()
	return nil
}

// write is the writer: it adds each queued run to the store, and fits the
// ratings again every Refresh.
func (b *Board) write() {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.Refresh)
	defer tick.Stop()
	b.refresh(b.cfg.Consortia)
	dirty := map[string]bool{}
	failing := false
	for {
		select {
		case t, ok := <-b.queue:
			if !ok {
				return
			}
			if err := b.store.Add(b.drain, t); err != nil {
				b.skip(SkipStore)
				if !failing {
					b.log.Warn("scores not recorded: the store failed", "consortium", t.Consortium, "error", err)
				}
				failing = true
				continue
			}
			failing = false
			dirty[t.Consortium] = true
		case <-tick.C:
			// A shared store also gets other replicas' runs: fit every
			// consortium again. One process's own needs only those it
			// wrote to.
			if _, own := b.store.(*Memory); !own {
				b.refresh(b.cfg.Consortia)
			} else if len(dirty) > 0 {
				b.refresh(slices.Collect(maps.Keys(dirty)))
			}
			clear(dirty)
		}
	}
}

// refresh fits the ratings of the consortiums named again from the store.
func (b *Board) refresh(names []string) {
	if len(names) == 0 {
		return
	}
	next := map[string]map[string]consortia.Rating{}
	for c, r := range *b.ratings.Load() {
		next[c] = r
	}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := b.store.Load(ctx, name)
		cancel()
		if err != nil {
			continue // the ratings stay as they were
		}
		idx, m := s.matrix()
		r, rated := ratings(m)
		c := m.comparisons()
		out := map[string]consortia.Rating{}
		for ref, i := range idx {
			if rated[i] {
				out[ref] = consortia.Rating{Rating: r[i], Comparisons: int(c[i])}
			}
		}
		next[name] = out
	}
	b.ratings.Store(&next)
}

// Ratings implements consortia.Ratings: the ratings of a consortium's
// models with at least one comparison, from memory, never blocking. They
// are as fresh as the last refresh (Config.Refresh).
func (b *Board) Ratings(consortium string) map[string]consortia.Rating {
	return (*b.ratings.Load())[consortium]
}

// ErrUnknown is the error of a leaderboard for a consortium the Board
// does not know.
var ErrUnknown = errors.New("unknown consortium")

// Standing is one consortium's leaderboard.
type Standing struct {
	Name   string `json:"name"`
	Models []Row  `json:"models"`
}

// Row is one model's line of a leaderboard. Runs, Tokens and CostUSD sum
// every tenant's runs: they are shown only when Volume is true.
type Row struct {
	Model       string
	Runs        int64
	Answers     int64
	Failures    int64
	FirstPlaces int64
	// WinRate is wins over comparisons; nil without comparisons.
	WinRate *float64
	// Rating is Bradley–Terry on 1000 + 400·log10(strength / geometric
	// mean strength), and RatingCI95 its 95% bootstrap interval; nil
	// without comparisons.
	Rating     *float64
	RatingCI95 *[2]float64
	// Comparisons are the pairwise comparisons the rating rests on.
	Comparisons int64
	// Regret is the losses taken by failing while another answered,
	// over the model's runs.
	Regret float64
	// LatencyP50 is the median latency of its answers in milliseconds;
	// nil without answers.
	LatencyP50 *float64
	Tokens     int64
	// CostUSD is nil when any answer's cost is unknown.
	CostUSD *float64
	// Volume says whether Runs, Tokens and CostUSD are shown.
	Volume bool
}

// MarshalJSON writes the row as the leaderboard shows it (DESIGN,
// "Scores, leaderboard and cost"), the volume columns only with Volume.
func (r Row) MarshalJSON() ([]byte, error) {
	type scores struct {
		WinRate    *float64    `json:"win_rate"`
		Rating     *float64    `json:"rating"`
		RatingCI95 *[2]float64 `json:"rating_ci95"`
		Regret     float64     `json:"regret"`
		LatencyP50 *float64    `json:"latency_ms_p50"`
	}
	s := scores{r.WinRate, r.Rating, r.RatingCI95, r.Regret, r.LatencyP50}
	if !r.Volume {
		return json.Marshal(struct {
			Model       string `json:"model"`
			Answers     int64  `json:"answers"`
			Failures    int64  `json:"failures"`
			FirstPlaces int64  `json:"first_places"`
			scores
		}{r.Model, r.Answers, r.Failures, r.FirstPlaces, s})
	}
	return json.Marshal(struct {
		Model       string `json:"model"`
		Runs        int64  `json:"runs"`
		Answers     int64  `json:"answers"`
		Failures    int64  `json:"failures"`
		FirstPlaces int64  `json:"first_places"`
		scores
		Tokens  int64    `json:"tokens"`
		CostUSD *float64 `json:"cost_usd"`
	}{r.Model, r.Runs, r.Answers, r.Failures, r.FirstPlaces, s, r.Tokens, r.CostUSD})
}

// Consortia returns the names of the consortiums the Board knows, in
// order.
func (b *Board) Consortia() []string { return b.cfg.Consortia }

// Leaderboard returns the standings of the consortiums named (every one
// the Board knows when none is), each read from the store in one round
// trip. Volume sets each row's Volume. A name the Board does not know is
// an error wrapping ErrUnknown; a store that fails, one wrapping
// ErrUnavailable.
func (b *Board) Leaderboard(ctx context.Context, volume bool, names ...string) ([]Standing, error) {
	if len(names) == 0 {
		names = b.cfg.Consortia
	}
	out := make([]Standing, 0, len(names))
	for _, name := range names {
		if !b.known[name] {
			return nil, fmt.Errorf("%w %q", ErrUnknown, name)
		}
		s, err := b.store.Load(ctx, name)
		if err != nil {
			return nil, err
		}
		rows := b.rows(name, s)
		for i := range rows {
			rows[i].Volume = volume
		}
		out = append(out, Standing{Name: name, Models: rows})
	}
	return out, nil
}

// rows returns the leaderboard of a consortium's statistics, best rating
// first, fitted once per version of the statistics (the bootstrap is the
// costly part).
func (b *Board) rows(name string, s *Stats) []Row {
	var total int64
	for _, n := range s.Pairs {
		total += n
	}
	key := fmt.Sprintf("%d/%d/%d/%d", s.Runs, s.Paired, len(s.Recent), total)
	b.cacheMu.Lock()
	c, ok := b.cache[name]
	b.cacheMu.Unlock()
	if ok && c.key == key {
		return slices.Clone(c.rows)
	}
	rows := standings(s)
	b.cacheMu.Lock()
	b.cache[name] = cached{key: key, rows: rows}
	b.cacheMu.Unlock()
	return slices.Clone(rows)
}

// matrix indexes the models of the statistics and returns their pairwise
// counts.
func (s *Stats) matrix() (map[string]int, matrix) {
	idx := map[string]int{}
	var refs []string
	for ref := range s.Models {
		refs = append(refs, ref)
	}
	for k := range s.Pairs {
		refs = append(refs, k[0], k[1])
	}
	slices.Sort(refs)
	for _, ref := range slices.Compact(refs) {
		idx[ref] = len(idx)
	}
	m := newMatrix(len(idx))
	for k, n := range s.Pairs {
		m.add(idx[k[0]], idx[k[1]], float64(n))
	}
	return idx, m
}

// standings computes the rows of a consortium's statistics.
func standings(s *Stats) []Row {
	idx, m := s.matrix()
	r, rated := ratings(m)
	comps := m.comparisons()
	runs := make([][]pair, 0, len(s.Recent))
	for _, e := range s.Recent {
		var ps []pair
		for _, p := range e {
			w, okw := idx[p.Winner]
			l, okl := idx[p.Loser]
			if okw && okl {
				ps = append(ps, pair{winner: w, loser: l, n: int(p.N)})
			}
		}
		runs = append(runs, ps)
	}
	ci := bootstrap(m.k, runs, r, rated, s.Paired)

	rows := make([]Row, 0, len(idx))
	for ref, i := range idx {
		c := s.Models[ref]
		if c == nil {
			c = &Counts{}
		}
		row := Row{Model: ref, Runs: c.Runs, Answers: c.Answers, Failures: c.Failures, FirstPlaces: c.FirstPlaces,
			Tokens: c.Tokens, Comparisons: int64(comps[i])}
		if n := c.Wins + c.Losses; n > 0 {
			row.WinRate = ptr(round(float64(c.Wins)/float64(n), 4))
		}
		if rated[i] {
			row.Rating = ptr(round(r[i], 1))
			row.RatingCI95 = &[2]float64{round(ci[i].lo, 1), round(ci[i].hi, 1)}
		}
		if c.Runs > 0 {
			row.Regret = round(float64(c.Regret)/float64(c.Runs), 4)
		}
		if p50, ok := median(c.Latency); ok {
			row.LatencyP50 = &p50
		}
		if c.CostUnknown == 0 && c.Tokens > 0 {
			row.CostUSD = ptr(consortia.RoundUSD(c.CostUSD))
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b Row) int {
		switch {
		case a.Rating != nil && b.Rating == nil:
			return -1
		case a.Rating == nil && b.Rating != nil:
			return 1
		case a.Rating != nil && *a.Rating != *b.Rating:
			if *a.Rating > *b.Rating {
				return -1
			}
			return 1
		}
		if a.Model < b.Model {
			return -1
		}
		return 1
	})
	return rows
}

// median reads the median latency from its buckets, rounded to the
// millisecond.
func median(buckets map[int]int64) (float64, bool) {
	var n int64
	var order []int
	for b, c := range buckets {
		n += c
		order = append(order, b)
	}
	if n == 0 {
		return 0, false
	}
	slices.Sort(order)
	var seen int64
	for _, b := range order {
		seen += buckets[b]
		if 2*seen >= n {
			return math.Round(bucketMs(b)), true
		}
	}
	return 0, false
}

func ptr[T any](v T) *T { return &v }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
