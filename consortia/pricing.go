package consortia

import (
	"math"

	"github.com/consortium-dev/consortium/openai"
)

// Pricing a run (DESIGN.md, "Scores, leaderboard and cost"): every
// upstream call the run record holds is priced at its own model's price,
// from the usage the provider reported for it, and the sum is the run's
// cost_usd:
//
//   - the members' answers of every round, each priced at the model that
//     wrote it (the fallback that answered in the member's place);
//   - the arbiter's reply of every round, and every judge's reply (a
//     re-asked judge's usage holds both its calls);
//   - a cascade's tiers: each tier's own run, priced call by call as
//     this one is, or its provider/model call.
//
// The prompt tokens a call's usage says were read from the provider's
// cache (prompt_tokens_details.cached_tokens) are priced at CachedInput
// when the model has one. A call that reported usage on a model Pricing
// does not list makes the
// cost unknown (nil), never 0. A call that reported no usage (a failed
// call, a stream cut before its usage came) is counted neither in the
// run's tokens nor in its cost. A run no call of which reported usage has
// no cost either.

// perMillion is the unit prices are given in.
const perMillion = 1e6

// Cost returns what a call costs at p, in US dollars: prompt tokens at
// Input, the cached ones among them at CachedInput when p has it,
// completion tokens at Output.
func (p Price) Cost(prompt, cached, completion int) float64 {
	cached = min(max(cached, 0), prompt)
	cachedPrice := p.Input
	if p.CachedInput != nil {
		cachedPrice = *p.CachedInput
	}
	return (float64(prompt-cached)*p.Input + float64(cached)*cachedPrice + float64(completion)*p.Output) / perMillion
}

// bill sums the cost of calls.
type bill struct {
	pricing Pricing
	usd     float64
	calls   int  // calls priced
	unknown bool // a call's model has no price
}

// add prices one call of model that reported u (nil: none reported).
func (b *bill) add(model string, u *openai.Usage) {
	if u == nil || *u == (openai.Usage{}) {
		return
	}
	p, ok := b.pricing[model]
	if !ok {
		b.unknown = true
		return
	}
	b.usd += p.Cost(u.PromptTokens, u.Cached(), u.CompletionTokens)
	b.calls++
}

// run adds every call of r, its cascade tiers' runs included.
func (b *bill) run(r *Run) {
	for _, round := range r.Rounds {
		for _, a := range round.Members {
			b.add(writer(a), a.Usage)
		}
		if ar := round.Arbiter; ar != nil {
			b.add(ar.Model, ar.Usage)
		}
		for _, j := range round.Judges {
			b.add(j.Model, j.Usage)
		}
		for _, t := range round.Tiers {
			switch {
			case t.Run != nil:
				b.run(t.Run)
			case t.Call != nil:
				b.add(writer(*t.Call), t.Call.Usage)
			}
		}
	}
}

// cost returns what the run r cost in US dollars; nil when it is unknown:
// no pricing, a call on a model without a price, or no call that
// reported usage.
func (p Pricing) cost(r *Run) *float64 {
	if p == nil {
		return nil
	}
	b := bill{pricing: p}
	b.run(r)
	if b.unknown || b.calls == 0 {
		return nil
	}
	usd := RoundUSD(b.usd)
	return &usd
}

// RoundUSD rounds a sum of prices to a millionth of a cent, so that
// float sums read as money (0.00256825, not 0.0025682500000000002).
func RoundUSD(usd float64) float64 {
	return math.Round(usd*1e8) / 1e8
}
