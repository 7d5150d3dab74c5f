package consortia

import (
	"bytes"
	"fmt"
	"math"

	"github.com/consortium-dev/consortium/openai"
)

// Estimate is what a request to a consortium would take, worked out from
// the configuration and the request alone: no provider is called and no
// store is read (DESIGN.md, "Scores, leaderboard and cost").
//
//   - Calls are the upstream calls the run would make, by role and model:
//     the members (Count instances) in each of Rounds [min, max] rounds,
//     the arbiter once a round, the judges once per set of answers they
//     rank, vote's tie-break only on a tie (rounds [0, 1]), and a
//     cascade's tiers (each tier's calls, the tiers after the first with
//     0 as their fewest rounds, since they run only on escalation).
//     Fallbacks, retries and judges' re-asks are not counted: the
//     estimate is of a run whose calls succeed at the first try.
//   - Tokens: input ≈ bytes / 4 of what each call is sent (its thread,
//     or its prompt template filled with the request); output bounded by
//     each call's max_tokens (a member's params', else the client's; an
//     arbiter's or judge's own params'), null when a call has none. The
//     low end is the fewest rounds with one-token answers; the high end
//     the most rounds with every answer at its bound, read back by the
//     arbiter, the judges and the next round's threads.
//   - CostUSD is both ends priced at each call's model; null when the
//     output is unbounded or a model has no price (unknown, never 0).
type Estimate struct {
	Calls   []EstimateCall `json:"calls"`
	Tokens  TokenEstimate  `json:"tokens"`
	CostUSD *[2]float64    `json:"cost_usd"`
}

// EstimateCall is a group of the calls a run would make: Count calls of
// Model in the role Role each round, in Rounds[0] to Rounds[1] rounds.
// Tier names the cascade tier the calls belong to.
type EstimateCall struct {
	Role   string `json:"role"` // member, arbiter or judge
	Model  string `json:"model"`
	Count  int    `json:"count"`
	Rounds [2]int `json:"rounds"`
	Tier   string `json:"tier,omitempty"`
}

// TokenEstimate is the low and high ends of a run's tokens; Output is nil
// when a call's output has no bound.
type TokenEstimate struct {
	Input  [2]int  `json:"input"`
	Output *[2]int `json:"output"`
}

// Estimate works out what req would take, as Estimate says. A request
// Check refuses is refused here too.
func (e *Engine) Estimate(req *openai.ChatRequest) (*Estimate, error) {
	if err := e.Check(req); err != nil {
		return nil, err
	}
	return e.cfg.Pricing.summarize(e.estimateCalls(req)), nil
}

// callEstimate is one group of calls with the tokens of all of them.
type callEstimate struct {
	EstimateCall
	in, out   [2]int // over every call of the group, low and high
	unbounded bool   // the calls' output has no bound: out[1] is unknown
}

// estimateTokens is a text's tokens, ≈ bytes / 4 (the charsPerToken the
// client's max_tokens is read with).
func estimateTokens(s string) int { return (len(s) + charsPerToken - 1) / charsPerToken }

// threadTokens is what a thread of messages is sent as.
func threadTokens(msgs []openai.Message) int {
	n := 0
	for _, m := range msgs {
		n += estimateTokens(m.Role) + estimateTokens(m.Content.String())
	}
	return n
}

// maxEstimateBound is the largest max_tokens an estimate takes as a
// bound: past it, sums of rounds and calls could overflow, and no answer
// is that long, so it bounds nothing.
const maxEstimateBound = 1 << 32

// outputBound is a call's max_tokens: its params', else the client's when
// client is true; false when it has none (or one outside 1 to
// maxEstimateBound, which bounds nothing an estimate can use).
func outputBound(req *openai.ChatRequest, params map[string]any, client bool) (int, bool) {
	valid := func(n float64) (int, bool) {
		if n >= 1 && n <= maxEstimateBound {
			return int(n), true
		}
		return 0, false
	}
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		switch v := params[k].(type) {
		case int:
			return valid(float64(v))
		case float64:
			return valid(v)
		}
	}
	if !client {
		return 0, false
	}
	if req.MaxCompletionTokens != nil {
		return valid(float64(*req.MaxCompletionTokens))
	}
	if req.MaxTokens != nil {
		return valid(float64(*req.MaxTokens))
	}
	return 0, false
}

// estimateCalls returns the calls the engine's strategy would make for req.
func (e *Engine) estimateCalls(req *openai.ChatRequest) []callEstimate {
	switch s := e.strategy.(type) {
	case *synthesize:
		sy := s.cfg
		calls := e.estimateMembers(req, [2]int{sy.MinIterations, sy.MaxIterations})
		return append(calls, e.estimateArbiter(req, s, [2]int{sy.MinIterations, sy.MaxIterations}))
	case *rank:
		calls := e.estimateMembers(req, [2]int{1, 1})
		calls = append(calls, e.estimateRanking(req, s)...)
		if s.arbiter != nil {
			calls = append(calls, e.estimateArbiter(req, s.arbiter, [2]int{1, 1}))
		}
		return calls
	case *vote:
		calls := e.estimateMembers(req, [2]int{1, 1})
		if s.panel != nil && len(e.instances) > 1 {
			// Only a tie calls the judges: at most every answer is tied.
			all := make([]int, len(e.instances))
			for i := range all {
				all[i] = i
			}
			for _, c := range e.estimatePanel(req, s.panel, all) {
				c.Rounds[0], c.in[0], c.out[0] = 0, 0, 0
				calls = append(calls, c)
			}
		}
		return calls
	case *cascade:
		return e.estimateCascade(req, s)
	}
	return nil
}

// estimateMembers returns the members' calls over rounds, grouped by
// model. A round after the first sends each member its thread so far: its
// own answer and the feedback are added to it.
func (e *Engine) estimateMembers(req *openai.ChatRequest, rounds [2]int) []callEstimate {
	feedback := estimateTokens(feedbackTurn(verdict{})) + estimateTokens("assistant") + estimateTokens("user")
	var calls []callEstimate
	index := map[string]int{}
	for _, in := range e.instances {
		n, ok := index[in.ref]
		if !ok {
			n = len(calls)
			index[in.ref] = n
			calls = append(calls, callEstimate{EstimateCall: EstimateCall{Role: "member", Model: in.ref, Rounds: rounds}})
		}
		c := &calls[n]
		c.Count++
		first := threadTokens(withSystem(in.system, req.Messages))
		bound, bounded := outputBound(req, in.params, true)
		for end, r := range rounds {
			answer := 1
			if end == 1 {
				answer = max(bound, 1) // unbounded: as the low end's
			}
			for k := range r {
				c.in[end] += first + k*(feedback+answer)
			}
			c.out[end] += r * answer
		}
		c.unbounded = c.unbounded || !bounded
	}
	return calls
}

// allAnswers is a round in which every member instance answered, with
// empty text and labels in order: what a prompt is filled with to
// estimate its own size.
func (e *Engine) allAnswers() []MemberAnswer {
	answers := make([]MemberAnswer, len(e.instances))
	for i, in := range e.instances {
		answers[i] = MemberAnswer{Model: in.ref, Instance: in.number, Status: StatusOK, Label: label(i)}
	}
	return answers
}

// answerTokens is the low and high size of the answers of the instances
// cands, and whether every one of them is bounded.
func (e *Engine) answerTokens(req *openai.ChatRequest, cands []int) ([2]int, bool) {
	sum, all := [2]int{len(cands), 0}, true
	for _, i := range cands {
		b, ok := outputBound(req, e.instances[i].params, true)
		sum[1] += max(b, 1) // an unbounded answer counts as the low end's
		all = all && ok
	}
	return sum, all
}

// estimateArbiter returns the arbiter's calls over rounds: its prompt
// with every answer, once a round.
func (e *Engine) estimateArbiter(req *openai.ChatRequest, sy *synthesize, rounds [2]int) callEstimate {
	answers := e.allAnswers()
	order := make([]int, len(answers))
	for i := range order {
		order[i] = i
	}
	var prompt bytes.Buffer
	// The template ran with sample data when the engine was built.
	_ = sy.prompt.Execute(&prompt, sy.promptData(req, &Round{Number: 1, Members: answers}, order))
	read, bounded := e.answerTokens(req, order)
	c := callEstimate{EstimateCall: EstimateCall{Role: "arbiter", Model: sy.arbiter.ref, Count: 1, Rounds: rounds}}
	bound, ok := outputBound(req, sy.arbiter.params, false)
	base := estimateTokens("user") + estimateTokens(prompt.String())
	for end, r := range rounds {
		c.in[end] = r * (base + read[end])
		c.out[end] = r
		if end == 1 {
			c.out[end] = r * bound
		}
	}
	c.unbounded = !ok || !bounded
	return c
}

// estimateRanking returns rank's judges' calls: one ranking of every
// answer, or with within_model_first one of each model's own answers and
// one of the best of each model.
func (e *Engine) estimateRanking(req *openai.ChatRequest, r *rank) []callEstimate {
	answers := e.allAnswers()
	if len(answers) < 2 {
		return nil
	}
	all := make([]int, len(answers))
	for i := range all {
		all[i] = i
	}
	if !r.withinModelFirst {
		return e.estimatePanel(req, r.panel, all)
	}
	var models []string
	groups := map[string][]int{}
	for i, a := range answers {
		if groups[a.Model] == nil {
			models = append(models, a.Model)
		}
		groups[a.Model] = append(groups[a.Model], i)
	}
	var calls []callEstimate
	var finalists []int
	for _, m := range models {
		if len(groups[m]) > 1 {
			calls = append(calls, e.estimatePanel(req, r.panel, groups[m])...)
		}
		// The finalist's size is the largest of its model's.
		best, most := groups[m][0], -1
		for _, i := range groups[m] {
			if b, _ := outputBound(req, e.instances[i].params, true); b > most {
				best, most = i, b
			}
		}
		finalists = append(finalists, best)
	}
	if len(finalists) > 1 {
		calls = append(calls, e.estimatePanel(req, r.panel, finalists)...)
	}
	return mergeCalls(calls)
}

// estimatePanel returns the calls of a panel's judges ranking the answers
// of the instances cands: one call of each judge, but for a judge whose
// own model wrote every answer, which is not asked.
func (e *Engine) estimatePanel(req *openai.ChatRequest, p *panel, cands []int) []callEstimate {
	answers := e.allAnswers()
	labels := make([]string, len(cands))
	for n := range cands {
		labels[n] = label(n)
	}
	var prompt bytes.Buffer
	_ = p.prompt.Execute(&prompt, judgeData(p.consortium, req, answers, cands, labels))
	read, bounded := e.answerTokens(req, cands)
	base := estimateTokens("user") + estimateTokens(prompt.String())
	var calls []callEstimate
	for _, j := range p.judges {
		own := true
		for _, c := range cands {
			own = own && answers[c].Model == j.ref
		}
		if own {
			continue
		}
		bound, ok := outputBound(req, j.params, false)
		calls = append(calls, callEstimate{
			EstimateCall: EstimateCall{Role: "judge", Model: j.ref, Count: 1, Rounds: [2]int{1, 1}},
			in:           [2]int{base + read[0], base + read[1]},
			out:          [2]int{1, bound},
			unbounded:    !ok || !bounded,
		})
	}
	return mergeCalls(calls)
}

// estimateCascade returns every tier's calls: the first tier's as they
// are, the later tiers' as calls that may not happen (their fewest rounds
// 0), since a tier runs only when the one before escalates.
func (e *Engine) estimateCascade(req *openai.ChatRequest, c *cascade) []callEstimate {
	var calls []callEstimate
	for i, tier := range c.tiers {
		var tc []callEstimate
		if tier.engine != nil {
			tc = tier.engine.estimateCalls(req)
		} else {
			bound, ok := outputBound(req, tier.model.params, true)
			tc = []callEstimate{{
				EstimateCall: EstimateCall{Role: "member", Model: tier.model.ref, Count: 1, Rounds: [2]int{1, 1}},
				in:           [2]int{threadTokens(withSystem(c.system, req.Messages)), threadTokens(withSystem(c.system, req.Messages))},
				out:          [2]int{1, bound},
				unbounded:    !ok,
			}}
		}
		for _, call := range tc {
			if call.Tier != "" {
				call.Tier = tier.name + " > " + call.Tier
			} else {
				call.Tier = tier.name
			}
			if i > 0 {
				call.Rounds[0], call.in[0], call.out[0] = 0, 0, 0
			}
			calls = append(calls, call)
		}
	}
	return calls
}

// mergeCalls merges the groups of the same role, model, rounds and tier,
// summing their counts and tokens, in order of first appearance.
func mergeCalls(calls []callEstimate) []callEstimate {
	var out []callEstimate
	index := map[EstimateCall]int{}
	for _, c := range calls {
		key := c.EstimateCall
		key.Count = 0
		n, ok := index[key]
		if !ok {
			index[key] = len(out)
			out = append(out, c)
			continue
		}
		m := &out[n]
		m.Count += c.Count
		for end := range 2 {
			m.in[end] += c.in[end]
			m.out[end] += c.out[end]
		}
		m.unbounded = m.unbounded || c.unbounded
	}
	return out
}

// summarize adds the calls up into an Estimate, priced at p.
func (p Pricing) summarize(calls []callEstimate) *Estimate {
	est := &Estimate{Calls: []EstimateCall{}}
	var out [2]int
	var usd [2]float64
	bounded, priced := true, p != nil
	for _, c := range calls {
		est.Calls = append(est.Calls, c.EstimateCall)
		for end := range 2 {
			est.Tokens.Input[end] += c.in[end]
			out[end] += c.out[end]
		}
		bounded = bounded && !c.unbounded
		price, ok := p[c.Model]
		priced = priced && ok
		for end := range 2 {
			usd[end] += price.Cost(c.in[end], 0, c.out[end])
		}
	}
	if bounded {
		est.Tokens.Output = &out
		if priced {
			// To the nano-dollar, so that sums of float prices read as
			// written.
			for end := range usd {
				usd[end] = math.Round(usd[end]*1e9) / 1e9
			}
			est.CostUSD = &usd
		}
	}
	return est
}

// String is the estimate in a line of text, for the terminal.
func (t TokenEstimate) String() string {
	s := fmt.Sprintf("input %d–%d tokens", t.Input[0], t.Input[1])
	if t.Output == nil {
		return s + ", output unbounded (a call without max_tokens)"
	}
	return s + fmt.Sprintf(", output %d–%d tokens", t.Output[0], t.Output[1])
}
