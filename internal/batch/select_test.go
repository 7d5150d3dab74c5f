package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

func randomVectors(n, d int, seed uint64) *Vectors {
	rng := rand.New(rand.NewPCG(seed, 0))
	v := NewVectors(n, d)
	for i := range v.Data {
		v.Data[i] = float32(rng.NormFloat64())
	}
	v.Normalize()
	return v
}

// naive selects as DESIGN.md states it, in float64 and without
// shortcuts: the reference the fast versions are checked against.
func naive(v *Vectors, method string, max int, tripwire float64) []int {
	row := func(i int) []float64 {
		r := make([]float64, v.D)
		for k, x := range v.Row(i) {
			r[k] = float64(x)
		}
		return r
	}
	cos := func(a, b []float64) float64 {
		var d, na, nb float64
		for k := range a {
			d, na, nb = d+a[k]*b[k], na+a[k]*a[k], nb+b[k]*b[k]
		}
		if na == 0 || nb == 0 {
			return 0
		}
		return d / math.Sqrt(na*nb)
	}
	mean := func(idx []int) []float64 {
		m := make([]float64, v.D)
		for _, i := range idx {
			for k, x := range row(i) {
				m[k] += x
			}
		}
		return m
	}
	all := make([]int, v.N)
	for i := range all {
		all[i] = i
	}
	m := mean(all)
	first, best := 0, math.Inf(1)
	for i := range v.N {
		if s := cos(row(i), m); s < best {
			first, best = i, s
		}
	}
	picks := []int{first}
	for len(picks) < max && len(picks) < v.N {
		next, nextSim := -1, math.Inf(1)
		for i := range v.N {
			if slices.Contains(picks, i) {
				continue
			}
			var s float64
			if method == "fps" {
				s = math.Inf(-1)
				for _, p := range picks {
					s = math.Max(s, cos(row(i), row(p)))
				}
			} else {
				s = cos(row(i), mean(picks))
			}
			if s < nextSim {
				next, nextSim = i, s
			}
		}
		if nextSim > tripwire {
			break
		}
		picks = append(picks, next)
	}
	return picks
}

func indexes(picks []Pick) []int {
	var out []int
	for _, p := range picks {
		out = append(out, p.Index)
	}
	return out
}

func TestSelectMatchesDefinition(t *testing.T) {
	for _, tc := range []struct {
		n, d, max int
		tripwire  float64
	}{{300, 16, 40, 1}, {2500, 8, 60, 1}, {200, 4, 200, 0.5}, {50, 32, 10, 0.2}} {
		v := randomVectors(tc.n, tc.d, uint64(tc.n))
		for _, method := range Methods {
			t.Run(fmt.Sprintf("%s/n%d/d%d/trip%v", method, tc.n, tc.d, tc.tripwire), func(t *testing.T) {
				var got []Pick
				if method == "fps" {
					got = FPS(v, tc.max, tc.tripwire)
				} else {
					got = Centroid(v, tc.max, tc.tripwire)
				}
				want := naive(v, method, tc.max, tc.tripwire)
				if !slices.Equal(indexes(got), want) {
					t.Errorf("picks %v\nwant  %v", indexes(got), want)
				}
				for _, p := range got[1:] {
					if p.Similarity > tc.tripwire {
						t.Errorf("pick %d has similarity %v above the tripwire", p.Index, p.Similarity)
					}
				}
			})
		}
	}
}

// TestSelectTripwire: a near duplicate of a pick is never picked by fps
// once the tripwire is below their similarity.
func TestSelectTripwire(t *testing.T) {
	v := NewVectors(4, 2)
	copy(v.Data, []float32{1, 0, 0, 1, -1, 0, 0.99, 0.01})
	v.Normalize()
	got := FPS(v, 10, 0.9)
	if slices.Contains(indexes(got), 3) && slices.Contains(indexes(got), 0) {
		t.Errorf("both near duplicates picked: %v", got)
	}
	if got := FPS(v, 10, 1); len(got) != 4 {
		t.Errorf("tripwire 1 picked %v; want all 4", got)
	}
	if got := Centroid(v, 0, 1); got != nil {
		t.Errorf("max 0 picked %v", got)
	}
}

// fakeEmbedder embeds a text as a deterministic vector, counting the
// texts it was asked for.
type fakeEmbedder struct {
	mu    sync.Mutex
	calls int
	texts []string
	dims  int
	fail  string // a text that fails its batch
}

func (f *fakeEmbedder) Embed(ctx context.Context, model string, inputs []string) ([][]float32, *openai.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var out [][]float32
	for _, in := range inputs {
		if in == f.fail {
			return nil, nil, fmt.Errorf("status 500: boom")
		}
		f.texts = append(f.texts, in)
		v := make([]float32, f.dims)
		for i, c := range in {
			v[(i+int(c))%f.dims] += float32(c%7) + 1
		}
		out = append(out, v)
	}
	return out, &openai.Usage{PromptTokens: len(inputs), TotalTokens: len(inputs)}, nil
}

func writeLines(t *testing.T, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSelectCachesEmbeddings(t *testing.T) {
	var prompts []string
	for i := range 50 {
		prompts = append(prompts, fmt.Sprintf("prompt number %d about %s", i, strings.Repeat("x", i%7)))
	}
	prompts = append(prompts, prompts[3]) // an exact duplicate
	in := writeLines(t, "in.txt", prompts...)
	out := filepath.Join(t.TempDir(), "sel.jsonl")
	items, err := ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	emb := &fakeEmbedder{dims: 12}
	s := &Select{Embedder: emb, Model: "m", Ref: "p/m", Max: 10, Tripwire: 1, BatchSize: 7}
	rep, err := s.Run(context.Background(), items, out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Duplicates != 1 || rep.Embedded != 50 || rep.Cached != 0 || len(rep.Picks) != 10 || rep.Stop != "max" {
		t.Errorf("first run %+v", rep)
	}
	first, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(first)), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines", len(lines))
	}
	var l struct {
		ID        string
		Prompt    string
		Selection struct {
			Order      int
			Similarity float64
		}
	}
	if err := json.Unmarshal([]byte(lines[1]), &l); err != nil || l.Selection.Order != 1 || l.Prompt == "" {
		t.Errorf("line %q: %v", lines[1], err)
	}

	// A rerun embeds nothing and selects the same.
	emb.texts = nil
	rep, err = s.Run(context.Background(), items, out)
	if err != nil || rep.Embedded != 0 || rep.Cached != 50 || len(emb.texts) != 0 {
		t.Errorf("rerun %+v, %v, embedded %v", rep, err, emb.texts)
	}
	if again, _ := os.ReadFile(out); string(again) != string(first) {
		t.Error("the rerun selected otherwise")
	}

	// A changed prompt is embedded again, alone.
	items[5].Messages[0].Content.Text = "a changed prompt"
	rep, err = s.Run(context.Background(), items, out)
	if err != nil || rep.Embedded != 1 || !slices.Equal(emb.texts, []string{"a changed prompt"}) {
		t.Errorf("changed: %+v, %v, embedded %v", rep, err, emb.texts)
	}

	// A torn last record (a crash mid-write) is cut, and that vector
	// embedded again.
	cache := CachePath(out)
	st, _ := os.Stat(cache)
	os.Truncate(cache, st.Size()-3)
	emb.texts = nil
	if rep, err = s.Run(context.Background(), items, out); err != nil || rep.Embedded != 1 {
		t.Errorf("torn cache: %+v, %v", rep, err)
	}
}

func TestSelectFailureWritesNothing(t *testing.T) {
	in := writeLines(t, "in.txt", "a", "b", "c", "d")
	out := filepath.Join(t.TempDir(), "sel.jsonl")
	items, _ := ReadFile(in)
	emb := &fakeEmbedder{dims: 4, fail: "c"}
	s := &Select{Embedder: emb, Model: "m", Ref: "p/m", Tripwire: 1, BatchSize: 2, Concurrency: 1}
	rep, err := s.Run(context.Background(), items, out)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err %v", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("--out written after a failure: %v", serr)
	}
	if rep.Embedded != 2 {
		t.Errorf("embedded %d before the failure; want the first batch's 2", rep.Embedded)
	}
	if _, err := s.Run(context.Background(), items, out); err == nil {
		t.Error("no error on the second run")
	}
	if _, err := (&Select{Tripwire: 1.5}).Run(context.Background(), items, out); err == nil {
		t.Error("tripwire 1.5 accepted")
	}
}

func BenchmarkCentroid(b *testing.B) {
	v := randomVectors(5000, 256, 1)
	b.ReportAllocs()
	for b.Loop() {
		Centroid(v, 50, 1)
	}
}

func BenchmarkFPS(b *testing.B) {
	v := randomVectors(5000, 256, 1)
	b.ReportAllocs()
	for b.Loop() {
		FPS(v, 50, 1)
	}
}

// TestSelectBatchesLongTexts: long prompts go fewer to a call.
func TestSelectBatchesLongTexts(t *testing.T) {
	var prompts []string
	for i := range 10 {
		prompts = append(prompts, fmt.Sprintf("%d %s", i, strings.Repeat("word ", 20<<10)))
	}
	items, err := ReadFile(writeLines(t, "long.txt", prompts...))
	if err != nil {
		t.Fatal(err)
	}
	emb := &fakeEmbedder{dims: 4}
	s := &Select{Embedder: emb, Model: "m", Ref: "p/m", Tripwire: 1}
	if _, err := s.Run(context.Background(), items, filepath.Join(t.TempDir(), "sel.jsonl")); err != nil {
		t.Fatal(err)
	}
	if emb.calls != 4 || len(emb.texts) != 10 {
		t.Errorf("%d calls for %d texts of 100 KB; want 4 (three a call, at most 400 KB)", emb.calls, len(emb.texts))
	}
}

// TestSelectStop: a stopped select writes nothing, keeps what it
// embedded, and a rerun goes on from the cache.
func TestSelectStop(t *testing.T) {
	var prompts []string
	for i := range 20 {
		prompts = append(prompts, fmt.Sprintf("prompt %d", i))
	}
	items, _ := ReadFile(writeLines(t, "in.txt", prompts...))
	out := filepath.Join(t.TempDir(), "sel.jsonl")
	stop := make(chan struct{})
	emb := &stoppingEmbedder{fakeEmbedder: fakeEmbedder{dims: 4}, stop: stop}
	s := &Select{Embedder: emb, Model: "m", Ref: "p/m", Tripwire: 1, BatchSize: 5, Concurrency: 1, Stop: stop}
	rep, err := s.Run(context.Background(), items, out)
	if !errors.Is(err, ErrInterrupted) || rep.Embedded != 5 {
		t.Fatalf("%+v, %v; want interrupted after the first batch", rep, err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--out written by a stopped select")
	}
	s.Stop = nil
	if rep, err = s.Run(context.Background(), items, out); err != nil || rep.Cached != 5 || rep.Embedded != 15 {
		t.Errorf("rerun %+v, %v", rep, err)
	}
}

// stoppingEmbedder closes stop (a Ctrl-C) during its first call.
type stoppingEmbedder struct {
	fakeEmbedder
	stop chan struct{}
	once sync.Once
}

func (s *stoppingEmbedder) Embed(ctx context.Context, model string, inputs []string) ([][]float32, *openai.Usage, error) {
	s.once.Do(func() { close(s.stop) })
	return s.fakeEmbedder.Embed(ctx, model, inputs)
}

// TestSelectTripwireOne: a cosine similarity is at most 1, so a tripwire
// of 1 never trips, even between identical vectors whose float32 dot
// product rounds above 1.
func TestSelectTripwireOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 50 {
		v := NewVectors(3, 256)
		for k := range v.D {
			x := float32(rng.NormFloat64())
			v.Data[k], v.Data[v.D+k] = x, x
			v.Data[2*v.D+k] = float32(rng.NormFloat64())
		}
		v.Normalize()
		for _, method := range Methods {
			var got []Pick
			if method == "fps" {
				got = FPS(v, 3, 1)
			} else {
				got = Centroid(v, 3, 1)
			}
			if len(got) != 3 {
				t.Fatalf("trial %d, %s: picks %v; want all 3 under the tripwire 1", trial, method, got)
			}
			for _, p := range got {
				if p.Similarity > 1 {
					t.Errorf("trial %d, %s: similarity %v above 1", trial, method, p.Similarity)
				}
			}
		}
	}
}

// TestSelectRepeatedLine: a line repeated verbatim, id and all, is an
// exact duplicate, dropped and counted as one, not a refused file.
func TestSelectRepeatedLine(t *testing.T) {
	in := writeLines(t, "in.jsonl", `{"id":"a","prompt":"x"}`, `{"id":"b","prompt":"y"}`, `{"id":"a","prompt":"x"}`)
	items, err := ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sel.jsonl")
	s := &Select{Embedder: &fakeEmbedder{dims: 4}, Model: "m", Ref: "p/m", Tripwire: 1}
	rep, err := s.Run(context.Background(), items, out)
	if err != nil || rep.Total != 3 || rep.Duplicates != 1 || len(rep.Picks) != 2 {
		t.Errorf("%+v, %v; want 3 lines, 1 duplicate, 2 picks", rep, err)
	}
}

// TestSelectByHand: four unit vectors in the plane, worked out by hand.
// a=(1,0), b=(0.8,0.6), c=(0,1), d=(0.6,0.8). The mean of all points
// along (1,1): a and c are least similar (0.7071), a first by index.
// centroid: to a, c is least similar (0); to the mean of a and c, b and
// d tie at 0.98995 (b by index); then d at 2.36/√5.8 = 0.979936.
// fps: c (0); then b and d tie at highest 0.8 (b); then d, whose highest
// similarity (to b) is 0.96.
func TestSelectByHand(t *testing.T) {
	v := NewVectors(4, 2)
	copy(v.Data, []float32{1, 0, 0.8, 0.6, 0, 1, 0.6, 0.8})
	v.Normalize()
	for _, tc := range []struct {
		method   string
		tripwire float64
		want     []Pick
	}{
		{"centroid", 1, []Pick{{0, 0.707107}, {2, 0}, {1, 0.989949}, {3, 0.979936}}},
		{"centroid", 0.95, []Pick{{0, 0.707107}, {2, 0}}},
		{"fps", 1, []Pick{{0, 0.707107}, {2, 0}, {1, 0.8}, {3, 0.96}}},
		{"fps", 0.9, []Pick{{0, 0.707107}, {2, 0}, {1, 0.8}}},
		{"fps", 1, nil}, // max 2 below
	} {
		max := 10
		if tc.want == nil {
			max, tc.want = 2, []Pick{{0, 0.707107}, {2, 0}}
		}
		var got []Pick
		if tc.method == "fps" {
			got = FPS(v, max, tc.tripwire)
		} else {
			got = Centroid(v, max, tc.tripwire)
		}
		ok := len(got) == len(tc.want)
		for i := range got {
			ok = ok && got[i].Index == tc.want[i].Index && math.Abs(got[i].Similarity-tc.want[i].Similarity) < 1e-5
		}
		if !ok {
			t.Errorf("%s, tripwire %v, max %d: %v; want %v", tc.method, tc.tripwire, max, got, tc.want)
		}
	}
}

// TestWithSelection: the input line is kept byte for byte, selection
// added last; a selection of its own (an earlier output fed back) is
// replaced, the other fields still as written.
func TestWithSelection(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"id":"a","prompt":"x <b> & y","n":1.50}`, `{"id":"a","prompt":"x <b> & y","n":1.50,"selection":{"order":2,"similarity":0.5}}`},
		{`{"prompt":"x","tags":["selection"],"meta":{"selection":"by hand"}}`, `{"prompt":"x","tags":["selection"],"meta":{"selection":"by hand"},"selection":{"order":2,"similarity":0.5}}`},
		{`{"prompt":"x <b>", "selection": {"order": 0, "similarity": 1}, "z":1}`, `{"prompt":"x <b>", "z":1,"selection":{"order":2,"similarity":0.5}}`},
		{`{ "selection":{"order":0} , "prompt":"x","a":2}`, `{  "prompt":"x","a":2,"selection":{"order":2,"similarity":0.5}}`},
		{`{"prompt":"x","selection":{}}`, `{"prompt":"x","selection":{"order":2,"similarity":0.5}}`},
	} {
		got, err := withSelection([]byte(tc.in), 2, 0.5)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s:\n got %s, %v\nwant %s", tc.in, got, err, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not JSON: %s", tc.in, got)
		}
	}
}

// FuzzWithSelection: any object line comes out as valid JSON with the
// same members, selection replaced.
func FuzzWithSelection(f *testing.F) {
	f.Add(`{"prompt":"x","selection":1,"selection":2}`)
	f.Add(`{ "selection" : [1,{"a":"}"}] ,"prompt":"x\"selection\""}`)
	f.Fuzz(func(t *testing.T, line string) {
		var in map[string]json.RawMessage
		if json.Unmarshal([]byte(line), &in) != nil || len(in) == 0 {
			return
		}
		got, err := withSelection([]byte(line), 1, 0.25)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var out map[string]json.RawMessage
		if err := json.Unmarshal(got, &out); err != nil {
			t.Fatalf("%s -> %s: %v", line, got, err)
		}
		if string(out["selection"]) != `{"order":1,"similarity":0.25}` {
			t.Fatalf("%s -> %s", line, got)
		}
		delete(in, "selection")
		delete(out, "selection")
		if len(in) != len(out) {
			t.Fatalf("%s -> %s: members %d, want %d", line, got, len(out), len(in))
		}
	})
}
