package consortia

import (
	"io"
	"time"
)

// Config is one consortium's definition, as the engine needs it. The
// wiring fills it from the configuration file (which has validated it);
// the engine reads nothing else.
type Config struct {
	// Description is shown by /v1/models.
	Description string
	// Strategy is how answers become one: "synthesize" (the default when
	// empty).
	Strategy string
	// System is given to every member, before the client's messages.
	System string
	// Members are the member models, in the order configured.
	Members []Member
	// Arbiter judges the answers and writes the synthesis.
	Arbiter Arbiter
	// ConfidenceThreshold stops iterating at or above it (0..1).
	ConfidenceThreshold float64
	// MinIterations and MaxIterations bound the rounds.
	MinIterations, MaxIterations int
	// Quorum is how many answers start the arbiter, cancelling the rest;
	// 0 means every member.
	Quorum int
	// MemberTimeout is when the arbiter starts with the answers it has.
	MemberTimeout time.Duration
	// MinAnswers is the fewest successful answers a round may have.
	MinAnswers int
}

// Member is one member model of a consortium.
type Member struct {
	// Model is the provider/model ref.
	Model string
	// Count is how many instances answer, each on its own.
	Count int
	// Weight is the relative trust shown to the arbiter.
	Weight float64
	// System is this member's own system prompt.
	System string
	// Params override the client's sampling params.
	Params map[string]any
	// Fallbacks are refs tried in order when this one fails.
	Fallbacks []string
}

// Arbiter is a consortium's arbiter model.
type Arbiter struct {
	// Model is the provider/model ref.
	Model string
	// Prompt, when not empty, is a text/template replacing DefaultPrompt.
	Prompt string
	// Params are the arbiter call's own params.
	Params map[string]any
}

// instances is the number of member instances, counts included.
func (c *Config) instances() int {
	n := 0
	for _, m := range c.Members {
		n += m.Count
	}
	return n
}

// CheckPrompt reports an arbiter prompt template that does not parse or
// names a field PromptData lacks; "" is the default prompt, which is
// fine. Validation calls it without building an engine.
func CheckPrompt(text string) error {
	t, err := parsePrompt(text)
	if err != nil {
		return err
	}
	return t.Execute(io.Discard, samplePrompt)
}
