package consortia_test

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestRatingFactor(t *testing.T) {
	for _, tc := range []struct {
		rating, want float64
	}{
		{1000, 1},
		{1060, math.Pow(10, 0.15)},
		{1120.4119982655925, 2}, // 10^(120.41/400) = 2
		{1400, 2},               // 10, clamped
		{940, math.Pow(10, -0.15)},
		{800, 0.5}, // 0.316, clamped
		{math.NaN(), 1},
	} {
		if got := consortia.RatingFactor(tc.rating); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("RatingFactor(%v) = %v, want %v", tc.rating, got, tc.want)
		}
	}
}

// fakeRatings is a consortia.Ratings with fixed ratings, counting reads.
type fakeRatings struct {
	ratings map[string]consortia.Rating
	reads   atomic.Int32
}

func (f *fakeRatings) Ratings(consortium string) map[string]consortia.Rating {
	f.reads.Add(1)
	return f.ratings
}

// TestAdaptiveWeightsVote: vote sums the run's adaptive weights, so a
// well-rated model outvotes two instances of a poorly rated one that
// outvote it with fixed weights; the record says which weights and why.
func TestAdaptiveWeightsVote(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.Handle("alpha", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("x", 1, 1) })
	fake.Handle("beta", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("y", 1, 1) })
	fake.Handle("gamma", func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply("z", 1, 1) })
	ratings := &fakeRatings{ratings: map[string]consortia.Rating{
		"fake/alpha": {Rating: 1300, Comparisons: 40},  // ×2, clamped
		"fake/beta":  {Rating: 940, Comparisons: 20},   // ×0.708
		"fake/gamma": {Rating: 1500, Comparisons: 19},  // too few: as configured
		"fake/other": {Rating: 2000, Comparisons: 100}, // not a member
	}}
	vote := func(weights string) consortia.Config {
		return consortia.Config{
			Strategy: "vote", Weights: weights, Ratings: ratings, MinAnswers: 1,
			Members: []consortia.Member{
				{Model: "fake/alpha", Count: 1, Weight: 1},
				{Model: "fake/beta", Count: 2, Weight: 1},
				{Model: "fake/gamma", Count: 1, Weight: 0.5},
			},
		}
	}
	set := pricedSet(t, fake, nil, map[string]consortia.Config{"fixed": vote(""), "adaptive": vote("adaptive")})

	res, err := runEngine(t, set["fixed"])
	if err != nil {
		t.Fatal(err)
	}
	if res.Synthesis != "y" || res.Run.Weights != nil {
		t.Errorf("fixed: synthesis %q (want y), weights %+v (want none)", res.Synthesis, res.Run.Weights)
	}
	if n := ratings.reads.Load(); n != 0 {
		t.Errorf("fixed weights read the ratings %d times", n)
	}

	res, err = runEngine(t, set["adaptive"])
	if err != nil {
		t.Fatal(err)
	}
	// alpha 1×2 = 2 beats beta's 2 × 0.708 = 1.42 and gamma's 0.5.
	if res.Synthesis != "x" {
		t.Errorf("adaptive: synthesis %q, want x; votes %+v", res.Synthesis, res.Run.Votes)
	}
	betaW := math.Pow(10, -0.15)
	var got []float64
	for _, g := range res.Run.Votes {
		got = append(got, g.Weight)
	}
	if want := []float64{2, 2 * betaW, 0.5}; len(got) != 3 || math.Abs(got[0]-want[0]) > 1e-9 || math.Abs(got[1]-want[1]) > 1e-9 || got[2] != want[2] {
		t.Errorf("vote weights %v, want %v", got, want)
	}
	w := res.Run.Weights
	if len(w) != 3 {
		t.Fatalf("weights record %+v, want one per member", w)
	}
	if w[0].Model != "fake/alpha" || w[0].Configured != 1 || w[0].Used != 2 || *w[0].Rating != 1300 || w[0].Comparisons != 40 ||
		!strings.Contains(w[0].Reason, "rating 1300 over 40 comparisons: ×2 (clamped from ×5.62)") {
		t.Errorf("alpha %+v", w[0])
	}
	if math.Abs(w[1].Used-betaW) > 1e-9 || !strings.Contains(w[1].Reason, "rating 940 over 20 comparisons: ×0.708") || strings.Contains(w[1].Reason, "clamped") {
		t.Errorf("beta %+v", w[1])
	}
	if w[2].Used != 0.5 || w[2].Comparisons != 19 || w[2].Reason != "19 comparisons, fewer than 20: the configured weight" {
		t.Errorf("gamma %+v", w[2])
	}
	body, _ := json.Marshal(res.Run)
	if !strings.Contains(string(body), `"weights":[{"model":"fake/alpha","configured":1,"used":2,"rating":1300,"comparisons":40,`) {
		t.Errorf("run record: %s", body)
	}
}

// TestAdaptiveWeightsArbiter: the arbiter sees the run's adaptive
// weights, even when the configured ones are equal; without ratings the
// configured ones stand, and the record says so.
func TestAdaptiveWeightsArbiter(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply(verdict("0.9", "ok"), 1, 1) })
	ratings := &fakeRatings{ratings: map[string]consortia.Rating{"fake/alpha": {Rating: 1100, Comparisons: 25}}}
	council := func(r consortia.Ratings) consortia.Config {
		return consortia.Config{
			Weights: "adaptive", Ratings: r, MinAnswers: 1,
			Members:    []consortia.Member{{Model: "fake/alpha", Count: 1, Weight: 1}, {Model: "fake/beta", Count: 1, Weight: 1}},
			Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "fake/arbiter"}, MinIterations: 1, MaxIterations: 1},
		}
	}
	set := pricedSet(t, fake, nil, map[string]consortia.Config{"rated": council(ratings), "unrated": council(nil)})

	res, err := runEngine(t, set["rated"])
	if err != nil {
		t.Fatal(err)
	}
	prompt := fake.RequestsFor("arbiter")[0].LastUserText()
	var shown []string
	for _, l := range []string{"A", "B"} {
		for _, w := range []string{"1.8", "1"} {
			if strings.Contains(prompt, "Response "+l+" (weight "+w+")") {
				shown = append(shown, w)
			}
		}
	}
	slices.Sort(shown)
	if !slices.Equal(shown, []string{"1", "1.8"}) {
		t.Errorf("the arbiter saw weights %v, want 1 and 1.8 (10^0.25):\n%s", shown, prompt)
	}
	if w := res.Run.Weights; len(w) != 2 || w[1].Reason != "no rating yet: the configured weight" || w[1].Rating != nil {
		t.Errorf("weights %+v", w)
	}

	fake.Reset()
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply { return usageReply(verdict("0.9", "ok"), 1, 1) })
	res, err = runEngine(t, set["unrated"])
	if err != nil {
		t.Fatal(err)
	}
	if prompt := fake.RequestsFor("arbiter")[0].LastUserText(); strings.Contains(prompt, "(weight ") {
		t.Errorf("equal weights shown:\n%s", prompt)
	}
	if w := res.Run.Weights; len(w) != 2 || w[0].Used != 1 || w[0].Reason != "no ratings to read: the configured weight" {
		t.Errorf("weights %+v", w)
	}
}
