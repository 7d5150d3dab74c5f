package consortia_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// voters builds a vote consortium whose member i is the model m<i> and
// answers answers[i], with the extra keys of extra.
func voters(t *testing.T, extra string, answers ...string) *fixture {
	t.Helper()
	var members []string
	for i := range answers {
		members = append(members, fmt.Sprintf("{model: fake/m%d}", i))
	}
	f, _ := newStrategyFixture(t, "strategy: vote\nmembers: ["+strings.Join(members, ", ")+"]\n"+extra)
	for i, a := range answers {
		f.fake.Script(fmt.Sprintf("m%d", i), upstreamtest.Reply{Content: a})
	}
	return f
}

// checkVotes compares a run's votes and agreement with want.
func checkVotes(t *testing.T, res *consortia.Result, want []consortia.VoteGroup, agreement float64) {
	t.Helper()
	if got, w := fmt.Sprintf("%+v", res.Run.Votes), fmt.Sprintf("%+v", want); got != w {
		t.Errorf("votes %s, want %s", got, w)
	}
	a, c := res.Run.Agreement, res.Run.Confidence
	if a == nil || c == nil || math.Abs(*a-agreement) > 1e-9 || *c != *a {
		t.Errorf("agreement %v, confidence %v, want both %v", a, c, agreement)
	}
	if s := res.Run.Summary(); s.Strategy != "vote" || len(s.Votes) != len(want) || s.Agreement == nil {
		t.Errorf("summary %+v", s)
	}
}

// group is a VoteGroup of weight-1 members m<i>.
func group(answer string, members ...int) consortia.VoteGroup {
	g := consortia.VoteGroup{Answer: answer, Weight: float64(len(members))}
	for _, i := range members {
		g.Members = append(g.Members, fmt.Sprintf("fake/m%d#1", i))
	}
	return g
}

// TestVoteNormalize: answers are compared trimmed, with white space
// collapsed, Unicode case folded and trailing punctuation dropped; the
// response is the first full answer of the winning group.
func TestVoteNormalize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answers   []string
		want      []consortia.VoteGroup
		agreement float64
	}{
		{"trimming", []string{"  Paris  ", "Paris", "Paris\n"}, []consortia.VoteGroup{group("paris", 0, 1, 2)}, 1},
		{"white space collapsed", []string{"the  answer\tis\n\n42", "the answer is 42", "the answer is 4 2"},
			[]consortia.VoteGroup{group("the answer is 42", 0, 1), group("the answer is 4 2", 2)}, 2.0 / 3},
		{"case folded", []string{"STRASSE", "strasse", "Strasse"}, []consortia.VoteGroup{group("strasse", 0, 1, 2)}, 1},
		{"Unicode case folded", []string{"ΟΔΥΣΣΕΥΣ", "οδυσσευς", "\u212Aelvin", "kelvin"},
			[]consortia.VoteGroup{group("οδυσσευσ", 0, 1), group("kelvin", 2, 3)}, 0.5},
		{"trailing punctuation dropped", []string{"42.", "42", "42!!", "42 ?", "4.2"},
			[]consortia.VoteGroup{group("42", 0, 1, 2, 3), group("4.2", 4)}, 0.8},
		{"different answers", []string{"41", "42", "42"}, []consortia.VoteGroup{group("42", 1, 2), group("41", 0)}, 2.0 / 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := voters(t, "", tc.answers...)
			res, _ := f.mustRun(t, hello)
			checkVotes(t, res, tc.want, tc.agreement)
			first := tc.want[0].Members[0]
			var i int
			fmt.Sscanf(first, "fake/m%d#1", &i)
			if res.Synthesis != tc.answers[i] {
				t.Errorf("synthesis %q, want the winning group's first full answer %q", res.Synthesis, tc.answers[i])
			}
		})
	}
}

// TestVoteExtract: the extract regexp's first group is compared; an
// answer it does not match casts no vote but counts in the total.
func TestVoteExtract(t *testing.T) {
	const extract = `extract: '####\s*(.+)$'`
	f := voters(t, extract, "Six times seven.\n#### 42", "It is 42, I think.\n####  42.", "I cannot tell.", "#### 41")
	res, _ := f.mustRun(t, hello)
	checkVotes(t, res, []consortia.VoteGroup{group("42", 0, 1), group("41", 3)}, 0.5)
	if res.Synthesis != "Six times seven.\n#### 42" {
		t.Errorf("synthesis %q, want the first full answer of the winning group", res.Synthesis)
	}

	f = voters(t, extract, "no marker", "none here either")
	if _, _, err := f.run(t, hello); !errors.Is(err, consortia.ErrNoVote) {
		t.Errorf("no answer matched: %v, want ErrNoVote", err)
	}
}

// TestVoteWeighted: the weighted plurality wins, over a larger number of
// lighter members.
func TestVoteWeighted(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: vote
members: [{model: fake/a, count: 2}, {model: fake/b, weight: 3}]`)
	f.fake.Script("a", upstreamtest.Reply{Content: "yes"})
	f.fake.Script("b", upstreamtest.Reply{Content: "no"})
	res, _ := f.mustRun(t, hello)
	checkVotes(t, res, []consortia.VoteGroup{
		{Answer: "no", Weight: 3, Members: []string{"fake/b#1"}},
		{Answer: "yes", Weight: 2, Members: []string{"fake/a#1", "fake/a#2"}},
	}, 0.6)
	if res.Synthesis != "no" {
		t.Errorf("synthesis %q", res.Synthesis)
	}
}

// TestVoteTies: tie_break first takes the tied group of the earliest
// configured member; tie_break judge has the judges, or without judges
// the arbiter, rank the tied groups' first answers.
func TestVoteTies(t *testing.T) {
	answers := []string{"x", "z", "y", "y", "x"} // x and y tie; z is out
	t.Run("first", func(t *testing.T) {
		for _, extra := range []string{"", "tie_break: first"} {
			f := voters(t, extra, answers...)
			res, _ := f.mustRun(t, hello)
			if res.Synthesis != "x" {
				t.Errorf("%q: synthesis %q, want x (m0 is configured first)", extra, res.Synthesis)
			}
			checkVotes(t, res, []consortia.VoteGroup{group("x", 0, 4), group("y", 2, 3), group("z", 1)}, 0.4)
		}
		f := voters(t, "", "y", "x", "x", "y")
		if res, _ := f.mustRun(t, hello); res.Synthesis != "y" {
			t.Errorf("synthesis %q, want y (m0 is configured first)", res.Synthesis)
		}
	})
	for _, tc := range []struct{ name, extra, judge string }{
		{"judge: the judges", "tie_break: judge\njudges: [{model: fake/j1}]", "j1"},
		{"judge: the arbiter without judges", "tie_break: judge\narbiter: {model: fake/arb}", "arb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := voters(t, tc.extra, answers...)
			f.fake.Handle(tc.judge, prefers("", "y"))
			res, _ := f.mustRun(t, hello)
			if res.Synthesis != "y" {
				t.Errorf("synthesis %q, want the judge's choice y", res.Synthesis)
			}
			reqs := f.fake.RequestsFor(tc.judge)
			if len(reqs) != 1 {
				t.Fatalf("the judge was asked %d times, want once", len(reqs))
			}
			if _, texts := shown(&reqs[0]); strings.Join(texts, ",") != "x,y" && strings.Join(texts, ",") != "y,x" {
				t.Errorf("the judge was shown %q, want the tied answers x and y", texts)
			}
			j := judgesOf(res)
			if len(j) != 1 || j[0].Group != "tie" || j[0].Model != "fake/"+tc.judge {
				t.Errorf("judges %+v", j)
			}
			checkVotes(t, res, []consortia.VoteGroup{group("x", 0, 4), group("y", 2, 3), group("z", 1)}, 0.4)

			f = voters(t, tc.extra, "x", "x", "y")
			if res, _ := f.mustRun(t, hello); res.Synthesis != "x" || len(f.fake.RequestsFor(tc.judge)) != 0 {
				t.Errorf("no tie: synthesis %q, the judge asked %d times", res.Synthesis, len(f.fake.RequestsFor(tc.judge)))
			}
		})
	}
}

// TestVoteJSON: when the client asks for JSON, answers are compared as
// parsed and re-serialized JSON: key order, spacing and code fences do not
// matter, but case does.
func TestVoteJSON(t *testing.T) {
	f := voters(t, "",
		`{"b": [1, 2], "a": "X"}`,
		"```json\n{\"a\":\"X\",\n \"b\":[1,2]}\n```",
		`{"a": "x", "b": [1, 2]}`,
		`not json, Really`)
	res, _ := f.mustRun(t, runBody(`"response_format":{"type":"json_object"},`))
	checkVotes(t, res, []consortia.VoteGroup{
		group(`{"a":"X","b":[1,2]}`, 0, 1), group(`{"a":"x","b":[1,2]}`, 2), group("not json, really", 3),
	}, 0.5)
	if res.Synthesis != `{"b": [1, 2], "a": "X"}` {
		t.Errorf("synthesis %q", res.Synthesis)
	}
}
