package consortia

import (
	"math"
	"strings"
	"testing"
)

// FuzzTagStream splits a reply into chunks whose sizes come from cuts (the
// rest of the reply is the last chunk) and checks the stream against
// parseVerdict.
func FuzzTagStream(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.reply, []byte{1, 3, 0, 7})
	}
	f.Add(fullReply, []byte{16})
	f.Add("<synthesis>a </synthesi> b </SYNTHESIS  c</synthesis>", []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, reply string, cuts []byte) {
		var chunks []string
		rest := reply
		for _, c := range cuts {
			n := min(int(c)%24, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		checkStream(t, reply, append(chunks, rest))
	})
}

// FuzzParseVerdict checks what holds of every parse: fields are trimmed
// pieces of the reply, the confidence is in range, the ranking is distinct
// capital letters.
func FuzzParseVerdict(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.reply)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		v := parseVerdict(reply)
		if !v.Tagged && v.Synthesis != trimASCIISpace(reply) {
			t.Fatalf("untagged synthesis %q", v.Synthesis)
		}
		if v.Synthesis != trimASCIISpace(v.Synthesis) {
			t.Fatalf("synthesis %q not trimmed", v.Synthesis)
		}
		for _, field := range []string{v.Analysis, v.Dissent, v.RefinementAreas, v.Synthesis} {
			if !strings.Contains(reply, field) {
				t.Fatalf("field %q is not in the reply", field)
			}
		}
		if math.IsNaN(v.Confidence) || v.Confidence < 0 || v.Confidence > 1 || !v.ConfidenceKnown && v.Confidence != 0 {
			t.Fatalf("confidence %v (known %v)", v.Confidence, v.ConfidenceKnown)
		}
		seen := map[string]bool{}
		for _, r := range v.Ranking {
			if !isLabel(r) || seen[r] {
				t.Fatalf("ranking %q", v.Ranking)
			}
			seen[r] = true
		}
		if v.Ranking != nil && len(v.Ranking) == 0 {
			t.Fatalf("empty non-nil ranking")
		}
	})
}
