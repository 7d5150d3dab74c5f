package consortia

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func ptr(b bool) *bool { return &b }

const fullReply = `<analysis>A and C agree; B misses the edge case.</analysis>
<dissent>C warns about overflow.</dissent>
<confidence>0.85</confidence>
<needs_iteration>false</needs_iteration>
<refinement_areas>Handle empty input.</refinement_areas>
<ranking>B, A, C</ranking>
<synthesis>
Use a guard clause:

    if len(xs) == 0 { return nil }
</synthesis>`

var parseTests = []struct {
	name  string
	reply string
	want  verdict
}{
	{
		name:  "default order",
		reply: fullReply,
		want: verdict{
			Analysis:        "A and C agree; B misses the edge case.",
			Dissent:         "C warns about overflow.",
			Confidence:      0.85,
			ConfidenceKnown: true,
			NeedsIteration:  ptr(false),
			RefinementAreas: "Handle empty input.",
			Ranking:         []string{"B", "A", "C"},
			Synthesis:       "Use a guard clause:\n\n    if len(xs) == 0 { return nil }",
			Tagged:          true,
		},
	},
	{
		name:  "any order",
		reply: "<synthesis>42</synthesis><ranking>A</ranking><needs_iteration>true</needs_iteration><confidence>0.3</confidence><analysis>x</analysis>",
		want: verdict{
			Analysis: "x", Confidence: 0.3, ConfidenceKnown: true, NeedsIteration: ptr(true),
			Ranking: []string{"A"}, Synthesis: "42", Tagged: true,
		},
	},
	{
		name:  "surrounding prose",
		reply: "Sure, here is my judgement.\n<confidence>0.9</confidence>\nNow the answer:\n<synthesis>Paris.</synthesis>\nHope this helps!",
		want:  verdict{Confidence: 0.9, ConfidenceKnown: true, Synthesis: "Paris.", Tagged: true},
	},
	{
		name:  "unknown tags are prose",
		reply: "<thinking>hmm <synthesis>no</thinking> <confidence>0.5</confidence>",
		want:  verdict{Synthesis: "no</thinking> <confidence>0.5</confidence>", Tagged: true},
	},
	{
		name:  "case-insensitive tag names",
		reply: "<CONFIDENCE>0.7</Confidence><Needs_Iteration>no</NEEDS_ITERATION><SYNTHESIS>ok</Synthesis>",
		want:  verdict{Confidence: 0.7, ConfidenceKnown: true, NeedsIteration: ptr(false), Synthesis: "ok", Tagged: true},
	},
	{
		name:  "space inside brackets is not a tag",
		reply: "< synthesis >hello</ synthesis >",
		want:  verdict{Synthesis: "< synthesis >hello</ synthesis >"},
	},
	{
		name:  "only ASCII letters fold",
		reply: "<\u017fynthesis>long s</synthesis>", // strings.EqualFold("ſ", "s") is true
		want:  verdict{Synthesis: "<\u017fynthesis>long s</synthesis>"},
	},
	{
		name:  "a < before a tag",
		reply: "<<synthesis>x</synthesis>",
		want:  verdict{Synthesis: "x", Tagged: true},
	},

	// Confidence spellings.
	{name: "confidence fraction", reply: "<confidence>0.85</confidence>", want: verdict{Confidence: 0.85, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence percent number", reply: "<confidence>85</confidence>", want: verdict{Confidence: 0.85, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence percent sign", reply: "<confidence> 85 % </confidence>", want: verdict{Confidence: 0.85, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence small percent", reply: "<confidence>5%</confidence>", want: verdict{Confidence: 0.05, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence one", reply: "<confidence>1</confidence>", want: verdict{Confidence: 1, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence zero", reply: "<confidence>0</confidence>", want: verdict{Confidence: 0, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence leading dot", reply: "<confidence>.7</confidence>", want: verdict{Confidence: 0.7, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence out of ten", reply: "<confidence>8/10</confidence>", want: verdict{Confidence: 0.8, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence with words", reply: "<confidence>0.9 (fairly sure)</confidence>", want: verdict{Confidence: 0.9, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence clamped high", reply: "<confidence>150%</confidence>", want: verdict{Confidence: 1, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence clamped low", reply: "<confidence>-0.2</confidence>", want: verdict{Confidence: 0, ConfidenceKnown: true, Tagged: true}},
	{name: "confidence unreadable", reply: "<confidence>high</confidence>", want: verdict{Tagged: true}},
	{name: "confidence empty", reply: "<confidence></confidence>", want: verdict{Tagged: true}},
	{name: "confidence overflow", reply: "<confidence>" + strings.Repeat("9", 400) + "</confidence>", want: verdict{Tagged: true}},

	// needs_iteration spellings.
	{name: "iterate true", reply: "<needs_iteration>true</needs_iteration>", want: verdict{NeedsIteration: ptr(true), Tagged: true}},
	{name: "iterate TRUE spaced", reply: "<needs_iteration>\n  TRUE \n</needs_iteration>", want: verdict{NeedsIteration: ptr(true), Tagged: true}},
	{name: "iterate Yes", reply: "<needs_iteration>Yes</needs_iteration>", want: verdict{NeedsIteration: ptr(true), Tagged: true}},
	{name: "iterate no", reply: "<needs_iteration>no.</needs_iteration>", want: verdict{NeedsIteration: ptr(false), Tagged: true}},
	{name: "iterate False", reply: "<needs_iteration>False</needs_iteration>", want: verdict{NeedsIteration: ptr(false), Tagged: true}},
	{name: "iterate unreadable", reply: "<needs_iteration>maybe</needs_iteration>", want: verdict{Tagged: true}},
	{name: "iterate not a word", reply: "<needs_iteration>nope</needs_iteration>", want: verdict{Tagged: true}},

	// Ranking spellings.
	{name: "ranking commas", reply: "<ranking>B, A, C</ranking>", want: verdict{Ranking: []string{"B", "A", "C"}, Tagged: true}},
	{name: "ranking arrows", reply: "<ranking>B > A > C</ranking>", want: verdict{Ranking: []string{"B", "A", "C"}, Tagged: true}},
	{name: "ranking tight", reply: "<ranking>C>A,B</ranking>", want: verdict{Ranking: []string{"C", "A", "B"}, Tagged: true}},
	{name: "ranking response labels", reply: "<ranking>Response B > Response A > response C</ranking>", want: verdict{Ranking: []string{"B", "A", "C"}, Tagged: true}},
	{name: "ranking trailing punctuation", reply: "<ranking>B, A, C.</ranking>", want: verdict{Ranking: []string{"B", "A", "C"}, Tagged: true}},
	{name: "ranking markdown", reply: "<ranking>**B**, (A), `C`</ranking>", want: verdict{Ranking: []string{"B", "A", "C"}, Tagged: true}},
	{name: "ranking numbered lines", reply: "<ranking>\n1. B\n2) A\n</ranking>", want: verdict{Ranking: []string{"B", "A"}, Tagged: true}},
	{name: "ranking drops repeats and junk", reply: "<ranking>B, B, AAA, a, ?, C</ranking>", want: verdict{Ranking: []string{"B", "C"}, Tagged: true}},
	// Past 26 answers labels have two letters (label).
	{name: "ranking two-letter labels", reply: "<ranking>AB > Z > AA, AB</ranking>", want: verdict{Ranking: []string{"AB", "Z", "AA"}, Tagged: true}},
	{name: "ranking unreadable", reply: "<ranking>the second one</ranking>", want: verdict{Tagged: true}},

	// Untagged replies.
	{name: "untagged", reply: "\n  Just the answer.\n\n", want: verdict{Synthesis: "Just the answer."}},
	{name: "untagged with html", reply: "<b>bold</b> a < b", want: verdict{Synthesis: "<b>bold</b> a < b"}},
	{name: "untagged stray closing tag", reply: "answer</synthesis>", want: verdict{Synthesis: "answer</synthesis>"}},
	{name: "empty", reply: "", want: verdict{}},
	{name: "partial tag only", reply: "text <synthes", want: verdict{Synthesis: "text <synthes"}},

	// The synthesis.
	{
		name:  "less-than and tag-like text in synthesis",
		reply: "<synthesis>if a < b then <b>bold</b> </synth and </synthesis x</synthesis>",
		want:  verdict{Synthesis: "if a < b then <b>bold</b> </synth and </synthesis x", Tagged: true},
	},
	{
		name:  "known tags in synthesis are text",
		reply: "<synthesis>write <confidence>1</confidence> here</synthesis>",
		want:  verdict{Synthesis: "write <confidence>1</confidence> here", Tagged: true},
	},
	{
		name:  "unclosed synthesis",
		reply: "<confidence>0.9</confidence><synthesis>\nThe answer is 4  \n",
		want:  verdict{Confidence: 0.9, ConfidenceKnown: true, Synthesis: "The answer is 4", Tagged: true},
	},
	{
		name:  "unclosed synthesis ends in part of the closing tag",
		reply: "<synthesis>abc </SYNTH",
		want:  verdict{Synthesis: "abc </SYNTH", Tagged: true},
	},
	{
		name:  "empty synthesis",
		reply: "<synthesis> \n </synthesis>",
		want:  verdict{Tagged: true},
	},
	{
		name:  "tagged without synthesis",
		reply: "<analysis>fine</analysis> The answer is 4.",
		want:  verdict{Analysis: "fine", Tagged: true},
	},

	// Repeated and unclosed tags.
	{
		name:  "last field wins",
		reply: "<analysis>first</analysis><analysis>second</analysis><dissent>d1</dissent><dissent> </dissent>",
		want:  verdict{Analysis: "second", Dissent: "d1", Tagged: true},
	},
	{
		name:  "last readable confidence wins",
		reply: "<confidence>0.2</confidence><confidence>0.6</confidence><confidence>unsure</confidence>",
		want:  verdict{Confidence: 0.6, ConfidenceKnown: true, Tagged: true},
	},
	{
		name:  "last yes-no wins",
		reply: "<needs_iteration>yes</needs_iteration><needs_iteration>no</needs_iteration>",
		want:  verdict{NeedsIteration: ptr(false), Tagged: true},
	},
	{
		name:  "first synthesis wins",
		reply: "<synthesis>one</synthesis><synthesis>two <confidence>0.1</confidence></synthesis><confidence>0.4</confidence>",
		want:  verdict{Confidence: 0.4, ConfidenceKnown: true, Synthesis: "one", Tagged: true},
	},
	{
		name:  "a tag ends where the next opens",
		reply: "<analysis>forgot to close\n<confidence>0.8\n<synthesis>x</synthesis>",
		want:  verdict{Analysis: "forgot to close", Confidence: 0.8, ConfidenceKnown: true, Synthesis: "x", Tagged: true},
	},
	{
		name:  "only its own closing tag ends a field",
		reply: "<analysis>a</dissent>b</analysis>",
		want:  verdict{Analysis: "a</dissent>b", Tagged: true},
	},
	{
		name:  "a field left open ends with the reply",
		reply: "<synthesis>x</synthesis><analysis>late",
		want:  verdict{Analysis: "late", Synthesis: "x", Tagged: true},
	},
}

func TestParseVerdict(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseVerdict(tt.reply)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseVerdict(%q)\n got %s\nwant %s", tt.reply, show(got), show(tt.want))
			}
		})
	}
}

// TestTagStreamSplits feeds replies split at every byte, at every pair of
// bytes and one byte at a time.
func TestTagStreamSplits(t *testing.T) {
	replies := []string{
		fullReply,
		"<synthesis>a </synthesi> b </SYNTHESIS  c</synthesis>",
		"<synthesis>  x  <  y \n</synthesis>",
		"<synthesis>\n\n</syn</synthesis>",
		"<synthesis><</synthesis>",
		"<synthesis>x<<</synthesis>",
		"<synthesis>a\t \n",
		"<synthesis>a \t</sy",
		"<Synthesis>",
		"prose <confidence>0.4</confidence> <synthesis>\t<b> a < b </b>",
	}
	for _, tt := range parseTests {
		replies = append(replies, tt.reply)
	}
	for _, reply := range replies {
		checkStream(t, reply, []string{reply})
		checkStream(t, reply, chunksOf(reply, 1))
		for i := range len(reply) + 1 {
			checkStream(t, reply, []string{reply[:i], reply[i:]})
			if len(reply) > 100 {
				continue
			}
			for j := i; j <= len(reply); j++ {
				checkStream(t, reply, []string{reply[:i], reply[i:j], reply[j:]})
			}
		}
	}
}

func chunksOf(s string, n int) []string {
	var c []string
	for len(s) > n {
		c = append(c, s[:n])
		s = s[n:]
	}
	return append(c, s)
}

// checkStream feeds chunks, which make up reply, to a tagStream and checks it
// against parseVerdict: the synthesis returned by Write and Close adds up to
// the parsed one, each Write returns all that a whole-reply parse of what was
// fed so far is sure of, and the final verdict is the same.
func checkStream(t testing.TB, reply string, chunks []string) {
	t.Helper()
	want := parseVerdict(reply)
	s := newTagStream()
	var streamed strings.Builder
	fed := 0
	var opened, closed, decided bool
	for _, c := range chunks {
		out := s.write(c)
		fed += len(c)
		if !want.Tagged && out != "" {
			t.Fatalf("reply %q in %q: Write returned %q for an untagged reply", reply, chunks, out)
		}
		streamed.WriteString(out)
		if opened && !s.synthesisOpened() || closed && !s.synthesisClosed() || decided && !s.decided() {
			t.Fatalf("reply %q in %q: a flag went back to false", reply, chunks)
		}
		opened, closed, decided = s.synthesisOpened(), s.synthesisClosed(), s.decided()
		if opened && !closed {
			if w := certainSynthesis(reply[:fed]); streamed.String() != w {
				t.Fatalf("reply %q in %q: after %q streamed %q, want %q", reply, chunks, reply[:fed], streamed.String(), w)
			}
		}
		if closed && streamed.String() != want.Synthesis {
			t.Fatalf("reply %q in %q: closed synthesis streamed %q, want %q", reply, chunks, streamed.String(), want.Synthesis)
		}
		if v := s.current(); closed && v.Synthesis != want.Synthesis || !closed && v.Synthesis != "" {
			t.Fatalf("reply %q in %q: verdict().Synthesis = %q before the synthesis ended", reply, chunks, v.Synthesis)
		}
	}
	if fed != len(reply) {
		t.Fatalf("chunks %q do not make up %q", chunks, reply)
	}
	got, rest := s.close()
	if !want.Tagged && streamed.Len() > 0 {
		t.Fatalf("reply %q in %q: untagged reply streamed %q", reply, chunks, streamed.String())
	}
	if streamed.String()+rest != want.Synthesis {
		t.Fatalf("reply %q in %q: streamed %q + rest %q, want %q", reply, chunks, streamed.String(), rest, want.Synthesis)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reply %q in %q: stream verdict\n got %s\nwant %s", reply, chunks, show(got), show(want))
	}
	if v := s.current(); !reflect.DeepEqual(v, want) {
		t.Fatalf("reply %q in %q: verdict after Close\n got %s\nwant %s", reply, chunks, show(v), show(want))
	}
	if s.decided() != (want.ConfidenceKnown || want.NeedsIteration != nil) {
		t.Fatalf("reply %q in %q: decided() = %v at the end", reply, chunks, s.decided())
	}
	// What was known as the synthesis opened is what a whole-reply parse
	// of the reply up to its opening finds, however the chunks fell.
	var atOpen verdict
	if i := indexFold(reply, tagTexts[tagSynthesis]); i >= 0 {
		atOpen = parseVerdict(reply[:i+len(tagTexts[tagSynthesis])])
	}
	if got := s.verdictAtOpen(); !reflect.DeepEqual(got, atOpen) {
		t.Fatalf("reply %q in %q: verdict at the opening\n got %s\nwant %s", reply, chunks, show(got), show(atOpen))
	}
}

// certainSynthesis is what can be known of the synthesis of a reply that
// ends in prefix: all of it but trailing white space and a partial closing
// tag, with the white space before that.
func certainSynthesis(prefix string) string {
	if q := strings.LastIndexByte(prefix, '<'); q >= 0 {
		if tail := prefix[q:]; len(tail) < len(closeSynthesis) && hasPrefixFold(closeSynthesis, strings.ToLower(tail)) {
			prefix = prefix[:q]
		}
	}
	return parseVerdict(prefix).Synthesis
}

func show(v verdict) string {
	it := "nil"
	if v.NeedsIteration != nil {
		it = fmt.Sprint(*v.NeedsIteration)
	}
	v.NeedsIteration = nil
	return fmt.Sprintf("%+v (NeedsIteration %s)", v, it)
}

func TestTagStreamWrites(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []string // what each Write returns
		rest   string   // what Close returns
	}{
		{
			name:   "leading space dropped, trailing space held",
			chunks: []string{"<synthesis>", "  Hello", " world ", "\n", "<", "/", "synthesis", ">", " after"},
			want:   []string{"", "Hello", " world", "", "", "", "", "", ""},
		},
		{
			name:   "held space released by text",
			chunks: []string{"<synthesis>a ", "\n", "b"},
			want:   []string{"a", "", " \nb"},
		},
		{
			name:   "partial closing tag released",
			chunks: []string{"<synthesis>a ", "</syn", "onym> b"},
			want:   []string{"a", "", " </synonym> b"},
		},
		{
			name:   "partial closing tag at the end is text",
			chunks: []string{"<synthesis>a ", "</SYN"},
			want:   []string{"a", ""},
			rest:   " </SYN",
		},
		{
			name:   "tag split everywhere",
			chunks: []string{"<", "syn", "thesis", ">x", "</synthesis", ">"},
			want:   []string{"", "", "", "x", "", ""},
		},
		{
			name:   "untagged reply comes at Close",
			chunks: []string{"  Hello ", "world\n"},
			want:   []string{"", ""},
			rest:   "Hello world",
		},
		{
			name:   "second synthesis ignored",
			chunks: []string{"<synthesis>one</synthesis><synthesis>", "two"},
			want:   []string{"one", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTagStream()
			for i, c := range tt.chunks {
				if got := s.write(c); got != tt.want[i] {
					t.Errorf("Write(%q) = %q, want %q", c, got, tt.want[i])
				}
			}
			if _, rest := s.close(); rest != tt.rest {
				t.Errorf("Close rest = %q, want %q", rest, tt.rest)
			}
			if got := s.write("<synthesis>late"); got != "" {
				t.Errorf("Write after Close = %q", got)
			}
			if _, rest := s.close(); rest != "" {
				t.Errorf("second Close rest = %q", rest)
			}
		})
	}
}

func TestTagStreamProgress(t *testing.T) {
	s := newTagStream()
	step := func(chunk string, opened, closed, decided bool) {
		t.Helper()
		s.write(chunk)
		if s.synthesisOpened() != opened || s.synthesisClosed() != closed || s.decided() != decided {
			t.Fatalf("after %q: opened %v closed %v decided %v, want %v %v %v", chunk,
				s.synthesisOpened(), s.synthesisClosed(), s.decided(), opened, closed, decided)
		}
	}
	step("Here goes. <analysis>fine", false, false, false)
	if v := s.current(); v.Analysis != "" || !v.Tagged {
		t.Fatalf("open analysis in verdict: %s", show(v))
	}
	step("</analysis><confidence>high</confidence>", false, false, false) // unreadable decides nothing
	if v := s.current(); v.Analysis != "fine" {
		t.Fatalf("closed analysis missing: %s", show(v))
	}
	step("<needs_iteration>yes</needs_iteration", false, false, false)
	step(">", false, false, true)
	step("<synthesis", false, false, true)
	step(">", true, false, true)
	step("Hi</synthesis>", true, true, true)
	if v := s.current(); v.Synthesis != "Hi" || v.NeedsIteration == nil || !*v.NeedsIteration {
		t.Fatalf("verdict after synthesis: %s", show(v))
	}

	// A decision tag that the next tag ends is decided when that tag opens.
	s = newTagStream()
	step("<confidence>0.4 ", false, false, false)
	step("<synthesis>", true, false, true)
}

// TestTagStreamAllocs keeps the streaming hot path free of allocations:
// synthesis text that becomes certain is a substring of the chunk. (A chunk
// that ends in white space costs one copy, when the next one releases it.)
func TestTagStreamAllocs(t *testing.T) {
	s := newTagStream()
	s.write("<confidence>0.9</confidence><synthesis>")
	allocs := testing.AllocsPerRun(1000, func() {
		s.write(" some words of an answer,")
	})
	if allocs > 0 {
		t.Errorf("Write allocates %v times per synthesis chunk", allocs)
	}
}

// BenchmarkTagStream streams a 4 KB reply in 16-byte chunks, as a provider's
// deltas arrive.
func BenchmarkTagStream(b *testing.B) {
	var reply strings.Builder
	reply.WriteString("<analysis>" + strings.Repeat("The responses agree on the approach. ", 8) + "</analysis>\n")
	reply.WriteString("<dissent>B prefers a map; worth a note.</dissent>\n<confidence>85%</confidence>\n")
	reply.WriteString("<needs_iteration>false</needs_iteration>\n<ranking>Response B > Response A > Response C</ranking>\n<synthesis>\n")
	for reply.Len() < 4000 {
		reply.WriteString("Sort the slice first, then if a < b compare the <b>keys</b>; see `x[i] < x[j]`.\n")
	}
	reply.WriteString("</synthesis>")
	chunks := chunksOf(reply.String(), 16)
	b.SetBytes(int64(reply.Len()))
	b.ReportAllocs()
	for b.Loop() {
		s := newTagStream()
		for _, c := range chunks {
			s.write(c)
		}
		s.close()
	}
}
