package batch

import (
	"math"
	"runtime"
	"sync"
)

// Vectors are n embeddings of d dimensions, float32, one row after the
// other: n×d×4 bytes and nothing more per vector. Selection needs them
// normalized (Normalize), once.
type Vectors struct {
	N, D int
	Data []float32
}

// NewVectors allocates n zero vectors of d dimensions.
func NewVectors(n, d int) *Vectors {
	return &Vectors{N: n, D: d, Data: make([]float32, n*d)}
}

// Row returns vector i, sharing its storage.
func (v *Vectors) Row(i int) []float32 { return v.Data[i*v.D : (i+1)*v.D : (i+1)*v.D] }

// Normalize scales every vector to unit length; a zero vector stays zero.
func (v *Vectors) Normalize() {
	for i := range v.N {
		r := v.Row(i)
		var s float64
		for _, x := range r {
			s += float64(x) * float64(x)
		}
		if s == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(s))
		for k := range r {
			r[k] *= inv
		}
	}
}

// Pick is one selected vector: its index, and its similarity when it was
// picked (to the mean of those selected before it for centroid, its
// highest similarity to any of them for fps; for the first pick, to the
// mean of all).
type Pick struct {
	Index      int
	Similarity float64
}

// Centroid selects as DESIGN.md's centroid method: the vector least
// similar to the mean of all first; then, repeatedly, the vector least
// cosine-similar to the mean of those selected so far, stopping after max
// picks or before a pick whose similarity is above tripwire (that pick is
// left out). Ties go to the lower index. v must be normalized. The work
// is one pass over v per pick, spread over the CPUs; the memory beyond v
// is O(n + d).
func Centroid(v *Vectors, max int, tripwire float64) []Pick {
	if v.N == 0 || max <= 0 {
		return nil
	}
	sum := make([]float64, v.D) // of the selected vectors
	dots := make([]float64, v.N)
	first := firstPick(v)
	picks := []Pick{first}
	taken := make([]bool, v.N)
	add := func(j int) {
		taken[j] = true
		r := v.Row(j)
		for k, x := range r {
			sum[k] += float64(x)
		}
		v.addDots(r, func(i int, d float64) { dots[i] += d })
	}
	add(first.Index)
	for len(picks) < max && len(picks) < v.N {
		norm := 0.0
		for _, s := range sum {
			norm += s * s
		}
		norm = math.Sqrt(norm)
		best, bestSim := -1, math.Inf(1)
		for i, d := range dots {
			if taken[i] {
				continue
			}
			sim := 0.0
			if norm > 0 {
				sim = d / norm
			}
			if sim < bestSim {
				best, bestSim = i, sim
			}
		}
		bestSim = min(bestSim, 1) // float32 rounding: a cosine is at most 1
		if bestSim > tripwire {
			break
		}
		picks = append(picks, Pick{best, bestSim})
		add(best)
	}
	return picks
}

// FPS selects by farthest points, as DESIGN.md's fps method: the same
// first pick as Centroid; then, repeatedly, the vector whose highest
// similarity to any selected vector is lowest, stopping after max picks
// or before a pick whose highest similarity is above tripwire. Ties go to
// the lower index. v must be normalized.
func FPS(v *Vectors, max int, tripwire float64) []Pick {
	if v.N == 0 || max <= 0 {
		return nil
	}
	highest := make([]float64, v.N)
	for i := range highest {
		highest[i] = math.Inf(-1)
	}
	first := firstPick(v)
	picks := []Pick{first}
	taken := make([]bool, v.N)
	add := func(j int) {
		taken[j] = true
		v.addDots(v.Row(j), func(i int, d float64) {
			if d > highest[i] {
				highest[i] = d
			}
		})
	}
	add(first.Index)
	for len(picks) < max && len(picks) < v.N {
		best, bestSim := -1, math.Inf(1)
		for i, h := range highest {
			if !taken[i] && h < bestSim {
				best, bestSim = i, h
			}
		}
		bestSim = min(bestSim, 1) // float32 rounding: a cosine is at most 1
		if bestSim > tripwire {
			break
		}
		picks = append(picks, Pick{best, bestSim})
		add(best)
	}
	return picks
}

// firstPick is the vector least similar to the mean of all.
func firstPick(v *Vectors) Pick {
	mean := make([]float64, v.D)
	for i := range v.N {
		for k, x := range v.Row(i) {
			mean[k] += float64(x)
		}
	}
	norm := 0.0
	for _, m := range mean {
		norm += m * m
	}
	norm = math.Sqrt(norm)
	dir := make([]float32, v.D)
	if norm > 0 {
		for k, m := range mean {
			dir[k] = float32(m / norm)
		}
	}
	sims := make([]float64, v.N)
	v.addDots(dir, func(i int, d float64) { sims[i] = d })
	best := 0
	for i, s := range sims {
		if s < sims[best] {
			best = i
		}
	}
	return Pick{best, sims[best]}
}

// addDots computes the dot product of x with every vector and hands each
// to set(i, dot), splitting the rows over the CPUs; set is called for
// distinct i concurrently, so it may only write what belongs to i.
func (v *Vectors) addDots(x []float32, set func(i int, d float64)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, v.N/1024))
	per := (v.N + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, v.N)
		wg.Go(func() {
			i := lo
			for ; i+4 <= hi; i += 4 {
				s := dot4(x, v.Row(i), v.Row(i+1), v.Row(i+2), v.Row(i+3))
				for k, d := range s {
					set(i+k, float64(d))
				}
			}
			for ; i < hi; i++ {
				r := v.Row(i)
				set(i, float64(dot4(x, r, r, r, r)[0]))
			}
		})
	}
	wg.Wait()
}
