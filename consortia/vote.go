package consortia

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/consortium-dev/consortium/openai"
)

// ErrNoVote: no answer cast a vote (none matched extract).
var ErrNoVote = errors.New("no answer cast a vote")

// vote is the strategy "vote" (DESIGN.md, "Strategies"): agreement
// decides (self-consistency). Its contract, in its one round:
//
//   - Each successful answer is compared by its key: the first group of
//     extract (the whole match when it has none; the whole answer when
//     extract is empty), trimmed, with white space collapsed, Unicode case
//     folded and trailing punctuation dropped; when the client asked for
//     JSON and the key parses as JSON, the JSON re-serialized instead (keys
//     sorted, no insignificant space). An answer extract does not match,
//     or whose key is empty, casts no vote but counts in the total.
//   - Equal keys form a group whose weight is the sum of its members'
//     weights (a weight of 0 counts as 1); the heaviest group wins, and
//     its first answer, in configuration order, is written whole.
//   - Tied groups: tie_break first (the default) takes the group of the
//     earliest configured member; tie_break judge has the judges (or,
//     without judges, the arbiter as the one judge) rank the first answer
//     of each tied group as judge.go says, the best-scored group winning.
//     No answer voting ends the run (ErrNoVote, 502).
//   - The outcome's Votes are the groups, heaviest first (then in order of
//     appearance); Agreement and Confidence the winning weight over the
//     total weight of the successful answers.
type vote struct {
	consortium string
	extract    *regexp.Regexp // nil: the whole answer
	weights    []float64      // per instance
	panel      *panel         // tie_break: judge; nil for first
}

func newVote(s setup) (strategy, error) {
	if len(s.instances) == 0 {
		return nil, fmt.Errorf("consortium %s: the strategy vote needs members", s.name)
	}
	v := &vote{consortium: s.name}
	for _, in := range s.instances {
		w := in.weight
		if w == 0 {
			w = 1
		}
		v.weights = append(v.weights, w)
	}
	if s.cfg.Vote.Extract != "" {
		re, err := regexp.Compile(s.cfg.Vote.Extract)
		if err != nil {
			return nil, fmt.Errorf("consortium %s: extract: %w", s.name, err)
		}
		v.extract = re
	}
	switch s.cfg.Vote.TieBreak {
	case "", "first":
	case "judge":
		judges := s.cfg.Judges
		if len(judges) == 0 {
			a := s.cfg.Synthesize.Arbiter
			if a.Model == "" {
				return nil, fmt.Errorf("consortium %s: tie_break judge needs judges or an arbiter", s.name)
			}
			judges = []Judge{{Model: a.Model, Weight: 1, Params: a.Params}}
		}
		var err error
		if v.panel, err = newPanel(s, judges); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("consortium %s: tie_break %q is neither first nor judge", s.name, s.cfg.Vote.TieBreak)
	}
	return v, nil
}

// ballotBox is one distinct answer and the instances that gave it.
type ballotBox struct {
	key     string
	weight  float64
	answers []int // in configuration order
}

func (v *vote) decide(ctx context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	var d decision
	answers := round.Members
	asJSON := jsonWanted(req)
	// The run's weights (adaptive ones when so configured); 0 counts as 1.
	weights := slices.Clone(round.memberWeights(v.weights))
	for i, w := range weights {
		if w == 0 {
			weights[i] = 1
		}
	}
	var boxes []*ballotBox
	total := 0.0
	for _, i := range succeeded(answers) {
		total += weights[i]
		key, ok := v.key(answers[i].Content, asJSON)
		if !ok {
			continue
		}
		n := slices.IndexFunc(boxes, func(b *ballotBox) bool { return b.key == key })
		if n < 0 {
			boxes = append(boxes, &ballotBox{key: key})
			n = len(boxes) - 1
		}
		boxes[n].weight += weights[i]
		boxes[n].answers = append(boxes[n].answers, i)
	}
	if len(boxes) == 0 {
		why := "every answer is empty"
		if v.extract != nil {
			why = fmt.Sprintf("extract %q matched none of the answers", v.extract)
		}
		return d, fmt.Errorf("consortium %s: %w: %s", v.consortium, ErrNoVote, why)
	}

	top := slices.MaxFunc(boxes, func(a, b *ballotBox) int { return cmpWeight(a.weight, b.weight) }).weight
	var tied []*ballotBox // in order of their first answer
	for _, b := range boxes {
		if cmpWeight(b.weight, top) == 0 {
			tied = append(tied, b)
		}
	}
	win := tied[0]
	if len(tied) > 1 && v.panel != nil {
		cands := make([]int, len(tied))
		for n, b := range tied {
			cands[n] = b.answers[0]
		}
		jm, err := v.panel.rank(ctx, req, answers, cands, "tie")
		d.usage.Add(jm.usage)
		round.Judges = append(round.Judges, jm.replies...)
		if err != nil {
			return d, err
		}
		best := tally(cands, jm.ballots)[0].answer
		win = tied[slices.Index(cands, best)]
	}

	agreement := win.weight / total
	d.outcome.Agreement, d.outcome.Confidence = &agreement, &agreement
	slices.SortStableFunc(boxes, func(a, b *ballotBox) int { return cmpWeight(b.weight, a.weight) })
	for _, b := range boxes {
		g := VoteGroup{Answer: b.key, Weight: b.weight}
		for _, i := range b.answers {
			g.Members = append(g.Members, fmt.Sprintf("%s#%d", answers[i].Model, answers[i].Instance))
		}
		d.outcome.Votes = append(d.outcome.Votes, g)
	}
	write(answers[win.answers[0]].Content)
	return d, nil
}

// cmpWeight compares summed weights, equal within rounding.
func cmpWeight(a, b float64) int {
	switch {
	case math.Abs(a-b) <= scoreEpsilon:
		return 0
	case a < b:
		return -1
	}
	return 1
}

// key is what an answer votes for, and false when it casts no vote.
func (v *vote) key(answer string, asJSON bool) (string, bool) {
	if v.extract != nil {
		m := v.extract.FindStringSubmatch(answer)
		if m == nil {
			return "", false
		}
		answer = m[min(1, len(m)-1)]
	}
	k := Normalize(answer, asJSON)
	return k, k != ""
}

// Normalize is an answer as votes compare it: trimmed, white space
// collapsed, case folded, trailing punctuation dropped; or, when asJSON
// and it parses (in a code fence or not), re-serialized JSON. eval's
// matches compare answers the same way.
func Normalize(s string, asJSON bool) string {
	s = strings.TrimSpace(s)
	if asJSON {
		var v any
		if json.Unmarshal([]byte(stripFence(s)), &v) == nil {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if enc.Encode(v) == nil {
				return strings.TrimSuffix(b.String(), "\n")
			}
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(fold, s)
	return strings.TrimRightFunc(s, func(r rune) bool { return unicode.IsPunct(r) || unicode.IsSpace(r) })
}

// fold maps a rune to one representative of its Unicode simple case
// folding orbit (K, k and the Kelvin sign K all become k; Σ, σ and ς
// become σ): the lower case of the orbit's smallest rune.
func fold(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return unicode.ToLower(least)
}
