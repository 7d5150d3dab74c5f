package consortia_test

import (
	"testing"

	"github.com/consortium-dev/consortium/consortia"
)

// BenchmarkSummary builds the consortium object of a run of three members
// and two rounds, as every consortium response does.
func BenchmarkSummary(b *testing.B) {
	members := []consortia.MemberAnswer{
		{Model: "p/a", Instance: 1, Status: consortia.StatusOK, LatencyMs: 800},
		{Model: "p/b", Instance: 1, Status: consortia.StatusError, Error: "status 503"},
		{Model: "p/c", Instance: 1, Status: consortia.StatusOK, Fallback: "p/d", LatencyMs: 900},
	}
	run := &consortia.Run{ID: "run_x", Consortium: "council", Strategy: "synthesize", Iterations: 2,
		Rounds: []consortia.Round{{Number: 1, Members: members}, {Number: 2, Members: members}}}
	b.ReportAllocs()
	for b.Loop() {
		if s := run.Summary(); len(s.Members) != 3 {
			b.Fatal(s.Members)
		}
	}
}
