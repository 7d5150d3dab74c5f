package batch

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/consortium-dev/consortium/consortia"
)

// Matches are eval's --match modes.
var Matches = []string{"exact", "contains", "numeric", "regex"}

// matcher scores an answer against an item's reference: 1 or 0.
type matcher func(answer, reference string) bool

// newMatcher returns the matcher of a --match mode. Answers and
// references are compared as vote compares answers: trimmed, white space
// collapsed, case folded, trailing punctuation dropped.
//
//   - exact: the normalized answer is the normalized reference;
//   - contains: the normalized answer contains the normalized reference;
//   - numeric: the answer's last number equals the reference's number
//     (thousands commas allowed; equal within 1e-6 relative);
//   - regex: the reference is a regular expression (Go syntax) that
//     matches somewhere in the answer as written.
func newMatcher(mode string) (matcher, error) {
	switch mode {
	case "", "exact":
		return func(a, r string) bool { return normalize(a) == normalize(r) }, nil
	case "contains":
		return func(a, r string) bool { return strings.Contains(normalize(a), normalize(r)) }, nil
	case "numeric":
		return func(a, r string) bool {
			x, ok1 := lastNumber(a)
			y, ok2 := lastNumber(r)
			return ok1 && ok2 && math.Abs(x-y) <= 1e-6*math.Max(1, math.Abs(y))
		}, nil
	case "regex":
		cache := map[string]*regexp.Regexp{}
		return func(a, r string) bool {
			re, ok := cache[r]
			if !ok {
				re = regexp.MustCompile(r) // checked by checkReferences
				cache[r] = re
			}
			return re.MatchString(a)
		}, nil
	}
	return nil, fmt.Errorf("--match %q is not %s", mode, strings.Join(Matches, ", "))
}

// checkReferences reports the references a mode cannot use, by line: an
// empty one (contains and regex would find it in any answer), a regex
// that does not compile, or no number for numeric.
func checkReferences(mode string, items []Item) []string {
	var problems []string
	for _, it := range items {
		if it.Reference == nil {
			continue
		}
		if strings.TrimSpace(*it.Reference) == "" {
			problems = append(problems, fmt.Sprintf("line %d: empty reference (leave it out to have the item judged)", it.Line))
			continue
		}
		switch mode {
		case "regex":
			if _, err := regexp.Compile(*it.Reference); err != nil {
				problems = append(problems, fmt.Sprintf("line %d: reference is not a regular expression: %v", it.Line, err))
			}
		case "numeric":
			if _, ok := lastNumber(*it.Reference); !ok {
				problems = append(problems, fmt.Sprintf("line %d: reference %q has no number", it.Line, *it.Reference))
			}
		}
	}
	return problems
}

var number = regexp.MustCompile(`[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?`)

// lastNumber is the last number written in s.
func lastNumber(s string) (float64, bool) {
	all := number.FindAllString(s, -1)
	if len(all) == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(all[len(all)-1], ",", ""), 64)
	return f, err == nil
}

// normalize is an answer as consortia's vote compares it (without the
// JSON case): trimmed, white space collapsed, case folded, trailing
// punctuation dropped.
func normalize(s string) string { return consortia.Normalize(s, false) }
