package upstreamtest

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// DemoJudges are the demo models meant to judge (any demo model judges a
// judge prompt; the first counts an answer's detail exactly, the second
// with a taste of its own, and internal/config's DemoJudges names them for
// --demo's rank consortium).
var DemoJudges = []string{"judge-1", "judge-2"}

// DemoAnswerPrefix starts the last line a demo member adds when its system
// prompt asks for a line that starts with it.
const DemoAnswerPrefix = "Answer:"

// demoVerdicts are the short answers of the demo's "Answer:" lines.
var demoVerdicts = []string{"yes", "no", "it depends"}

// judgePrompt finds the judge prompt of a request: the latest user message
// that shows "### Response X" headings and asks for a <ranking> but no
// <synthesis> (which would make it an arbiter's prompt). A judge asked
// again for its ranking has the prompt earlier in its messages.
func judgePrompt(r *Request) (string, bool) {
	if r.Chat == nil {
		return "", false
	}
	for i := len(r.Chat.Messages) - 1; i >= 0; i-- {
		m := r.Chat.Messages[i]
		if m.Role != "user" {
			continue
		}
		text := m.Content.String()
		if demoResponse.MatchString(text) && strings.Contains(text, "<ranking>") && !strings.Contains(text, "<synthesis>") {
			return text, true
		}
	}
	return "", false
}

// judged is one answer a demo judge read: its label and text, and what
// the judge made of it.
type judged struct {
	label  string
	text   string
	words  int
	result string // the number it gives, on an arithmetic question
	right  bool   // that number is the correct result
}

// judgedAnswers cuts a judge's (or an arbiter's) prompt into its answers:
// each "### Response X" heading's text runs from the line after it to the
// next heading or to the next section ("## ").
func judgedAnswers(prompt string) []judged {
	var out []judged
	heads := demoResponse.FindAllStringSubmatchIndex(prompt, -1)
	for n, h := range heads {
		end := len(prompt)
		if n+1 < len(heads) {
			end = heads[n+1][0]
		}
		text := prompt[h[1]:end]
		// The rest of the heading line, such as an arbiter's "(weight 1)".
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i:]
		}
		if i := strings.Index(text, "\n## "); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		out = append(out, judged{label: prompt[h[2]:h[3]], text: text, words: len(strings.Fields(text))})
	}
	return out
}

// demoRank sorts the answers of a judge's or arbiter's prompt as the demo
// model judging them sees them, best first. It reads only the answers'
// text and the request, never their labels or the order shown, so it ranks
// the same answers the same way however a panel shuffles them:
//
//   - On an arithmetic question (see parseArith) it computes the result
//     itself, and an answer whose result (its "Answer:" line, else its last
//     number) is correct goes above one that is not.
//   - Then the more specific answer goes first: the one with more words,
//     which in the demo's answers means more specific points. The first of
//     DemoJudges counts exactly; every other model counts with a taste of
//     its own (a few words more or less, by a hash of the model and the
//     text), so that judges agree on clear cases and not always on close
//     ones.
//   - Ties go by a hash of the model and the text, then by label.
//
// It reports whether the question was arithmetic.
func demoRank(model, prompt string, answers []judged) bool {
	q, arithmetic := parseArith(promptSection(prompt, "## The user's latest request"))
	for i := range answers {
		if arithmetic {
			answers[i].result = resultOf(answers[i].text)
			answers[i].right = sameNumber(answers[i].result, q.result())
		}
	}
	exact := len(DemoJudges) > 0 && model == DemoJudges[0]
	specific := func(a judged) uint64 {
		n := uint64(a.words) * 4
		if !exact {
			n += demoRoll("taste", model, a.text) % demoTaste
		}
		return n
	}
	taste := func(a judged) uint64 { return demoRoll("tie", model, a.text) }
	slices.SortStableFunc(answers, func(a, b judged) int {
		if a.right != b.right {
			if a.right {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(specific(b), specific(a)), cmp.Compare(taste(a), taste(b)), cmp.Compare(a.label, b.label))
	})
	return arithmetic
}

// demoTaste bounds the noise of a judge's count of specific detail, in
// quarter words: up to 10 words, about two of the demo's specific points.
const demoTaste = 40

// demoJudgeReply ranks the answers of a judge prompt (see demoRank) and
// critiques them in a few sentences that say it is a demo.
func demoJudgeReply(r *Request, prompt string) Reply {
	answers := judgedAnswers(prompt)
	arithmetic := demoRank(r.Model, prompt, answers)
	var b strings.Builder
	name := fmt.Sprintf("%q", r.Model)
	if r.Model == "" {
		name = "without a name"
	}
	fmt.Fprintf(&b, "<critique>This is a demo critique from consortium's built-in demo judge %s; no real model read the answers, and all %d are demo text. ", name, len(answers))
	if arithmetic {
		b.WriteString("This judge computed the result itself and puts a correct answer first, then the more specific one.")
	} else {
		b.WriteString("This judge puts the more specific answer first.")
	}
	if len(DemoJudges) == 0 || r.Model != DemoJudges[0] {
		b.WriteString(" Its count of detail has a taste of its own, so close answers may go either way.")
	}
	for n, a := range answers {
		verdict := ""
		if arithmetic {
			switch {
			case a.result == "":
				verdict = ", no result"
			case a.right:
				verdict = ", result " + a.result + " correct"
			default:
				verdict = ", result " + a.result + " wrong"
			}
		}
		fmt.Fprintf(&b, " Response %s (%d words%s) %s.", a.label, a.words, verdict, demoPlace(n, len(answers)))
	}
	labels := make([]string, len(answers))
	for n, a := range answers {
		labels[n] = a.label
	}
	fmt.Fprintf(&b, "</critique>\n<ranking>%s</ranking>", strings.Join(labels, " > "))
	return demoPaced(r, b.String(), demoHash(r))
}

// demoPlace says where a judge put the answer at place n of k.
func demoPlace(n, k int) string {
	switch {
	case n == 0:
		return "comes first"
	case n == k-1:
		return "comes last"
	}
	return fmt.Sprintf("comes %s", []string{"second", "third", "fourth", "fifth"}[min(n-1, 3)])
}

// wantsAnswerLine reports whether a system message asks for a last line
// that starts with DemoAnswerPrefix.
func wantsAnswerLine(r *Request) bool {
	if r.Chat == nil {
		return false
	}
	for _, m := range r.Chat.Messages {
		if m.Role == "system" && strings.Contains(m.Content.String(), DemoAnswerPrefix) {
			return true
		}
	}
	return false
}

// demoVerdict is a demo member's short answer to a question it cannot
// compute: one verdict per question, from which a member dissents now and
// then, the more often the weaker it is (alpha on one question in eight,
// beta on two, gamma on three). The salt keeps the questions of
// docs/consortiums.md as it shows them: on "Is 2^61-1 prime?" gamma
// dissents, on "Is Go garbage collected?" all three agree.
func demoVerdict(model, question string) string {
	q := normQuestion(question)
	n := textHash(q) % uint64(len(demoVerdicts))
	if demoRoll("verdict16", demoName(model), q)%8 <= uint64(demoTierOf(model)) {
		n = (n + 1) % uint64(len(demoVerdicts))
	}
	return demoVerdicts[n]
}

// demoRoll is a well-mixed hash of parts, for the demo's scripted choices:
// FNV-1a's low bits are poor, so its sum goes through SplitMix64's
// finalizer, and any of the result's bits may be used.
func demoRoll(parts ...string) uint64 {
	z := textHash(strings.Join(parts, "\x00"))
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// textHash is the FNV-1a hash of s.
func textHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
