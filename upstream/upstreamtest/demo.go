package upstreamtest

import (
	"fmt"
	"hash/fnv"
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
// start of the last user message.
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
		// Every demo model answers as a member for now. When the consortium
		// engine calls demo models as its arbiter too, the arbiter's tagged
		// reply belongs here, chosen by r.Model, beside demoReply.
		return demoReply(r)
	}
}

// demoReply is a demo model's answer as a consortium member or a plain model.
func demoReply(r *Request) Reply {
	sum := demoHash(r)

	first := between(demoFirstMin, demoFirstMax, sum)
	perChunk := between(demoChunkMin, demoChunkMax, sum>>20)

	content := demoAnswer(r.Model, r.LastUserText(), sum>>40)
	reply := Reply{Content: content, Delay: first, ChunkDelay: perChunk}
	if !r.Stream {
		reply.Delay += time.Duration(len(splitWords(content))) * perChunk
		reply.ChunkDelay = 0
	}
	return reply
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
		// A quote that ends a sentence itself needs no full stop after it.
		end := "."
		if strings.ContainsAny(q[len(q)-1:], ".?!") {
			end = ""
		}
		fmt.Fprintf(&b, " You asked: \u201c%s\u201d%s", q, end)
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
