package consortia

import (
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// Run is the record of one consortium request: every member answer of
// every round, every arbiter reply, usage and timings. It is what the run
// endpoint shows and what later strategies score models from.
type Run struct {
	ID         string `json:"run_id"`
	Consortium string `json:"consortium"`
	// ConversationID is set by the caller that stores the conversation.
	ConversationID string    `json:"conversation_id,omitempty"`
	Strategy       string    `json:"strategy"`
	Created        time.Time `json:"created"`
	Iterations     int       `json:"iterations"`
	Outcome
	Rounds     []Round      `json:"rounds"`
	Usage      openai.Usage `json:"usage"`
	DurationMs int64        `json:"duration_ms"`
	// Weights, for a consortium with weights: adaptive, say which weight
	// each configured member had in this run and why.
	Weights []MemberWeight `json:"weights,omitempty"`
	// Fallback says why the synthesis is not the strategy's own, when it
	// is not (the arbiter wrote none, so the best-ranked answer was used).
	Fallback string `json:"fallback,omitempty"`
}

// Outcome is what a run's strategy found beyond the answer. It is part of
// both the run record and the consortium object. Each strategy fills the
// fields it knows and leaves the others empty: synthesize its arbiter's
// confidence; rank its scores (and the judges' share for the winner),
// vote its votes and agreement, cascade its tiers.
type Outcome struct {
	// Confidence is how sure the strategy is of the answer, 0..1; nil when
	// it cannot say (an untagged arbiter reply).
	Confidence *float64 `json:"confidence"`

	// Scores (rank) are the answers' aggregated scores, best first.
	Scores []Score `json:"scores,omitempty"`
	// Votes (vote) are the distinct answers with their weight, and
	// Agreement the winning weight over the total, 0..1.
	Votes     []VoteGroup `json:"votes,omitempty"`
	Agreement *float64    `json:"agreement,omitempty"`
	// Tiers (cascade) are the tiers tried, in order.
	Tiers []Tier `json:"tiers,omitempty"`
}

// Score is one answer's place in a rank run.
type Score struct {
	Model    string  `json:"model"`
	Instance int     `json:"instance"`
	Score    float64 `json:"score"`
	Place    int     `json:"place"` // from 1
}

// VoteGroup is one distinct answer of a vote run: the answer as compared
// (normalized), its summed weight, and the members that gave it
// ("provider/model#instance").
type VoteGroup struct {
	Answer  string   `json:"answer"`
	Weight  float64  `json:"weight"`
	Members []string `json:"members"`
}

// Tier is one tier a cascade tried: its name (a consortium or a
// provider/model ref), its confidence (nil when it has none or failed),
// and whether it escalated to the next.
type Tier struct {
	Tier       string   `json:"tier"`
	Confidence *float64 `json:"confidence"`
	Escalated  bool     `json:"escalated"`
	Error      string   `json:"error,omitempty"`
}

// Round is one round of a run: the members' answers in configuration
// order, and the strategy's own calls.
type Round struct {
	Number  int            `json:"number"`
	Members []MemberAnswer `json:"members"`
	// Arbiter is the arbiter's reply (synthesize; rank's then:
	// synthesize; vote's tie-break without judges).
	Arbiter *ArbiterReply `json:"arbiter,omitempty"`
	// Judges are the judges' rankings (rank; vote's tie-break), one per
	// judge and set of answers ranked.
	Judges []JudgeReply `json:"judges,omitempty"`
	// Tiers are the tiers a cascade tried, in order, each with its own
	// run or call.
	Tiers []TierRun `json:"tiers,omitempty"`

	// weights are the member instances' weights in this run, in instance
	// order (adaptive ones when so configured), for the strategy to use.
	weights []float64
}

// Member statuses, as the consortium object reports them.
const (
	StatusOK        = "ok"
	StatusError     = "error"
	StatusTimeout   = "timeout"   // past member_timeout
	StatusCancelled = "cancelled" // not needed once quorum answers were in
)

// MemberAnswer is what one member instance did in one round.
type MemberAnswer struct {
	Model     string        `json:"model"`
	Instance  int           `json:"instance"`
	Fallback  string        `json:"fallback,omitempty"` // the fallback ref that answered (or last failed) in the model's place
	Label     string        `json:"label,omitempty"`    // the label the arbiter saw, e.g. "B"
	Status    string        `json:"status"`
	Error     string        `json:"error,omitempty"`
	LatencyMs int64         `json:"latency_ms"`
	StartMs   int64         `json:"start_ms"` // when the call began, in ms from the start of the run (a cascade tier's: the outer run's)
	Content   string        `json:"content,omitempty"`
	Usage     *openai.Usage `json:"usage,omitempty"`
}

// ArbiterReply is the arbiter's reply in one round.
type ArbiterReply struct {
	Model           string        `json:"model"`
	Reply           string        `json:"reply"` // the full text as received, tags included
	Confidence      *float64      `json:"confidence"`
	NeedsIteration  *bool         `json:"needs_iteration"`
	RefinementAreas string        `json:"refinement_areas,omitempty"`
	Dissent         string        `json:"dissent,omitempty"`
	Ranking         []string      `json:"ranking,omitempty"`
	RankedModels    []string      `json:"ranked_models,omitempty"` // the ranking as member refs, best first
	Iterate         bool          `json:"iterate"`                 // this reply asked for (or forced) another round
	Cancelled       bool          `json:"cancelled"`               // cut when its synthesis began on a round that iterates
	LatencyMs       int64         `json:"latency_ms"`
	StartMs         int64         `json:"start_ms"` // when the call began, in ms from the start of the run
	Usage           *openai.Usage `json:"usage,omitempty"`
	Error           string        `json:"error,omitempty"`
}

// Summary is the consortium object of a response: what clients see of the
// run.
type Summary struct {
	RunID          string `json:"run_id"`
	ConversationID string `json:"conversation_id,omitempty"`
	Strategy       string `json:"strategy"`
	Iterations     int    `json:"iterations"`
	Outcome
	Members []MemberSummary `json:"members"`
}

// MemberSummary is one member instance in the consortium object.
type MemberSummary struct {
	Model     string `json:"model"`
	Instance  int    `json:"instance"`
	Status    string `json:"status"`
	Fallback  string `json:"fallback,omitempty"`
	LatencyMs int64  `json:"latency_ms"`
	Error     string `json:"error,omitempty"`
}

// Summary returns the consortium object of the run: the statuses of the
// last round's members.
func (r *Run) Summary() Summary {
	s := Summary{RunID: r.ID, ConversationID: r.ConversationID, Strategy: r.Strategy, Iterations: r.Iterations, Outcome: r.Outcome, Members: []MemberSummary{}}
	if len(r.Rounds) == 0 {
		return s
	}
	members := r.Rounds[len(r.Rounds)-1].Members
	s.Members = make([]MemberSummary, 0, len(members))
	for _, m := range members {
		s.Members = append(s.Members, MemberSummary{Model: m.Model, Instance: m.Instance, Status: m.Status, Fallback: m.Fallback, LatencyMs: m.LatencyMs, Error: m.Error})
	}
	return s
}
