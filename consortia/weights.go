package consortia

import (
	"fmt"
	"math"
)

// Adaptive weights (DESIGN.md, "Scores, leaderboard and cost"): with
// Config.Weights "adaptive", each run reads the consortium's ratings
// (Config.Ratings, from memory) once, as it starts. A model with at least
// minComparisons pairwise comparisons gets its members' configured weight
// times
//
//	clamp(10^((rating − 1000) / 400), 0.5, 2)
//
// (on the rating's own scale, 400 points are ten times the strength, and
// 1000 is the consortium's average, whose weight is unchanged); a model
// with fewer keeps its configured weight. The weights a run used are the
// ones every strategy that uses member weights reads: the arbiter sees
// them (synthesize, and rank's then: synthesize), and vote sums them. Rank's
// Borda scores stay weighted by the judges' weights alone. The run record's
// Weights say, per configured member, which weight was used and why.

// Weight modes of Config.Weights.
const (
	WeightsFixed    = "fixed"
	WeightsAdaptive = "adaptive"
)

// MinComparisons is how many pairwise comparisons a model's rating rests
// on before adaptive weights use it.
const MinComparisons = 20

// The bounds of the factor a rating multiplies a configured weight by.
const (
	minWeightFactor = 0.5
	maxWeightFactor = 2.0
)

// MemberWeight is the weight one configured member had in a run of an
// adaptive consortium, and why: the configured weight, or the configured
// weight times its model's rating factor.
type MemberWeight struct {
	Model      string  `json:"model"`
	Configured float64 `json:"configured"`
	Used       float64 `json:"used"`
	// Rating and Comparisons are the model's rating as the run read it;
	// Rating is nil when the model had none.
	Rating      *float64 `json:"rating"`
	Comparisons int      `json:"comparisons"`
	Reason      string   `json:"reason"`
}

// RatingFactor returns what a rating multiplies a configured weight by:
// 10^((rating − 1000) / 400), clamped to 0.5–2.
func RatingFactor(rating float64) float64 {
	f := math.Pow(10, (rating-1000)/400)
	if math.IsNaN(f) {
		return 1
	}
	return min(max(f, minWeightFactor), maxWeightFactor)
}

// runWeights returns the weight of each member instance for one run, and
// for an adaptive consortium the record of how each member's was chosen.
func (e *Engine) runWeights() ([]float64, []MemberWeight) {
	weights := make([]float64, len(e.instances))
	for i, in := range e.instances {
		weights[i] = in.weight
	}
	if e.cfg.Weights != WeightsAdaptive || len(e.cfg.Members) == 0 {
		return weights, nil
	}
	var ratings map[string]Rating
	if e.cfg.Ratings != nil {
		ratings = e.cfg.Ratings.Ratings(e.name)
	}
	factor := map[string]float64{}
	record := make([]MemberWeight, len(e.cfg.Members))
	for i, m := range e.cfg.Members {
		w := MemberWeight{Model: m.Model, Configured: m.Weight, Used: m.Weight}
		r, rated := ratings[m.Model]
		if rated {
			w.Rating, w.Comparisons = &r.Rating, r.Comparisons
		}
		switch {
		case e.cfg.Ratings == nil:
			w.Reason = "no ratings to read: the configured weight"
		case !rated:
			w.Reason = "no rating yet: the configured weight"
		case r.Comparisons < MinComparisons:
			w.Reason = fmt.Sprintf("%d comparisons, fewer than %d: the configured weight", r.Comparisons, MinComparisons)
		default:
			f := RatingFactor(r.Rating)
			factor[m.Model] = f
			w.Used = m.Weight * f
			w.Reason = fmt.Sprintf("rating %.0f over %d comparisons: ×%.3g", r.Rating, r.Comparisons, f)
			if raw := math.Pow(10, (r.Rating-1000)/400); raw != f {
				w.Reason += fmt.Sprintf(" (clamped from ×%.3g)", raw)
			}
		}
		record[i] = w
	}
	for i, in := range e.instances {
		if f, ok := factor[in.ref]; ok {
			weights[i] = in.weight * f
		}
	}
	return weights, record
}

// memberWeights returns the weight of each member instance in the round's
// run, or def when the round has none (a round a strategy's test built).
func (r *Round) memberWeights(def []float64) []float64 {
	if len(r.weights) == len(r.Members) && r.weights != nil {
		return r.weights
	}
	return def
}

// differ reports whether the weights are not all equal.
func differ(weights []float64) bool {
	for _, w := range weights {
		if w != weights[0] {
			return true
		}
	}
	return false
}
