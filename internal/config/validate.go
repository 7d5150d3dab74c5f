package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
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
		v.check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", path+".base_url",
			fmt.Sprintf("%q is not an http:// or https:// URL", p.BaseURL))
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
	v.check(slices.Contains(strategies, k.Strategy), path+".strategy",
		fmt.Sprintf("%q is not a known strategy (%s)", k.Strategy, strings.Join(strategies, ", ")))
	// What the other strategies need is checked once they are built;
	// until then their keys are refused (unbuilt).
	synthesize := k.Strategy == "synthesize"
	v.check(len(k.Members) > 0 || !synthesize, path+".members", "a consortium needs at least one member")
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
	} else if synthesize {
		v.problem(path+".arbiter.model", "a consortium needs an arbiter model")
	}
	checkParams(v, path+".arbiter.params", k.Arbiter.Params)
	if k.Arbiter.Prompt != "" && c.checkPrompt != nil {
		if err := c.checkPrompt(k.Arbiter.Prompt); err != nil {
			v.problem(path+".arbiter.prompt", "is not a valid arbiter prompt: "+err.Error())
		}
	}
	v.check(k.ConfidenceThreshold >= 0 && k.ConfidenceThreshold <= 1, path+".confidence_threshold", "must be between 0 and 1")
	v.check(k.MinIterations >= 1, path+".min_iterations", "must be at least 1")
	v.check(k.MaxIterations >= 1, path+".max_iterations", "must be at least 1")
	v.check(k.MinIterations <= k.MaxIterations, path+".min_iterations",
		fmt.Sprintf("%d is more than max_iterations (%d)", k.MinIterations, k.MaxIterations))
	n := k.Instances()
	v.check(k.Quorum >= 0, path+".quorum", "must not be negative")
	v.check(k.MinAnswers >= 1, path+".min_answers", "must be at least 1")
	if n > 0 || synthesize { // a cascade has tiers, not members
		v.check(k.Quorum <= n, path+".quorum", fmt.Sprintf("%d is more than the %d member instances", k.Quorum, n))
		v.check(k.MinAnswers <= n, path+".min_answers", fmt.Sprintf("%d is more than the %d member instances", k.MinAnswers, n))
	}
	v.check(k.MemberTimeout > 0, path+".member_timeout", "must be more than 0")
}

// strategies are the values of a consortium's strategy (shared/DESIGN.md,
// Strategies); only synthesize is built.
var strategies = []string{"synthesize", "rank", "vote", "cascade"}

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
var unbuilt = []unbuiltKey{
	{key: "consortia.*.strategy", set: func(c *Config, name string) bool {
		s := c.Consortia[name].Strategy
		return s != "synthesize" && slices.Contains(strategies, s)
	},
		what: "strategies other than synthesize (rank, vote, cascade) are not supported yet"},
	{key: "consortia.*.judges", what: "judges (strategies rank and vote) are not supported yet"},
	{key: "consortia.*.judge_prompt", what: "judge_prompt (strategies rank and vote) is not supported yet"},
	{key: "consortia.*.within_model_first", what: "within_model_first (strategy rank) is not supported yet"},
	{key: "consortia.*.then", what: "then (strategy rank) is not supported yet"},
	{key: "consortia.*.extract", what: "extract (strategy vote) is not supported yet"},
	{key: "consortia.*.tie_break", what: "tie_break (strategy vote) is not supported yet"},
	{key: "consortia.*.tiers", what: "tiers (strategy cascade) are not supported yet"},
	{key: "consortia.*.escalate_below", what: "escalate_below (strategy cascade) is not supported yet"},
	{key: "consortia.*.weights", what: "weights: adaptive is not supported yet"},
	{key: "pricing", what: "pricing is not supported yet"},
}

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
type validator struct{ problems Problems }

func (v *validator) problem(path, msg string) {
	v.problems = append(v.problems, path+": "+msg)
}

func (v *validator) check(ok bool, path, msg string) {
	if !ok {
		v.problem(path, msg)
	}
}
