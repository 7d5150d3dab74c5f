package upstreamtest

import (
	"cmp"
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
// chat request with a short canned text that says plainly that it is a
// demo answer, names the model of the request and quotes the start of the
// last user message; a continued conversation's answer also quotes its
// first user message, so the history visibly arrived. Its arbiter model
// (DemoArbiter) speaks about the question and, on a continued turn, the
// conversation its prompt shows.
//
// The demo members have a scripted quality, alpha best, then beta, then
// gamma, which judges can see from the text alone:
//
//   - An arithmetic question it can parse (one operation on two integers:
//     "What is 17 + 25?", "Compute 12 * 7.", "How much is 144 divided by
//     12?") gets the model's working and its result as the answer's last
//     number. Each member errs at its rate of DemoErrorRates (alpha
//     15%, beta 25%, gamma 35%), on questions picked by a hash of the model
//     and the question, off by amounts no two members share, so that the
//     majority of the three is right more often than alpha alone.
//   - Any other question gets a few specific points about the demo: alpha
//     makes 3 to 6, beta 2 to 5, gamma 1 to 4, by a hash of the model and
//     the question, so the better model usually says more, and not always.
//
// Any demo model asked to judge (a prompt that shows "### Response X"
// headings and asks for a <ranking>, as consortia's judge prompt does)
// replies as a judge: a short critique that says it is a demo, then a
// ranking that names every label shown exactly once. It ranks blind, from
// the answers' text: on arithmetic it computes the result itself and puts
// a correct answer above a wrong one, then it puts the more specific
// (longer) answer first. The first of DemoJudges counts exactly; every
// other model (the second judge, the arbiter's <ranking>) with a taste of
// its own, so judges agree on clear cases and not always on close ones. A
// member whose system prompt asks for a last line starting "Answer:" (as a
// vote consortium's would, to extract it) ends its answer with one: its
// result on arithmetic, else a short verdict that derives from the
// question, from which a weaker member dissents more often.
//
// Embeddings requests get vectors that reflect the text (see
// demoEmbedding: hashed character trigrams, DemoEmbeddingDims dimensions,
// unit length), so near-duplicate texts are near in cosine.
//
// It paces its answers like a real model: 250 to 400 ms before the response
// headers, then 15 to 30 ms before each word-sized delta; a non-streamed
// answer waits for the whole generation time before its headers, as a real
// provider's does. Pace and wording derive from hashes of the model and
// the messages, so an equal request gets an equal answer at an equal pace,
// streamed or not, and runs are reproducible, while members that differ by
// model answer differently.
func Demo() Responder {
	return func(r *Request) Reply {
		if strings.HasSuffix(r.Path, "/embeddings") {
			return demoEmbeddings(r)
		}
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
// is confident, so a demo consortium shows an iteration. It ranks the
// answers as a demo judge does (see demoRank: on arithmetic a correct
// result first, then the more specific answer). Its synthesis speaks of
// what the user asked (quoted as written) and of the conversation before
// it, then says what it is and how many answers it read; on an arithmetic
// question it ends with the result of the answer it ranked best. The name
// DemoArbiter is also internal/config's DemoArbiter.
func demoArbiterReply(r *Request) Reply {
	prompt := r.LastUserText()
	sum := demoHash(r)
	answers := judgedAnswers(prompt)
	arithmetic := demoRank(r.Model, prompt, answers)
	labels := make([]string, len(answers))
	for n, a := range answers {
		labels[n] = a.label
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
	if arithmetic {
		var results []string
		for _, a := range answers {
			results = append(results, cmp.Or(a.result, "none"))
		}
		fmt.Fprintf(&b, "<analysis>The %d demo answers give the results %s, best first; the demo arbiter computed the result itself and ranks a correct one first, then the more specific.</analysis>\n", len(answers), strings.Join(results, ", "))
	} else {
		fmt.Fprintf(&b, "<analysis>The %d demo answers agree: each is canned text from the built-in demo provider. The demo arbiter ranks the more specific first.</analysis>\n", len(answers))
	}
	b.WriteString("<dissent>none</dissent>\n")
	fmt.Fprintf(&b, "<confidence>%s</confidence>\n<needs_iteration>%s</needs_iteration>\n", confidence, iterate)
	fmt.Fprintf(&b, "<refinement_areas>%s</refinement_areas>\n<ranking>%s</ranking>\n", areas, strings.Join(labels, ", "))
	b.WriteString("<synthesis>")
	switch q := quoteStart(request, demoQuoteMax); {
	case arithmetic:
		fmt.Fprintf(&b, "On your question, %s, the demo arbiter read %d demo answers and kept the result of the one it ranked best.", quoted(q), len(labels))
	case q != "":
		fmt.Fprintf(&b, "On your question, %s, the %d demo answers agree on one thing only: they are demo text, so this synthesis cannot answer it.", quoted(q), len(labels))
	default:
		fmt.Fprintf(&b, "Your request had no text to answer, and the %d demo answers are demo text.", len(labels))
	}
	// The arbiter's prompt shows the conversation before the latest
	// request: a continued turn says so, to show that the history arrived.
	if first, turns := arbiterHistory(prompt); turns > 0 {
		fmt.Fprintf(&b, " This turn continues a conversation of %d earlier user %s, which began with %s.", turns, plural(turns, "turn", "turns"), quoted(quoteStart(first, demoQuoteMax)))
	}
	fmt.Fprintf(&b, " This is a demo synthesis from consortium's built-in demo arbiter, written after reading %d member answers over round %d; no real model was called.", len(labels), round)
	if q, _ := parseArith(request); arithmetic && len(answers) > 0 {
		// Its last number is the result, as a member's is.
		fmt.Fprintf(&b, " %s = %s.</synthesis>", q, cmp.Or(answers[0].result, "unknown"))
	} else {
		b.WriteString(" With real providers configured, the members answer your question and the arbiter writes the best answer from theirs.</synthesis>")
	}

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
	question, revised, at := demoQuestion(r)
	var extra string
	if revised {
		extra = " This revised answer follows a reviewer's feedback."
	}
	if first, turns := memberHistory(r, at); turns > 0 {
		// A continued turn shows that the history reached the model.
		extra += fmt.Sprintf(" This turn continues a conversation of %d earlier user %s, which began with %s.", turns, plural(turns, "turn", "turns"), quoted(quoteStart(first, demoQuoteMax)))
	}
	var content, line string
	if q, ok := parseArith(question); ok {
		line = q.answer(r.Model, question)
		content = demoArithAnswer(r.Model, question, q, line, extra)
	} else {
		line = demoVerdict(r.Model, question)
		content = demoAnswer(r.Model, question, extra)
	}
	if wantsAnswerLine(r) {
		content += "\n\n" + DemoAnswerPrefix + " " + line
	}
	return demoPaced(r, content, sum)
}

// demoFeedback starts the user turn that opens a member's next round
// (consortia's feedback turn): the question is the user turn before it.
const demoFeedback = "A reviewer compared your answer"

// demoQuestion is the question a member answers: the last user message,
// or, when that is a reviewer's feedback, the user message before it
// (revised). at is the question's index among the chat messages (-1 when
// the request is not a chat).
func demoQuestion(r *Request) (question string, revised bool, at int) {
	if r.Chat == nil {
		return r.LastUserText(), false, -1
	}
	var users []int
	for i, m := range r.Chat.Messages {
		if m.Role == "user" {
			users = append(users, i)
		}
	}
	if len(users) == 0 {
		return "", false, -1
	}
	at = users[len(users)-1]
	text := r.Chat.Messages[at].Content.String()
	if strings.HasPrefix(text, demoFeedback) && len(users) > 1 {
		at, revised = users[len(users)-2], true
		text = r.Chat.Messages[at].Content.String()
	}
	return text, revised, at
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

// demoDetails are the specific points of a demo answer to a question it
// cannot compute; demoWorking those of an arithmetic answer. A better
// member makes more of them (see demoDetail), starting from a point that
// depends on the question, so that of two answers to one question the more
// detailed one says all the other says, and more.
var (
	demoDetails = []string{
		"the members answer at once",
		"an arbiter merges their answers",
		"judges see labels, never names",
		"every run is recorded",
		"words stream at a model's pace",
		"latency and tokens are simulated",
		"a leaderboard rates the models",
	}
	demoWorking = []string{
		"one operation on two integers",
		"the operands kept in order",
		"digit by digit, with carries",
		"checked by the inverse operation",
		"the signs kept track of",
		"the operation stated again",
		"the result as a plain number",
	}
)

// demoDetail is how many specific points a model makes on a question, 1
// to 6: alpha 3 to 6, beta 2 to 5, gamma 1 to 4, by a hash of the model
// and the question, so that a weaker model now and then says more than a
// better one.
func demoDetail(model, question string) int {
	h := demoRoll("detail", demoName(model), normQuestion(question))
	return 3 - demoTierOf(model) + int(h%4)
}

// demoPoints joins n of points, from a start that depends on the question.
func demoPoints(points []string, question string, n int) string {
	start := int(demoRoll("points", normQuestion(question)) % uint64(len(points)))
	out := make([]string, n)
	for i := range out {
		out[i] = points[(start+i)%len(points)]
	}
	return strings.Join(out, "; ")
}

// demoOpening says what the answer is and quotes the question.
func demoOpening(b *strings.Builder, model, question string) {
	name := "an unnamed model"
	if model != "" {
		name = fmt.Sprintf("the model %q", model)
	}
	fmt.Fprintf(b, "This is a demo answer from %s, written by consortium's built-in demo provider; no real model was called.", name)
	if q := quoteStart(question, demoQuoteMax); q != "" {
		fmt.Fprintf(b, " You asked: %s", quoted(q))
		// A quote that ends a sentence itself needs no full stop after it.
		if !strings.ContainsAny(q[len(q)-1:], ".?!") {
			b.WriteString(".")
		}
	} else {
		b.WriteString(" Your request had no user message to quote.")
	}
}

// demoAnswer writes the demo text: what it is, what was asked, the
// model's specific points, extra (sentences on the conversation), and how
// to get real answers.
func demoAnswer(model, question, extra string) string {
	var b strings.Builder
	demoOpening(&b, model, question)
	fmt.Fprintf(&b, " In detail: %s.", demoPoints(demoDetails, question, demoDetail(model, question)))
	b.WriteString(extra)
	b.WriteString(" Configure a provider with an API key to get real answers.")
	return b.String()
}

// demoArithAnswer writes the demo's answer to an arithmetic question: what
// it is, what was asked, the model's working, and its result (which may
// be wrong, see arith.answer) as the answer's last number, after extra.
func demoArithAnswer(model, question string, q arith, result, extra string) string {
	var b strings.Builder
	demoOpening(&b, model, question)
	fmt.Fprintf(&b, " Working it out: %s.", demoPoints(demoWorking, question, demoDetail(model, question)))
	b.WriteString(extra)
	fmt.Fprintf(&b, " %s = %s.", q, result)
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

// memberHistory reads a member's (or a plain model's) messages before
// the question at index at: the first user message, and how many there
// were.
func memberHistory(r *Request, at int) (first string, turns int) {
	if r.Chat == nil || at < 0 {
		return "", 0
	}
	for _, m := range r.Chat.Messages[:at] {
		if m.Role == "user" {
			if turns == 0 {
				first = m.Content.String()
			}
			turns++
		}
	}
	return first, turns
}
