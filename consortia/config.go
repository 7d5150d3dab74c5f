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

	// Synthesize configures the strategy "synthesize".
	Synthesize Synthesize
}

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
