package upstreamtest

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Demo pacing: time to the response headers, and between streamed deltas.
const (
	demoFirstMin = 250 * time.Millisecond
	demoFirstMax = 400 * time.Millisecond
	demoChunkMin = 15 * time.Millisecond
	demoChunkMax = 30 * time.Millisecond
	demoQuoteMax = 60 // runes of the user's message quoted in the answer
)

// Demo returns the responder of the binary's --demo mode, which lets the
// proxy answer real requests with no keys and no network. It answers every
// chat request with a short canned text (four sentences) that says plainly
// that it is a demo answer, names the model of the request and quotes the
// start of the last user message; a continued conversation's answer also
// quotes its first user message, so the history visibly arrived. Its
// arbiter model (DemoArbiter) speaks about the question and, on a continued
// turn, the conversation its prompt shows.
//
// Any demo model asked to judge (a prompt that shows "### Response X"
// headings and asks for a <ranking>, as consortia's judge prompt does)
// replies as a judge: a short critique that says it is a demo, then a
// ranking that names every label shown exactly once. Its taste depends on
// the model: the first of DemoJudges puts the longer, more specific answer
// first, the second ranks by a fixed hash of each answer's text, so two
// demo judges agree on some answers and not on others. A member whose
// system prompt asks for a last line starting "Answer:" (as a vote
// consortium's would, to extract it) ends its answer with one, a short
// verdict that derives from the question, so members usually agree and
// now and then one dissents.
//
// It paces its answers like a real model: 250 to 400 ms before the response
// headers, then 15 to 30 ms before each word-sized delta; a non-streamed
// answer waits for the whole generation time before its headers, as a real
// provider's does. Pace and wording derive from an FNV-1a hash of the model
// and the messages, so an equal request gets an equal answer at an equal
// pace, streamed or not, and runs are reproducible, while members that
// differ by model or system prompt answer differently. Embeddings requests
// get the first delay and the default vectors.
func Demo() Responder {
	return func(r *Request) Reply {
		// A judge prompt first: the arbiter judges too (vote's tie_break:
		// judge without judges).
		if prompt, ok := judgePrompt(r); ok {
			return demoJudgeReply(r, prompt)
		}
		if r.Model == DemoArbiter {
			return demoArbiterReply(r)
		}
		return demoReply(r)
	}
}

// DemoArbiter is the demo model that answers as a consortium's arbiter: its
// reply is in the arbiter's tags, judging the responses its prompt shows.
const DemoArbiter = "arbiter"

var (
	demoRound    = regexp.MustCompile(`\(round (\d+) of at most (\d+)\)`)
	demoResponse = regexp.MustCompile(`(?m)^### Response ([A-Z]+)`)
)

// demoArbiterReply judges the responses of the default arbiter prompt: on
// the first of several rounds it is unsure and asks for another, later it
// is confident, so a demo consortium shows an iteration. Its synthesis
// speaks of what the user asked (quoted as written) and of the
// conversation before it, then says what it is and how many answers it
// read. The name DemoArbiter is also internal/config's DemoArbiter.
func demoArbiterReply(r *Request) Reply {
	prompt := r.LastUserText()
	sum := demoHash(r)
	labels := []string{}
	for _, m := range demoResponse.FindAllStringSubmatch(prompt, -1) {
		labels = append(labels, m[1])
	}
	if len(labels) > 1 && sum%2 == 1 {
		labels = append(labels[1:], labels[0])
	}
	round, rounds := 1, 1
	if m := demoRound.FindStringSubmatch(prompt); m != nil {
		fmt.Sscan(m[1], &round)
		fmt.Sscan(m[2], &rounds)
	}
	confidence, iterate, areas := "0.93", "false", "none"
	if round == 1 && rounds > 1 {
		confidence, iterate = "0.62", "true"
		areas = "Each answer should say plainly that it is a demo and keep to two sentences."
	}
	request := promptSection(prompt, "## The user's latest request")
	var b strings.Builder
	fmt.Fprintf(&b, "<analysis>The %d demo answers agree: each is canned text from the built-in demo provider.</analysis>\n", len(labels))
	b.WriteString("<dissent>none</dissent>\n")
	fmt.Fprintf(&b, "<confidence>%s</confidence>\n<needs_iteration>%s</needs_iteration>\n", confidence, iterate)
	fmt.Fprintf(&b, "<refinement_areas>%s</refinement_areas>\n<ranking>%s</ranking>\n", areas, strings.Join(labels, ", "))
	b.WriteString("<synthesis>")
	if q := quoteStart(request, demoQuoteMax); q != "" {
		fmt.Fprintf(&b, "On your question, %s, the %d demo answers agree on one thing only: they are demo text, so this synthesis cannot answer it.", quoted(q), len(labels))
	} else {
		fmt.Fprintf(&b, "Your request had no text to answer, and the %d demo answers are demo text.", len(labels))
	}
	// The arbiter's prompt shows the conversation before the latest
	// request: a continued turn says so, to show that the history arrived.
	if first, turns := arbiterHistory(prompt); turns > 0 {
		fmt.Fprintf(&b, " This turn continues a conversation of %d earlier user %s, which began with %s.", turns, plural(turns, "turn", "turns"), quoted(quoteStart(first, demoQuoteMax)))
	}
	fmt.Fprintf(&b, " This is a demo synthesis from consortium's built-in demo arbiter, written after reading %d member answers over round %d; no real model was called.", len(labels), round)
	b.WriteString(" With real providers configured, the members answer your question and the arbiter writes the best answer from theirs.</synthesis>")

	return demoPaced(r, b.String(), sum)
}

// demoPaced is a reply of content at the demo's pace.
func demoPaced(r *Request, content string, sum uint64) Reply {
	first := between(demoFirstMin, demoFirstMax, sum)
	perChunk := between(demoChunkMin, demoChunkMax, sum>>20)
	reply := Reply{Content: content, Delay: first, ChunkDelay: perChunk}
	if !r.Stream {
		reply.Delay += time.Duration(len(splitWords(content))) * perChunk
		reply.ChunkDelay = 0
	}
	return reply
}

// demoReply is a demo model's answer as a consortium member or a plain model.
func demoReply(r *Request) Reply {
	sum := demoHash(r)
	content := demoAnswer(r.Model, r.LastUserText(), sum>>40)
	if first, turns := memberHistory(r); turns > 0 {
		// A continued turn shows that the history reached the model.
		content += fmt.Sprintf(" This turn continues a conversation of %d earlier user %s, which began with %s.", turns, plural(turns, "turn", "turns"), quoted(quoteStart(first, demoQuoteMax)))
	}
	if wantsAnswerLine(r) {
		content += "\n\n" + DemoAnswerPrefix + " " + demoVerdict(r.Model, r.LastUserText())
	}
	return demoPaced(r, content, sum)
}

// demoHash hashes what a request asks: its model and messages, not the
// other fields, so that a streamed and an unstreamed request get the same
// answer.
func demoHash(r *Request) uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.Model))
	if r.Chat == nil {
		h.Write([]byte{0})
		h.Write(r.Body)
		return h.Sum64()
	}
	for _, m := range r.Chat.Messages {
		h.Write([]byte{0})
		h.Write([]byte(m.Role))
		h.Write([]byte{0})
		h.Write([]byte(m.Content.String()))
	}
	return h.Sum64()
}

// between picks a whole number of milliseconds in [lo, hi] from h.
func between(lo, hi time.Duration, h uint64) time.Duration {
	span := uint64((hi-lo)/time.Millisecond) + 1
	return lo + time.Duration(h%span)*time.Millisecond
}

// demoAsides vary the answers of different requests.
var demoAsides = []string{
	"A real model would answer in its own words; this one only shows how an answer travels through the proxy.",
	"In a consortium, several members answer at once and an arbiter writes one synthesis from their replies.",
	"These words arrive at about a real model's pace, so clients behave as they would against a real provider.",
	"The latency, the pacing and the token counts are simulated, so the proxy runs with no keys and no network.",
}

// demoAnswer writes the demo text: what it is, what was asked, an aside, and
// how to get real answers.
func demoAnswer(model, prompt string, pick uint64) string {
	var b strings.Builder
	name := "an unnamed model"
	if model != "" {
		name = fmt.Sprintf("the model %q", model)
	}
	fmt.Fprintf(&b, "This is a demo answer from %s, written by consortium's built-in demo provider; no real model was called.", name)
	if q := quoteStart(prompt, demoQuoteMax); q != "" {
		fmt.Fprintf(&b, " You asked: %s", quoted(q))
		// A quote that ends a sentence itself needs no full stop after it.
		if !strings.ContainsAny(q[len(q)-1:], ".?!") {
			b.WriteString(".")
		}
	} else {
		b.WriteString(" Your request had no user message to quote.")
	}
	b.WriteString(" ")
	b.WriteString(demoAsides[pick%uint64(len(demoAsides))])
	b.WriteString(" Configure a provider with an API key to get real answers.")
	return b.String()
}

// quoteStart returns s on one line, cut to at most limit runes when it is
// longer: at the last space that fits when there is one, with an ellipsis.
func quoteStart(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	n := 0
	for i := range s {
		if n == limit-1 {
			cut := s[:i]
			if j := strings.LastIndexByte(cut, ' '); j > 0 && s[i] != ' ' {
				cut = cut[:j]
			}
			return strings.TrimRight(cut, " ,;:") + "\u2026"
		}
		n++
	}
	return s
}

// quoted puts s in curly quotes, as the user wrote it (a question keeps
// its question mark).
func quoted(s string) string { return "\u201c" + s + "\u201d" }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// promptSection returns the text under a heading of the arbiter's prompt,
// up to the next heading.
func promptSection(prompt, heading string) string {
	i := strings.Index(prompt, heading)
	if i < 0 {
		return ""
	}
	text, _, _ := strings.Cut(strings.TrimSpace(prompt[i+len(heading):]), "\n\n## ")
	return text
}

// arbiterHistory reads the conversation the arbiter's prompt shows before
// the latest request: the first user turn, and how many there were.
func arbiterHistory(prompt string) (first string, turns int) {
	for _, block := range strings.Split(promptSection(prompt, "## Conversation so far"), "\n\n") {
		if text, ok := strings.CutPrefix(block, "[user]\n"); ok {
			if turns == 0 {
				first = text
			}
			turns++
		}
	}
	return first, turns
}

// memberHistory reads a member's (or a plain model's) messages before the
// last user message: the first user message, and how many there were.
func memberHistory(r *Request) (first string, turns int) {
	if r.Chat == nil {
		return "", 0
	}
	last := -1
	for i, m := range r.Chat.Messages {
		if m.Role == "user" {
			last = i
		}
	}
	for _, m := range r.Chat.Messages[:max(last, 0)] {
		if m.Role == "user" {
			if turns == 0 {
				first = m.Content.String()
			}
			turns++
		}
	}
	return first, turns
}
