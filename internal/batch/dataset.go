package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/consortium-dev/consortium/openai"
)

// Embedder embeds texts with one of a provider's models:
// *upstream.Provider satisfies it.
type Embedder interface {
	Embed(ctx context.Context, model string, inputs []string) ([][]float32, *openai.Usage, error)
}

// Methods are the selection methods of dataset select.
var Methods = []string{"centroid", "fps"}

// Select embeds items and selects the most diverse (dataset select).
type Select struct {
	// Embedder and Model embed; Ref (provider/model) keys the cache.
	Embedder Embedder
	Model    string
	Ref      string
	// Method is "centroid" (the default when empty) or "fps".
	Method string
	// Max is the most items selected; if zero, no bound.
	Max int
	// Tripwire stops the selection before a pick more similar than this,
	// 0..1.
	Tripwire float64
	// BatchSize is how many texts one embeddings call carries at most
	// (fewer when they are long: about 400 KB of text a call). If zero, 64.
	BatchSize int
	// Concurrency is how many embeddings calls are in flight at once. If
	// zero, 4.
	Concurrency int
	// Progress shows the embedding's progress.
	Progress Progress
	// Stop, once closed, ends the embedding after the calls in flight
	// (their vectors are cached); nothing is selected or written.
	Stop <-chan struct{}
}

// SelectReport is what a dataset select did.
type SelectReport struct {
	// Total is the number of input items, Duplicates those dropped as an
	// exact duplicate of an earlier one, Cached the vectors read from the
	// cache and Embedded those embedded now.
	Total, Duplicates, Cached, Embedded int
	// Dims is the vectors' length.
	Dims int
	// Picks are the items selected, in order, as indexes into the items
	// left once duplicates were dropped; Stop says why the selection
	// ended: "max", "tripwire" or "all".
	Picks []Pick
	Stop  string
	// Usage is the embeddings calls' usage, when reported.
	Usage openai.Usage
}

// maxBatchBytes bounds the text of one embeddings call (about 100,000
// tokens at four bytes a token).
const maxBatchBytes = 400 << 10

// ErrInterrupted is the error of a job that Stop ended.
var ErrInterrupted = fmt.Errorf("interrupted")

// Run embeds every distinct item (reading the cache beside out first,
// adding what it embeds), selects, and writes the selected items to out
// in selection order, each input line with "selection": {"order",
// "similarity"}. out is written whole or not at all.
func (s *Select) Run(ctx context.Context, items []Item, out string) (*SelectReport, error) {
	if !(s.Tripwire >= 0 && s.Tripwire <= 1) { // NaN too
		return nil, fmt.Errorf("tripwire %v is outside 0..1", s.Tripwire)
	}
	rep := &SelectReport{}
	// Exact duplicates go first: the first of each text stays.
	var distinct []Item
	need := map[cacheKey]int{}
	var keys []cacheKey
	for _, it := range items {
		rep.Total += 1 + it.Repeats
		rep.Duplicates += it.Repeats
		k := embedKey(s.Ref, it.Text())
		if _, dup := need[k]; dup {
			rep.Duplicates++
			continue
		}
		need[k] = len(distinct)
		keys = append(keys, k)
		distinct = append(distinct, it)
	}

	var (
		vecs *Vectors
		have = make([]bool, len(distinct))
	)
	put := func(row int, vec []float32) error {
		if vecs == nil {
			vecs = NewVectors(len(distinct), len(vec))
		}
		if len(vec) != vecs.D {
			return fmt.Errorf("embeddings of %d and %d dimensions from %s", vecs.D, len(vec), s.Ref)
		}
		copy(vecs.Row(row), vec)
		have[row] = true
		return nil
	}
	cache := CachePath(out)
	if err := readCache(cache, need, func(row int, vec []float32) {
		// A cached vector of another length (the model changed its
		// dimensions) is embedded again.
		if vecs == nil || len(vec) == vecs.D {
			_ = put(row, vec)
			rep.Cached++
		}
	}); err != nil {
		return nil, err
	}
	var missing []int
	for i, ok := range have {
		if !ok {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		if err := s.embed(ctx, distinct, keys, missing, cache, put, rep); err != nil {
			return rep, err
		}
	}
	rep.Dims = vecs.D

	vecs.Normalize()
	max := s.Max
	if max <= 0 {
		max = vecs.N
	}
	if s.Method == "fps" {
		rep.Picks = FPS(vecs, max, s.Tripwire)
	} else {
		rep.Picks = Centroid(vecs, max, s.Tripwire)
	}
	switch {
	case len(rep.Picks) == vecs.N:
		rep.Stop = "all"
	case len(rep.Picks) == max:
		rep.Stop = "max"
	default:
		rep.Stop = "tripwire"
	}

	var b bytes.Buffer
	for order, p := range rep.Picks {
		line, err := withSelection(distinct[p.Index].Raw, order, p.Similarity)
		if err != nil {
			return rep, fmt.Errorf("line %d: %w", distinct[p.Index].Line, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return rep, writeAtomic(out, b.Bytes())
}

// embed embeds the missing rows in batches, Concurrency calls at once,
// appending each batch's vectors to the cache as it arrives.
func (s *Select) embed(ctx context.Context, distinct []Item, keys []cacheKey, missing []int, cache string, put func(int, []float32) error, rep *SelectReport) error {
	f, err := os.OpenFile(cache, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	size := s.BatchSize
	if size <= 0 {
		size = 64
	}
	// A call carries at most size texts and about maxBatchBytes of them,
	// under providers' per-request token limits (OpenAI's is 300,000).
	var batches [][]int
	start, text := 0, 0
	for i, row := range missing {
		n := len(distinct[row].Text())
		if i > start && (i-start == size || text+n > maxBatchBytes) {
			batches = append(batches, missing[start:i])
			start, text = i, 0
		}
		text += n
	}
	batches = append(batches, missing[start:])
	workers := s.Concurrency
	if workers <= 0 {
		workers = 4
	}
	m := s.Progress.start("embed", len(missing))
	defer m.finish()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		feed = make(chan []int)
	)
	for range min(workers, len(batches)) {
		wg.Go(func() {
			for batch := range feed {
				texts := make([]string, len(batch))
				for i, row := range batch {
					texts[i] = distinct[row].Text()
				}
				vecs, usage, err := s.Embedder.Embed(ctx, s.Model, texts)
				mu.Lock()
				if err == nil {
					bk := make([]cacheKey, len(batch))
					for i, row := range batch {
						if err = put(row, vecs[i]); err != nil {
							break
						}
						bk[i] = keys[row]
					}
					if err == nil {
						_, err = f.Write(appendRecords(nil, bk, vecs))
					}
					if usage != nil {
						rep.Usage.Add(*usage)
					}
				}
				if err == nil {
					rep.Embedded += len(batch)
				}
				mu.Unlock()
				if err != nil {
					cancel(fmt.Errorf("embedding lines %d..: %w", distinct[batch[0]].Line, err))
					continue
				}
				for range batch {
					m.add(true)
				}
			}
		})
	}
	// Stop ends the feeding only: the calls in flight finish, and their
	// vectors are cached.
	interrupted := false
feeding:
	for _, b := range batches {
		select {
		case <-s.Stop:
			interrupted = true
			break feeding
		default:
		}
		select {
		case feed <- b:
		case <-s.Stop:
			interrupted = true
			break feeding
		case <-ctx.Done():
			break feeding
		}
	}
	close(feed)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if interrupted {
		return ErrInterrupted
	}
	return nil
}

// withSelection is an input line with "selection": {"order",
// "similarity"} added last, the line's own members kept byte for byte.
func withSelection(raw json.RawMessage, order int, sim float64) ([]byte, error) {
	sel, err := json.Marshal(map[string]any{"order": order, "similarity": round(sim, 6)})
	if err != nil {
		return nil, err
	}
	obj := []byte(bytes.TrimSpace(raw))
	for {
		// The line has a selection of its own (an earlier output fed
		// back): it goes, rather than the key being repeated.
		rest, found, err := withoutMember(obj, "selection")
		if err != nil {
			return nil, err
		}
		if !found {
			break
		}
		obj = rest
	}
	out := append([]byte(nil), obj[:len(obj)-1]...)
	if len(bytes.TrimSpace(out[1:])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"selection":`...)
	out = append(out, sel...)
	return append(out, '}'), nil
}

// withoutMember is the JSON object obj without its first top-level
// member named key, the rest byte for byte; found is false when it has
// none.
func withoutMember(obj []byte, key string) (rest []byte, found bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil {
		return nil, false, err
	}
	for first := true; dec.More(); first = false {
		// From the end of the previous value: the comma before this
		// member goes with it.
		start := dec.InputOffset()
		name, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		end := dec.InputOffset()
		if name != key {
			continue
		}
		if first {
			// The first member has no comma before it: the one after
			// it goes instead.
			if after := bytes.TrimLeft(obj[end:], " \t\r\n"); len(after) > 0 && after[0] == ',' {
				end = int64(len(obj)-len(after)) + 1
			}
		}
		return append(obj[:start:start], obj[end:]...), true, nil
	}
	return obj, false, nil
}
