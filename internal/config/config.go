// Package config owns consortium's configuration: the YAML schema, its
// defaults, ${VAR} expansion, providers taken from the environment, the
// built-in demo provider type, and Validate, which reports every problem
// with its key path. It builds nothing: the proxy, engine and providers are
// made from a validated Config by their own constructors (internal/app),
// and it imports nothing of the project, so a check that needs another
// package (the fields of an arbiter or judge prompt) is passed in as an
// Option.
package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	Listen          string                 `yaml:"listen"`
	MaxBody         ByteSize               `yaml:"max_body"`
	ShutdownTimeout time.Duration          `yaml:"shutdown_timeout"`
	Auth            Auth                   `yaml:"auth"`
	Store           Store                  `yaml:"store"`
	Passthrough     bool                   `yaml:"passthrough"`
	Log             Log                    `yaml:"log"`
	Providers       map[string]*Provider   `yaml:"providers"`
	Consortia       map[string]*Consortium `yaml:"consortia"`

	// Pricing is what each model costs, by provider/model ref: the cost_usd
	// of consortium responses, run records and estimates. A model it does
	// not list costs an unknown amount, never 0.
	Pricing map[string]Price `yaml:"pricing"`

	// ProviderOrder and ConsortiumOrder list the names in the order the file
	// gives them (environment providers after the file's), which is the
	// order /v1/models lists them in.
	ProviderOrder   []string `yaml:"-"`
	ConsortiumOrder []string `yaml:"-"`

	// Source says where the configuration came from: a file path, or
	// "built-in defaults".
	Source string `yaml:"-"`

	// Demo is set when a provider of type demo is configured (by the file,
	// or by --demo through WithDemo): the binary serves it in process and
	// labels it in /v1/models and the log.
	Demo bool `yaml:"-"`

	// Warnings are things a user should know that do not stop the proxy,
	// each with its key path: no providers at all, a provider whose key is
	// empty, the example's client keys left in place. serve logs them;
	// validate reports them and fails.
	Warnings []string `yaml:"-"`

	// present records which optional keys the file set, by path, so that
	// keys of behaviour not built yet can be refused rather than ignored.
	present map[string]bool

	// checkPrompt checks an arbiter prompt (WithPromptCheck), and
	// checkJudgePrompt a judge prompt (WithJudgePromptCheck); nil checks
	// nothing.
	checkPrompt      func(string) error
	checkJudgePrompt func(string) error

	// unset records the keys whose value was only ${VAR} references that
	// expanded to nothing, with the variables' names, for the warnings.
	unset map[string][]string
}

// Log is the log section: what the proxy logs and how. The flags
// --log-level and --log-format win over it.
type Log struct {
	// Level is debug, info, warn or error. If empty, info.
	Level string `yaml:"level"`
	// Format is text (logfmt-style lines) or json. If empty, text.
	Format string `yaml:"format"`
}

// Price is what a model costs, in US dollars per million tokens.
// CachedInput, when set, prices the prompt tokens a provider reports as
// read from its cache; when nil they cost Input.
type Price struct {
	Input       float64  `yaml:"input"`
	Output      float64  `yaml:"output"`
	CachedInput *float64 `yaml:"cached_input"`
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
	// Type is openai, anthropic or demo (TypeDemo). ServeDemo turns a demo
	// provider into the openai provider it is at run time.
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
	// MaxResponse bounds an answer: a JSON body, or the sum of a stream's
	// data. Past it the call fails as malformed.
	MaxResponse ByteSize `yaml:"max_response"`

	// Demo says that this is the built-in demo provider (type demo),
	// served in process with canned answers; it stays set after ServeDemo.
	Demo bool `yaml:"-"`

	// Origin says where the provider came from: "config file", or the
	// environment variable that made it.
	Origin string `yaml:"-"`
}

// Breaker is a provider's circuit breaker settings, applied per model.
type Breaker struct {
	Failures int           `yaml:"failures"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// Consortium is one virtual model. Its strategy says which keys it takes
// (shared/DESIGN.md, Strategies): synthesize the arbiter and the
// iteration keys, rank the judges, vote extract and tie_break, cascade
// only tiers and escalate_below; Validate refuses a key of another
// strategy.
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

	// Judges rank the answers source-blind (rank; vote's tie_break:
	// judge), and JudgePrompt, when set, replaces their default prompt.
	Judges      []Judge `yaml:"judges"`
	JudgePrompt string  `yaml:"judge_prompt"`
	// WithinModelFirst and Then are rank's: each model's own samples
	// ranked first, and winner or synthesize.
	WithinModelFirst bool   `yaml:"within_model_first"`
	Then             string `yaml:"then"`
	// Extract and TieBreak are vote's: the regexp whose first group is
	// compared, and first or judge.
	Extract  string `yaml:"extract"`
	TieBreak string `yaml:"tie_break"`
	// Tiers and EscalateBelow are cascade's: consortium names or
	// provider/model refs, cheapest first, and the confidence under which
	// a tier escalates.
	Tiers         []string `yaml:"tiers"`
	EscalateBelow float64  `yaml:"escalate_below"`

	// Weights is fixed (the members' configured weights) or adaptive
	// (shared/DESIGN.md, Scores): each member's configured weight times
	// a factor of its model's rating once it has 20 comparisons, clamped
	// to 0.5–2×.
	Weights string `yaml:"weights"`
}

// Judge is one judge of a rank consortium, or of a vote consortium's
// tie_break: judge.
type Judge struct {
	Model  string         `yaml:"model"`
	Weight float64        `yaml:"weight"`
	Params map[string]any `yaml:"params"`
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

// UnmarshalYAML parses a size. Its errors are yaml.TypeErrors, so the
// decoder goes on and reports every problem of the file at once; they
// carry the line and column, which Parse turns into the key path.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: cannot unmarshal %s into config.ByteSize", n.Line, n.Column, n.ShortTag())}}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %v", n.Line, n.Column, err)}}
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
		Log:         Log{Level: "info", Format: "text"},
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
		MaxResponse: 32 << 20,
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
		Then:                thenWinner,
		TieBreak:            tieBreakFirst,
		EscalateBelow:       0.8,
		Weights:             WeightsFixed,
	}
}

// memberDefaults returns a member with every omitted key's default.
func memberDefaults() Member {
	return Member{Count: 1, Weight: 1.0}
}

// judgeDefaults returns a judge with every omitted key's default.
func judgeDefaults() Judge {
	return Judge{Weight: 1.0}
}
