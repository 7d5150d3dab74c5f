package upstreamtest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The files of examples/ that the demo answers are generated here, so that
// they and the demo's parser cannot drift apart: `go test
// ./upstream/upstreamtest -run TestExamples -update-examples` rewrites
// them, and TestExamples fails when they differ from what is generated.
var updateExamples = flag.Bool("update-examples", false, "rewrite examples/arith.jsonl and examples/prompts.txt")

const examplesDir = "../../examples"

// splitmix is a tiny deterministic generator (SplitMix64), so that the
// generated files do not depend on math/rand's algorithms.
type splitmix uint64

func (s *splitmix) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// in returns a number in [lo, hi].
func (s *splitmix) in(lo, hi int) int { return lo + int(s.next()%uint64(hi-lo+1)) }

// arithItem is a line of examples/arith.jsonl.
type arithItem struct {
	ID        string `json:"id"`
	Prompt    string `json:"prompt"`
	Reference string `json:"reference"`
}

// arithItems are the items of examples/arith.jsonl: 400 questions on one
// operation of two integers, phrased as the demo parses them, each result
// an integer of two digits or more that the question's text does not
// contain (so that a match by "contains" cannot pass on the quoted
// question).
func arithItems() []arithItem {
	phrasings := map[byte][]string{
		'+': {"What is %d + %d?", "Compute %d + %d.", "What's %d plus %d?", "Calculate %d + %d."},
		'-': {"What is %d - %d?", "Calculate %d - %d.", "Work out %d minus %d.", "How much is %d minus %d?"},
		'*': {"What is %d * %d?", "Compute %d * %d.", "How much is %d times %d?", "What is %d multiplied by %d?"},
		'/': {"What is %d / %d?", "Evaluate %d / %d.", "What is %d divided by %d?", "How much is %d divided by %d?"},
	}
	rng := splitmix(17)
	seen := map[string]bool{}
	var items []arithItem
	for len(items) < 400 {
		op := "+-*/"[rng.next()%4]
		var a, b int
		switch op {
		case '+':
			a, b = rng.in(10, 999), rng.in(10, 999)
		case '-':
			a = rng.in(40, 999)
			b = rng.in(10, a-10)
		case '*':
			a, b = rng.in(3, 99), rng.in(3, 49)
		case '/':
			b = rng.in(3, 40)
			a = b * rng.in(10, 99)
		}
		forms := phrasings[op]
		prompt := fmt.Sprintf(forms[rng.next()%uint64(len(forms))], a, b)
		q, ok := parseArith(prompt)
		if !ok || seen[prompt] || strings.Contains(prompt, q.result()) {
			continue
		}
		seen[prompt] = true
		items = append(items, arithItem{ID: fmt.Sprintf("arith-%03d", len(items)+1), Prompt: prompt, Reference: q.result()})
	}
	return items
}

func arithFile() []byte {
	var b bytes.Buffer
	for _, it := range arithItems() {
		line, _ := json.Marshal(it)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Material of examples/prompts.txt: topics, ways to ask about one, and
// prompts of their own.
var (
	promptTopics = []string{
		"photosynthesis", "the French Revolution", "black holes", "compound interest",
		"the TCP handshake", "sourdough bread", "the immune system", "garbage collection in Go",
		"plate tectonics", "index funds", "quantum entanglement", "Shakespeare's sonnets",
		"ocean acidification", "neural networks", "the Roman Empire", "mRNA vaccines",
		"jazz improvisation", "the water cycle", "supply and demand", "DNS",
		"the human heart", "volcanoes", "recursion", "the printing press",
		"coffee roasting", "electric cars", "the Apollo program", "inflation",
		"public key cryptography", "honeybees", "chess openings", "the Silk Road",
		"sleep", "rainbows", "database indexes", "marathon training",
		"origami", "the Renaissance", "tides", "continuous integration",
	}
	promptForms = []string{
		"Explain %s to a ten-year-old.",
		"What are the three most important facts about %s?",
		"Write a haiku about %s.",
		"Summarize the history of %s in one paragraph.",
		"What is a common misconception about %s?",
		"Give me a quiz question about %s, with its answer.",
		"How would you teach %s in a five-minute lesson?",
		"Write a short tweet announcing a new book on %s.",
		"What should a beginner read first to learn about %s?",
	}
	promptOwn = []string{
		"Write a Python function that checks whether a string is a palindrome.",
		"How do I reverse a linked list in place?",
		"Draft a polite email asking my landlord to fix the heating.",
		"What is the difference between a process and a thread?",
		"Suggest five names for a bakery that sells only croissants.",
		"Translate 'where is the train station' into French, Spanish and German.",
		"Write a limerick about a cat who learns to code.",
		"What causes the seasons on Earth?",
		"Plan a three-day trip to Lisbon on a small budget.",
		"Why does ice float on water?",
		"Explain the difference between affect and effect.",
		"Write a SQL query that finds the ten customers who spent the most last year.",
		"How many minutes should I boil an egg for a soft yolk?",
		"Give me a weekly workout plan for someone who sits all day.",
		"What are the rules of the offside in football?",
		"Write a bedtime story about a dragon afraid of the dark.",
		"How does a refrigerator keep food cold?",
		"What is the capital of Australia, and why is it not Sydney?",
		"Write a regular expression that matches an ISO 8601 date.",
		"Describe the smell of rain to someone who has never smelled it.",
		"How do I politely decline a meeting invitation?",
		"What is the Monty Hall problem, and why is switching better?",
		"List the planets of the solar system in order from the sun.",
		"Write a cover letter opening for a junior data analyst job.",
		"Why do onions make people cry?",
		"Explain Big-O notation with an everyday example.",
		"What should I pack for a week of hiking in the rain?",
		"Write a Go function that sums a slice of integers.",
		"How do noise-cancelling headphones work?",
		"Give three arguments for and against a four-day work week.",
		"What is the difference between weather and climate?",
		"Write a thank-you note to a teacher who retired this year.",
		"How do I make a vegetarian lasagna?",
		"Why is the sky dark at night if there are so many stars?",
		"Explain what a mortgage is in plain words.",
		"Write a two-line poem about Monday mornings.",
		"What are good questions to ask at the end of a job interview?",
		"How does a bill become a law in the United States?",
		"What is the best way to learn touch typing?",
		"Write a short dialogue between a robot and a gardener.",
	}
)

// promptLines are the lines of examples/prompts.txt: 230 prompts on the
// topics above, 40 of their own, then 15 exact duplicates and 15 near
// duplicates (a changed word, case or punctuation) of earlier lines, all
// shuffled.
func promptLines() []string {
	rng := splitmix(29)
	seen := map[string]bool{}
	var lines []string
	for len(lines) < 230 {
		p := fmt.Sprintf(promptForms[rng.next()%uint64(len(promptForms))], promptTopics[rng.next()%uint64(len(promptTopics))])
		if !seen[p] {
			seen[p] = true
			lines = append(lines, p)
		}
	}
	lines = append(lines, promptOwn...)
	near := []func(string) string{
		func(s string) string { return "Quick question: " + s },
		func(s string) string { return strings.TrimRight(s, ".?!") },
		strings.ToLower,
		func(s string) string { return strings.Replace(s, "the ", "the the ", 1) },
		func(s string) string { return strings.TrimRight(s, ".?!") + ", please." },
	}
	n := len(lines)
	for i := range 15 {
		lines = append(lines, lines[rng.next()%uint64(n)])
		lines = append(lines, near[i%len(near)](lines[rng.next()%uint64(n)]))
	}
	for i := len(lines) - 1; i > 0; i-- {
		j := int(rng.next() % uint64(i+1))
		lines[i], lines[j] = lines[j], lines[i]
	}
	return lines
}

func promptsFile() []byte { return []byte(strings.Join(promptLines(), "\n") + "\n") }

// TestExamples: the files in examples/ are what this file generates.
func TestExamples(t *testing.T) {
	for name, want := range map[string][]byte{"arith.jsonl": arithFile(), "prompts.txt": promptsFile()} {
		path := filepath.Join(examplesDir, name)
		if *updateExamples {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what demoexamples_test.go generates: rerun with -update-examples", path)
		}
	}
}
