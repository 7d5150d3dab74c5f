package consortia

import (
	"strings"
	"testing"
)

// TestReplyReader drives the arbiter reply's state machine chunk by chunk,
// as DESIGN.md "Streaming" says it must behave.
func TestReplyReader(t *testing.T) {
	final := roundRules{can: true, threshold: 0.8} // a round that could iterate
	last := roundRules{threshold: 0.8}             // max_iterations reached
	must := roundRules{must: true, can: true, threshold: 0.8}
	for _, tc := range []struct {
		name   string
		rules  roundRules
		chunks []string
		stopAt int        // the chunk after which feed said iterating; -1 for none
		during string     // written before the reply ended
		end    string     // written in all
		state  replyState // at the end
	}{
		{name: "last round: streams at once", rules: last,
			chunks: []string{"<synthesis>Hel", "lo</synthesis><confidence>0.1</confidence>"},
			stopAt: -1, during: "Hello", end: "Hello", state: streaming},
		{name: "decided final before the synthesis: streams", rules: final,
			chunks: []string{"<confidence>0.9</confidence><synthesis>Hel", "lo</synthesis>"},
			stopAt: -1, during: "Hello", end: "Hello", state: streaming},
		{name: "decided to iterate before the synthesis: cut as it opens", rules: final,
			chunks: []string{"<confidence>0.3</confidence><refinement_areas>x</refinement_areas>", "<synthesis>SECRET", "more"},
			stopAt: 1, state: iterating},
		{name: "min_iterations: cut as it opens whatever the tags say", rules: must,
			chunks: []string{"<confidence>0.99</confidence><needs_iteration>false</needs_iteration><synthesis>SECRET"},
			stopAt: 0, state: iterating},
		{name: "synthesis first, then final: held, sent at the end", rules: final,
			chunks: []string{"<synthesis>Hel", "lo</synthesis>", "<confidence>0.9</confidence>"},
			stopAt: -1, during: "", end: "Hello", state: streaming},
		{name: "synthesis first, then iterate: held, dropped", rules: final,
			chunks: []string{"<synthesis>Hello</synthesis>", "<confidence>0.9</confidence>", "<needs_iteration>yes</needs_iteration>"},
			stopAt: -1, state: iterating},
		{name: "a decision in the synthesis's own chunk does not decide as it opens", rules: final,
			chunks: []string{"<synthesis>Hello</synthesis><confidence>0.9</confidence>", "<confidence>0.2</confidence>"},
			stopAt: -1, state: iterating},
		{name: "no synthesis, low confidence: iterates at the end", rules: final,
			chunks: []string{"<analysis>a</analysis>", "<confidence>0.2</confidence>"},
			stopAt: -1, state: iterating},
		{name: "no synthesis, high confidence: final with nothing written", rules: final,
			chunks: []string{"<confidence>0.9</confidence>"},
			stopAt: -1, state: streaming},
		{name: "untagged: the whole reply, at the end", rules: final,
			chunks: []string{"  Just ", "an answer. "},
			stopAt: -1, during: "", end: "Just an answer.", state: streaming},
		{name: "untagged on a round that must iterate", rules: must,
			chunks: []string{"Just an answer."},
			stopAt: -1, state: iterating},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var written strings.Builder
			r := newReplyReader(tc.rules, func(s string) { written.WriteString(s) })
			stopAt := -1
			for i, c := range tc.chunks {
				if r.feed(c) == iterating {
					stopAt = i
					break
				}
			}
			if stopAt != tc.stopAt {
				t.Fatalf("feed said iterating after chunk %d, want %d", stopAt, tc.stopAt)
			}
			if written.String() != tc.during {
				t.Errorf("written during the reply %q, want %q", written.String(), tc.during)
			}
			if stopAt < 0 {
				r.end()
			}
			if written.String() != tc.end || r.state != tc.state {
				t.Errorf("at the end: written %q in state %d, want %q in state %d", written.String(), r.state, tc.end, tc.state)
			}
		})
	}
}
