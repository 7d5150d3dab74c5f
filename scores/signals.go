package scores

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// Tally is what one run adds to its consortium's statistics: counts per
// model and pairwise wins. It holds model refs and numbers only, never
// text of a prompt or an answer.
type Tally struct {
	Consortium string
	Models     map[string]*Counts
	// Pairs are the run's pairwise wins, each ordered pair once with its
	// count, in the order found.
	Pairs []Pair
}

// Pair is a count of wins of one model over another.
type Pair struct {
	Winner, Loser string
	N             int64
}

// Counts are a model's statistics in a consortium, over one run (in a
// Tally) or every run recorded (in Stats).
type Counts struct {
	// Runs are the runs the model took part in.
	Runs int64
	// Answers and Failures are its instances that answered, and that
	// failed (an error or a timeout), in each run's last round.
	Answers, Failures int64
	// FirstPlaces are the times its answer was placed first.
	FirstPlaces int64
	// Wins and Losses are its pairwise comparisons against other models.
	Wins, Losses int64
	// Regret is the losses it took by failing while another answered.
	Regret int64
	// Tokens are the tokens of its calls as a member, every round.
	Tokens int64
	// CostUSD is what its answers cost; CostUnknown counts the answers
	// whose cost was not known, which make the sum unknown.
	CostUSD     float64
	CostUnknown int64
	// Latency counts its answers' latencies by bucket (latencyBucket).
	Latency map[int]int64
}

func (c *Counts) add(d *Counts) {
	c.Runs += d.Runs
	c.Answers += d.Answers
	c.Failures += d.Failures
	c.FirstPlaces += d.FirstPlaces
	c.Wins += d.Wins
	c.Losses += d.Losses
	c.Regret += d.Regret
	c.Tokens += d.Tokens
	c.CostUSD += d.CostUSD
	c.CostUnknown += d.CostUnknown
	for b, n := range d.Latency {
		if c.Latency == nil {
			c.Latency = map[int]int64{}
		}
		c.Latency[b] += n
	}
}

// Latency buckets grow by 10%: bucket b holds latencies from
// 1.1^b - 1 to 1.1^(b+1) - 1 milliseconds, so the median read from them
// is within 5% of the true one, and ten minutes fit in 142 buckets.
const latencyGrowth = 1.1

func latencyBucket(ms int64) int {
	return int(math.Log1p(float64(max(ms, 0))) / math.Log(latencyGrowth))
}

// bucketMs is the middle of bucket b, in milliseconds.
func bucketMs(b int) float64 {
	return math.Expm1((float64(b) + 0.5) * math.Log(latencyGrowth))
}

// Tally returns what a run adds to its consortium's statistics (DESIGN,
// "Scores, leaderboard and cost"), or nil when it adds nothing:
//
//   - each model that took part counts the run once; each instance of
//     the last round counts an answer or a failure (error or timeout; a
//     member cancelled once quorum answers were in counts neither); tokens
//     and latencies count in every round;
//   - a fallback that answered is the model credited, not the member it
//     replaced; a member that failed is charged to the member;
//   - pairs come from each judge's ranking (its dropped self-placements
//     left out), from the last round's arbiter <ranking> once per run
//     (synthesize, comparing only the labels it names), and from votes
//     (an answer in the plurality beats each successful answer outside
//     it; groups tied for the most weight are all the plurality);
//   - a member that failed while another answered loses to each that
//     answered, and those losses are its regret;
//   - pairs of the same model are not counted;
//   - first places: rank's place 1, the arbiter's first label, and the
//     answer a vote returned;
//   - each member call that reported usage is priced at the model
//     credited, as the run's own cost is; a model pricing lacks makes
//     the cost unknown.
//   - a cascade's consortium tiers add their runs' statistics to the
//     cascade's (each model one run; first places from the tier that
//     answered); a provider/model tier counts as a member.
func TallyRun(run *consortia.Run, pricing consortia.Pricing) *Tally {
	if run == nil || len(run.Rounds) == 0 {
		return nil
	}
	t := &Tally{Consortium: run.Consortium, Models: map[string]*Counts{}}
	model := func(ref string) *Counts {
		c := t.Models[ref]
		if c == nil {
			c = &Counts{Runs: 1}
			t.Models[ref] = c
		}
		return c
	}
	pairs := map[[2]string]int{} // index in t.Pairs
	pair := func(w, l string, n int64) {
		k := [2]string{w, l}
		if i, ok := pairs[k]; ok {
			t.Pairs[i].N += n
			return
		}
		pairs[k] = len(t.Pairs)
		t.Pairs = append(t.Pairs, Pair{Winner: w, Loser: l, N: n})
	}
	win := func(w, l string, n int64) {
		if w == l || n == 0 {
			return
		}
		model(w).Wins += n
		model(l).Losses += n
		pair(w, l, n)
	}

	for _, round := range run.Rounds {
		members := round.Members
		for _, tier := range round.Tiers {
			// A provider/model tier is a member of the cascade; a
			// consortium tier's run is added below.
			if tier.Call != nil {
				members = append(members, *tier.Call)
			}
		}
		for _, a := range members {
			c := model(credited(a))
			// A call that reported no usage counts in neither the tokens
			// nor the cost, as in the run's own usage.
			if a.Usage != nil && *a.Usage != (openai.Usage{}) {
				c.Tokens += tokens(a.Usage)
				if p, ok := pricing[credited(a)]; ok {
					c.CostUSD += p.Cost(a.Usage.PromptTokens, a.Usage.Cached(), a.Usage.CompletionTokens)
				} else {
					c.CostUnknown++
				}
			}
			if a.Status == consortia.StatusOK {
				if c.Latency == nil {
					c.Latency = map[int]int64{}
				}
				c.Latency[latencyBucket(a.LatencyMs)]++
			}
		}
		// Judges rank the answers of their own round.
		var order []string // reused: ranked keeps none of it
		for _, j := range round.Judges {
			if j.Error != "" {
				continue
			}
			order = slices.Grow(order[:0], len(j.RankedMembers))
			for _, name := range j.RankedMembers {
				if slices.Contains(j.Dropped, name) {
					continue
				}
				if a, ok := named(round.Members, name); ok {
					order = append(order, credited(a))
				}
			}
			ranked(order, win)
		}
	}

	last := &run.Rounds[len(run.Rounds)-1]
	members := last.Members
	for _, tier := range last.Tiers {
		if tier.Call != nil {
			members = append(members, *tier.Call)
		}
	}
	answered := make([]string, 0, len(members))
	for _, a := range members {
		c := model(credited(a))
		switch a.Status {
		case consortia.StatusOK:
			c.Answers++
			answered = append(answered, credited(a))
		case consortia.StatusError, consortia.StatusTimeout:
			c.Failures++
		}
	}
	// Regret: a failure loses to every answer of another model.
	for _, a := range members {
		if a.Status != consortia.StatusError && a.Status != consortia.StatusTimeout {
			continue
		}
		for _, w := range answered {
			if w != credited(a) {
				win(w, credited(a), 1)
				model(credited(a)).Regret++
			}
		}
	}

	// The arbiter's ranking, once per run: the last round's.
	if run.Strategy == "synthesize" && last.Arbiter != nil && len(last.Arbiter.Ranking) > 0 {
		var order []string
		for _, l := range last.Arbiter.Ranking {
			for _, a := range last.Members {
				if a.Label == l && a.Status == consortia.StatusOK {
					order = append(order, credited(a))
					break
				}
			}
		}
		ranked(order, win)
		if len(order) > 0 {
			model(order[0]).FirstPlaces++
		}
	}

	// Rank's winner.
	for _, s := range run.Scores {
		if s.Place != 1 {
			continue
		}
		if a, ok := named(last.Members, s.Model+"#"+strconv.Itoa(s.Instance)); ok {
			model(credited(a)).FirstPlaces++
		}
	}

	// Votes: the plurality beats every other answer.
	if len(run.Votes) > 0 {
		top := run.Votes[0].Weight
		var plurality []string
		in := map[string]bool{}
		for _, g := range run.Votes {
			if math.Abs(g.Weight-top) > 1e-9 {
				break
			}
			for _, name := range g.Members {
				in[name] = true
				if a, ok := named(last.Members, name); ok {
					plurality = append(plurality, credited(a))
				}
			}
		}
		for _, a := range last.Members {
			if a.Status != consortia.StatusOK || in[a.Model+"#"+strconv.Itoa(a.Instance)] {
				continue
			}
			for _, w := range plurality {
				win(w, credited(a), 1)
			}
		}
		if a, ok := named(last.Members, voteWinner(run.Votes, last.Judges)); ok {
			model(credited(a)).FirstPlaces++
		}
	}
	// A consortium tier's run is part of this run too: the cascade's
	// statistics get its models' counts and pairs (the tier's own
	// consortium records the same run under its name). Each model counts
	// this run once; first places only from the tier that answered.
	for _, round := range run.Rounds {
		for _, tier := range round.Tiers {
			sub := TallyRun(tier.Run, pricing)
			if sub == nil {
				continue
			}
			for ref, c := range sub.Models {
				m := model(ref)
				runs, firsts := m.Runs, m.FirstPlaces
				m.add(c)
				m.Runs = runs
				if tier.Escalated || tier.Error != "" {
					m.FirstPlaces = firsts
				}
			}
			for _, p := range sub.Pairs {
				pair(p.Winner, p.Loser, p.N)
			}
		}
	}
	return t
}

// voteWinner is the member whose answer a vote returned: the first of the
// heaviest group or, when groups tied and judges broke the tie, the first
// of the tied group the judges scored best, as the vote scored them
// (consortia's rank scores): each judge's ranking of the tied answers,
// its dropped placements left out, earns an answer (k-1-i)/(k-1) at place
// i of k; an answer's score is the weighted mean over the judges that
// placed it; ties go to more first places, then to the group first in
// the votes (the earlier configured member).
func voteWinner(votes []consortia.VoteGroup, judges []consortia.JudgeReply) string {
	var tied []string // each tied group's first member
	for _, g := range votes {
		if math.Abs(g.Weight-votes[0].Weight) > 1e-9 || len(g.Members) == 0 {
			break
		}
		tied = append(tied, g.Members[0])
	}
	if len(tied) == 0 {
		return ""
	}
	sum, wsum, firsts := map[string]float64{}, map[string]float64{}, map[string]int{}
	for _, j := range judges {
		if j.Group != "tie" || j.Error != "" {
			continue
		}
		var order []string
		for _, name := range j.RankedMembers {
			if !slices.Contains(j.Dropped, name) {
				order = append(order, name)
			}
		}
		k := len(order)
		if k < 2 {
			continue
		}
		for i, name := range order {
			sum[name] += j.Weight * float64(k-1-i) / float64(k-1)
			wsum[name] += j.Weight
		}
		firsts[order[0]]++
	}
	score := func(name string) float64 {
		if wsum[name] > 0 {
			return sum[name] / wsum[name]
		}
		return 0
	}
	best := tied[0]
	for _, name := range tied[1:] {
		d := score(name) - score(best)
		if d > 1e-9 || math.Abs(d) <= 1e-9 && firsts[name] > firsts[best] {
			best = name
		}
	}
	return best
}

// ranked counts the pairs of an order, best first.
func ranked(order []string, win func(w, l string, n int64)) {
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			win(order[i], order[j], 1)
		}
	}
}

// credited is the model an answer is credited to: the fallback that
// answered in the member's place, else the member.
func credited(a consortia.MemberAnswer) string {
	if a.Fallback != "" && a.Status == consortia.StatusOK {
		return a.Fallback
	}
	return a.Model
}

// named returns the answer of a round named "provider/model#instance",
// the name the record's rankings and votes use. A round holds a handful of
// answers, so a scan costs less than indexing them in a map each run. It
// scans from the end, so that a name given twice finds the later answer,
// as such an index would have.
func named(answers []consortia.MemberAnswer, name string) (consortia.MemberAnswer, bool) {
	for i := len(answers) - 1; i >= 0; i-- {
		if isNamed(answers[i], name) {
			return answers[i], true
		}
	}
	return consortia.MemberAnswer{}, false
}

// isNamed reports whether name is a.Model+"#"+strconv.Itoa(a.Instance),
// without building that string. The instance's digits hold no '#', so the
// last '#' in the name is the one before them.
func isNamed(a consortia.MemberAnswer, name string) bool {
	h := strings.LastIndexByte(name, '#')
	if h < 0 || name[:h] != a.Model {
		return false
	}
	var digits [20]byte
	return string(strconv.AppendInt(digits[:0], int64(a.Instance), 10)) == name[h+1:]
}

// tokens are a call's tokens: its total, or the sum of its parts when a
// provider reports no total.
func tokens(u *openai.Usage) int64 {
	if u.TotalTokens > 0 {
		return int64(u.TotalTokens)
	}
	return int64(u.PromptTokens + u.CompletionTokens)
}
