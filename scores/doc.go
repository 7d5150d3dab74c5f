// Package scores owns what consortium runs teach about their models: the
// statistics every run feeds per consortium and model (answers, failures,
// first places, pairwise wins, regret, latency, tokens, cost), kept in a
// Store (Memory in one process, Redis shared by replicas), and what is
// read from them: the leaderboard, with Bradley–Terry ratings and their
// bootstrap intervals, and the ratings that adaptive weights use.
//
// A Board is the one object the wiring makes: its Record is every
// engine's consortia.Config.OnRun, and it is their consortia.Ratings.
// Recording is off the runs' critical path: Record reads the run into a
// small Tally and queues it; one writer adds each to the store (with
// Redis, one MULTI/EXEC round trip per run). The package serves no HTTP
// (proxy does) and calls no provider.
package scores
