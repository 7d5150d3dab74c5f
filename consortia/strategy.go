package consortia

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/consortium-dev/consortium/openai"
)

// A strategy is how a consortium's answers become one: the seam between
// the engine, which owns everything that every strategy shares (the
// fan-out, quorum, member_timeout, min_answers, fallbacks, the members'
// threads across rounds, the run record, usage, and the client's bounds on
// the answer), and the one thing that tells strategies apart. Each strategy
// is one file: its config type (a field of Config), its constructor (a line
// in strategies) and its decide.
//
// The engine calls decide once per round, after the fan-out, from the
// goroutine that called Run; a strategy keeps no state across runs, so one
// value serves concurrent runs.
type strategy interface {
	// decide reads one round. round.Members holds every member instance's
	// answer, in configuration order (index i is instance i), at least
	// min_answers of them with status ok; decide may set their Label and
	// adds its own calls to the record (round.Arbiter, ...). It either
	//
	//   - writes the answer to write, in order, as it becomes final (the
	//     engine cuts it at the client's max_tokens or stop and checks it is
	//     JSON when JSON was asked for), and returns a decision with again
	//     false; or
	//   - writes nothing and returns again true, with feedback for each
	//     member's next turn.
	//
	// Its own upstream calls run under ctx, with their role set
	// (upstream.WithRole), and their usage is returned in the decision,
	// also with an error. An error ends the run (ctx's error when ctx
	// ended it).
	decide(ctx context.Context, req *openai.ChatRequest, round *Round, write func(string)) (decision, error)
}

// decision is what a strategy made of a round.
type decision struct {
	// again asks for another round. feedback[i] is then the user turn that
	// instance i's thread continues with, after its own answer; an instance
	// that failed this round asks its previous thread again.
	again    bool
	feedback []string

	// outcome is what the strategy found beyond the answer, for the
	// consortium object and the run record. A nil Confidence keeps the
	// run's confidence from an earlier round.
	outcome Outcome

	// usage sums the strategy's own calls in this round.
	usage openai.Usage

	// fallback, on a final decision, says why the answer is not the
	// strategy's own (for the run record).
	fallback string

	// finish, on a final decision, is "length" when the answer written
	// was already cut at the client's max_tokens (by a cascade tier's own
	// run), so that the engine reports the cut its own bound then cannot
	// see.
	finish string

	// choices, on a final decision of a request with n > 1, are the n
	// answers in order, choices[0] being the one written; the engine bounds
	// each as it bounds the written one.
	choices []string
}

// A requestChecker is a strategy that serves requests the engine's
// default refuses: n > 1. A strategy that is not one serves n = 1 only.
type requestChecker interface {
	// check reports a request the strategy cannot serve, as an
	// *openai.FieldError, before any call.
	check(req *openai.ChatRequest) error
}

// checkOne refuses n > 1: the check of a strategy that writes one answer.
func checkOne(req *openai.ChatRequest) error {
	if req.N != nil && *req.N > 1 {
		return &openai.FieldError{Param: "n", Message: "a consortium writes one answer: n must be 1 (a rank consortium with then: winner can return several)"}
	}
	return nil
}

// strategies builds each strategy from its consortium's setup. A new
// strategy is a new file and one line here.
var strategies = map[string]func(setup) (strategy, error){
	"synthesize": newSynthesize,
	"rank":       newRank,
	"vote":       newVote,
	"cascade":    newCascade,
}

// defaultStrategy is the strategy of a Config that names none.
const defaultStrategy = "synthesize"

// setup is what a strategy is built from: the consortium as New resolved
// it.
type setup struct {
	name      string // the consortium's
	cfg       *Config
	instances []instance // the member instances, in configuration order
	// resolve turns a provider/model ref into a target New can call.
	resolve func(ref string, params map[string]any) (target, error)
	// engine finds another consortium's engine by name (cascade's tiers);
	// nil when the engine was built on its own by New.
	engine func(name string) (*Engine, bool)
}

// newStrategy builds the strategy cfg.Strategy names.
func newStrategy(s setup) (strategy, error) {
	name := s.cfg.Strategy
	if name == "" {
		name = defaultStrategy
	}
	build := strategies[name]
	if build == nil {
		built := make([]string, 0, len(strategies))
		for n := range strategies {
			built = append(built, n)
		}
		slices.Sort(built)
		return nil, fmt.Errorf("consortium %s: strategy %q is not built (built: %s)", s.name, name, strings.Join(built, ", "))
	}
	return build(s)
}

// sameFeedback is the feedback of a decision that tells every instance
// the same thing.
func sameFeedback(n int, text string) []string {
	f := make([]string, n)
	for i := range f {
		f[i] = text
	}
	return f
}
