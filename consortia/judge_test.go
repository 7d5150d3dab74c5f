package consortia_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// strategyYAML holds the keys of rank and vote, which consortiumYAML
// lacks, in the configuration file's words.
type strategyYAML struct {
	Judges           []consortia.Judge `yaml:"judges"`
	JudgePrompt      string            `yaml:"judge_prompt"`
	WithinModelFirst bool              `yaml:"within_model_first"`
	Then             string            `yaml:"then"`
	Extract          string            `yaml:"extract"`
	TieBreak         string            `yaml:"tie_break"`
}

// strategyConfig reads a consortium's YAML, rank's and vote's keys
// included, into the engine's Config, with the configuration file's
// defaults.
func strategyConfig(t testing.TB, body string) consortia.Config {
	t.Helper()
	var all map[string]any
	if err := yaml.Unmarshal([]byte(body), &all); err != nil {
		t.Fatalf("consortium:\n%s\n%v", body, err)
	}
	own := map[string]any{}
	for _, k := range []string{"judges", "judge_prompt", "within_model_first", "then", "extract", "tie_break"} {
		if v, ok := all[k]; ok {
			own[k] = v
			delete(all, k)
		}
	}
	rest, _ := yaml.Marshal(all)
	cfg := consortiumConfig(t, string(rest))
	ownYAML, _ := yaml.Marshal(own)
	var s strategyYAML
	dec := yaml.NewDecoder(strings.NewReader(string(ownYAML)))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("consortium:\n%s\n%v", body, err)
	}
	cfg.Judges, cfg.JudgePrompt = s.Judges, s.JudgePrompt
	cfg.Rank = consortia.Rank{WithinModelFirst: s.WithinModelFirst, Then: s.Then}
	cfg.Vote = consortia.Vote{Extract: s.Extract, TieBreak: s.TieBreak}
	return cfg
}

// newStrategyFixture builds the consortium "council" of body (any
// strategy's keys) over an in-memory fake provider named "fake". Its
// calls go through a roleCaller, so that a test can read their roles.
func newStrategyFixture(t testing.TB, body string) (*fixture, *roleCaller) {
	t.Helper()
	fake := upstreamtest.NewInMemory()
	t.Cleanup(fake.Close)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Transport: fake.RoundTripper()})
	if err != nil {
		t.Fatal(err)
	}
	rc := &roleCaller{Caller: p, roles: map[string][]string{}}
	e, err := consortia.New("council", strategyConfig(t, body), map[string]consortia.Caller{"fake": rc})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{fake: fake, engine: e}, rc
}

// shownRe finds the answers a judge is shown by the default judge prompt.
var shownRe = regexp.MustCompile(`(?m)^### Response ([A-Z]+)\n\n(.*)$`)

// shown returns the labels and texts of the answers in a judge's prompt
// (its first message), in the order shown; none for a member's request.
func shown(r *upstreamtest.Request) (labels, texts []string) {
	if r.Chat == nil || len(r.Chat.Messages) == 0 {
		return nil, nil
	}
	for _, m := range shownRe.FindAllStringSubmatch(r.Chat.Messages[0].Content.String(), -1) {
		labels, texts = append(labels, m[1]), append(texts, m[2])
	}
	return labels, texts
}

// prefers is a judge that ranks the answers it is shown by their texts,
// in the order prefer lists them (texts it does not list last, in the
// order shown), whatever labels and order it sees. A request that shows
// no answers is a member's: it answers member.
func prefers(member string, prefer ...string) upstreamtest.Responder {
	return func(r *upstreamtest.Request) upstreamtest.Reply {
		labels, texts := shown(r)
		if labels == nil {
			return upstreamtest.Reply{Content: member}
		}
		rank := func(text string) int {
			if i := slices.Index(prefer, text); i >= 0 {
				return i
			}
			return len(prefer)
		}
		order := slices.Clone(labels)
		slices.SortStableFunc(order, func(a, b string) int {
			return rank(texts[slices.Index(labels, a)]) - rank(texts[slices.Index(labels, b)])
		})
		return upstreamtest.Reply{Content: "<critique>fine</critique>\n<ranking>" + strings.Join(order, " > ") + "</ranking>"}
	}
}

// firstShown is a judge biased by position: it always ranks the answers
// in the order it is shown them.
func firstShown(r *upstreamtest.Request) upstreamtest.Reply {
	labels, _ := shown(r)
	return upstreamtest.Reply{Content: "<ranking>" + strings.Join(labels, ", ") + "</ranking>"}
}

// judgesOf returns the judge replies of a run's last round.
func judgesOf(res *consortia.Result) []consortia.JudgeReply {
	return res.Run.Rounds[len(res.Run.Rounds)-1].Judges
}

// TestJudgeRequest: judges see opaque labels and no model names, are
// asked for a critique then a ranking, run at temperature 0 unless their
// params say otherwise, and their calls carry the role "judge".
func TestJudgeRequest(t *testing.T) {
	f, rc := newStrategyFixture(t, `
strategy: rank
system: you are a member
members: [{model: fake/alpha}, {model: fake/beta}]
judges: [{model: fake/j1}, {model: fake/j2, params: {temperature: 0.7}}]`)
	f.fake.Script("alpha", upstreamtest.Reply{Content: "first answer"})
	f.fake.Script("beta", upstreamtest.Reply{Content: "second answer"})
	f.fake.Handle("j1", prefers(""))
	f.fake.Handle("j2", prefers(""))
	f.mustRun(t, `{"model":"council","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"what is the answer?"}]}`)

	for model, temp := range map[string]float64{"j1": 0, "j2": 0.7} {
		reqs := f.fake.RequestsFor(model)
		if len(reqs) != 1 {
			t.Fatalf("%s: %d calls, want 1", model, len(reqs))
		}
		c := reqs[0].Chat
		if c.Temperature == nil || *c.Temperature != temp {
			t.Errorf("%s: temperature %v, want %v", model, c.Temperature, temp)
		}
		prompt := c.Messages[0].Content.String()
		for _, want := range []string{"### Response A", "### Response B", "first answer", "second answer",
			"what is the answer?", "be brief", "<critique>", "<ranking>"} {
			if !strings.Contains(prompt, want) {
				t.Errorf("%s: the prompt lacks %q:\n%s", model, want, prompt)
			}
		}
		for _, leak := range []string{"alpha", "beta", "fake/", "you are a member"} {
			if strings.Contains(prompt, leak) {
				t.Errorf("%s: the prompt shows %q:\n%s", model, leak, prompt)
			}
		}
	}
	if got := rc.roles["j1"]; !slices.Equal(got, []string{"judge"}) {
		t.Errorf("j1's roles %v, want [judge]", got)
	}
	if got := rc.roles["alpha"]; !slices.Equal(got, []string{"member"}) {
		t.Errorf("alpha's roles %v, want [member]", got)
	}
}

// TestJudgeOrderIsItsOwn: each judge gets its own random order, so a
// judge biased toward the first answer shown cannot make one member win
// every run.
func TestJudgeOrderIsItsOwn(t *testing.T) {
	f, _ := newStrategyFixture(t, `
strategy: rank
members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
judges: [{model: fake/j1}, {model: fake/j2}]`)
	for _, m := range []string{"alpha", "beta", "gamma"} {
		f.fake.Script(m, upstreamtest.Reply{Content: "the answer of " + m})
	}
	f.fake.Handle("j1", firstShown)
	f.fake.Handle("j2", firstShown)
	wins := map[string]int{}
	orders := map[string]bool{}
	for range 30 {
		res, _ := f.mustRun(t, hello)
		wins[res.Synthesis]++
		for _, j := range judgesOf(res) {
			orders[strings.Join(j.RankedMembers, ",")] = true
		}
	}
	if len(wins) < 2 {
		t.Errorf("a judge biased toward the first answer shown made one member win all 30 runs: %v", wins)
	}
	if len(orders) < 2 {
		t.Errorf("the judges were shown one order in 30 runs: %v", orders)
	}
}

// TestJudgeReasked: a ranking that is not a permutation of the labels
// shown is asked for once more, with the judge's reply and what was
// wrong; a second failure drops the judge, recorded.
func TestJudgeReasked(t *testing.T) {
	const body = `
strategy: rank
members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
judges: [{model: fake/j1}, {model: fake/j2}]`
	for _, tc := range []struct {
		name    string
		replies []string // j1's
		dropped bool
	}{
		{"a label missing, then valid", []string{"<ranking>A > B</ranking>", "<ranking>C > B > A</ranking>"}, false},
		{"an unknown label, then valid", []string{"<ranking>A > B > C > D</ranking>", "<ranking>A, B, C</ranking>"}, false},
		{"no ranking at all, twice", []string{"I like them all.", "Still all of them."}, true},
		{"a repeated label, then no tag", []string{"<ranking>A > A > B</ranking>", "A > B > C"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newStrategyFixture(t, body)
			for _, m := range []string{"alpha", "beta", "gamma"} {
				f.fake.Script(m, upstreamtest.Reply{Content: "the answer of " + m})
			}
			var script []upstreamtest.Reply
			for _, r := range tc.replies {
				script = append(script, upstreamtest.Reply{Content: r})
			}
			f.fake.Script("j1", script...)
			f.fake.Handle("j2", prefers("", "the answer of gamma"))
			res, _ := f.mustRun(t, hello)

			reqs := f.fake.RequestsFor("j1")
			if len(reqs) != 2 {
				t.Fatalf("j1 was asked %d times, want 2", len(reqs))
			}
			again := reqs[1].Chat.Messages
			if len(again) != 3 || again[1].Role != "assistant" || again[1].Content.String() != tc.replies[0] ||
				!strings.Contains(again[2].Content.String(), "exactly once") {
				t.Errorf("the second request %+v does not carry the judge's reply and what was wrong", again)
			}
			var j1 consortia.JudgeReply
			for _, j := range judgesOf(res) {
				if j.Model == "fake/j1" {
					j1 = j
				}
			}
			if j1.Retries != 1 || j1.Rejected != tc.replies[0] || j1.Reply != tc.replies[1] {
				t.Errorf("j1's record %+v", j1)
			}
			if got := j1.Error != ""; got != tc.dropped {
				t.Errorf("j1 dropped: %v (%q), want %v", got, j1.Error, tc.dropped)
			}
			if tc.dropped && (j1.Ranking != nil || res.Synthesis != "the answer of gamma") {
				t.Errorf("a dropped judge counted: ranking %v, winner %q", j1.Ranking, res.Synthesis)
			}
			if !tc.dropped && len(j1.RankedMembers) != 3 {
				t.Errorf("j1's ranking as members %v", j1.RankedMembers)
			}
		})
	}
}

// TestJudgesDropped: a judge that fails or passes member_timeout is
// dropped and recorded; with no usable ranking left the run fails with
// ErrJudges.
func TestJudgesDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := newStrategyFixture(t, `
strategy: rank
member_timeout: 3s
members: [{model: fake/alpha}, {model: fake/beta}]
judges: [{model: fake/broken}, {model: fake/slow}, {model: fake/good}]`)
		f.fake.Script("alpha", upstreamtest.Reply{Content: "the answer of alpha"})
		f.fake.Script("beta", upstreamtest.Reply{Content: "the answer of beta"})
		f.fake.Script("broken", upstreamtest.Reply{Status: 400, Error: "bad judge"})
		f.fake.Script("slow", upstreamtest.Reply{Hang: true})
		f.fake.Handle("good", prefers("", "the answer of beta"))
		start := time.Now()
		res, _ := f.mustRun(t, hello)
		if res.Synthesis != "the answer of beta" {
			t.Errorf("synthesis %q", res.Synthesis)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("the run took %s, want member_timeout (3s)", waited)
		}
		errs := map[string]string{}
		for _, j := range judgesOf(res) {
			errs[j.Model] = j.Error
		}
		if !strings.Contains(errs["fake/broken"], "bad judge") || !strings.Contains(errs["fake/slow"], "member_timeout") || errs["fake/good"] != "" {
			t.Errorf("judges' errors %q", errs)
		}

		f.fake.Script("good", upstreamtest.Reply{Status: 400, Error: "also bad"})
		_, _, err := f.run(t, hello)
		if !errors.Is(err, consortia.ErrJudges) || !strings.Contains(err.Error(), "also bad") {
			t.Errorf("err %v, want ErrJudges naming what the judges returned", err)
		}
		var re *consortia.RunError
		if !errors.As(err, &re) || len(judgesOf(&consortia.Result{Run: re.Run})) != 3 {
			t.Errorf("the failed run does not record its judges: %v", err)
		}
	})
}

// TestCheckJudgePrompt: validate's check of judge_prompt, and New's.
func TestCheckJudgePrompt(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"the default", "", true},
		{"every field", "{{.Consortium}} {{range .Conversation}}{{.Role}}{{.Text}}{{end}} {{.Request}} {{range .Responses}}{{.Label}} {{.Text}}{{end}} {{.ResponseFormat}} {{.RankingExample}}", true},
		{"a field JudgeData lacks", "{{.Question}}", false},
		{"the arbiter's Threshold", "{{.Threshold}}", false},
		{"a parse error", "{{range .Responses}}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := consortia.CheckJudgePrompt(tc.text); (err == nil) != tc.ok {
				t.Errorf("CheckJudgePrompt: %v, want ok %v", err, tc.ok)
			}
		})
	}
	if !strings.Contains(consortia.DefaultJudgePrompt, "<critique>") || !strings.Contains(consortia.DefaultJudgePrompt, "<ranking>") {
		t.Error("the default judge prompt does not ask for a critique and a ranking")
	}

	f, _ := newStrategyFixture(t, `
strategy: rank
members: [{model: fake/alpha}, {model: fake/beta}]
judges: [{model: fake/j1}]
judge_prompt: "Rank these. {{range .Responses}}[{{.Label}}: {{.Text}}] {{end}}Reply <ranking>{{.RankingExample}}</ranking>"`)
	f.fake.Script("alpha", upstreamtest.Reply{Content: "one"})
	f.fake.Script("beta", upstreamtest.Reply{Content: "two"})
	f.fake.Script("j1", upstreamtest.Reply{Content: "<ranking>B > A</ranking>"})
	f.mustRun(t, hello)
	prompt := f.fake.RequestsFor("j1")[0].Chat.Messages[0].Content.String()
	if !strings.HasPrefix(prompt, "Rank these. [A: ") || !strings.Contains(prompt, "<ranking>B > A</ranking>") {
		t.Errorf("the custom judge prompt was not used: %q", prompt)
	}
}

// TestNewRefusesRankAndVote: a rank or vote consortium that lacks what
// its strategy needs, or holds a bad value, is refused by New.
func TestNewRefusesRankAndVote(t *testing.T) {
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: "http://fake.invalid/v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"rank without judges", "strategy: rank\nmembers: [{model: fake/a}]", "needs members and judges"},
		{"rank without members", "strategy: rank\njudges: [{model: fake/j}]", "needs members and judges"},
		{"a judge of an unknown provider", "strategy: rank\nmembers: [{model: fake/a}]\njudges: [{model: nope/j}]", `judges[0]: consortium council: "nope/j" names no configured provider`},
		{"a judge prompt that names no field", "strategy: rank\nmembers: [{model: fake/a}]\njudges: [{model: fake/j}]\njudge_prompt: '{{.Question}}'", "judge_prompt"},
		{"an unknown then", "strategy: rank\nmembers: [{model: fake/a}]\njudges: [{model: fake/j}]\nthen: merge", `then "merge"`},
		{"then synthesize without an arbiter", "strategy: rank\nmembers: [{model: fake/a}]\njudges: [{model: fake/j}]\nthen: synthesize", "needs an arbiter"},
		{"vote without members", "strategy: vote", "needs members"},
		{"an extract that does not compile", "strategy: vote\nmembers: [{model: fake/a}]\nextract: '(unclosed'", "extract"},
		{"an unknown tie_break", "strategy: vote\nmembers: [{model: fake/a}]\ntie_break: coin", `tie_break "coin"`},
		{"tie_break judge with neither judges nor arbiter", "strategy: vote\nmembers: [{model: fake/a}]\ntie_break: judge", "needs judges or an arbiter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consortia.New("council", strategyConfig(t, tc.body), map[string]consortia.Caller{"fake": p})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "council") {
				t.Errorf("New: %v, want an error naming council and %q", err, tc.want)
			}
		})
	}
}

// runBody is a request body of the consortium council with extra fields.
func runBody(extra string) string {
	return fmt.Sprintf(`{"model":"council",%s"messages":[{"role":"user","content":"what is the answer?"}]}`, extra)
}

// fieldError reports whether err is a FieldError for param.
func fieldError(err error, param string) bool {
	var fe *openai.FieldError
	return errors.As(err, &fe) && fe.Param == param
}

// TestNoUsableRanking: a set of answers that no judge's ranking scores
// ends the run with ErrJudges, saying why: a judge left with fewer than
// two answers once its own were dropped, or not asked because its model
// wrote every answer.
func TestNoUsableRanking(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"one answer left once its own are dropped",
			"strategy: rank\nmembers: [{model: fake/alpha}, {model: fake/beta}]\njudges: [{model: fake/alpha}]",
			"fake/alpha: fewer than two answers left"},
		{"its model wrote every answer",
			"strategy: rank\nwithin_model_first: true\nmembers: [{model: fake/alpha, count: 2}]\njudges: [{model: fake/alpha}]",
			"fake/alpha: not asked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newStrategyFixture(t, tc.body)
			f.fake.Handle("alpha", prefers(answerOf("alpha")))
			f.fake.Handle("beta", prefers(answerOf("beta")))
			_, _, err := f.run(t, hello)
			if !errors.Is(err, consortia.ErrJudges) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrJudges saying %q", err, tc.want)
			}
		})
	}
}
