package cache

import (
	"container/list"
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Memory is the in-process Store: a least-recently-used map with a TTL on
// every entry, bounded to MaxEntries entries (each turn and each run is
// one entry, its conversation pointer another). It is lost on restart.
type Memory struct {
	ttl   time.Duration
	max   int
	now   func() time.Time
	mu    sync.Mutex
	order *list.List // front: most recently used
	items map[string]*list.Element
	// runs are each tenant's recent runs; tenants are the configured
	// keys' names, so few.
	runs map[string]*runRing
}

// runRing is a tenant's index of recent runs: the newest RunsPerTenant
// summaries in a ring, so that adding one to a full index moves none of
// the others (every Save of a busy tenant adds one).
type runRing struct {
	sums []RunSummary // at most RunsPerTenant
	next int          // once sums is full, the oldest, which the next add replaces
}

func (r *runRing) add(s RunSummary) {
	if len(r.sums) < RunsPerTenant {
		r.sums = append(r.sums, s)
		return
	}
	r.sums[r.next] = s
	r.next = (r.next + 1) % len(r.sums)
}

// newest returns the i-th newest summary, from 0, for i below len(r.sums).
func (r *runRing) newest(i int) *RunSummary {
	return &r.sums[(r.next+len(r.sums)-1-i)%len(r.sums)]
}

type memoryEntry struct {
	key     string
	value   []byte
	expires time.Time
}

// NewMemory returns a Memory store. If ttl is zero, 168h is used; if
// maxEntries is zero, 10000.
func NewMemory(ttl time.Duration, maxEntries int) *Memory {
	if ttl <= 0 {
		ttl = 168 * time.Hour
	}
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &Memory{ttl: ttl, max: maxEntries, now: time.Now, order: list.New(), items: map[string]*list.Element{}, runs: map[string]*runRing{}}
}

func (m *Memory) get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*memoryEntry)
	if m.now().After(e.expires) {
		m.order.Remove(el)
		delete(m.items, key)
		return nil, false
	}
	m.order.MoveToFront(el)
	return e.value, true
}

// setLocked stores a value; m.mu must be held.
func (m *Memory) setLocked(key string, value []byte) {
	expires := m.now().Add(m.ttl)
	if el, ok := m.items[key]; ok {
		e := el.Value.(*memoryEntry)
		e.value, e.expires = value, expires
		m.order.MoveToFront(el)
		return
	}
	m.items[key] = m.order.PushFront(&memoryEntry{key: key, value: value, expires: expires})
	for m.order.Len() > m.max {
		last := m.order.Back()
		m.order.Remove(last)
		delete(m.items, last.Value.(*memoryEntry).key)
	}
}

func (m *Memory) turn(key string) (*Turn, error) {
	data, ok := m.get(key)
	if !ok {
		return nil, ErrNotFound
	}
	var t Turn
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Match implements Store.
func (m *Memory) Match(_ context.Context, tenant, consortium, hash string) (*Turn, error) {
	return m.turn(turnKey(tenant, consortium, hash))
}

// Latest implements Store.
func (m *Memory) Latest(_ context.Context, tenant, conversation string) (*Turn, error) {
	return m.turn(convKey(tenant, conversation))
}

// Save implements Store.
func (m *Memory) Save(_ context.Context, tenant string, turn *Turn, run *RunRecord) error {
	data, err := json.Marshal(turn)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(turnKey(tenant, turn.Consortium, Hash(turn.Consortium, turn.Transcript)), data)
	m.setLocked(convKey(tenant, turn.Conversation), data)
	if run != nil {
		m.setLocked(runKey(tenant, turn.RunID), run.JSON)
		if run.Summary.RunID != "" {
			idx := m.runs[tenant]
			if idx == nil {
				idx = &runRing{}
				m.runs[tenant] = idx
			}
			idx.add(run.Summary)
		}
	}
	return nil
}

// Runs implements Store: the index's runs whose record is still kept.
func (m *Memory) Runs(_ context.Context, tenant string, limit int) ([]RunSummary, error) {
	limit = bound(limit)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := []RunSummary{}
	idx := m.runs[tenant]
	if idx == nil {
		return out, nil
	}
	for i := 0; i < len(idx.sums) && len(out) < limit; i++ {
		s := idx.newest(i)
		el, ok := m.items[runKey(tenant, s.RunID)]
		if !ok || now.After(el.Value.(*memoryEntry).expires) {
			continue
		}
		out = append(out, *s)
	}
	return out, nil
}

// Run implements Store.
func (m *Memory) Run(_ context.Context, tenant, id string) ([]byte, error) {
	data, ok := m.get(runKey(tenant, id))
	if !ok {
		return nil, ErrNotFound
	}
	return data, nil
}

// SaveResponse implements Store.
func (m *Memory) SaveResponse(_ context.Context, tenant, id string, record []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(responseKey(tenant, id), record)
	return nil
}

// Response implements Store.
func (m *Memory) Response(_ context.Context, tenant, id string) ([]byte, error) {
	data, ok := m.get(responseKey(tenant, id))
	if !ok {
		return nil, ErrNotFound
	}
	return data, nil
}

// DeleteResponse implements Store.
func (m *Memory) DeleteResponse(_ context.Context, tenant, id string) error {
	key := responseKey(tenant, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return ErrNotFound
	}
	m.order.Remove(el)
	delete(m.items, key)
	if m.now().After(el.Value.(*memoryEntry).expires) {
		return ErrNotFound
	}
	return nil
}

// Ping implements Store: memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }
