package main

// startOthers starts the other gateways that -others asks for. Not
// wired yet: see docs/benchmarks.md.
func startOthers(e *env) []*process { return nil }

func otherModel(name string) string { return "m" }
