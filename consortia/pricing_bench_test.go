package consortia

import (
	"fmt"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

// BenchmarkRunCost prices the record of a run of three rounds of five
// members and an arbiter, with two judges: the work every priced run adds
// once it ends.
func BenchmarkRunCost(b *testing.B) {
	u := &openai.Usage{PromptTokens: 1200, CompletionTokens: 300, TotalTokens: 1500}
	p := Pricing{"p/arbiter": {Input: 2.5, Output: 10}, "p/judge": {Input: 1, Output: 2}}
	run := &Run{}
	for n := range 3 {
		r := Round{Number: n + 1, Arbiter: &ArbiterReply{Model: "p/arbiter", Usage: u},
			Judges: []JudgeReply{{Model: "p/judge", Usage: u}, {Model: "p/judge", Usage: u}}}
		for m := range 5 {
			ref := fmt.Sprintf("p/m%d", m)
			p[ref] = Price{Input: 0.15, Output: 0.6}
			r.Members = append(r.Members, MemberAnswer{Model: ref, Instance: 1, Status: StatusOK, Usage: u})
		}
		run.Rounds = append(run.Rounds, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if p.cost(run) == nil {
			b.Fatal("no cost")
		}
	}
}
