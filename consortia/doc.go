// Package consortia owns consortiums: their definitions (Config), and the
// Engine that answers a request with one.
//
// The engine is split in two along one seam. The engine itself owns what
// every strategy shares (engine.go, members.go, output.go):
//
//   - the fan-out: each round, every member instance answers its own
//     thread at once, through its fallbacks when it fails; the round ends
//     when every member is done, when quorum answers are in (the rest are
//     cancelled) or when member_timeout passes; fewer than min_answers
//     successful answers end the run;
//   - the members' threads across rounds: an instance's answer stays as an
//     assistant turn and the strategy's feedback for it is the next user
//     turn, so each thread's prefix stays byte-identical;
//   - the Run record, usage summed over every call, its cost priced call
//     by call at each call's model (pricing.go), and the roles calls
//     carry (upstream.WithRole: "member", and the strategy's own); each
//     call's StartMs on the run's timeline, and the run's steps told as
//     they happen to a caller that asked (events.go, WithEvents);
//   - the member weights of each run: the configured ones, or with
//     weights: adaptive the configured ones scaled by the models' ratings
//     (weights.go), which a strategy reads from the round;
//   - the answer's bounds: the client's max_tokens and stop cut it, and
//     it must be JSON when JSON was asked for.
//
// A strategy (strategy.go) owns only how a round's answers become one:
// after each round the engine hands it the round (every instance's answer,
// in configuration order) and a writer for the answer, and the strategy
// either writes the answer and returns a final decision (with its Outcome:
// confidence, and what else it found, for the consortium object and the
// run record), or asks for another round with feedback for each instance.
// Each strategy is one file with its own config type, a field of Config
// that Config.Strategy selects:
//
//   - synthesize (synthesize.go, arbiter.tmpl): an arbiter judges the
//     answers source-blind and writes the synthesis, streamed as it
//     writes; its reply is read by a state machine (replyReader) over the
//     tag parser (tags.go), and it may ask for further rounds.
//   - rank (rank.go): judges rank the round's answers source-blind and the
//     best wins verbatim (the top n with n > 1), or an arbiter writes the
//     answer from the ranking (then: synthesize).
//   - vote (vote.go): the answers, normalized, vote; the weighted
//     plurality wins, written at once; tied groups go to the earliest
//     member or to the judges.
//
// rank and vote share the judging (judge.go, judge.tmpl): a panel of
// judges, each shown the answers under opaque labels in its own random
// order, asked again once for an unusable ranking, its placements of its
// own model's answers dropped, tallied by normalized Borda. A strategy
// that serves n > 1 says so (requestChecker); (*Engine).Check refuses it
// for the others.
//
// cascade plugs in the same way, without touching the fan-out: tiers run
// as engines of their own; the strategy writes the answering tier's text,
// and a consortium of tiers has no members to fan out to.
//
// (*Engine).Estimate (estimate.go) works out, from the configuration and
// a request alone, the calls a run would make and their tokens and cost.
//
// The package knows nothing of HTTP: the proxy turns a Result and the
// answer's deltas into OpenAI responses. Calls to providers go through
// upstream; the storage of runs and conversations belongs to cache.
package consortia
