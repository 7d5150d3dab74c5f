package scores

import (
	"math"
	"math/rand/v2"
	"slices"
)

// The Bradley–Terry model says model i beats model j with probability
// p_i / (p_i + p_j). The strengths p are fitted to the pairwise counts by
// Hunter's MM algorithm (2004), which climbs the likelihood at every step
// and needs no step size. A model that never lost has no finite maximum
// likelihood strength, so each model also plays one virtual win and one
// virtual loss against a reference of strength 1: a weak prior that keeps
// every strength finite and that a few dozen real comparisons outweigh.

// priorGames is the virtual wins (and as many losses) each model has
// against the reference of strength 1.
const priorGames = 1.0

// bootstraps is how many resamples the intervals rest on, and bootSeed
// their fixed seed, so that the same data always gives the same interval.
const (
	bootstraps = 200
	bootSeed   = 1
)

// matrix holds pairwise counts between k models: w[i*k+j] is how many
// times i beat j.
type matrix struct {
	k int
	w []float64
}

func newMatrix(k int) matrix { return matrix{k: k, w: make([]float64, k*k)} }

func (m matrix) add(winner, loser int, n float64) { m.w[winner*m.k+loser] += n }

// comparisons returns how many comparisons each model took part in.
func (m matrix) comparisons() []float64 {
	c := make([]float64, m.k)
	for i := range m.k {
		for j := range m.k {
			c[i] += m.w[i*m.k+j] + m.w[j*m.k+i]
		}
	}
	return c
}

// fit returns the Bradley–Terry strengths of the k models, starting from
// start when it is not nil (a bootstrap starts from the full fit, which
// is close).
func fit(m matrix, start []float64) []float64 {
	k := m.k
	p := make([]float64, k)
	for i := range p {
		p[i] = 1
		if start != nil {
			p[i] = start[i]
		}
	}
	wins := make([]float64, k)
	for i := range k {
		for j := range k {
			wins[i] += m.w[i*k+j]
		}
	}
	for range 10000 {
		change := 0.0
		// Gauss–Seidel: each strength is updated from the others' newest.
		for i := range k {
			denom := 2 * priorGames / (p[i] + 1)
			for j := range k {
				if n := m.w[i*k+j] + m.w[j*k+i]; n > 0 && i != j {
					denom += n / (p[i] + p[j])
				}
			}
			next := (wins[i] + priorGames) / denom
			change = max(change, math.Abs(math.Log(next/p[i])))
			p[i] = next
		}
		// The comparisons say nothing of a common factor of every
		// strength: only the prior does, so MM alone creeps along it for
		// thousands of steps. The best common factor is found at once.
		c := commonFactor(p)
		for i := range p {
			p[i] *= c
		}
		change = max(change, math.Abs(math.Log(c)))
		if change < 1e-9 {
			break
		}
	}
	return p
}

// commonFactor returns the c that maximizes the prior's likelihood of
// c·p (the comparisons' likelihood does not change with c): the root of
// Σ (1 − c·p_i)/(1 + c·p_i) = 0, found by Newton's method on log c, which
// the sum decreases in.
func commonFactor(p []float64) float64 {
	x := 0.0 // log c
	for range 50 {
		c := math.Exp(x)
		f, df := 0.0, 0.0
		for _, v := range p {
			cv := c * v
			f += (1 - cv) / (1 + cv)
			df -= 2 * cv / ((1 + cv) * (1 + cv))
		}
		step := f / df
		x -= step
		if math.Abs(step) < 1e-12 {
			break
		}
	}
	return math.Exp(x)
}

// scale puts strengths on the leaderboard's scale: 1000 + 400·log10(p /
// geometric mean of p), the mean taken over the models rated (rated[i]).
func scale(p []float64, rated []bool) []float64 {
	sum, n := 0.0, 0
	for i, v := range p {
		if rated[i] {
			sum += math.Log10(v)
			n++
		}
	}
	mean := 0.0
	if n > 0 {
		mean = sum / float64(n)
	}
	out := make([]float64, len(p))
	for i, v := range p {
		out[i] = 1000 + 400*(math.Log10(v)-mean)
	}
	return out
}

// ratings fits the counts and returns each model's rating and whether it
// has any comparison (one without has no rating).
func ratings(m matrix) ([]float64, []bool) {
	c := m.comparisons()
	rated := make([]bool, m.k)
	for i := range c {
		rated[i] = c[i] > 0
	}
	return scale(fit(m, nil), rated), rated
}

// interval is a rating's 95% bootstrap interval.
type interval struct{ lo, hi float64 }

// bootstrap returns the 95% interval of each model's rating, resampling
// the runs (each a list of pairs) with replacement. The intervals are
// percentile intervals around the resampled ratings, moved to be centred
// as they were on the rating of all the data (full) and narrowed by
// sqrt(len(runs)/total) when the runs are a recent window of total runs
// with pairs: the spread of a rating shrinks as the square root of the
// data.
func bootstrap(k int, runs [][]pair, full []float64, rated []bool, total int64) []interval {
	out := make([]interval, k)
	if len(runs) == 0 {
		for i := range out {
			out[i] = interval{full[i], full[i]}
		}
		return out
	}
	rng := rand.New(rand.NewPCG(bootSeed, bootSeed))
	m := newMatrix(k)
	// The window's own rating, which the resamples spread around.
	for _, r := range runs {
		for _, p := range r {
			m.add(p.winner, p.loser, float64(p.n))
		}
	}
	start := fit(m, nil)
	centre := scale(start, rated)
	samples := make([][]float64, k)
	for range bootstraps {
		clear(m.w)
		for range runs {
			for _, p := range runs[rng.IntN(len(runs))] {
				m.add(p.winner, p.loser, float64(p.n))
			}
		}
		r := scale(fit(m, start), rated)
		for i := range k {
			samples[i] = append(samples[i], r[i])
		}
	}
	shrink := 1.0
	if total > int64(len(runs)) {
		shrink = math.Sqrt(float64(len(runs)) / float64(total))
	}
	for i := range k {
		slices.Sort(samples[i])
		lo, hi := quantile(samples[i], 0.025), quantile(samples[i], 0.975)
		out[i] = interval{full[i] - (centre[i]-lo)*shrink, full[i] + (hi-centre[i])*shrink}
	}
	return out
}

// quantile is the q quantile of sorted values, interpolated linearly.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// pair is a count of wins of one model over another within one run, the
// models by index.
type pair struct {
	winner, loser int
	n             int
}
