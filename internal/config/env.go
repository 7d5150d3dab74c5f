package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// envProvider is a provider that an environment variable can create.
type envProvider struct {
	name, variable, typ, baseURL string
	keyed                        bool // the variable is the API key; else it is the host
}

// envProviders are the well-known providers, in the order they are listed.
var envProviders = []envProvider{
	{name: "openai", variable: "OPENAI_API_KEY", typ: "openai", baseURL: "https://api.openai.com/v1", keyed: true},
	{name: "anthropic", variable: "ANTHROPIC_API_KEY", typ: "anthropic", baseURL: "https://api.anthropic.com", keyed: true},
	{name: "openrouter", variable: "OPENROUTER_API_KEY", typ: "openai", baseURL: "https://openrouter.ai/api/v1", keyed: true},
	{name: "gemini", variable: "GEMINI_API_KEY", typ: "openai", baseURL: "https://generativelanguage.googleapis.com/v1beta/openai", keyed: true},
	{name: "ollama", variable: "OLLAMA_HOST", typ: "openai", baseURL: "http://127.0.0.1:11434/v1"},
}

// addEnvProviders merges the providers the environment names under the
// file's. A provider the file names wins, but keys it leaves out (api_key,
// base_url) are filled from its variable, so `providers: {openai: {models:
// [gpt-4o-mini]}}` works with OPENAI_API_KEY set.
func addEnvProviders(cfg *Config, env Lookup) {
	for _, e := range envProviders {
		value, ok := env(e.variable)
		value = strings.TrimSpace(value)
		if p := cfg.Providers[e.name]; p != nil {
			if p.Demo {
				continue // the demo needs neither a key nor a URL
			}
			if !cfg.present["providers."+e.name+".base_url"] {
				p.BaseURL = e.baseURL
				if !e.keyed && ok && value != "" {
					p.BaseURL = ollamaURL(value)
				}
			}
			if e.keyed && ok && value != "" && !cfg.present["providers."+e.name+".api_key"] {
				p.APIKey = value
				p.Origin = "config file, api_key from " + e.variable
			}
			if !cfg.present["providers."+e.name+".type"] {
				p.Type = e.typ
			}
			continue
		}
		if !ok || value == "" {
			continue
		}
		p := providerDefaults()
		p.Type = e.typ
		p.BaseURL = e.baseURL
		p.Origin = e.variable
		if e.keyed {
			p.APIKey = value
		} else {
			p.BaseURL = ollamaURL(value)
		}
		cfg.Providers[e.name] = &p
		cfg.ProviderOrder = append(cfg.ProviderOrder, e.name)
	}
	for _, p := range cfg.Providers {
		if p.Type == "anthropic" && p.BaseURL == "" {
			p.BaseURL = "https://api.anthropic.com"
		}
	}
}

// ollamaURL turns OLLAMA_HOST (host, host:port or a URL) into the base URL
// of Ollama's OpenAI-compatible API.
func ollamaURL(host string) string {
	if !strings.Contains(host, "://") {
		// Without a scheme, Ollama's own client takes a missing port to be
		// 11434, as in the common OLLAMA_HOST=0.0.0.0.
		hostport, path, _ := strings.Cut(host, "/")
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), "11434")
		}
		host = "http://" + hostport
		if path != "" {
			host += "/" + path
		}
	}
	host = strings.TrimRight(host, "/")
	if !strings.HasSuffix(host, "/v1") {
		host += "/v1"
	}
	return host
}

// TypeDemo is the provider type of the built-in demo: an OpenAI-compatible
// server that the binary starts in process, with canned answers at a real
// model's pace, so that a consortium can be designed and tried with no
// keys and no network. It needs no base_url or api_key.
const TypeDemo = "demo"

// DemoProvider and DemoConsortium are the names of what --demo adds:
// the provider, and the synthesize consortium. DemoRank, DemoVote and
// DemoCascade are its other consortiums, one per strategy.
const (
	DemoProvider   = "demo"
	DemoConsortium = "demo"
	DemoRank       = "demo-rank"
	DemoVote       = "demo-vote"
	DemoCascade    = "demo-cascade"
)

// DemoArbiter is the demo model that answers in the arbiter's tags; it
// must be the name upstream/upstreamtest's demo responder gives it.
const DemoArbiter = "arbiter"

// DemoMembers are the demo models that answer as members or plain models
// (any name is answered; these are the ones listed).
var DemoMembers = []string{"alpha", "beta", "gamma"}

// DemoJudges are the demo models that judge demo-rank's answers, each
// with a taste of its own; they must be upstream/upstreamtest's
// DemoJudges. (Any demo model answers a judge prompt as a judge.)
var DemoJudges = []string{"judge-1", "judge-2"}

// DemoModels are the models a demo provider lists: the members, the
// arbiter and the judges.
func DemoModels() []string {
	return slices.Concat(DemoMembers, []string{DemoArbiter}, DemoJudges)
}

// demoAnswerLine is demo-vote's system prompt, which asks for the last
// line its extract reads; the demo members answer it with their result on
// an arithmetic question, else a short verdict (upstream/upstreamtest's
// DemoAnswerPrefix starts it).
const (
	demoAnswerLine = `End your answer with a last line "Answer: " followed by your short answer.`
	demoExtract    = `(?m)^Answer:\s*(.+?)\s*$`
)

// demoDefaults fills what a demo provider leaves out: its models.
func (c *Config) demoDefaults(name string, p *Provider) {
	p.Demo = true
	c.Demo = true
	if !c.present["providers."+name+".models"] {
		p.Models = DemoModels()
	}
}

// addDemo adds what --demo adds: the provider "demo" (unless the file has
// a demo provider of that name) and a consortium over it per strategy:
//
//   - demo (synthesize): the demo members, and the demo arbiter with up
//     to two rounds, so that a run shows an iteration;
//   - demo-rank: the demo members ranked by the two demo judges, so that
//     a run shows the scores (and n > 1 has answers to choose from);
//   - demo-vote: the demo members, asked for a last "Answer:" line, which
//     the vote compares, so that a run shows the votes and the agreement;
//   - demo-cascade: demo-vote first, then demo when the members do not
//     all agree, so that a run shows its tiers.
//
// A file that took one of the names for something else gets a problem.
func (c *Config) addDemo() Problems {
	var problems Problems
	if p, ok := c.Providers[DemoProvider]; ok && !p.Demo {
		problems = append(problems, "providers.demo: the name demo is taken by --demo; rename this provider, make it type: demo, or run without --demo")
	} else if !ok {
		p := providerDefaults()
		p.Type = TypeDemo
		p.Origin = "--demo (built in, in process)"
		c.demoDefaults(DemoProvider, &p)
		c.Providers[DemoProvider] = &p
		c.ProviderOrder = append(c.ProviderOrder, DemoProvider)
	}
	ref := func(model string) string { return DemoProvider + "/" + model }
	members := func() []Member {
		var ms []Member
		for _, m := range DemoMembers {
			member := memberDefaults()
			member.Model = ref(m)
			ms = append(ms, member)
		}
		return ms
	}

	synthesize := consortiumDefaults()
	synthesize.Description = "demo: demo models answering, a demo arbiter synthesizing (canned text, no real model)"
	synthesize.MaxIterations = 2
	synthesize.Members = members()
	synthesize.Arbiter.Model = ref(DemoArbiter)

	rank := consortiumDefaults()
	rank.Description = "demo: demo models answering, two demo judges ranking them, the best answer returned (canned text, no real model)"
	rank.Strategy = strategyRank
	rank.Members = members()
	for _, j := range DemoJudges {
		judge := judgeDefaults()
		judge.Model = ref(j)
		rank.Judges = append(rank.Judges, judge)
	}

	vote := consortiumDefaults()
	vote.Description = "demo: demo models answering, the answer most of them give on their last line winning (canned text, no real model)"
	vote.Strategy = strategyVote
	vote.System = demoAnswerLine
	vote.Members = members()
	vote.Extract = demoExtract

	cascade := consortiumDefaults()
	cascade.Description = "demo: demo-vote first, demo when its members do not all agree (canned text, no real model)"
	cascade.Strategy = strategyCascade
	cascade.Tiers = []string{DemoVote, DemoConsortium}
	cascade.EscalateBelow = 0.9

	var added []string
	for _, k := range []struct {
		name string
		k    Consortium
	}{{DemoConsortium, synthesize}, {DemoRank, rank}, {DemoVote, vote}, {DemoCascade, cascade}} {
		if _, ok := c.Consortia[k.name]; ok {
			problems = append(problems, fmt.Sprintf("consortia.%s: the name %s is taken by --demo; rename this consortium or run without --demo", k.name, k.name))
			continue
		}
		c.Consortia[k.name] = &k.k
		added = append(added, k.name)
	}
	c.ConsortiumOrder = append(added, c.ConsortiumOrder...)
	c.priceDemo()
	return problems
}

// Demo prices, in US dollars per million tokens: made up, in the range of
// small and large hosted models, so that a demo run shows cost_usd as a
// priced deployment would. The file's own prices for a demo ref win.
var (
	demoMemberPrice = Price{Input: 0.15, Output: 0.60}
	demoLargePrice  = Price{Input: 2.50, Output: 10.00}
)

// priceDemo prices every demo model the file does not price: the members
// as small models, the arbiter and judges as large ones.
func (c *Config) priceDemo() {
	if c.Pricing == nil {
		c.Pricing = map[string]Price{}
	}
	for _, m := range DemoModels() {
		ref := DemoProvider + "/" + m
		if _, priced := c.Pricing[ref]; priced {
			continue
		}
		if slices.Contains(DemoMembers, m) {
			c.Pricing[ref] = demoMemberPrice
		} else {
			c.Pricing[ref] = demoLargePrice
		}
	}
}

// ServeDemo points every demo provider at the in-process demo server at
// baseURL. From then on each is what it is at run time, an
// OpenAI-compatible provider (Type openai), and its Demo field says that
// it is the demo. It returns the Validate of the result.
func (c *Config) ServeDemo(baseURL string) error {
	for _, p := range c.Providers {
		if p.Demo {
			p.Type, p.BaseURL, p.APIKey = "openai", baseURL, ""
		}
	}
	return c.Validate()
}

// warnings lists what a valid configuration holds that is likely a
// mistake: no provider at all, a provider without the key its API needs,
// and client keys left as config.example.yaml has them.
func (c *Config) warnings() []string {
	var out []string
	if len(c.Providers) == 0 {
		out = append(out, "providers: none configured, so no model can answer: set OPENAI_API_KEY (or another provider variable), add providers to the file, or run with --demo")
	}
	for _, name := range c.ProviderOrder {
		p := c.Providers[name]
		if p.APIKey != "" || p.Demo || !c.needsKey(name, p) {
			continue
		}
		path := "providers." + name + ".api_key"
		why := "is empty, so the provider will refuse every call"
		if vars := c.unset[path]; len(vars) > 0 {
			why = fmt.Sprintf("is empty (%s not set), so the provider will refuse every call", strings.Join(vars, ", "))
		} else if e := envProviderNamed(name); e != nil && e.keyed && !c.present[path] {
			why = fmt.Sprintf("is empty (%s not set), so the provider will refuse every call", e.variable)
		}
		out = append(out, path+": "+why)
	}
	for i, k := range c.Auth.Keys {
		if strings.HasPrefix(k.Key, exampleKeyPrefix) {
			out = append(out, fmt.Sprintf("auth.keys[%d].key: is the example's placeholder %q, which anyone who read config.example.yaml knows: set a secret of your own", i, k.Key))
		}
	}
	return out
}

// exampleKeyPrefix begins every client key config.example.yaml gives.
const exampleKeyPrefix = "change-me"

// needsKey reports whether a provider's API refuses calls without a key:
// an Anthropic provider, one at a hosted API the environment variables
// know, or one whose api_key was written as a ${VAR} (its author meant a
// key).
func (c *Config) needsKey(name string, p *Provider) bool {
	if p.Type == "anthropic" || len(c.unset["providers."+name+".api_key"]) > 0 {
		return true
	}
	for _, e := range envProviders {
		if e.keyed && strings.TrimRight(p.BaseURL, "/") == e.baseURL {
			return true
		}
	}
	return false
}

// envProviderNamed returns the well-known provider of that name, or nil.
// ProviderVariable returns the environment variable that configures the
// well-known provider name (OPENAI_API_KEY for openai, OLLAMA_HOST for
// ollama), or "" for a name the environment does not configure.
func ProviderVariable(name string) string {
	if e := envProviderNamed(name); e != nil {
		return e.variable
	}
	return ""
}

func envProviderNamed(name string) *envProvider {
	for i := range envProviders {
		if envProviders[i].name == name {
			return &envProviders[i]
		}
	}
	return nil
}
