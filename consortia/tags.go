package consortia

import (
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// The arbiter's reply format, as DESIGN.md "Consortium engine" gives it:
//
//	<analysis>…</analysis> <dissent>…</dissent> <confidence>0.85</confidence>
//	<needs_iteration>false</needs_iteration> <refinement_areas>…</refinement_areas>
//	<ranking>B, A, C</ranking> <synthesis>…</synthesis>
//
// Both parsers here, parseVerdict for a whole reply and tagStream for a
// streamed one, read it under the same rules, and the tests hold them to
// giving the same verdict:
//
//   - A tag is exactly <name> or </name>, the name matched without regard to
//     ASCII case. Only the seven names above are tags; anything else, and any
//     text outside a tag, is prose and is ignored.
//   - A tag other than synthesis ends at its own closing tag, at the opening
//     of another known tag (models forget closing tags more often than they
//     quote our tag names), or at the end of the reply.
//   - Inside <synthesis> nothing is a tag but </synthesis>: the answer may
//     hold HTML, code and comparisons. An unclosed synthesis keeps what was
//     written, since a model that stopped early still wrote an answer.
//   - Text is trimmed of leading and trailing white space; the synthesis of
//     ASCII white space only, so that a stream can hold back exactly what the
//     trim could still remove.
//   - A repeated tag: the last one that reads as a value wins (an empty,
//     unreadable confidence, yes/no or ranking leaves the earlier value), so
//     a model that corrects itself is believed. The synthesis is the
//     exception: the first one wins, because by the time a second one opens
//     the first has already been streamed to the client; later ones are
//     skipped whole, tags inside them included.
//   - A reply with no known tag at all is an untagged answer: all of it,
//     trimmed, is the synthesis, confidence unknown, no further round.

// verdict is a parsed arbiter reply.
type verdict struct {
	Analysis        string
	Dissent         string
	Confidence      float64 // 0..1; meaningful only when ConfidenceKnown
	ConfidenceKnown bool
	NeedsIteration  *bool // nil when the reply did not say
	RefinementAreas string
	Ranking         []string // response labels best first, e.g. ["B","A","C"]
	Synthesis       string
	Tagged          bool // the reply had at least one known tag (an opening one)
}

// Tag indexes into tagNames. The opening tag of name i is tagTexts[i], its
// closing tag tagTexts[numTags+i].
const (
	tagAnalysis = iota
	tagDissent
	tagConfidence
	tagNeedsIteration
	tagRefinementAreas
	tagRanking
	tagSynthesis
	numTags
)

var tagNames = [numTags]string{
	"analysis", "dissent", "confidence", "needs_iteration",
	"refinement_areas", "ranking", "synthesis",
}

// tagTexts holds every tag in lower case, openings first, then closings. Each
// has one '<', at its start, and one '>', at its end, so no tag is a prefix
// of another and a candidate dies at the next '<'.
var tagTexts = func() (t [2 * numTags]string) {
	for i, n := range tagNames {
		t[i] = "<" + n + ">"
		t[numTags+i] = "</" + n + ">"
	}
	return t
}()

const (
	closeSynthesis = "</synthesis>"
	openings       = 1<<numTags - 1 // mask of every opening tag
)

// parseVerdict parses a whole reply.
func parseVerdict(reply string) verdict {
	var v verdict
	synthesisSeen := false
	i := 0
	for {
		k, end := nextOpening(reply, i)
		if k < 0 {
			break
		}
		v.Tagged = true
		if k == tagSynthesis {
			content := reply[end:]
			i = len(reply)
			if j := indexFold(content, closeSynthesis); j >= 0 {
				content, i = content[:j], end+j+len(closeSynthesis)
			}
			if !synthesisSeen {
				synthesisSeen = true
				v.Synthesis = trimASCIISpace(content)
			}
			continue
		}
		// A field ends at its closing tag or where the next known tag opens;
		// that opening is left for nextOpening to find.
		i = len(reply)
		content := reply[end:]
		for j := end; ; j++ {
			q := strings.IndexByte(reply[j:], '<')
			if q < 0 {
				break
			}
			j += q
			if hasPrefixFold(reply[j:], tagTexts[numTags+k]) {
				content, i = reply[end:j], j+len(tagTexts[numTags+k])
				break
			}
			if openingAt(reply, j) >= 0 {
				content, i = reply[end:j], j
				break
			}
		}
		v.set(k, content)
	}
	if !v.Tagged {
		v.Synthesis = trimASCIISpace(reply)
	}
	return v
}

// nextOpening finds the first known opening tag in s at or after i and
// returns its index and the position just after it, or -1.
func nextOpening(s string, i int) (k, end int) {
	for {
		q := strings.IndexByte(s[i:], '<')
		if q < 0 {
			return -1, 0
		}
		i += q
		if k := openingAt(s, i); k >= 0 {
			return k, i + len(tagTexts[k])
		}
		i++
	}
}

// openingAt returns the index of the known opening tag at s[i:], or -1.
func openingAt(s string, i int) int {
	for k := range numTags {
		if hasPrefixFold(s[i:], tagTexts[k]) {
			return k
		}
	}
	return -1
}

// hasPrefixFold reports whether s begins with lower, a lower-case ASCII tag,
// folding only ASCII letters (strings.EqualFold would also take the Kelvin
// sign for a "k", which a streaming matcher working on bytes cannot).
func hasPrefixFold(s, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	for i := range len(lower) {
		if toLower(s[i]) != lower[i] {
			return false
		}
	}
	return true
}

func indexFold(s, lower string) int {
	for i := 0; ; i++ {
		q := strings.IndexByte(s[i:], lower[0])
		if q < 0 {
			return -1
		}
		i += q
		if hasPrefixFold(s[i:], lower) {
			return i
		}
	}
}

func toLower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func isASCIISpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

func trimASCIISpace(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// set records the content of field k, unless it reads as nothing.
func (v *verdict) set(k int, content string) {
	switch k {
	case tagAnalysis, tagDissent, tagRefinementAreas:
		text := strings.TrimSpace(content)
		if text == "" {
			return
		}
		switch k {
		case tagAnalysis:
			v.Analysis = text
		case tagDissent:
			v.Dissent = text
		default:
			v.RefinementAreas = text
		}
	case tagConfidence:
		if c, ok := parseConfidence(content); ok {
			v.Confidence, v.ConfidenceKnown = c, true
		}
	case tagNeedsIteration:
		if b, ok := parseYesNo(content); ok {
			v.NeedsIteration = &b
		}
	case tagRanking:
		if r := parseRanking(content); len(r) > 0 {
			v.Ranking = r
		}
	}
}

// parseConfidence reads the first number in s: "0.85", "85", "85%",
// "8/10". A number above 1 without a denominator is a percentage, since
// models asked for 0.0 to 1.0 often answer out of 100. The result is
// clamped to 0..1.
func parseConfidence(s string) (float64, bool) {
	start, end := scanNumber(s, 0)
	if start < 0 {
		return 0, false
	}
	c, err := strconv.ParseFloat(s[start:end], 64)
	if err != nil {
		return 0, false
	}
	negative := start > 0 && s[start-1] == '-'
	rest := strings.TrimLeft(s[end:], " \t")
	switch d, ok := denominator(rest); {
	case strings.HasPrefix(rest, "%"):
		c /= 100
	case ok:
		c /= d
	case c > 1:
		c /= 100
	}
	if negative {
		c = -c
	}
	return min(max(c, 0), 1), true
}

// denominator reads the "/ 10" of "8/10".
func denominator(s string) (float64, bool) {
	if !strings.HasPrefix(s, "/") {
		return 0, false
	}
	s = strings.TrimLeft(s[1:], " \t")
	start, end := scanNumber(s, 0)
	if start != 0 {
		return 0, false
	}
	d, err := strconv.ParseFloat(s[:end], 64)
	return d, err == nil && d > 0
}

// scanNumber finds the first run of digits with at most one '.' in s[i:]
// that holds a digit, and returns its bounds, or -1.
func scanNumber(s string, i int) (start, end int) {
	for ; i < len(s); i++ {
		if isDigit(s[i]) || s[i] == '.' && i+1 < len(s) && isDigit(s[i+1]) {
			break
		}
	}
	if i == len(s) {
		return -1, -1
	}
	start, dot := i, false
	for ; i < len(s); i++ {
		if s[i] == '.' && !dot && i+1 < len(s) && isDigit(s[i+1]) {
			dot = true
			continue
		}
		if !isDigit(s[i]) {
			break
		}
	}
	return start, i
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// parseYesNo reads the first word of s: true/yes or false/no, in any case.
func parseYesNo(s string) (bool, bool) {
	s = strings.TrimSpace(s)
	n := 0
	for n < len(s) && ('a' <= toLower(s[n]) && toLower(s[n]) <= 'z') {
		n++
	}
	switch strings.ToLower(s[:n]) {
	case "true", "yes":
		return true, true
	case "false", "no":
		return false, true
	}
	return false, false
}

// parseRanking reads labels best first: "B, A, C", "B > A > C",
// "Response B > Response A", one per line, "1. B". It keeps single upper-case
// letters, each once, and drops anything else.
func parseRanking(s string) []string {
	var r []string
	for item := range strings.FieldsFuncSeq(s, func(c rune) bool {
		return c == ',' || c == '>' || c == ';' || c == '\n'
	}) {
		item = trimPunct(item)
		if len(item) >= len("response") && strings.EqualFold(item[:len("response")], "response") {
			item = trimPunct(item[len("response"):])
		}
		// A numbered list: "1. B", "2) A".
		if d := strings.IndexFunc(item, func(c rune) bool { return c < '0' || c > '9' }); d > 0 && (item[d] == '.' || item[d] == ')') {
			item = trimPunct(item[d+1:])
		}
		// Labels are A ... Z, then AA, AB ... (label): one or two capitals.
		if !isLabel(item) || slices.Contains(r, item) {
			continue
		}
		r = append(r, item)
	}
	return r
}

// isLabel reports a response label: one or two capital letters.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// trimPunct trims ASCII spaces and punctuation such as "*", "(", ":" and ".".
func trimPunct(s string) string {
	return strings.TrimFunc(s, func(c rune) bool {
		return c < 0x80 && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
	})
}

// A tagStream parses an arbiter reply as it streams, so that the synthesis
// can be forwarded to the client as soon as it is written. Chunks may split
// the reply anywhere, inside a tag name included. write costs time in
// proportion to its chunk: nothing already read is scanned again. A
// tagStream is not safe for concurrent use.
type tagStream struct {
	state  streamState
	field  int     // the field being read, in stateField
	cand   matcher // a tag being read, in stateProse and stateField
	closes int     // bytes of "</synthesis>" read, in stateSynthesis and stateSkip

	// buf holds the content of the field being read, or before the first
	// tag the whole reply, which is the synthesis if no tag comes.
	buf []byte

	opened, closed, ended bool
	started               bool            // the synthesis has non-space text
	held                  []byte          // synthesis held back: white space, then part of "</synthesis>"
	synthesis             strings.Builder // synthesis returned so far

	v      verdict
	atOpen verdict // v when the synthesis opened
}

type streamState uint8

const (
	stateProse     streamState = iota // outside any tag
	stateField                        // inside a tag other than synthesis
	stateSynthesis                    // inside the first synthesis
	stateSkip                         // inside a later synthesis, ignored
)

// newTagStream returns a parser at the start of a reply.
func newTagStream() *tagStream {
	return &tagStream{}
}

// write consumes the next chunk. It returns the synthesis text that became
// certain with this chunk: text inside <synthesis>, with leading white space
// dropped, and holding back only what may still turn out to be trailing
// white space or part of "</synthesis>", released as soon as more text shows
// it is not. write after close returns "".
func (s *tagStream) write(chunk string) (synthesis string) {
	if s.ended {
		return ""
	}
	for i := 0; i < len(chunk); {
		switch s.state {
		case stateProse, stateField:
			i = s.scanTags(chunk, i)
		case stateSynthesis:
			// The first synthesis opens once per reply, so this runs at
			// most once per chunk.
			i, synthesis = s.scanSynthesis(chunk, i)
		case stateSkip:
			i = s.scanSkip(chunk, i)
		}
	}
	return synthesis
}

// scanTags reads prose or a field from chunk[i:] until a tag changes the
// state or the chunk ends, and returns where it stopped.
func (s *tagStream) scanTags(chunk string, i int) int {
	// Prose is kept only while the reply may still turn out untagged.
	keep := s.state == stateField || !s.v.Tagged
	allowed := uint16(openings)
	if s.state == stateField {
		allowed |= 1 << (numTags + s.field)
	}
	start := i
	for i < len(chunk) {
		if s.cand.n == 0 {
			q := strings.IndexByte(chunk[i:], '<')
			if q < 0 {
				break
			}
			i += q
		}
		k := s.cand.step(chunk[i], allowed)
		i++
		if k < 0 {
			continue
		}
		if keep {
			s.buf = append(s.buf, chunk[start:i]...)
		}
		if s.state == stateField {
			s.v.set(s.field, string(s.buf[:len(s.buf)-len(tagTexts[k])]))
		}
		s.buf = s.buf[:0]
		s.v.Tagged = true
		switch {
		case k >= numTags: // the field's own closing tag
			s.state = stateProse
		case k != tagSynthesis:
			s.state, s.field = stateField, k
		case s.opened:
			s.state = stateSkip
		default:
			s.state, s.opened = stateSynthesis, true
			s.atOpen = s.v
		}
		return i
	}
	if keep {
		s.buf = append(s.buf, chunk[start:]...)
	}
	return len(chunk)
}

// scanSynthesis reads the synthesis from chunk[i:] until it closes or the
// chunk ends, and returns where it stopped and the text that became certain.
//
// Held text is always white space followed by a partial "</synthesis>", so
// within one chunk what becomes certain is the held text from earlier chunks
// followed by one stretch of this chunk: most chunks return a substring of
// themselves, with no copy.
func (s *tagStream) scanSynthesis(chunk string, i int) (next int, certain string) {
	from, to := i, i // the certain stretch of chunk
	release := false // the held text is certain too
	for ; i < len(chunk); i++ {
		b := chunk[i]
		if s.closes > 0 {
			if toLower(b) == closeSynthesis[s.closes] {
				if s.closes++; s.closes < len(closeSynthesis) {
					continue
				}
				certain = s.release(release, chunk[from:to])
				s.held = s.held[:0]
				s.closes = 0
				s.state = stateProse
				s.closed = true
				s.v.Synthesis = s.synthesis.String()
				return i + 1, certain
			}
			// Not the closing tag after all: what was read of it is text.
			s.closes = 0
			s.started, release, to = true, true, i
		}
		switch {
		case b == '<':
			s.closes = 1
		case !isASCIISpace(b):
			s.started, release, to = true, true, i+1
		case !s.started:
			// Leading white space is dropped; nothing is held before the
			// text starts.
			from, to = i+1, i+1
		}
	}
	certain = s.release(release, chunk[from:to])
	s.held = append(s.held, chunk[to:]...)
	return i, certain
}

// release returns the held text, if it became certain, followed by part.
func (s *tagStream) release(held bool, part string) string {
	if !held {
		return ""
	}
	if len(s.held) == 0 {
		s.synthesis.WriteString(part)
		return part
	}
	// A Builder never changes what it has written, so the joined text can
	// be a substring of it rather than a fresh copy.
	n := s.synthesis.Len()
	s.synthesis.Write(s.held)
	s.synthesis.WriteString(part)
	s.held = s.held[:0]
	return s.synthesis.String()[n:]
}

// scanSkip passes over a later synthesis until it closes.
func (s *tagStream) scanSkip(chunk string, i int) int {
	for ; i < len(chunk); i++ {
		switch {
		case toLower(chunk[i]) == closeSynthesis[s.closes]:
			if s.closes++; s.closes == len(closeSynthesis) {
				s.closes = 0
				s.state = stateProse
				return i + 1
			}
		case chunk[i] == '<':
			s.closes = 1
		default:
			s.closes = 0
		}
	}
	return i
}

// synthesisOpened reports whether <synthesis> has opened.
func (s *tagStream) synthesisOpened() bool { return s.opened }

// verdictAtOpen returns what had been parsed when <synthesis> opened: the
// tags before it, which are all that a decision taken as it opens may rest
// on, however the reply was cut into chunks. It is the zero verdict until
// then.
func (s *tagStream) verdictAtOpen() verdict { return s.atOpen }

// synthesisClosed reports whether </synthesis> has been seen.
func (s *tagStream) synthesisClosed() bool { return s.closed }

// decided reports whether a decision tag, <confidence> or <needs_iteration>,
// has been completely read so far with a value that reads: a tag that says
// nothing usable decides nothing.
func (s *tagStream) decided() bool {
	return s.v.ConfidenceKnown || s.v.NeedsIteration != nil
}

// current returns what has been parsed so far: the fields whose tags have
// ended, and the synthesis once it has closed. After close it is final.
func (s *tagStream) current() verdict { return s.v }

// close ends the stream: a tag left open ends with the reply, an unclosed
// synthesis keeps its text, and a reply with no tags at all becomes the
// synthesis whole. It returns the final verdict and the synthesis text not
// yet returned by write: the held-back part of an unclosed synthesis, or
// all of an untagged reply. Later calls return the same verdict and "".
func (s *tagStream) close() (verdict, string) {
	if s.ended {
		return s.v, ""
	}
	s.ended = true
	var rest string
	switch s.state {
	case stateField:
		s.v.set(s.field, string(s.buf))
	case stateSynthesis:
		// Trailing white space is trimmed, but a partial closing tag is
		// text, and so is the white space before it.
		if s.closes > 0 {
			rest = string(s.held)
		}
		s.synthesis.WriteString(rest)
		s.v.Synthesis = s.synthesis.String()
	case stateProse:
		if !s.v.Tagged {
			rest = trimASCIISpace(string(s.buf))
			s.v.Synthesis = rest
		}
	}
	s.buf, s.held = nil, nil
	s.synthesis.Reset()
	return s.v, rest
}

// matcher reads a tag byte by byte across chunks. Since every tag starts
// with the only '<' it holds, at most one candidate is alive at a time.
type matcher struct {
	n    int    // bytes matched; 0 when no candidate is alive
	mask uint16 // tags still possible
}

// step feeds b and returns the tag it completes, or -1. allowed is the set
// of tags a '<' may start.
func (m *matcher) step(b byte, allowed uint16) int {
	if m.n > 0 {
		lb := toLower(b)
		var next uint16
		for mm := m.mask; mm != 0; mm &= mm - 1 {
			k := bits.TrailingZeros16(mm)
			if t := tagTexts[k]; m.n < len(t) && t[m.n] == lb {
				next |= 1 << k
			}
		}
		if next != 0 {
			if b == '>' {
				m.n, m.mask = 0, 0
				return bits.TrailingZeros16(next)
			}
			m.n, m.mask = m.n+1, next
			return -1
		}
		m.n, m.mask = 0, 0
	}
	if b == '<' {
		m.n, m.mask = 1, allowed
	}
	return -1
}
