package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// strategies is a valid file with a consortium of every strategy, as
// shared/DESIGN.md shows them.
const strategiesFile = `
providers:
  openai: {api_key: k}
  local: {base_url: "http://127.0.0.1:8000/v1"}
consortia:
  council:
    members: [{model: openai/a}, {model: local/b}]
    arbiter: {model: openai/j}
  best:
    strategy: rank
    members: [{model: openai/a, count: 3}, {model: local/b, count: 3}]
    judges:
      - {model: openai/j, weight: 2.5, params: {temperature: 0}}
      - {model: local/k}
  agree:
    strategy: vote
    members: [{model: openai/a, count: 5, params: {temperature: 0.8}}]
    extract: "####\\s*(.+)$"
  tiered:
    strategy: cascade
    tiers: [agree, best, openai/big]
`

func TestStrategyDefaults(t *testing.T) {
	cfg := mustParse(t, strategiesFile, nil)
	best, agree, tiered := cfg.Consortia["best"], cfg.Consortia["agree"], cfg.Consortia["tiered"]
	if best.Then != "winner" || best.WithinModelFirst || best.JudgePrompt != "" {
		t.Errorf("rank: then %q, within_model_first %v, judge_prompt %q", best.Then, best.WithinModelFirst, best.JudgePrompt)
	}
	if len(best.Judges) != 2 || best.Judges[0].Model != "openai/j" || best.Judges[0].Weight != 2.5 ||
		best.Judges[0].Params["temperature"] != 0 || best.Judges[1].Model != "local/k" || best.Judges[1].Weight != 1 {
		t.Errorf("judges = %+v, want the second with the default weight 1", best.Judges)
	}
	if agree.TieBreak != "first" || agree.Extract != `####\s*(.+)$` {
		t.Errorf("vote: tie_break %q, extract %q", agree.TieBreak, agree.Extract)
	}
	if !slices.Equal(tiered.Tiers, []string{"agree", "best", "openai/big"}) || tiered.EscalateBelow != 0.8 {
		t.Errorf("cascade: tiers %q, escalate_below %v", tiered.Tiers, tiered.EscalateBelow)
	}
	if tiered.Instances() != 0 {
		t.Errorf("a cascade has %d member instances", tiered.Instances())
	}

	cfg = mustParse(t, strategiesFile+"    escalate_below: 0.5\n", nil)
	if got := cfg.Consortia["tiered"].EscalateBelow; got != 0.5 {
		t.Errorf("escalate_below = %v", got)
	}
}

// TestStrategiesAccepted: what each strategy takes, in the combinations
// DESIGN allows.
func TestStrategiesAccepted(t *testing.T) {
	for _, tc := range []struct{ name, consortium string }{
		{"rank with then: synthesize and an arbiter", "{strategy: rank, members: [{model: openai/a}], judges: [{model: openai/j}], then: synthesize, arbiter: {model: openai/j, prompt: x}}"},
		{"rank with every key", "{strategy: rank, members: [{model: openai/a}], judges: [{model: openai/j}], judge_prompt: x, within_model_first: true, then: winner, system: s, quorum: 1, min_answers: 1, member_timeout: 5s}"},
		{"vote with tie_break: judge and judges", "{strategy: vote, members: [{model: openai/a}], tie_break: judge, judges: [{model: openai/j}], judge_prompt: x}"},
		{"vote with tie_break: judge and an arbiter", "{strategy: vote, members: [{model: openai/a}], tie_break: judge, arbiter: {model: openai/j}}"},
		{"vote with tie_break: first", "{strategy: vote, members: [{model: openai/a}], tie_break: first, extract: '(\\d+)'}"},
		{"cascade of consortiums only", "{strategy: cascade, tiers: [agree, council]}"},
		{"cascade whose last tier is a model, with a system prompt for it", "{strategy: cascade, tiers: [council, local/m], system: s}"},
		{"cascade of a cascade", "{strategy: cascade, tiers: [tiered, openai/big], escalate_below: 1}"},
		{"escalate_below 0", "{strategy: cascade, tiers: [agree, best], escalate_below: 0}"},
		{"synthesize named", "{strategy: synthesize, members: [{model: openai/a}], arbiter: {model: openai/j}, confidence_threshold: 0.5, min_iterations: 1, max_iterations: 2}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustParse(t, strategiesFile+"  x: "+tc.consortium+"\n", nil)
		})
	}

	// A diamond of cascades is no cycle.
	mustParse(t, strategiesFile+`  c1: {strategy: cascade, tiers: [c2, c3]}
  c2: {strategy: cascade, tiers: [agree, c3]}
  c3: {strategy: cascade, tiers: [agree, best]}
`, nil)
}

// TestStrategyProblems: every rule of DESIGN's Configuration for the
// strategies, each problem reported once with its key path, and nothing
// more.
func TestStrategyProblems(t *testing.T) {
	other := func(strategy, of string) string {
		return fmt.Sprintf("strategy %s does not use it: it is a key of %s", strategy, of)
	}
	const (
		arbiterOf  = "synthesize, of rank with then: synthesize, and of vote with tie_break: judge and no judges"
		judgesOf   = "rank, and of vote with tie_break: judge"
		membersOf  = "the strategies with members (a cascade's tiers have their own)"
		rankMember = "strategy: rank, members: [{model: openai/a}], judges: [{model: openai/j}]"
		voteMember = "strategy: vote, members: [{model: openai/a}]"
		mergeTiers = "strategy: cascade, tiers: [agree, best]"
	)
	for _, tc := range []struct {
		name, consortium string
		want             []string
	}{
		// What each strategy needs.
		{"synthesize without members or arbiter", "{description: d}", []string{
			"consortia.x.members: a consortium needs at least one member",
			"consortia.x.arbiter.model: a consortium needs an arbiter model"}},
		{"rank without members or judges", "{strategy: rank}", []string{
			"consortia.x.members: a consortium needs at least one member",
			"consortia.x.judges: strategy rank needs at least one judge"}},
		{"rank's then: synthesize without an arbiter", "{" + rankMember + ", then: synthesize}", []string{
			"consortia.x.arbiter.model: then: synthesize needs an arbiter model (it writes the answer from the ranking)"}},
		{"vote without members", "{strategy: vote}", []string{
			"consortia.x.members: a consortium needs at least one member"}},
		{"vote's tie_break: judge without judges or arbiter", "{" + voteMember + ", tie_break: judge}", []string{
			"consortia.x.judges: tie_break: judge needs judges (or an arbiter) to rank the tied answers"}},
		{"cascade without tiers", "{strategy: cascade}", []string{
			"consortia.x.tiers: strategy cascade needs two or more tiers"}},
		{"cascade of one tier", "{strategy: cascade, tiers: [agree]}", []string{
			"consortia.x.tiers: strategy cascade needs two or more tiers"}},
		{"cascade with members", "{" + mergeTiers + ", members: [{model: openai/a}]}", []string{
			"consortia.x.members: a cascade has tiers, not members"}},

		// A key of another strategy.
		{"judges on synthesize", "{members: [{model: openai/a}], arbiter: {model: openai/j}, judges: [{model: openai/j}], judge_prompt: x}", []string{
			"consortia.x.judges: " + other("synthesize", judgesOf),
			"consortia.x.judge_prompt: " + other("synthesize", judgesOf)}},
		{"rank's and vote's keys on synthesize", "{members: [{model: openai/a}], arbiter: {model: openai/j}, within_model_first: false, then: winner, extract: '(.)', tie_break: first}", []string{
			"consortia.x.within_model_first: " + other("synthesize", "rank"),
			"consortia.x.then: " + other("synthesize", "rank"),
			"consortia.x.extract: " + other("synthesize", "vote"),
			"consortia.x.tie_break: " + other("synthesize", "vote")}},
		{"cascade's keys on synthesize", "{members: [{model: openai/a}], arbiter: {model: openai/j}, tiers: [agree, best], escalate_below: 0.5}", []string{
			"consortia.x.tiers: " + other("synthesize", "cascade"),
			"consortia.x.escalate_below: " + other("synthesize", "cascade")}},
		{"an arbiter on rank without then: synthesize", "{" + rankMember + ", arbiter: {model: openai/j}}", []string{
			"consortia.x.arbiter: " + other("rank", arbiterOf)}},
		{"an arbiter on rank with then: winner", "{" + rankMember + ", then: winner, arbiter: {model: nope/j, params: {model: m}}}", []string{
			"consortia.x.arbiter: " + other("rank", arbiterOf)}},
		{"synthesize's iteration keys on rank", "{" + rankMember + ", confidence_threshold: 0.5, min_iterations: 1, max_iterations: 2}", []string{
			"consortia.x.confidence_threshold: " + other("rank", "synthesize"),
			"consortia.x.min_iterations: " + other("rank", "synthesize"),
			"consortia.x.max_iterations: " + other("rank", "synthesize")}},
		{"tiers on vote", "{" + voteMember + ", tiers: [agree, best]}", []string{
			"consortia.x.tiers: " + other("vote", "cascade")}},
		{"then and within_model_first on vote", "{" + voteMember + ", then: winner, within_model_first: true}", []string{
			"consortia.x.within_model_first: " + other("vote", "rank"),
			"consortia.x.then: " + other("vote", "rank")}},
		{"judges on vote without tie_break: judge", "{" + voteMember + ", judges: [{model: openai/j}], judge_prompt: x}", []string{
			"consortia.x.judges: " + other("vote", judgesOf),
			"consortia.x.judge_prompt: " + other("vote", judgesOf)}},
		{"an arbiter on vote with tie_break: first", "{" + voteMember + ", tie_break: first, arbiter: {model: openai/j}}", []string{
			"consortia.x.arbiter: " + other("vote", arbiterOf)}},
		{"an arbiter prompt on vote, whose arbiter ranks ties with the judge prompt", "{" + voteMember + ", tie_break: judge, arbiter: {model: openai/j, prompt: p}}", []string{
			"consortia.x.arbiter.prompt: " + other("vote", "synthesize and of rank with then: synthesize (vote's arbiter ranks tied answers with judge_prompt)")}},
		{"an arbiter beside the judges of vote", "{" + voteMember + ", tie_break: judge, judges: [{model: openai/j}], arbiter: {model: openai/j}}", []string{
			"consortia.x.arbiter: " + other("vote", arbiterOf)}},
		{"extract and tie_break on rank", "{" + rankMember + ", extract: '(.)', tie_break: judge}", []string{
			"consortia.x.extract: " + other("rank", "vote"),
			"consortia.x.tie_break: " + other("rank", "vote")}},
		{"the members' keys on cascade", "{" + mergeTiers + ", system: s, quorum: 1, member_timeout: 5s, min_answers: 1}", []string{
			"consortia.x.system: " + other("cascade", "the strategies with members, and of a cascade whose last tier is a provider/model (for that tier)"),
			"consortia.x.quorum: " + other("cascade", membersOf),
			"consortia.x.member_timeout: " + other("cascade", membersOf),
			"consortia.x.min_answers: " + other("cascade", membersOf)}},
		{"an arbiter and judges on cascade", "{" + mergeTiers + ", arbiter: {model: openai/j}, judges: [{model: openai/j}], confidence_threshold: 0.5}", []string{
			"consortia.x.arbiter: " + other("cascade", arbiterOf),
			"consortia.x.confidence_threshold: " + other("cascade", "synthesize"),
			"consortia.x.judges: " + other("cascade", judgesOf)}},
		{"a bad value of a refused key is not reported again", "{members: [{model: openai/a}], arbiter: {model: openai/j}, then: last, tie_break: coin, escalate_below: 2, extract: '(('}", []string{
			"consortia.x.then: " + other("synthesize", "rank"),
			"consortia.x.extract: " + other("synthesize", "vote"),
			"consortia.x.tie_break: " + other("synthesize", "vote"),
			"consortia.x.escalate_below: " + other("synthesize", "cascade")}},

		// Values.
		{"then of another value", "{" + rankMember + ", then: last}", []string{
			`consortia.x.then: "last" is not winner or synthesize`}},
		{"tie_break of another value", "{" + voteMember + ", tie_break: coin}", []string{
			`consortia.x.tie_break: "coin" is not first or judge`}},
		{"an extract that does not compile", "{" + voteMember + ", extract: '(\\d+'}", []string{
			"consortia.x.extract: is not a valid regexp: error parsing regexp: missing closing ): `(\\d+`"}},
		{"an extract without a group", "{" + voteMember + ", extract: '####\\s*.+$'}", []string{
			`consortia.x.extract: has no group: its first group is the answer compared, e.g. "####\\s*(.+)$"`}},
		{"escalate_below above 1", "{" + mergeTiers + ", escalate_below: 1.5}", []string{
			"consortia.x.escalate_below: must be between 0 and 1"}},
		{"escalate_below below 0", "{" + mergeTiers + ", escalate_below: -0.1}", []string{
			"consortia.x.escalate_below: must be between 0 and 1"}},
		{"the judges' refs, weights and params", "{strategy: rank, members: [{model: openai/a}], judges: [{model: nope/j}, {model: gpt-4o}, {model: openai/j, weight: 0}, {model: openai/j, params: {messages: []}}]}", []string{
			`consortia.x.judges[0].model: "nope/j" names the unknown provider "nope"`,
			`consortia.x.judges[1].model: "gpt-4o" is not provider/model`,
			"consortia.x.judges[2].weight: must be more than 0",
			"consortia.x.judges[3].params.messages: is set by the consortium engine and cannot be a param"}},
		{"a judge without a model", "{strategy: rank, members: [{model: openai/a}], judges: [{weight: 2}]}", []string{
			`consortia.x.judges[0].model: "" is not provider/model`}},

		// Shapes and types, with their paths.
		{"an unknown key in a judge", "{strategy: rank, members: [{model: openai/a}], judges: [{modle: openai/j}]}", []string{
			`consortia.x.judges[0].modle: unknown key (did you mean "model"?)`,
			`consortia.x.judges[0].model: "" is not provider/model`}},
		{"judges that are not a list", "{strategy: rank, members: [{model: openai/a}], judges: openai/j}", []string{
			`consortia.x.judges: expected a list, got "openai/j"`}},
		{"a judge weight that is not a number", "{strategy: rank, members: [{model: openai/a}], judges: [{model: openai/j, weight: heavy}]}", []string{
			`consortia.x.judges[0].weight: expected a number, got "heavy"`}},
		{"tiers that are not a list", "{strategy: cascade, tiers: agree}", []string{
			`consortia.x.tiers: expected a list, got "agree"`}},
		{"an escalate_below that is not a number", "{" + mergeTiers + ", escalate_below: high}", []string{
			`consortia.x.escalate_below: expected a number, got "high"`}},

		// Tiers.
		{"a tier that is nothing configured", "{strategy: cascade, tiers: [agree, nothing]}", []string{
			`consortia.x.tiers[1]: "nothing" is neither a consortium nor a provider/model ref`}},
		{"a tier of an unknown provider", "{strategy: cascade, tiers: [agree, nope/m]}", []string{
			`consortia.x.tiers[1]: "nope/m" is no consortium, and names the unknown provider "nope"`}},
		{"an empty tier", "{strategy: cascade, tiers: [agree, '']}", []string{
			`consortia.x.tiers[1]: "" is neither a consortium nor a provider/model ref`}},
		{"a plain model that is not the last tier", "{strategy: cascade, tiers: [openai/small, agree, local/m]}", []string{
			`consortia.x.tiers[0]: "openai/small" is a plain model, which has no confidence: it may only be the last tier`}},
		{"a tier named twice", "{strategy: cascade, tiers: [agree, best, agree]}", []string{
			`consortia.x.tiers[2]: "agree" is already tiers[0]`}},
		{"a cascade naming itself", "{strategy: cascade, tiers: [agree, x]}", []string{
			`consortia.x.tiers[1]: "x" makes a cycle: x -> x`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, strategiesFile+"  x: "+tc.consortium+"\n", nil)
			if !slices.Equal(ps, Problems(tc.want)) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestCascadeCycles: a loop through other cascades is reported once, at
// the first cascade of the file in it, with the whole cycle.
func TestCascadeCycles(t *testing.T) {
	for _, tc := range []struct {
		name, consortia string
		want            []string
	}{
		{"two cascades", `  c1: {strategy: cascade, tiers: [agree, c2]}
  c2: {strategy: cascade, tiers: [c1, best]}
`, []string{`consortia.c1.tiers[1]: "c2" makes a cycle: c1 -> c2 -> c1`}},
		{"three cascades, declared out of order", `  c3: {strategy: cascade, tiers: [c1, best]}
  c1: {strategy: cascade, tiers: [agree, c2]}
  c2: {strategy: cascade, tiers: [agree, c3]}
`, []string{`consortia.c3.tiers[0]: "c1" makes a cycle: c3 -> c1 -> c2 -> c3`}},
		{"two cycles through one cascade", `  c1: {strategy: cascade, tiers: [c2, c3]}
  c2: {strategy: cascade, tiers: [agree, c1]}
  c3: {strategy: cascade, tiers: [c1, best]}
`, []string{
			`consortia.c1.tiers[0]: "c2" makes a cycle: c1 -> c2 -> c1`,
			`consortia.c1.tiers[1]: "c3" makes a cycle: c1 -> c3 -> c1`}},
		{"a cycle beside a cascade that only reaches it", `  c0: {strategy: cascade, tiers: [agree, c1]}
  c1: {strategy: cascade, tiers: [agree, c2]}
  c2: {strategy: cascade, tiers: [agree, c1]}
`, []string{`consortia.c1.tiers[1]: "c2" makes a cycle: c1 -> c2 -> c1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, strategiesFile+tc.consortia, nil)
			if !slices.Equal(ps, Problems(tc.want)) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestJudgePromptCheck(t *testing.T) {
	// best's judge prompt.
	file := strings.Replace(strategiesFile, "  agree:\n", "    judge_prompt: \"{{.Nope}}\"\n  agree:\n", 1)
	if _, err := Parse([]byte(file), noEnv); err != nil {
		t.Fatalf("without a check: %v", err)
	}
	judge := func(text string) error { return fmt.Errorf("judge checked %q", text) }
	arbiter := func(text string) error { return fmt.Errorf("arbiter checked %q", text) }
	_, err := Parse([]byte(file), noEnv, WithJudgePromptCheck(judge), WithPromptCheck(arbiter))
	if want := `consortia.best.judge_prompt: is not a valid judge prompt: judge checked "{{.Nope}}"`; err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
	ok := func(string) error { return nil }
	if _, err := Parse([]byte(file), noEnv, WithJudgePromptCheck(ok)); err != nil {
		t.Errorf("with a check that passes: %v", err)
	}
}
