package upstreamtest

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// DemoJudges are the demo models meant to judge (any demo model judges a
// judge prompt; these two have different tastes, and internal/config's
// DemoJudges names them for --demo's rank consortium).
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

// judged is one answer a demo judge read: its label and text.
type judged struct {
	label string
	text  string
	words int
}

// judgedAnswers cuts a judge prompt into its answers: each "### Response X"
// heading's text runs to the next heading or to the next section ("## ").
func judgedAnswers(prompt string) []judged {
	var out []judged
	heads := demoResponse.FindAllStringSubmatchIndex(prompt, -1)
	for n, h := range heads {
		end := len(prompt)
		if n+1 < len(heads) {
			end = heads[n+1][0]
		}
		text := prompt[h[1]:end]
		if i := strings.Index(text, "\n## "); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		out = append(out, judged{label: prompt[h[2]:h[3]], text: text, words: len(strings.Fields(text))})
	}
	return out
}

// demoJudgeReply ranks the answers of a judge prompt by the judge's taste
// (see Demo) and critiques them in a few sentences that say it is a demo.
// The ranking derives from the answers' text, never their labels or the
// order shown, so a judge ranks the same answers the same way however the
// panel shuffles them.
func demoJudgeReply(r *Request, prompt string) Reply {
	answers := judgedAnswers(prompt)
	longer := textHash(r.Model)%2 == 0
	if i := slices.Index(DemoJudges, r.Model); i >= 0 {
		longer = i == 0
	}
	taste := func(a judged) uint64 { return textHash(r.Model + "\x00" + a.text) }
	slices.SortStableFunc(answers, func(a, b judged) int {
		if longer {
			if c := cmp.Compare(b.words, a.words); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(taste(a), taste(b)), cmp.Compare(a.label, b.label))
	})
	var b strings.Builder
	name := fmt.Sprintf("%q", r.Model)
	if r.Model == "" {
		name = "without a name"
	}
	fmt.Fprintf(&b, "<critique>This is a demo critique from consortium's built-in demo judge %s; no real model read the answers, and all %d are demo text. ", name, len(answers))
	if longer {
		b.WriteString("This judge puts the longer, more specific answer first.")
	} else {
		b.WriteString("This judge ranks by a fixed hash of each answer's text, a stand-in for a real judge's taste.")
	}
	for n, a := range answers {
		fmt.Fprintf(&b, " Response %s (%d words) %s.", a.label, a.words, demoPlace(n, len(answers)))
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

// demoVerdict is a demo member's short answer to a question: one verdict
// per question, which about one member in four answers differently.
func demoVerdict(model, question string) string {
	q := strings.Join(strings.Fields(question), " ")
	n := textHash(q) % uint64(len(demoVerdicts))
	if textHash(model+"\x00"+q)%4 == 0 {
		n = (n + 1) % uint64(len(demoVerdicts))
	}
	return demoVerdicts[n]
}

// textHash is the FNV-1a hash of s.
func textHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
