package batch

import (
	"math"
	"math/rand/v2"
	"slices"
)

// round rounds x to digits decimals, for output lines that read well.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// bootstrapRounds is how many resamples the 95% intervals use.
const bootstrapRounds = 2000

// bootstrap returns the 95% percentile interval of each column's mean:
// scores[i][c] is item i's score for column c. Items are resampled
// together (the same draw for every column), with a fixed seed, so the
// intervals are the same on every run over the same scores.
func bootstrap(scores [][]float64, cols int) [][2]float64 {
	out := make([][2]float64, cols)
	n := len(scores)
	if n == 0 {
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	means := make([][]float64, cols)
	sums := make([]float64, cols)
	for range bootstrapRounds {
		clear(sums)
		for range n {
			row := scores[rng.IntN(n)]
			for c := range cols {
				sums[c] += row[c]
			}
		}
		for c := range cols {
			means[c] = append(means[c], sums[c]/float64(n))
		}
	}
	for c := range cols {
		slices.Sort(means[c])
		out[c] = [2]float64{quantile(means[c], 0.025), quantile(means[c], 0.975)}
	}
	return out
}

// quantile is the q-quantile of sorted xs, interpolated linearly.
func quantile(xs []float64, q float64) float64 {
	pos := q * float64(len(xs)-1)
	lo := int(pos)
	if lo+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	f := pos - float64(lo)
	return xs[lo]*(1-f) + xs[lo+1]*f
}
