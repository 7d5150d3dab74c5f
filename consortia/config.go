package consortia

import "time"

// Config is one consortium's definition, as the engine needs it. The
// wiring fills it from the configuration file (which has validated it);
// the engine reads nothing else.
//
// The fields up to MinAnswers belong to the engine and serve every
// strategy. Each strategy has a field of its own type (Synthesize, ...)
// that only that strategy reads.
type Config struct {
	// Description is shown by /v1/models.
	Description string
	// Strategy names how answers become one: "synthesize" (the default
	// when empty). New refuses a strategy that is not built.
	Strategy string
	// System is given to every member, before the client's messages.
	System string
	// Members are the member models, in the order configured.
	Members []Member
	// Quorum is how many answers end a round's fan-out, cancelling the
	// rest; 0 means every member.
	Quorum int
	// MemberTimeout is how long a round waits for its members; then the
	// strategy decides with the answers in. If zero, a round waits for
	// every member (each call is still bounded by its provider's timeout).
	MemberTimeout time.Duration
	// MinAnswers is the fewest successful answers a round may have. If
	// zero, 1.
	MinAnswers int

	// Synthesize configures the strategy "synthesize", and the arbiter of
	// rank's then: synthesize and of vote's tie_break: judge.
	Synthesize Synthesize

	// Judges rank answers source-blind (rank; vote's tie_break: judge).
	Judges []Judge
	// JudgePrompt, when not empty, is a text/template replacing the
	// default judge prompt.
	JudgePrompt string
	// Rank, Vote and Cascade configure those strategies.
	Rank    Rank
	Vote    Vote
	Cascade Cascade

	// Weights is "fixed" (the default when empty: the configured member
	// weights) or "adaptive": member weights derived from Ratings once a
	// model has enough comparisons, clamped to 0.5–2× the configured one.
	Weights string
	// Ratings is where adaptive weights read the models' ratings. If nil,
	// the configured weights are used.
	Ratings Ratings
	// Pricing prices every upstream call of a run, for cost_usd in its
	// usage and record. If nil, costs are unknown.
	Pricing Pricing
	// OnRun, if set, is called once with the record of every run when it
	// ends, answered or failed, after the answer's last delta was written;
	// not for a run its caller cancelled (the client went away). It must
	// not block (the scores record runs through it).
	OnRun func(*Run)
}

// Ratings gives the current rating of each model of a consortium, by
// provider/model ref. It is read at the start of every run of an adaptive
// consortium, so it answers from memory and never blocks.
type Ratings interface {
	Ratings(consortium string) map[string]Rating
}

// Rating is a model's rating in a consortium: Bradley–Terry on the scale
// 1000 + 400·log10(strength / geometric mean strength), and the number
// of pairwise comparisons it rests on.
type Rating struct {
	Rating      float64
	Comparisons int
}

// Price is what a model costs, in US dollars per million tokens.
// CachedInput, when not nil, prices the input tokens a provider reports
// as read from its prompt cache.
type Price struct {
	Input       float64
	Output      float64
	CachedInput *float64
}

// Pricing is the price of each priced model, by provider/model ref. A
// model it does not list costs an unknown amount, never 0.
type Pricing map[string]Price

// Member is one member model of a consortium.
type Member struct {
	// Model is the provider/model ref.
	Model string
	// Count is how many instances answer, each on its own.
	Count int
	// Weight is the relative trust in the member's answers, which a
	// strategy may use (synthesize shows it to the arbiter).
	Weight float64
	// System is this member's own system prompt.
	System string
	// Params override the client's sampling params.
	Params map[string]any
	// Fallbacks are refs tried in order when this one fails.
	Fallbacks []string
}

// Arbiter is a model that reads the members' answers and writes the
// answer the client receives.
type Arbiter struct {
	// Model is the provider/model ref.
	Model string
	// Prompt, when not empty, is a text/template replacing DefaultPrompt.
	Prompt string
	// Params are the arbiter call's own params.
	Params map[string]any
}

// The configuration of the strategies after synthesize. Each strategy
// reads its own field of Config; Judges and JudgePrompt serve rank, and
// vote's tie_break: judge.

// Judge is a model that ranks answers source-blind.
type Judge struct {
	// Model is the provider/model ref.
	Model string
	// Weight is the judge's weight in the aggregated scores. If zero, 1.
	Weight float64
	// Params are the judge call's own params; temperature is 0 unless
	// they set it.
	Params map[string]any
}

// Rank configures the strategy "rank": judges sort the answers and the
// best wins (Borda).
type Rank struct {
	// WithinModelFirst ranks each model's own samples first, then the
	// best of each model across models.
	WithinModelFirst bool
	// Then is "winner" (the default when empty: the top answer verbatim)
	// or "synthesize" (the arbiter of Synthesize writes the answer, given
	// the ranking and scores).
	Then string
}

// Vote configures the strategy "vote": the weighted plurality of the
// normalized answers wins.
type Vote struct {
	// Extract, when not empty, is a regexp whose first group is the part
	// of an answer that is compared.
	Extract string
	// TieBreak is "first" (the default when empty: the tied answer of the
	// earliest configured member) or "judge" (the judges, or the arbiter,
	// rank the tied answers).
	TieBreak string
}

// Cascade configures the strategy "cascade": tiers answer in turn, the
// cheapest first, until one is confident enough.
type Cascade struct {
	// Tiers are consortium names or provider/model refs, cheapest first.
	Tiers []string
	// EscalateBelow is the confidence under which a tier escalates to
	// the next.
	EscalateBelow float64
}
