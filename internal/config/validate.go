package config

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Validate returns every problem in c, each with its key path, as Problems;
// nil when there is none.
func (c *Config) Validate() error {
	v := &validator{}
	v.check(c.Listen != "", "listen", "must be an address such as 127.0.0.1:8080")
	if c.Listen != "" {
		_, port, err := net.SplitHostPort(c.Listen)
		v.check(err == nil && port != "", "listen", fmt.Sprintf("%q is not host:port", c.Listen))
	}
	v.check(c.MaxBody > 0, "max_body", "must be more than 0")
	v.check(c.ShutdownTimeout >= 0, "shutdown_timeout", "must not be negative")
	if _, ok := LogLevel(c.Log.Level); !ok {
		v.problem("log.level", fmt.Sprintf("%q is not debug, info, warn or error", c.Log.Level))
	}
	v.check(slices.Contains(LogFormats, c.Log.Format), "log.format", fmt.Sprintf("%q is not text or json", c.Log.Format))

	names, keys := map[string]bool{}, map[string]bool{}
	for i, k := range c.Auth.Keys {
		p := fmt.Sprintf("auth.keys[%d]", i)
		v.check(k.Name != "", p+".name", "every key needs a name (the tenant)")
		v.check(!names[k.Name] || k.Name == "", p+".name", fmt.Sprintf("%q is used by another key", k.Name))
		v.check(k.Key != "", p+".key", "is empty (an unset ${VAR}?)")
		v.check(!keys[k.Key] || k.Key == "", p+".key", "is the same as another key's")
		v.check(k.RPM >= 0, p+".rpm", "must not be negative")
		names[k.Name], keys[k.Key] = true, true
	}

	switch c.Store.Backend {
	case "memory", "redis":
	default:
		v.problem("store.backend", fmt.Sprintf("%q is not memory or redis", c.Store.Backend))
	}
	if c.Store.Backend == "redis" && len(c.Store.Addrs) == 0 {
		u, err := url.Parse(c.Store.URL)
		v.check(err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Host != "", "store.url",
			fmt.Sprintf("%q is not a redis:// or rediss:// URL", c.Store.URL))
	}
	v.check(c.Store.MasterName == "" || len(c.Store.Addrs) > 0, "store.master_name", "needs store.addrs (the Sentinels)")
	v.check(c.Store.TTL > 0, "store.ttl", "must be more than 0")
	v.check(c.Store.MaxEntries > 0, "store.max_entries", "must be more than 0")

	for _, name := range c.ProviderOrder {
		c.validateProvider(v, name, c.Providers[name])
	}
	for _, name := range c.ConsortiumOrder {
		c.validateConsortium(v, name, c.Consortia[name])
	}
	c.checkCycles(v)
	c.validatePricing(v)
	c.refuseUnbuilt(v)
	if len(v.problems) == 0 {
		return nil
	}
	return v.problems
}

func (c *Config) validateProvider(v *validator, name string, p *Provider) {
	path := "providers." + name
	v.check(name != "" && !strings.ContainsAny(name, "/ "), path, "a provider name must not be empty or hold a slash or space")
	switch p.Type {
	case "openai", "anthropic":
	case TypeDemo:
		// The binary serves it in process (ServeDemo sets its URL).
		v.check(!c.present[path+".base_url"], path+".base_url", "is not set for a demo provider: it is served in process")
		v.check(!c.present[path+".api_key"], path+".api_key", "is not set for a demo provider: it needs no key")
	default:
		v.problem(path+".type", fmt.Sprintf("%q is not openai, anthropic or demo", p.Type))
	}
	switch {
	case p.Type == TypeDemo:
		// served in process: no base_url
	case p.BaseURL == "":
		v.problem(path+".base_url", "is required for a provider that is not well known (openai, anthropic, openrouter, gemini, ollama)")
	default:
		u, err := url.Parse(p.BaseURL)
		ok := err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
		v.check(ok, path+".base_url", fmt.Sprintf("%q is not an http:// or https:// URL", p.BaseURL))
		// Each call's path is added to the base URL's: a query or a
		// fragment would end up before it, so one is refused rather than
		// sent wrong.
		v.check(!ok || (u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""), path+".base_url",
			fmt.Sprintf("%q has a query or fragment, which is not supported yet: give the URL up to its path (\"https://host/v1\"); fixed parameters a provider needs can go in headers", p.BaseURL))
	}
	for h := range p.Headers {
		if strings.EqualFold(h, "Authorization") || strings.EqualFold(h, "x-api-key") {
			v.problem(path+".headers."+h, "is set from api_key; put the key there")
		}
	}
	v.check(p.Timeout > 0, path+".timeout", "must be more than 0")
	v.check(p.IdleTimeout > 0, path+".idle_timeout", "must be more than 0")
	v.check(p.MaxRetries >= 0, path+".max_retries", "must not be negative")
	v.check(p.RPM >= 0, path+".rpm", "must not be negative")
	v.check(p.MaxConcurrency >= 0, path+".max_concurrency", "must not be negative")
	v.check(p.Breaker.Failures > 0, path+".breaker.failures", "must be at least 1")
	v.check(p.Breaker.Cooldown > 0, path+".breaker.cooldown", "must be more than 0")
	v.check(p.MaxResponse > 0, path+".max_response", "must be more than 0")
	for i, m := range p.Models {
		v.check(strings.TrimSpace(m) != "", fmt.Sprintf("%s.models[%d]", path, i), "is empty")
	}
}

func (c *Config) validateConsortium(v *validator, name string, k *Consortium) {
	path := "consortia." + name
	if name == "" {
		v.problem(path, "a consortium needs a name")
	}
	if prov, _, ok := strings.Cut(name, "/"); ok {
		if _, clash := c.Providers[prov]; clash {
			v.problem(path, fmt.Sprintf("the name begins with the provider %q and a slash, so it would hide that provider's models", prov))
		}
	}
	known := slices.Contains(strategies, k.Strategy)
	if known {
		c.refuseForeignKeys(v, path, k)
	} else {
		v.problem(path+".strategy", fmt.Sprintf("%q is not a known strategy (%s)", k.Strategy, strings.Join(strategies, ", ")))
	}
	for i, m := range k.Members {
		mp := fmt.Sprintf("%s.members[%d]", path, i)
		c.checkRef(v, mp+".model", m.Model)
		v.check(m.Count >= 1, mp+".count", "must be at least 1")
		v.check(m.Weight > 0, mp+".weight", "must be more than 0")
		checkParams(v, mp+".params", m.Params)
		for j, f := range m.Fallbacks {
			c.checkRef(v, fmt.Sprintf("%s.fallbacks[%d]", mp, j), f)
		}
	}
	if k.Arbiter.Model != "" {
		c.checkRef(v, path+".arbiter.model", k.Arbiter.Model)
	}
	if known {
		needs(v, path, k)
	}
	checkParams(v, path+".arbiter.params", k.Arbiter.Params)
	checkPrompt(v, path+".arbiter.prompt", "arbiter", k.Arbiter.Prompt, c.checkPrompt)
	for i, j := range k.Judges {
		jp := fmt.Sprintf("%s.judges[%d]", path, i)
		c.checkRef(v, jp+".model", j.Model)
		v.check(j.Weight > 0, jp+".weight", "must be more than 0")
		checkParams(v, jp+".params", j.Params)
	}
	checkPrompt(v, path+".judge_prompt", "judge", k.JudgePrompt, c.checkJudgePrompt)
	v.check(slices.Contains(thens, k.Then), path+".then", fmt.Sprintf("%q is not %s", k.Then, strings.Join(thens, " or ")))
	v.check(slices.Contains(tieBreaks, k.TieBreak), path+".tie_break", fmt.Sprintf("%q is not %s", k.TieBreak, strings.Join(tieBreaks, " or ")))
	if k.Extract != "" {
		re, err := regexp.Compile(k.Extract)
		switch {
		case err != nil:
			v.problem(path+".extract", "is not a valid regexp: "+err.Error())
		case re.NumSubexp() == 0:
			v.problem(path+".extract", `has no group: its first group is the answer compared, e.g. "####\\s*(.+)$"`)
		}
	}
	c.checkTiers(v, path, k.Tiers)
	v.check(k.ConfidenceThreshold >= 0 && k.ConfidenceThreshold <= 1, path+".confidence_threshold", "must be between 0 and 1")
	v.check(k.EscalateBelow >= 0 && k.EscalateBelow <= 1, path+".escalate_below", "must be between 0 and 1")
	v.check(k.MinIterations >= 1, path+".min_iterations", "must be at least 1")
	v.check(k.MaxIterations >= 1, path+".max_iterations", "must be at least 1")
	v.check(k.MinIterations <= k.MaxIterations, path+".min_iterations",
		fmt.Sprintf("%d is more than max_iterations (%d)", k.MinIterations, k.MaxIterations))
	n := k.Instances()
	v.check(k.Quorum >= 0, path+".quorum", "must not be negative")
	v.check(k.MinAnswers >= 1, path+".min_answers", "must be at least 1")
	if n > 0 { // none: reported as such, or a cascade, which has tiers
		v.check(k.Quorum <= n, path+".quorum", fmt.Sprintf("%d is more than the %d member instances", k.Quorum, n))
		v.check(k.MinAnswers <= n, path+".min_answers", fmt.Sprintf("%d is more than the %d member instances", k.MinAnswers, n))
	}
	v.check(k.MemberTimeout > 0, path+".member_timeout", "must be more than 0")
	v.check(slices.Contains(weightModes, k.Weights), path+".weights", fmt.Sprintf("%q is not %s", k.Weights, strings.Join(weightModes, " or ")))
}

// The values of a consortium's weights.
const (
	WeightsFixed    = "fixed"
	WeightsAdaptive = "adaptive"
)

var weightModes = []string{WeightsFixed, WeightsAdaptive}

// validatePricing checks every price: a provider/model ref of a
// configured provider, and no negative amount.
func (c *Config) validatePricing(v *validator) {
	refs := make([]string, 0, len(c.Pricing))
	for ref := range c.Pricing {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	for _, ref := range refs {
		p := c.Pricing[ref]
		path := "pricing." + ref
		prov, _, ok := SplitRef(ref)
		switch {
		case !ok:
			v.problem(path, fmt.Sprintf("%q is not provider/model", ref))
		case c.Providers[prov] == nil:
			v.problem(path, fmt.Sprintf("%q names the unknown provider %q", ref, prov))
		}
		// Input and output are required where the file prices a model
		// (cached_input is optional): an omitted one would be 0, a price
		// never given passed off as free.
		if c.present[path] {
			for _, k := range []string{"input", "output"} {
				v.check(c.present[path+"."+k], path+"."+k,
					"is required (US dollars per million tokens; 0 for a free model): omitted, it would price every "+k+" token at 0")
			}
		}
		// !(x >= 0) also refuses .nan.
		v.check(p.Input >= 0, path+".input", "must not be negative (US dollars per million tokens)")
		v.check(p.Output >= 0, path+".output", "must not be negative (US dollars per million tokens)")
		v.check(p.CachedInput == nil || *p.CachedInput >= 0, path+".cached_input", "must not be negative (US dollars per million tokens)")
		// An infinite price makes an infinite cost_usd, which JSON cannot
		// carry: every priced response would fail to encode.
		v.check(!math.IsInf(p.Input, 1), path+".input", "must be finite (US dollars per million tokens)")
		v.check(!math.IsInf(p.Output, 1), path+".output", "must be finite (US dollars per million tokens)")
		v.check(p.CachedInput == nil || !math.IsInf(*p.CachedInput, 1), path+".cached_input", "must be finite (US dollars per million tokens)")
	}
}

// The strategies (shared/DESIGN.md, Strategies), and the values of rank's
// then and vote's tie_break.
const (
	strategySynthesize = "synthesize"
	strategyRank       = "rank"
	strategyVote       = "vote"
	strategyCascade    = "cascade"

	thenWinner     = "winner"
	thenSynthesize = "synthesize"

	tieBreakFirst = "first"
	tieBreakJudge = "judge"
)

var (
	strategies = []string{strategySynthesize, strategyRank, strategyVote, strategyCascade}
	thens      = []string{thenWinner, thenSynthesize}
	tieBreaks  = []string{tieBreakFirst, tieBreakJudge}
)

// refuseForeignKeys reports every key k holds that its strategy does not
// take (it would be ignored). The keys refused are left out of the checks
// of their values that follow.
func (c *Config) refuseForeignKeys(v *validator, path string, k *Consortium) {
	for _, sk := range strategyKeys {
		p := path + "." + sk.key
		if c.present[p] && !below(p, v.refused) && !sk.takes(c, k) {
			v.refuse(p, fmt.Sprintf("strategy %s does not use it: it is a key of %s", k.Strategy, sk.of))
		}
	}
}

// needs reports what k's strategy needs and k lacks.
func needs(v *validator, path string, k *Consortium) {
	members := len(k.Members) > 0
	switch k.Strategy {
	case strategySynthesize:
		v.check(members, path+".members", "a consortium needs at least one member")
		v.check(k.Arbiter.Model != "", path+".arbiter.model", "a consortium needs an arbiter model")
	case strategyRank:
		v.check(members, path+".members", "a consortium needs at least one member")
		v.check(len(k.Judges) > 0, path+".judges", "strategy rank needs at least one judge")
		v.check(k.Then != thenSynthesize || k.Arbiter.Model != "", path+".arbiter.model",
			"then: synthesize needs an arbiter model (it writes the answer from the ranking)")
	case strategyVote:
		v.check(members, path+".members", "a consortium needs at least one member")
		v.check(k.TieBreak != tieBreakJudge || len(k.Judges) > 0 || k.Arbiter.Model != "", path+".judges",
			"tie_break: judge needs judges (or an arbiter) to rank the tied answers")
	case strategyCascade:
		v.check(!members, path+".members", "a cascade has tiers, not members")
		v.check(len(k.Tiers) >= 2, path+".tiers", "strategy cascade needs two or more tiers")
	}
}

// strategyKeys are the consortium keys that not every strategy takes,
// each with what takes it. The shared keys (description, strategy) and
// members (which a cascade must not have: needs) are not here. A key
// below another comes after it, and is not reported again when that one
// is refused.
var strategyKeys = []struct {
	key   string
	takes func(c *Config, k *Consortium) bool
	of    string
}{
	{"arbiter", func(_ *Config, k *Consortium) bool {
		return k.Strategy == strategySynthesize || ranksThenWrites(k) ||
			k.Strategy == strategyVote && k.TieBreak == tieBreakJudge && len(k.Judges) == 0
	}, "synthesize, of rank with then: synthesize, and of vote with tie_break: judge and no judges"},
	// vote's arbiter ranks the tied answers with the judge prompt.
	{"arbiter.prompt", func(_ *Config, k *Consortium) bool {
		return k.Strategy == strategySynthesize || ranksThenWrites(k)
	}, "synthesize and of rank with then: synthesize (vote's arbiter ranks tied answers with judge_prompt)"},
	{"confidence_threshold", is(strategySynthesize), "synthesize"},
	{"min_iterations", is(strategySynthesize), "synthesize"},
	{"max_iterations", is(strategySynthesize), "synthesize"},
	{"judges", judged, "rank, and of vote with tie_break: judge"},
	{"judge_prompt", judged, "rank, and of vote with tie_break: judge"},
	{"within_model_first", is(strategyRank), "rank"},
	{"then", is(strategyRank), "rank"},
	{"extract", is(strategyVote), "vote"},
	{"tie_break", is(strategyVote), "vote"},
	{"tiers", is(strategyCascade), "cascade"},
	{"escalate_below", is(strategyCascade), "cascade"},
	{"system", func(c *Config, k *Consortium) bool {
		return k.Strategy != strategyCascade || slices.ContainsFunc(k.Tiers, c.modelTier)
	}, "the strategies with members, and of a cascade whose last tier is a provider/model (for that tier)"},
	{"quorum", answered, membersOf},
	{"member_timeout", answered, membersOf},
	{"min_answers", answered, membersOf},
	{"weights", answered, membersOf},
}

const membersOf = "the strategies with members (a cascade's tiers have their own)"

// is takes a key of one strategy.
func is(strategy string) func(*Config, *Consortium) bool {
	return func(_ *Config, k *Consortium) bool { return k.Strategy == strategy }
}

// ranksThenWrites is a rank consortium whose arbiter writes the answer.
func ranksThenWrites(k *Consortium) bool {
	return k.Strategy == strategyRank && k.Then == thenSynthesize
}

// judged takes the keys of judges: rank's, and vote's with tie_break: judge.
func judged(_ *Config, k *Consortium) bool {
	return k.Strategy == strategyRank || k.Strategy == strategyVote && k.TieBreak == tieBreakJudge
}

// answered takes the keys of a consortium's own members.
func answered(_ *Config, k *Consortium) bool { return k.Strategy != strategyCascade }

// modelTier reports whether a cascade's tier is a provider/model, not a
// consortium.
func (c *Config) modelTier(tier string) bool {
	_, consortium := c.Consortia[tier]
	return !consortium
}

// checkPrompt checks a custom prompt template with check, when both are
// set.
func checkPrompt(v *validator, path, kind, text string, check func(string) error) {
	if text == "" || check == nil {
		return
	}
	if err := check(text); err != nil {
		v.problem(path, fmt.Sprintf("is not a valid %s prompt: %v", kind, err))
	}
}

// checkTiers checks a cascade's tiers one by one: each is a consortium, or
// a provider/model ref of a configured provider, which has no confidence
// and so may only be the last. Cycles are checkCycles'.
func (c *Config) checkTiers(v *validator, path string, tiers []string) {
	for i, t := range tiers {
		p := fmt.Sprintf("%s.tiers[%d]", path, i)
		if j := slices.Index(tiers[:i], t); j >= 0 {
			v.problem(p, fmt.Sprintf("%q is already tiers[%d]", t, j))
			continue
		}
		if _, ok := c.Consortia[t]; ok {
			continue
		}
		prov, _, ok := SplitRef(t)
		switch {
		case !ok:
			v.problem(p, fmt.Sprintf("%q is neither a consortium nor a provider/model ref", t))
		case c.Providers[prov] == nil:
			v.problem(p, fmt.Sprintf("%q is no consortium, and names the unknown provider %q", t, prov))
		case i < len(tiers)-1:
			v.problem(p, fmt.Sprintf("%q is a plain model, which has no confidence: it may only be the last tier", t))
		}
	}
}

// checkCycles reports every cascade that reaches itself through its tiers,
// with the cycle. Each cycle is reported once, at the tier that begins it
// in the cascade the file names first.
func (c *Config) checkCycles(v *validator) {
	order := map[string]int{}
	for i, name := range c.ConsortiumOrder {
		order[name] = i
	}
	tiers := func(name string) []string {
		if k := c.Consortia[name]; k != nil && k.Strategy == strategyCascade {
			return k.Tiers
		}
		return nil
	}
	for _, start := range c.ConsortiumOrder {
		seen := map[string]bool{}
		// back finds a way from name to start through cascades the file
		// names after start, so that the cycle is found from its first.
		var back func(name string) []string
		back = func(name string) []string {
			if name == start {
				return []string{start}
			}
			if seen[name] || order[name] < order[start] {
				return nil
			}
			seen[name] = true
			for _, t := range tiers(name) {
				if way := back(t); way != nil {
					return append([]string{name}, way...)
				}
			}
			return nil
		}
		ts := tiers(start)
		for i, t := range ts {
			if slices.Index(ts[:i], t) >= 0 {
				continue // reported as a repeat
			}
			if way := back(t); way != nil {
				v.problem(fmt.Sprintf("consortia.%s.tiers[%d]", start, i),
					fmt.Sprintf("%q makes a cycle: %s", t, strings.Join(append([]string{start}, way...), " -> ")))
			}
		}
	}
}

// LogFormats are the values of log.format and --log-format.
var LogFormats = []string{"text", "json"}

// LogLevel returns the slog level of a log.level or --log-level value:
// debug, info, warn or error.
func LogLevel(name string) (slog.Level, bool) {
	l, ok := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[name]
	return l, ok
}

// structuralParams are request fields the engine sets itself: params may
// not override them.
var structuralParams = []string{"model", "messages", "stream", "stream_options", "n", "tools", "tool_choice"}

// checkParams refuses params that would override what the engine sends.
func checkParams(v *validator, path string, params map[string]any) {
	for _, k := range structuralParams {
		if _, ok := params[k]; ok {
			v.problem(path+"."+k, "is set by the consortium engine and cannot be a param")
		}
	}
}

// checkRef checks a provider/model ref against the configured providers.
func (c *Config) checkRef(v *validator, path, ref string) {
	prov, _, ok := SplitRef(ref)
	if !ok {
		v.problem(path, fmt.Sprintf("%q is not provider/model", ref))
		return
	}
	if _, known := c.Providers[prov]; !known {
		v.problem(path, fmt.Sprintf("%q names the unknown provider %q", ref, prov))
	}
}

// unbuilt lists configuration keys whose behaviour is not built yet. Such a
// key is refused with a message that says so ("... is not supported yet"),
// never accepted and ignored. An entry joins this list with the key it
// refuses, and leaves it in the change that builds its behaviour.
var unbuilt = []unbuiltKey{}

// unbuiltKey is a key of behaviour not built yet.
type unbuiltKey struct {
	key  string // a path with * for any provider or consortium name
	set  func(c *Config, name string) bool
	what string
	// implied refuses the key when set says so even if the file left it
	// out, because a default took its place (as a provider named after a
	// well-known one gets that one's type).
	implied bool
}

// refuseUnbuilt reports every key of behaviour not built yet.
func (c *Config) refuseUnbuilt(v *validator) {
	for _, u := range unbuilt {
		prefix, rest, wild := strings.Cut(u.key, "*")
		if !wild {
			if c.present[u.key] && (u.set == nil || u.set(c, "")) {
				v.problem(u.key, u.what)
			}
			continue
		}
		names := c.ProviderOrder
		if prefix == "consortia." {
			names = c.ConsortiumOrder
		}
		for _, name := range names {
			p := prefix + name + rest
			if (c.present[p] || u.implied) && (u.set == nil || u.set(c, name)) {
				v.problem(p, u.what)
			}
		}
	}
}

// validator collects problems.
type validator struct {
	problems Problems
	// refused are the paths of keys refused as a whole: nothing more is
	// said of them or of what lies below them.
	refused map[string]bool
}

func (v *validator) problem(path, msg string) {
	if !below(path, v.refused) {
		v.problems = append(v.problems, path+": "+msg)
	}
}

// refuse reports a key that may not be there at all.
func (v *validator) refuse(path, msg string) {
	v.problem(path, msg)
	if v.refused == nil {
		v.refused = map[string]bool{}
	}
	v.refused[path] = true
}

func (v *validator) check(ok bool, path, msg string) {
	if !ok {
		v.problem(path, msg)
	}
}
