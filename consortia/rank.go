package consortia

import (
	"context"
	"fmt"
	"slices"

	"github.com/consortium-dev/consortium/openai"
)

// rank is the strategy "rank" (DESIGN.md, "Strategies"): source-blind
// judges sort the answers, and the best wins. Its contract, in its one
// round:
//
//   - The judges (Config.Judges) rank the successful answers as judge.go
//     says: opaque labels in each judge's own random order, a short
//     critique then <ranking>, one re-ask of a ranking that is not a
//     permutation of the labels shown, self-placements dropped, scores by
//     normalized Borda (the weighted mean over the judges that scored an
//     answer), ties to more first places, then to the member configured
//     earlier. With fewer than two answers no judge is called and the
//     answer stands. A set of answers no judge's ranking scores ends the
//     run (ErrJudges, 502).
//   - With within_model_first, the judges first rank each model's own
//     answers (a model with one answer needs no ranking), then the best
//     answer of each model across models. The answers a first phase
//     eliminated place after every finalist, in the order of their
//     first-phase scores.
//   - then: winner (the default) writes the winner's text verbatim; with
//     n > 1 the top n answers are the choices, in rank order (n above the
//     member instances is refused before any call, fewer answers than n
//     ends the run). then: synthesize has the arbiter (Config.Synthesize's)
//     write the answer given the ranking (PromptData.Scores and
//     JudgeRankings), streamed as it writes; a reply without a synthesis
//     falls back to the winner. It serves n = 1 only.
//   - The outcome's Scores are every successful answer's score and place,
//     best first; its Confidence the weighted share of the judges that
//     scored the winner and put it first (the deciding phase's, with
//     within_model_first), nil when no judge did. The round records each
//     judge's reply (Round.Judges).
type rank struct {
	consortium       string
	panel            *panel
	withinModelFirst bool
	arbiter          *synthesize // then: synthesize; nil for winner
	instances        int
}

func newRank(s setup) (strategy, error) {
	if len(s.instances) == 0 || len(s.cfg.Judges) == 0 {
		return nil, fmt.Errorf("consortium %s: the strategy rank needs members and judges", s.name)
	}
	r := &rank{consortium: s.name, withinModelFirst: s.cfg.Rank.WithinModelFirst, instances: len(s.instances)}
	var err error
	if r.panel, err = newPanel(s, s.cfg.Judges); err != nil {
		return nil, err
	}
	switch s.cfg.Rank.Then {
	case "", "winner":
	case "synthesize":
		if r.arbiter, err = newFinalArbiter(s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("consortium %s: then %q is neither winner nor synthesize", s.name, s.cfg.Rank.Then)
	}
	return r, nil
}

// newFinalArbiter builds the arbiter of Config.Synthesize to write one
// answer in one round, as rank's then: synthesize and vote's tie-break
// need it.
func newFinalArbiter(s setup) (*synthesize, error) {
	if s.cfg.Synthesize.Arbiter.Model == "" {
		return nil, fmt.Errorf("consortium %s: the strategy %s needs an arbiter model", s.name, s.cfg.Strategy)
	}
	cfg := *s.cfg
	cfg.Synthesize.MinIterations, cfg.Synthesize.MaxIterations = 1, 1
	s.cfg = &cfg
	st, err := newSynthesize(s)
	if err != nil {
		return nil, err
	}
	return st.(*synthesize), nil
}

// check allows n > 1 up to the member instances, with then: winner.
func (r *rank) check(req *openai.ChatRequest) error {
	n := wanted(req)
	switch {
	case n <= 1:
		return nil
	case r.arbiter != nil:
		return &openai.FieldError{Param: "n", Message: "this rank consortium's arbiter writes one answer (then: synthesize): n must be 1"}
	case n > r.instances:
		return &openai.FieldError{Param: "n", Message: fmt.Sprintf("n is %d but the consortium has %d member instances to answer", n, r.instances)}
	}
	return nil
}

// wanted is the number of choices a request asks for.
func wanted(req *openai.ChatRequest) int {
	if req.N != nil && *req.N > 1 {
		return *req.N
	}
	return 1
}

func (r *rank) decide(ctx context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error) {
	var d decision
	answers := round.Members
	ok := succeeded(answers)
	if n := wanted(req); len(ok) < n {
		return d, fmt.Errorf("consortium %s: %w: %d answers for the %d choices asked (n)", r.consortium, ErrTooFewAnswers, len(ok), n)
	}
	var (
		standings []standing
		deciding  []ballot // the ballots that decided the winner
		err       error
	)
	switch {
	case len(ok) < 2:
		standings = []standing{{answer: ok[0], score: 1, scored: true}}
	case r.withinModelFirst:
		standings, deciding, err = r.twoPhase(ctx, req, round, ok, &d)
	default:
		var jm judgement
		jm, err = r.panel.rank(ctx, req, answers, ok, "")
		d.usage.Add(jm.usage)
		round.Judges = append(round.Judges, jm.replies...)
		standings, deciding = tally(ok, jm.ballots), jm.ballots
	}
	if err != nil {
		return d, err
	}

	winner := standings[0].answer
	d.outcome.Confidence = firstShare(winner, deciding)
	for p, s := range standings {
		a := answers[s.answer]
		d.outcome.Scores = append(d.outcome.Scores, Score{Model: a.Model, Instance: a.Instance, Score: s.score, Place: p + 1})
	}
	if r.arbiter == nil {
		write(answers[winner].Content)
		if n := wanted(req); n > 1 {
			for _, s := range standings[:n] {
				d.choices = append(d.choices, answers[s.answer].Content)
			}
		}
		return d, nil
	}
	return r.synthesize(ctx, req, round, standings, write, d)
}

// twoPhase ranks each model's own answers, then the best of each model
// across models, recording both phases.
func (r *rank) twoPhase(ctx context.Context, req *openai.ChatRequest, round *Round, ok []int, d *decision) ([]standing, []ballot, error) {
	answers := round.Members
	var models []string
	groups := map[string][]int{}
	for _, i := range ok {
		m := answers[i].Model
		if groups[m] == nil {
			models = append(models, m)
		}
		groups[m] = append(groups[m], i)
	}

	// The first phase's rankings run at once, one set of judges per model.
	results := make([]judgement, len(models))
	errs := make([]error, len(models))
	done := make(chan int, len(models))
	for g, m := range models {
		if len(groups[m]) < 2 {
			done <- g
			continue
		}
		go func() {
			results[g], errs[g] = r.panel.rank(ctx, req, answers, groups[m], m)
			done <- g
		}()
	}
	for range models {
		<-done
	}
	var finalists, eliminated []standing
	var ballots []ballot // the single model's, when there is no second phase
	for g, m := range models {
		d.usage.Add(results[g].usage)
		round.Judges = append(round.Judges, results[g].replies...)
		if errs[g] != nil {
			return nil, nil, errs[g]
		}
		st := tally(groups[m], results[g].ballots)
		finalists = append(finalists, st[0])
		eliminated = append(eliminated, st[1:]...)
		ballots = results[g].ballots
	}
	slices.SortStableFunc(eliminated, better)
	if len(finalists) < 2 {
		return append(finalists, eliminated...), ballots, nil
	}

	cands := make([]int, len(finalists))
	for n, s := range finalists {
		cands[n] = s.answer
	}
	jm, err := r.panel.rank(ctx, req, answers, cands, "final")
	d.usage.Add(jm.usage)
	round.Judges = append(round.Judges, jm.replies...)
	if err != nil {
		return nil, nil, err
	}
	return append(tally(cands, jm.ballots), eliminated...), jm.ballots, nil
}

// synthesize has the arbiter write the answer from the ranking.
func (r *rank) synthesize(ctx context.Context, req *openai.ChatRequest, round *Round, standings []standing, write func(string), d decision) (decision, error) {
	answers := round.Members
	order := shuffleLabels(answers)
	ranked := func(p *PromptData) {
		for n, s := range standings {
			p.Scores = append(p.Scores, LabelScore{Label: answers[s.answer].Label, Score: s.score, Place: n + 1})
		}
		for _, j := range round.Judges {
			if j.Error != "" || len(j.ranked) == 0 {
				continue
			}
			labels := make([]string, len(j.ranked))
			for n, i := range j.ranked {
				labels[n] = answers[i].Label
			}
			p.JudgeRankings = append(p.JudgeRankings, joinRanking(labels))
		}
	}
	wrote := false
	rec, _, err := r.arbiter.judge(ctx, req, round, order, ranked, func(s string) {
		wrote = wrote || s != ""
		write(s)
	})
	round.Arbiter = rec
	if rec.Usage != nil {
		d.usage.Add(*rec.Usage)
	}
	if err != nil {
		return d, err
	}
	if !wrote {
		d.fallback = "the arbiter wrote no synthesis; the judges' winner was used"
		write(answers[standings[0].answer].Content)
	}
	return d, nil
}

// succeeded returns the indexes of the successful answers.
func succeeded(answers []MemberAnswer) []int {
	var ok []int
	for i, a := range answers {
		if a.Status == StatusOK {
			ok = append(ok, i)
		}
	}
	return ok
}
