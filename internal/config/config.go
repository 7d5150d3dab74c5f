// Package config owns consortium's configuration: the YAML schema, its
// defaults, ${VAR} expansion, providers taken from the environment, the
// built-in demo, and Validate, which reports every problem with its key
// path. It builds nothing: the proxy, engine and providers are made from a
// validated Config by their own constructors.
package config

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Listen          string                 `yaml:"listen"`
	MaxBody         ByteSize               `yaml:"max_body"`
	ShutdownTimeout time.Duration          `yaml:"shutdown_timeout"`
	Auth            Auth                   `yaml:"auth"`
	Store           Store                  `yaml:"store"`
	Passthrough     bool                   `yaml:"passthrough"`
	Providers       map[string]*Provider   `yaml:"providers"`
	Consortia       map[string]*Consortium `yaml:"consortia"`

	// ProviderOrder and ConsortiumOrder list the names in the order the file
	// gives them (environment providers after the file's), which is the
	// order /v1/models lists them in.
	ProviderOrder   []string `yaml:"-"`
	ConsortiumOrder []string `yaml:"-"`

	// Source says where the configuration came from: a file path, or
	// "built-in defaults".
	Source string `yaml:"-"`

	// Demo is set by --demo: a built-in provider named "demo" is served in
	// process and listed with this label.
	Demo bool `yaml:"-"`

	// Warnings are things a user should know that do not stop the proxy,
	// such as an environment variable that names a provider it cannot add.
	Warnings []string `yaml:"-"`

	// present records which optional keys the file set, by path, so that
	// keys of behaviour not built yet can be refused rather than ignored.
	present map[string]bool
}

// Auth is the auth section: client keys and the admin key.
type Auth struct {
	Keys      []Key  `yaml:"keys"`
	AdminKey  string `yaml:"admin_key"`
	AllowOpen bool   `yaml:"allow_open"`
}

// Key is one client key. Name is the tenant: conversations, runs and limits
// are kept per name.
type Key struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
	RPM  int    `yaml:"rpm"`
}

// Store is the store section: where conversation and run state lives.
type Store struct {
	Backend    string        `yaml:"backend"`
	URL        string        `yaml:"url"`
	Addrs      []string      `yaml:"addrs"`
	MasterName string        `yaml:"master_name"`
	TTL        time.Duration `yaml:"ttl"`
	MaxEntries int           `yaml:"max_entries"`
}

// Provider is one upstream provider.
type Provider struct {
	Type           string            `yaml:"type"`
	BaseURL        string            `yaml:"base_url"`
	APIKey         string            `yaml:"api_key"`
	Headers        map[string]string `yaml:"headers"`
	Timeout        time.Duration     `yaml:"timeout"`
	IdleTimeout    time.Duration     `yaml:"idle_timeout"`
	MaxRetries     int               `yaml:"max_retries"`
	RPM            int               `yaml:"rpm"`
	MaxConcurrency int               `yaml:"max_concurrency"`
	Breaker        Breaker           `yaml:"breaker"`
	Models         []string          `yaml:"models"`
	PromptCache    bool              `yaml:"prompt_cache"`

	// Origin says where the provider came from: "config file", or the
	// environment variable that made it.
	Origin string `yaml:"-"`
}

// Breaker is a provider's circuit breaker settings, applied per model.
type Breaker struct {
	Failures int           `yaml:"failures"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// Consortium is one virtual model.
type Consortium struct {
	Description         string        `yaml:"description"`
	Strategy            string        `yaml:"strategy"`
	System              string        `yaml:"system"`
	Members             []Member      `yaml:"members"`
	Arbiter             Arbiter       `yaml:"arbiter"`
	ConfidenceThreshold float64       `yaml:"confidence_threshold"`
	MinIterations       int           `yaml:"min_iterations"`
	MaxIterations       int           `yaml:"max_iterations"`
	Quorum              int           `yaml:"quorum"`
	MemberTimeout       time.Duration `yaml:"member_timeout"`
	MinAnswers          int           `yaml:"min_answers"`
}

// Member is one member model of a consortium.
type Member struct {
	Model     string         `yaml:"model"`
	Count     int            `yaml:"count"`
	Weight    float64        `yaml:"weight"`
	System    string         `yaml:"system"`
	Params    map[string]any `yaml:"params"`
	Fallbacks []string       `yaml:"fallbacks"`
}

// Arbiter is a consortium's arbiter model.
type Arbiter struct {
	Model  string         `yaml:"model"`
	Prompt string         `yaml:"prompt"`
	Params map[string]any `yaml:"params"`
}

// Instances is the number of member instances, counts included.
func (c *Consortium) Instances() int {
	n := 0
	for _, m := range c.Members {
		n += m.Count
	}
	return n
}

// SplitRef splits a model ref "provider/model" at its first slash.
func SplitRef(ref string) (provider, model string, ok bool) {
	provider, model, ok = strings.Cut(ref, "/")
	return provider, model, ok && provider != "" && model != ""
}

// ByteSize is a size in bytes, written in YAML as a number of bytes or with
// a unit: 512KiB, 10MiB, 1GB.
type ByteSize int64

// ParseByteSize parses "10MiB", "512KB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(t, &n); err != nil || n < 0 || fmt.Sprint(n) != t {
		return 0, fmt.Errorf("invalid size %q (want a number of bytes or e.g. 10MiB)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q (too large)", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalText parses a size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Defaults returns the configuration an empty file means.
func Defaults() *Config {
	return &Config{
		Listen:          "127.0.0.1:8080",
		MaxBody:         10 << 20,
		ShutdownTimeout: 30 * time.Second,
		Store: Store{
			Backend:    "memory",
			URL:        "redis://127.0.0.1:6379/0",
			TTL:        168 * time.Hour,
			MaxEntries: 10000,
		},
		Passthrough: true,
		Providers:   map[string]*Provider{},
		Consortia:   map[string]*Consortium{},
		Source:      "built-in defaults",
	}
}

// providerDefaults returns a provider with every omitted key's default.
func providerDefaults() Provider {
	return Provider{
		Type:        "openai",
		Timeout:     60 * time.Second,
		IdleTimeout: 60 * time.Second,
		MaxRetries:  2,
		Breaker:     Breaker{Failures: 5, Cooldown: 30 * time.Second},
		PromptCache: true,
	}
}

// consortiumDefaults returns a consortium with every omitted key's default.
func consortiumDefaults() Consortium {
	return Consortium{
		Strategy:            "synthesize",
		ConfidenceThreshold: 0.8,
		MinIterations:       1,
		MaxIterations:       3,
		MemberTimeout:       60 * time.Second,
		MinAnswers:          1,
	}
}

// memberDefaults returns a member with every omitted key's default.
func memberDefaults() Member {
	return Member{Count: 1, Weight: 1.0}
}
