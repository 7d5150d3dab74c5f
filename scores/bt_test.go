package scores

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/internal/redistest"
)

// TestMain fails the package when a test leaves a goroutine behind (a
// Board's writer not closed), and shares the Redis backends of
// TestRedisBackends between tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m))
}

// truth are the ratings the generated data is drawn from, on the
// leaderboard's scale (their geometric mean strength is 1000's).
var truth = []float64{1200, 1080, 1000, 940, 780}

// generate draws runs of comparisons from truth: each run compares every
// pair of a random three models once (as one judge ranking three answers
// gives three pairs), the winner drawn by Bradley–Terry.
func generate(seed uint64, runs int) [][]pair {
	rng := rand.New(rand.NewPCG(seed, 7))
	k := len(truth)
	out := make([][]pair, 0, runs)
	for range runs {
		picked := rng.Perm(k)[:3]
		var r []pair
		for a := range picked {
			for b := a + 1; b < len(picked); b++ {
				i, j := picked[a], picked[b]
				// P(i beats j) = 1 / (1 + 10^((r_j - r_i)/400))
				if rng.Float64() < 1/(1+math.Pow(10, (truth[j]-truth[i])/400)) {
					r = append(r, pair{winner: i, loser: j, n: 1})
				} else {
					r = append(r, pair{winner: j, loser: i, n: 1})
				}
			}
		}
		out = append(out, r)
	}
	return out
}

func tally(k int, runs [][]pair) matrix {
	m := newMatrix(k)
	for _, r := range runs {
		for _, p := range r {
			m.add(p.winner, p.loser, float64(p.n))
		}
	}
	return m
}

// TestFitSolvesTheLikelihood checks the MM fit against the equations its
// maximum satisfies (the reference: the derivative of the penalized log
// likelihood is zero): for each model, its wins plus its prior wins equal
// the wins the fitted strengths expect, prior games included.
func TestFitSolvesTheLikelihood(t *testing.T) {
	m := tally(len(truth), generate(1, 300))
	p := fit(m, nil)
	for i := range m.k {
		got, want := priorGames, 2*priorGames*p[i]/(p[i]+1)
		for j := range m.k {
			got += m.w[i*m.k+j]
			if n := m.w[i*m.k+j] + m.w[j*m.k+i]; i != j {
				want += n * p[i] / (p[i] + p[j])
			}
		}
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("model %d: wins %.6f, expected by the fit %.6f", i, got, want)
		}
	}
}

// TestFitTwoModels checks a case with a closed form: two models, a wins
// w times and b wins l times. With the prior against a reference of
// strength 1 the equations are symmetric when w = l (both strengths 1),
// and a model that never lost stays finite.
func TestFitTwoModels(t *testing.T) {
	m := newMatrix(2)
	m.add(0, 1, 10)
	m.add(1, 0, 10)
	if p := fit(m, nil); math.Abs(p[0]-1) > 1e-9 || math.Abs(p[1]-1) > 1e-9 {
		t.Errorf("even record: strengths %v, want 1 and 1", p)
	}
	m = newMatrix(2)
	m.add(0, 1, 50)
	p := fit(m, nil)
	r := scale(p, []bool{true, true})
	if math.IsInf(r[0], 0) || math.IsNaN(r[0]) || r[0] <= r[1] {
		t.Fatalf("unbeaten model: ratings %v", r)
	}
	// Without the prior the ratio would be infinite; with it, wins 51
	// against 1 in the model's own games bound it.
	if r[0]-r[1] > 2000 {
		t.Errorf("unbeaten model rated %v above the other: the prior does not hold it", r[0]-r[1])
	}
}

// TestRecoversKnownStrengths fits one data set generated from known
// ratings (a fixed seed, 1000 runs): the fitted order is the true one and
// every interval covers the truth. A 95% interval misses now and then by
// design; TestIntervalsCover measures how often.
func TestRecoversKnownStrengths(t *testing.T) {
	runs := generate(42, 1000)
	m := tally(len(truth), runs)
	r, rated := ratings(m)
	ci := bootstrap(m.k, runs, r, rated, int64(len(runs)))
	order := func(v []float64) []int {
		idx := []int{0, 1, 2, 3, 4}
		slices.SortFunc(idx, func(a, b int) int {
			if v[a] > v[b] {
				return -1
			}
			return 1
		})
		return idx
	}
	if got, want := order(r), order(truth); !slices.Equal(got, want) {
		t.Errorf("fitted order %v, true order %v (ratings %v)", got, want, r)
	}
	for i := range truth {
		t.Logf("model %d: true %.0f, fitted %.1f [%.1f, %.1f]", i, truth[i], r[i], ci[i].lo, ci[i].hi)
		if truth[i] < ci[i].lo || truth[i] > ci[i].hi {
			t.Errorf("model %d: interval [%.1f, %.1f] misses the true rating %.0f", i, ci[i].lo, ci[i].hi, truth[i])
		}
		if ci[i].lo > r[i] || ci[i].hi < r[i] {
			t.Errorf("model %d: interval [%.1f, %.1f] does not hold its rating %.1f", i, ci[i].lo, ci[i].hi, r[i])
		}
	}
}

// TestIntervalsCover checks the bootstrap's coverage over many data sets
// drawn from the truth: a 95% interval covers the true rating about 95%
// of the time, so well over 85% here.
func TestIntervalsCover(t *testing.T) {
	if testing.Short() {
		t.Skip("fits 40 data sets")
	}
	covered, total := 0, 0
	for seed := range uint64(40) {
		runs := generate(100+seed, 200)
		m := tally(len(truth), runs)
		r, rated := ratings(m)
		ci := bootstrap(m.k, runs, r, rated, int64(len(runs)))
		for i := range truth {
			total++
			if truth[i] >= ci[i].lo && truth[i] <= ci[i].hi {
				covered++
			}
		}
	}
	rate := float64(covered) / float64(total)
	t.Logf("coverage %.3f over %d intervals", rate, total)
	if rate < 0.85 {
		t.Errorf("the 95%% intervals cover the truth %.1f%% of the time", 100*rate)
	}
}

// TestWindowNarrows: an interval from a window of the recent runs is
// narrowed as if it came from every run.
func TestWindowNarrows(t *testing.T) {
	runs := generate(3, 400)
	m := tally(len(truth), runs)
	r, rated := ratings(m)
	whole := bootstrap(m.k, runs[:100], r, rated, 100)
	narrowed := bootstrap(m.k, runs[:100], r, rated, 400)
	for i := range truth {
		w, n := whole[i].hi-whole[i].lo, narrowed[i].hi-narrowed[i].lo
		if math.Abs(n-w/2) > 1e-6 {
			t.Errorf("model %d: width %.2f from 100 of 400 runs, want half of %.2f", i, n, w)
		}
	}
}

func TestBootstrapIsDeterministic(t *testing.T) {
	runs := generate(5, 100)
	m := tally(len(truth), runs)
	r, rated := ratings(m)
	a := bootstrap(m.k, runs, r, rated, 100)
	b := bootstrap(m.k, runs, r, rated, 100)
	if !slices.Equal(a, b) {
		t.Errorf("two bootstraps of the same data differ: %v, %v", a, b)
	}
}

func BenchmarkStandings(b *testing.B) {
	runs := generate(9, Window)
	s := newStats()
	names := []string{"p/a", "p/b", "p/c", "p/d", "p/e"}
	for _, r := range runs {
		t := &Tally{Consortium: "c", Models: map[string]*Counts{}}
		for _, p := range r {
			t.Pairs = append(t.Pairs, Pair{Winner: names[p.winner], Loser: names[p.loser], N: int64(p.n)})
		}
		s.add(t, Window)
	}
	b.ReportAllocs()
	for b.Loop() {
		standings(s)
	}
}
