package config

import (
	"net"
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

// DemoProvider is the name of the provider --demo adds.
const DemoProvider = "demo"

// AddDemo adds the built-in demo provider, served in process at baseURL
// with the given model names. It is an error for the file to name a
// provider "demo" too.
func (c *Config) AddDemo(baseURL string, models []string) error {
	if _, ok := c.Providers[DemoProvider]; ok {
		return Problems{"providers.demo: the name demo is taken by --demo; rename this provider or run without --demo"}
	}
	p := providerDefaults()
	p.BaseURL = baseURL
	p.Models = models
	p.Origin = "--demo (built in, in process)"
	c.Providers[DemoProvider] = &p
	c.ProviderOrder = append(c.ProviderOrder, DemoProvider)
	c.Demo = true
	return c.Validate()
}

// DemoConsortium is the name of the consortium --demo adds.
const DemoConsortium = "demo"

// AddDemoConsortium adds the demo consortium over the demo provider: the
// given demo models as members and arbiter as its arbiter, with up to two
// rounds so that a run shows an iteration. Call it after AddDemo. It is an
// error for the file to name a consortium "demo" too.
func (c *Config) AddDemoConsortium(members []string, arbiter string) error {
	if _, ok := c.Consortia[DemoConsortium]; ok {
		return Problems{"consortia.demo: the name demo is taken by --demo; rename this consortium or run without --demo"}
	}
	k := consortiumDefaults()
	k.Description = "demo: demo models answering, a demo arbiter synthesizing (canned text, no real model)"
	k.MaxIterations = 2
	for _, m := range members {
		member := memberDefaults()
		member.Model = DemoProvider + "/" + m
		k.Members = append(k.Members, member)
	}
	k.Arbiter.Model = DemoProvider + "/" + arbiter
	c.Consortia[DemoConsortium] = &k
	c.ConsortiumOrder = append([]string{DemoConsortium}, c.ConsortiumOrder...)
	return c.Validate()
}
