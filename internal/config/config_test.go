package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a Lookup over a map, so that no test reads the real environment.
func env(m map[string]string) Lookup {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// noEnv is an empty environment.
var noEnv = env(nil)

// mustParse parses a file that must be valid.
func mustParse(t *testing.T, yaml string, vars map[string]string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yaml), env(vars))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", yaml, err)
	}
	return cfg
}

// mustDecode decodes a file without validating it, for the decoding and
// defaults of files that Validate refuses (a consortium without members or
// arbiter, refs to providers the file does not name).
func mustDecode(t *testing.T, yaml string, vars map[string]string) *Config {
	t.Helper()
	cfg, problems, _ := decode([]byte(yaml), env(vars))
	if cfg == nil || len(problems) > 0 {
		t.Fatalf("decode:\n%s\nproblems: %v", yaml, problems)
	}
	return cfg
}

// problemsOf parses a file that must be invalid and returns its problems.
func problemsOf(t *testing.T, yaml string, vars map[string]string) Problems {
	t.Helper()
	cfg, err := Parse([]byte(yaml), env(vars))
	if err == nil {
		t.Fatalf("Parse:\n%s\nsucceeded, want problems", yaml)
	}
	if cfg != nil {
		t.Errorf("Parse returned a Config along with the error %v", err)
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error is %T (%v), want Problems", err, err)
	}
	return ps
}

// firstProblem checks that want is the first of the problems and is
// reported once. Problems of the file's shape and types come first, then
// what Validate finds in the rest of the file.
func firstProblem(t *testing.T, ps Problems, want string) {
	t.Helper()
	if len(ps) == 0 || ps[0] != want || slices.Index(ps[1:], want) >= 0 {
		t.Errorf("problems:\n  %s\nwant first, once: %s", strings.Join(ps, "\n  "), want)
	}
}

func TestDefaults(t *testing.T) {
	want := Defaults()
	for _, tc := range []struct{ name, yaml string }{
		{"no file", ""},
		{"only a comment", "# nothing here\n"},
		{"empty document", "---\n"},
		{"null document", "~\n"},
		{"every section null", "listen:\nmax_body:\nshutdown_timeout:\nauth:\nstore:\npassthrough:\nproviders:\nconsortia:\n"},
		{"empty sections", "auth: {}\nstore: {}\nproviders: {}\nconsortia: {}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.yaml, nil)
			if cfg.Listen != "127.0.0.1:8080" || cfg.MaxBody != 10<<20 || cfg.ShutdownTimeout != 30*time.Second {
				t.Errorf("listen, max_body, shutdown_timeout = %q, %d, %v", cfg.Listen, cfg.MaxBody, cfg.ShutdownTimeout)
			}
			if !cfg.Passthrough {
				t.Error("passthrough is false, want true")
			}
			if !reflect.DeepEqual(cfg.Auth, Auth{}) {
				t.Errorf("auth = %+v, want none", cfg.Auth)
			}
			if !reflect.DeepEqual(cfg.Store, want.Store) {
				t.Errorf("store = %+v, want %+v", cfg.Store, want.Store)
			}
			if len(cfg.Providers) != 0 || len(cfg.Consortia) != 0 || len(cfg.ProviderOrder) != 0 {
				t.Errorf("providers %v, consortia %v: want none", cfg.Providers, cfg.Consortia)
			}
			if cfg.Source != "built-in defaults" || cfg.Demo || len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0], "providers: none configured") {
				t.Errorf("source %q, demo %v, warnings %q", cfg.Source, cfg.Demo, cfg.Warnings)
			}
		})
	}

	t.Run("store defaults", func(t *testing.T) {
		s := Defaults().Store
		want := Store{Backend: "memory", URL: "redis://127.0.0.1:6379/0", TTL: 168 * time.Hour, MaxEntries: 10000}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("store = %+v, want %+v", s, want)
		}
	})

	t.Run("omitted keys keep their defaults", func(t *testing.T) {
		cfg := mustParse(t, "listen: 0.0.0.0:9000\nstore:\n  ttl: 1h\n", nil)
		if cfg.Listen != "0.0.0.0:9000" || cfg.Store.TTL != time.Hour {
			t.Errorf("listen %q, ttl %v", cfg.Listen, cfg.Store.TTL)
		}
		if cfg.MaxBody != 10<<20 || cfg.Store.Backend != "memory" || cfg.Store.MaxEntries != 10000 || !cfg.Passthrough {
			t.Errorf("an omitted key lost its default: %+v", cfg)
		}
	})

	t.Run("explicit values", func(t *testing.T) {
		cfg := mustParse(t, "passthrough: false\nmax_body: 512KiB\nshutdown_timeout: 0s\nauth:\n  admin_key: adm\n  allow_open: true\n", nil)
		if cfg.Passthrough || cfg.MaxBody != 512<<10 || cfg.ShutdownTimeout != 0 || cfg.Auth.AdminKey != "adm" || !cfg.Auth.AllowOpen {
			t.Errorf("got %+v", cfg)
		}
	})

	t.Run("provider", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  local:\n    base_url: http://127.0.0.1:8000/v1\n", nil)
		p := cfg.Providers["local"]
		want := Provider{
			Type:        "openai",
			BaseURL:     "http://127.0.0.1:8000/v1",
			Timeout:     60 * time.Second,
			IdleTimeout: 60 * time.Second,
			MaxRetries:  2,
			Breaker:     Breaker{Failures: 5, Cooldown: 30 * time.Second},
			PromptCache: true,
			MaxResponse: 32 << 20,
			Origin:      "config file",
		}
		if p == nil || !reflect.DeepEqual(*p, want) {
			t.Errorf("provider = %+v\nwant       %+v", p, want)
		}
	})

	t.Run("provider keys set to null", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  local:\n    base_url: http://h/v1\n    timeout:\n    idle_timeout: ~\n    max_retries: null\n    models:\n", nil)
		p := cfg.Providers["local"]
		if p.Timeout != time.Minute || p.IdleTimeout != time.Minute || p.MaxRetries != 2 {
			t.Errorf("null did not mean the default: %+v", p)
		}
	})

	t.Run("consortium and member", func(t *testing.T) {
		cfg := mustDecode(t, `
consortia:
  council:
    members:
      - model: openai/a
      - model: openai/b
        count: 3
        weight: 0.5
        params: {temperature: 0.2}
        fallbacks: [openai/c]
    arbiter:
      model: openai/j
`, nil)
		c := cfg.Consortia["council"]
		if c == nil {
			t.Fatal("no consortium council")
		}
		if c.Strategy != "synthesize" || c.ConfidenceThreshold != 0.8 || c.MinIterations != 1 || c.MaxIterations != 3 ||
			c.Quorum != 0 || c.MemberTimeout != 60*time.Second || c.MinAnswers != 1 || c.System != "" || c.Description != "" {
			t.Errorf("consortium defaults: %+v", c)
		}
		if got, want := c.Members[0], (Member{Model: "openai/a", Count: 1, Weight: 1}); !reflect.DeepEqual(got, want) {
			t.Errorf("member[0] = %+v, want %+v", got, want)
		}
		want := Member{Model: "openai/b", Count: 3, Weight: 0.5, Params: map[string]any{"temperature": 0.2}, Fallbacks: []string{"openai/c"}}
		if got := c.Members[1]; !reflect.DeepEqual(got, want) {
			t.Errorf("member[1] = %+v, want %+v", got, want)
		}
		if c.Instances() != 4 {
			t.Errorf("Instances() = %d, want 4", c.Instances())
		}
		if c.Arbiter.Model != "openai/j" || c.Arbiter.Prompt != "" || c.Arbiter.Params != nil {
			t.Errorf("arbiter = %+v", c.Arbiter)
		}
	})

	t.Run("a provider or consortium given as null has every default", func(t *testing.T) {
		cfg := mustDecode(t, "providers:\n  local:\nconsortia:\n  c:\n", nil)
		p := cfg.Providers["local"]
		if p == nil || p.Type != "openai" || p.Timeout != time.Minute || p.Breaker.Failures != 5 {
			t.Errorf("provider local = %+v", p)
		}
		c := cfg.Consortia["c"]
		if c == nil || c.Strategy != "synthesize" || c.MaxIterations != 3 {
			t.Errorf("consortium c = %+v", c)
		}
		if !slices.Equal(cfg.ProviderOrder, []string{"local"}) || !slices.Equal(cfg.ConsortiumOrder, []string{"c"}) {
			t.Errorf("orders %v %v", cfg.ProviderOrder, cfg.ConsortiumOrder)
		}
	})
}

func TestOrder(t *testing.T) {
	t.Run("providers in file order, then the environment's", func(t *testing.T) {
		cfg := mustParse(t, `
providers:
  zeta: {base_url: "http://z/v1"}
  alpha: {base_url: "http://a/v1"}
  openai: {api_key: sk-file}
  mid: {base_url: "http://m/v1"}
`, map[string]string{"OLLAMA_HOST": "h:1", "GEMINI_API_KEY": "g", "OPENROUTER_API_KEY": "r", "OPENAI_API_KEY": "o"})
		want := []string{"zeta", "alpha", "openai", "mid", "openrouter", "gemini", "ollama"}
		if !slices.Equal(cfg.ProviderOrder, want) {
			t.Errorf("ProviderOrder = %v, want %v", cfg.ProviderOrder, want)
		}
		if len(cfg.Providers) != len(want) {
			t.Errorf("%d providers, want %d", len(cfg.Providers), len(want))
		}
	})
	t.Run("consortia in file order", func(t *testing.T) {
		cfg := mustDecode(t, "consortia:\n  b: {}\n  c: {}\n  a: {}\n", nil)
		if want := []string{"b", "c", "a"}; !slices.Equal(cfg.ConsortiumOrder, want) {
			t.Errorf("ConsortiumOrder = %v, want %v", cfg.ConsortiumOrder, want)
		}
	})
}

func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"top level", "listn: 127.0.0.1:1\n", `listn: unknown key (did you mean "listen"?)`},
		{"top level, nothing close", "frobnicate: 1\n", `frobnicate: unknown key`},
		{"auth", "auth:\n  admin_ky: x\n", `auth.admin_ky: unknown key (did you mean "admin_key"?)`},
		{"auth key in a list", "auth:\n  keys:\n    - {name: a, key: k}\n    - {nmae: b, key: l}\n", `auth.keys[1].nmae: unknown key (did you mean "name"?)`},
		{"store", "store:\n  backnd: memory\n", `store.backnd: unknown key (did you mean "backend"?)`},
		{"provider", "providers:\n  openai:\n    timout: 5s\n", `providers.openai.timout: unknown key (did you mean "timeout"?)`},
		{"the closest key is suggested", "providers:\n  openai:\n    tpe: openai\n", `providers.openai.tpe: unknown key (did you mean "type"?)`},
		{"provider breaker", "providers:\n  openai:\n    breaker:\n      failure: 3\n", `providers.openai.breaker.failure: unknown key (did you mean "failures"?)`},
		{"consortium", "consortia:\n  c:\n    quorom: 1\n", `consortia.c.quorom: unknown key (did you mean "quorum"?)`},
		{"member", "consortia:\n  c:\n    members:\n      - model: openai/a\n      - modle: openai/b\n", `consortia.c.members[1].modle: unknown key (did you mean "model"?)`},
		{"arbiter", "consortia:\n  c:\n    arbiter:\n      promt: x\n", `consortia.c.arbiter.promt: unknown key (did you mean "prompt"?)`},
		{"a go field name is not a key", "providers:\n  openai:\n    Origin: x\n", `providers.openai.Origin: unknown key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			firstProblem(t, problemsOf(t, tc.yaml, nil), tc.want)
		})
	}

	t.Run("free-form maps take any key", func(t *testing.T) {
		cfg := mustDecode(t, `
providers:
  local:
    base_url: http://h/v1
    headers: {X-Anything: "1", x-other: two}
consortia:
  c:
    members:
      - {model: local/m, params: {reasoning_effort: high, anything: {nested: [1]}}}
    arbiter: {model: local/m, params: {whatever: true}}
`, nil)
		if got := cfg.Providers["local"].Headers; !reflect.DeepEqual(got, map[string]string{"X-Anything": "1", "x-other": "two"}) {
			t.Errorf("headers = %v", got)
		}
		if got := cfg.Consortia["c"].Members[0].Params["reasoning_effort"]; got != "high" {
			t.Errorf("params.reasoning_effort = %v", got)
		}
	})
}

func TestSeveralProblemsAtOnce(t *testing.T) {
	t.Run("unknown keys and shapes", func(t *testing.T) {
		ps := problemsOf(t, `
listn: x
auth:
  keys: {name: a}
providers:
  openai:
    timout: 5s
    models: gpt-4o
consortia:
  c:
    members:
      - modle: openai/a
`, nil)
		want := Problems{
			`listn: unknown key (did you mean "listen"?)`,
			`auth.keys: expected a list, got a mapping`,
			`providers.openai.timout: unknown key (did you mean "timeout"?)`,
			`providers.openai.models: expected a list, got "gpt-4o"`,
			`consortia.c.members[0].modle: unknown key (did you mean "model"?)`,
			// the rest of the file is validated too
			`consortia.c.members[0].model: "" is not provider/model`,
			`consortia.c.arbiter.model: a consortium needs an arbiter model`,
		}
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
	})
	t.Run("wrong types, each once", func(t *testing.T) {
		ps := problemsOf(t, `
shutdown_timeout: soon
providers:
  local:
    base_url: http://h/v1
    timeout: abc
    max_retries: many
consortia:
  c:
    members:
      - model: local/a
        count: two
`, nil)
		want := Problems{
			`shutdown_timeout: expected a duration such as 30s or 2m, got "soon"`,
			`providers.local.timeout: expected a duration such as 30s or 2m, got "abc"`,
			`providers.local.max_retries: expected an integer, got "many"`,
			`consortia.c.members[0].count: expected an integer, got "two"`,
			`consortia.c.arbiter.model: a consortium needs an arbiter model`,
		}
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
	})
	t.Run("unknown keys, wrong types and validation together", func(t *testing.T) {
		ps := problemsOf(t, `
listen: nowhere
max_body: lots
providers:
  local:
    base_url: ftp://x
    timout: 5s
    idle_timeout: soon
`, nil)
		want := Problems{
			`max_body: invalid size "lots" (want a number of bytes or e.g. 10MiB)`,
			`providers.local.timout: unknown key (did you mean "timeout"?)`,
			`providers.local.idle_timeout: expected a duration such as 30s or 2m, got "soon"`,
			`listen: "nowhere" is not host:port`,
			`providers.local.base_url: "ftp://x" is not an http:// or https:// URL`,
		}
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
	})
	t.Run("a bad key is left out, so it adds no problem of its own", func(t *testing.T) {
		ps := problemsOf(t, "auth:\n  keys:\n    - {name: a, key: k}\n    - oops\n", nil)
		if want := (Problems{`auth.keys[1]: expected a mapping, got "oops"`}); !slices.Equal(ps, want) {
			t.Errorf("problems = %q, want %q", ps, want)
		}
	})
	t.Run("validation problems", func(t *testing.T) {
		ps := problemsOf(t, `
listen: nowhere
max_body: 0
store: {backend: disk, ttl: 0s}
providers:
  local: {timeout: 0s}
`, nil)
		want := Problems{
			`listen: "nowhere" is not host:port`,
			`max_body: must be more than 0`,
			`store.backend: "disk" is not memory or redis`,
			`store.ttl: must be more than 0`,
			`providers.local.base_url: is required for a provider that is not well known (openai, anthropic, openrouter, gemini, ollama)`,
			`providers.local.timeout: must be more than 0`,
		}
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
		if err := error(ps); !strings.HasPrefix(err.Error(), "6 problems:\n  listen: ") {
			t.Errorf("Error() = %q", err.Error())
		}
	})
}

func TestProblemsError(t *testing.T) {
	if got := (Problems{"a: b"}).Error(); got != "a: b" {
		t.Errorf("one problem: %q", got)
	}
	if got, want := (Problems{"a: b", "c: d"}).Error(), "2 problems:\n  a: b\n  c: d"; got != want {
		t.Errorf("two problems: %q, want %q", got, want)
	}
}

func TestWrongTypes(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"file is a list", "- a\n- b\n", `the file: expected a mapping, got a list`},
		{"file is a scalar", "hello\n", `the file: expected a mapping, got "hello"`},
		{"list for a scalar", "listen: [a, b]\n", `listen: expected a single value, got a list`},
		{"mapping for a scalar", "listen: {a: b}\n", `listen: expected a single value, got a mapping`},
		{"scalar for a section", "auth: yes\n", `auth: expected a mapping, got "yes"`},
		{"list for a map", "providers: [openai]\n", `providers: expected a mapping, got a list`},
		{"scalar for a list", "providers:\n  openai:\n    models: gpt-4o\n", `providers.openai.models: expected a list, got "gpt-4o"`},
		{"list for headers", "providers:\n  openai:\n    headers: [a]\n", `providers.openai.headers: expected a mapping, got a list`},
		{"scalar for a member", "consortia:\n  c:\n    members: [openai/a]\n", `consortia.c.members[0]: expected a mapping, got "openai/a"`},
		{"bool", "passthrough: maybe\n", `passthrough: expected true or false, got "maybe"`},
		{"duration", "providers:\n  openai:\n    timeout: abc\n", `providers.openai.timeout: expected a duration such as 30s or 2m, got "abc"`},
		{"duration without a unit", "providers:\n  openai:\n    idle_timeout: 60\n", `providers.openai.idle_timeout: expected a duration such as 30s or 2m, got "60"`},
		{"integer", "providers:\n  openai:\n    max_retries: many\n", `providers.openai.max_retries: expected an integer, got "many"`},
		{"integer as a float", "store:\n  max_entries: 1.5\n", `store.max_entries: expected an integer, got "1.5"`},
		{"member count as a float", "consortia:\n  c:\n    members:\n      - {model: openai/a, count: 2.5}\n", `consortia.c.members[0].count: expected an integer, got "2.5"`},
		{"float from the environment", "providers:\n  openai:\n    max_retries: ${R:-1.5}\n", `providers.openai.max_retries: expected an integer, got "1.5"`},
		{"quoted integer stays a string", "providers:\n  openai:\n    rpm: \"60\"\n", `providers.openai.rpm: expected an integer, got "60"`},
		{"number", "consortia:\n  c:\n    confidence_threshold: high\n", `consortia.c.confidence_threshold: expected a number, got "high"`},
		{"member integer", "consortia:\n  c:\n    members:\n      - {model: openai/a}\n      - model: openai/b\n        count: two\n", `consortia.c.members[1].count: expected an integer, got "two"`},
		{"size", "max_body: lots\n", `max_body: invalid size "lots" (want a number of bytes or e.g. 10MiB)`},
		{"negative size", "max_body: -1\n", `max_body: invalid size "-1" (want a number of bytes or e.g. 10MiB)`},
		{"size as a list", "max_body: [1]\n", `max_body: expected a single value, got a list`},
		{"duplicate key", "providers:\n  openai:\n    api_key: a\n  openai:\n    api_key: b\n", `mapping key "openai" already defined at line 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.yaml, nil)
			if len(ps) == 0 || !strings.HasSuffix(ps[0], tc.want) || slices.Index(ps[1:], ps[0]) >= 0 {
				t.Errorf("problems:\n  %s\nwant first, once, one ending in %q", strings.Join(ps, "\n  "), tc.want)
			}
		})
	}

	t.Run("yaml syntax", func(t *testing.T) {
		ps := problemsOf(t, "listen: [unclosed\n", nil)
		if len(ps) != 1 || !strings.HasPrefix(ps[0], "yaml: ") {
			t.Errorf("problems = %q", ps)
		}
	})
}

func TestExpand(t *testing.T) {
	t.Run("scalars", func(t *testing.T) {
		for _, tc := range []struct {
			name, value string
			vars        map[string]string
			want        string
		}{
			{"set", "${ADDR}", map[string]string{"ADDR": "0.0.0.0:1"}, "0.0.0.0:1"},
			{"default when unset", "${ADDR:-127.0.0.1:9999}", nil, "127.0.0.1:9999"},
			{"default when empty", "${ADDR:-127.0.0.1:9999}", map[string]string{"ADDR": ""}, "127.0.0.1:9999"},
			{"value over default", "${ADDR:-127.0.0.1:9999}", map[string]string{"ADDR": "[::1]:2"}, "[::1]:2"},
			{"inside text", "${HOST:-localhost}:${PORT}", map[string]string{"PORT": "7"}, "localhost:7"},
			{"quoted", `"${HOST}:${PORT:-8}"`, map[string]string{"HOST": "h"}, "h:8"},
			{"no braces, no expansion", "$HOST:1", map[string]string{"HOST": "h"}, "$HOST:1"},
			{"not a variable name", "${1X}:1", map[string]string{"1X": "h"}, "${1X}:1"},
			{"values are not expanded again", "${A}", map[string]string{"A": "${B}:1", "B": "no"}, "${B}:1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := mustParse(t, "listen: "+tc.value+"\n", tc.vars)
				if cfg.Listen != tc.want {
					t.Errorf("listen = %q, want %q", cfg.Listen, tc.want)
				}
			})
		}
	})

	t.Run("unset without a default", func(t *testing.T) {
		// A plain value that expands to nothing is empty, which means the
		// default; a quoted one is the empty string.
		cfg := mustParse(t, "listen: ${NOPE}\nmax_body: ${NOPE}\nproviders:\n  local:\n    base_url: http://h/v1\n    timeout: ${NOPE}\n", nil)
		if cfg.Listen != "127.0.0.1:8080" || cfg.MaxBody != 10<<20 || cfg.Providers["local"].Timeout != time.Minute {
			t.Errorf("listen %q, max_body %d, timeout %v", cfg.Listen, cfg.MaxBody, cfg.Providers["local"].Timeout)
		}
		ps := problemsOf(t, "listen: \"${NOPE}\"\nauth:\n  keys:\n    - name: alice\n      key: ${ALICE_KEY}\n", nil)
		want := Problems{"listen: must be an address such as 127.0.0.1:8080", "auth.keys[0].key: is empty (an unset ${VAR}?)"}
		if !slices.Equal(ps, want) {
			t.Errorf("problems = %q, want %q", ps, want)
		}
	})

	t.Run("typed values", func(t *testing.T) {
		cfg := mustParse(t, `
max_body: ${MAX_BODY:-1MiB}
shutdown_timeout: ${GRACE:-5s}
passthrough: ${PASSTHROUGH:-false}
store:
  max_entries: ${ENTRIES}
providers:
  local:
    base_url: http://${HOST:-localhost}:${PORT:-8000}/v1
    timeout: ${TIMEOUT}
    max_retries: ${RETRIES:-0}
`, map[string]string{"ENTRIES": "42", "TIMEOUT": "2m"})
		if cfg.MaxBody != 1<<20 || cfg.ShutdownTimeout != 5*time.Second || cfg.Passthrough || cfg.Store.MaxEntries != 42 {
			t.Errorf("max_body %d, shutdown_timeout %v, passthrough %v, max_entries %d", cfg.MaxBody, cfg.ShutdownTimeout, cfg.Passthrough, cfg.Store.MaxEntries)
		}
		p := cfg.Providers["local"]
		if p.BaseURL != "http://localhost:8000/v1" || p.Timeout != 2*time.Minute || p.MaxRetries != 0 {
			t.Errorf("provider = %+v", p)
		}
	})

	t.Run("a plain number from the environment", func(t *testing.T) {
		cfg := mustParse(t, "max_body: ${X:-1MiB}\n", map[string]string{"X": "2048"})
		if cfg.MaxBody != 2048 {
			t.Errorf("max_body = %d, want 2048", cfg.MaxBody)
		}
	})

	t.Run("quoted values stay strings", func(t *testing.T) {
		cfg := mustDecode(t, `
providers:
  local:
    api_key: "${KEY}"
    headers: {X-Num: '${N}', X-Bool: "${B}"}
consortia:
  c:
    members:
      - model: local/m
        params:
          temperature: "${T:-0.5}"
          top_p: ${P:-0.9}
          seed: ${S:-7}
          stop: !!str ${S:-7}
          flag: ${F:-true}
`, map[string]string{"KEY": "12345", "N": "1", "B": "true"})
		p := cfg.Providers["local"]
		if p.APIKey != "12345" || p.Headers["X-Num"] != "1" || p.Headers["X-Bool"] != "true" {
			t.Errorf("provider = %+v", p)
		}
		got := cfg.Consortia["c"].Members[0].Params
		want := map[string]any{"temperature": "0.5", "top_p": 0.9, "seed": 7, "stop": "7", "flag": true}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("params = %#v\nwant     %#v", got, want)
		}
	})

	t.Run("a quoted value into a number is refused", func(t *testing.T) {
		ps := problemsOf(t, "providers:\n  openai:\n    max_retries: \"${R:-1}\"\n", nil)
		firstProblem(t, ps, `providers.openai.max_retries: expected an integer, got "1"`)
	})

	t.Run("a value never changes the structure", func(t *testing.T) {
		evil := "sk\nbase_url: http://evil.example/v1\nheaders: {Authorization: x}"
		cfg := mustParse(t, `
providers:
  local:
    base_url: http://good.example/v1
    api_key: ${KEY}
    headers:
      X-Team: ${TEAM}
    models:
      - ${MODEL}
`, map[string]string{"KEY": evil, "TEAM": "a: b", "MODEL": "x, y]: {z"})
		p := cfg.Providers["local"]
		if p.APIKey != evil || p.BaseURL != "http://good.example/v1" {
			t.Errorf("api_key %q, base_url %q", p.APIKey, p.BaseURL)
		}
		if !reflect.DeepEqual(p.Headers, map[string]string{"X-Team": "a: b"}) {
			t.Errorf("headers = %q", p.Headers)
		}
		if !slices.Equal(p.Models, []string{"x, y]: {z"}) {
			t.Errorf("models = %q", p.Models)
		}
	})

	t.Run("a value that looks like a mapping is still a scalar", func(t *testing.T) {
		for _, tc := range []struct{ yaml, want string }{
			{"auth: ${AUTH}\n", `auth: expected a mapping, got "${AUTH}"`},
			{"providers:\n  openai:\n    max_retries: ${R}\n", `providers.openai.max_retries: expected an integer, got "1\nrpm: 5"`},
			{"max_body: ${X:-1MiB}\n", `max_body: invalid size "1\nrpm: 5" (want a number of bytes or e.g. 10MiB)`},
		} {
			ps := problemsOf(t, tc.yaml, map[string]string{"AUTH": "{keys: []}", "R": "1\nrpm: 5", "X": "1\nrpm: 5"})
			firstProblem(t, ps, tc.want)
		}
	})
}

func TestEnvProviders(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vars     map[string]string
		provider string
		want     Provider
	}{
		{"openai", map[string]string{"OPENAI_API_KEY": "sk-o"}, "openai",
			Provider{Type: "openai", BaseURL: "https://api.openai.com/v1", APIKey: "sk-o", Origin: "OPENAI_API_KEY"}},
		{"openrouter", map[string]string{"OPENROUTER_API_KEY": "sk-r"}, "openrouter",
			Provider{Type: "openai", BaseURL: "https://openrouter.ai/api/v1", APIKey: "sk-r", Origin: "OPENROUTER_API_KEY"}},
		{"gemini", map[string]string{"GEMINI_API_KEY": "g"}, "gemini",
			Provider{Type: "openai", BaseURL: "https://generativelanguage.googleapis.com/v1beta/openai", APIKey: "g", Origin: "GEMINI_API_KEY"}},
		{"key trimmed", map[string]string{"OPENAI_API_KEY": " sk-o\n"}, "openai",
			Provider{Type: "openai", BaseURL: "https://api.openai.com/v1", APIKey: "sk-o", Origin: "OPENAI_API_KEY"}},
		{"ollama", map[string]string{"OLLAMA_HOST": "127.0.0.1:11434"}, "ollama",
			Provider{Type: "openai", BaseURL: "http://127.0.0.1:11434/v1", Origin: "OLLAMA_HOST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, "", tc.vars)
			p := cfg.Providers[tc.provider]
			if p == nil {
				t.Fatalf("no provider %s in %v", tc.provider, cfg.ProviderOrder)
			}
			want := providerDefaults()
			want.Type, want.BaseURL, want.APIKey, want.Origin = tc.want.Type, tc.want.BaseURL, tc.want.APIKey, tc.want.Origin
			if !reflect.DeepEqual(*p, want) {
				t.Errorf("provider = %+v\nwant       %+v", *p, want)
			}
			if !slices.Equal(cfg.ProviderOrder, []string{tc.provider}) {
				t.Errorf("ProviderOrder = %v", cfg.ProviderOrder)
			}
		})
	}

	t.Run("OLLAMA_HOST forms", func(t *testing.T) {
		for host, want := range map[string]string{
			"127.0.0.1:11434":              "http://127.0.0.1:11434/v1",
			"0.0.0.0":                      "http://0.0.0.0:11434/v1",
			"localhost":                    "http://localhost:11434/v1",
			"gpu.lan:8080":                 "http://gpu.lan:8080/v1",
			"[::1]:11434":                  "http://[::1]:11434/v1",
			"::1":                          "http://[::1]:11434/v1",
			"http://gpu.lan:11434":         "http://gpu.lan:11434/v1",
			"http://gpu.lan:11434/":        "http://gpu.lan:11434/v1",
			"http://gpu.lan:11434/v1":      "http://gpu.lan:11434/v1",
			"https://ollama.example.com":   "https://ollama.example.com/v1",
			"https://example.com/ollama/":  "https://example.com/ollama/v1",
			"gpu.lan:11434/v1/":            "http://gpu.lan:11434/v1",
			"  http://gpu.lan:11434 \n":    "http://gpu.lan:11434/v1",
			"https://example.com/proxy/v1": "https://example.com/proxy/v1",
		} {
			cfg := mustParse(t, "", map[string]string{"OLLAMA_HOST": host})
			if got := cfg.Providers["ollama"].BaseURL; got != want {
				t.Errorf("OLLAMA_HOST=%q: base_url %q, want %q", host, got, want)
			}
		}
	})

	t.Run("empty variables add nothing", func(t *testing.T) {
		cfg := mustParse(t, "", map[string]string{"OPENAI_API_KEY": "", "OLLAMA_HOST": "  ", "GEMINI_API_KEY": ""})
		if len(cfg.Providers) != 0 || len(cfg.ProviderOrder) != 0 {
			t.Errorf("providers = %v", cfg.ProviderOrder)
		}
	})

	t.Run("every variable at once", func(t *testing.T) {
		cfg := mustParse(t, "", map[string]string{
			"OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "OPENROUTER_API_KEY": "r", "GEMINI_API_KEY": "g", "OLLAMA_HOST": "h",
		})
		if want := []string{"openai", "anthropic", "openrouter", "gemini", "ollama"}; !slices.Equal(cfg.ProviderOrder, want) {
			t.Errorf("ProviderOrder = %v, want %v", cfg.ProviderOrder, want)
		}
	})

	t.Run("ANTHROPIC_API_KEY adds the anthropic provider", func(t *testing.T) {
		cfg := mustParse(t, "", map[string]string{"ANTHROPIC_API_KEY": "sk-ant"})
		p := cfg.Providers["anthropic"]
		if p == nil {
			t.Fatalf("no anthropic provider in %v", cfg.ProviderOrder)
		}
		want := providerDefaults()
		want.Type, want.BaseURL, want.APIKey, want.Origin = "anthropic", "https://api.anthropic.com", "sk-ant", "ANTHROPIC_API_KEY"
		if !reflect.DeepEqual(*p, want) {
			t.Errorf("provider = %+v\nwant       %+v", *p, want)
		}
		if !p.PromptCache {
			t.Error("prompt_cache is off by default")
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("warnings = %q", cfg.Warnings)
		}
	})

	t.Run("the file wins", func(t *testing.T) {
		cfg := mustParse(t, `
providers:
  openai:
    base_url: https://proxy.example/v1
    api_key: sk-file
  ollama:
    base_url: http://gpu:1/v1
`, map[string]string{"OPENAI_API_KEY": "sk-env", "OLLAMA_HOST": "other:2"})
		p := cfg.Providers["openai"]
		if p.APIKey != "sk-file" || p.BaseURL != "https://proxy.example/v1" || p.Origin != "config file" {
			t.Errorf("openai = %+v", p)
		}
		if got := cfg.Providers["ollama"].BaseURL; got != "http://gpu:1/v1" {
			t.Errorf("ollama base_url = %q", got)
		}
		if want := []string{"openai", "ollama"}; !slices.Equal(cfg.ProviderOrder, want) {
			t.Errorf("ProviderOrder = %v, want %v", cfg.ProviderOrder, want)
		}
	})

	t.Run("the file's provider takes its key from the environment", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  openai:\n    models: [gpt-4o-mini]\n", map[string]string{"OPENAI_API_KEY": "sk-env"})
		p := cfg.Providers["openai"]
		if p.APIKey != "sk-env" || p.BaseURL != "https://api.openai.com/v1" || p.Type != "openai" {
			t.Errorf("openai = %+v", p)
		}
		if p.Origin != "config file, api_key from OPENAI_API_KEY" {
			t.Errorf("origin = %q", p.Origin)
		}
		if !slices.Equal(p.Models, []string{"gpt-4o-mini"}) {
			t.Errorf("models = %q", p.Models)
		}
	})

	t.Run("a well-known provider named in the file gets its base_url without the environment", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  openrouter:\n    api_key: k\n  ollama:\n    models: [llama3.2]\n", nil)
		if got := cfg.Providers["openrouter"].BaseURL; got != "https://openrouter.ai/api/v1" {
			t.Errorf("openrouter base_url = %q", got)
		}
		if got := cfg.Providers["ollama"].BaseURL; got != "http://127.0.0.1:11434/v1" {
			t.Errorf("ollama base_url = %q", got)
		}
	})

	t.Run("a null provider entry takes the environment's key", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  gemini:\n", map[string]string{"GEMINI_API_KEY": "g"})
		p := cfg.Providers["gemini"]
		if p == nil || p.APIKey != "g" || !strings.HasPrefix(p.Origin, "config file") {
			t.Errorf("gemini = %+v", p)
		}
	})

	t.Run("OLLAMA_HOST sets the base_url of the file's ollama", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  ollama:\n    models: [llama3.2]\n", map[string]string{"OLLAMA_HOST": "gpu:11434"})
		if got := cfg.Providers["ollama"].BaseURL; got != "http://gpu:11434/v1" {
			t.Errorf("ollama base_url = %q", got)
		}
	})

	t.Run("an explicit empty api_key is not filled", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  openai:\n    api_key: \"\"\n", map[string]string{"OPENAI_API_KEY": "sk-env"})
		if p := cfg.Providers["openai"]; p.APIKey != "" || p.Origin != "config file" {
			t.Errorf("openai = %+v", p)
		}
	})

	t.Run("a provider named anthropic in the file is of type anthropic", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  anthropic:\n    models: [claude-haiku-4-5]\n    prompt_cache: false\n", map[string]string{"ANTHROPIC_API_KEY": "sk-env"})
		p := cfg.Providers["anthropic"]
		if p.Type != "anthropic" || p.BaseURL != "https://api.anthropic.com" || p.APIKey != "sk-env" || p.PromptCache {
			t.Errorf("anthropic = %+v", p)
		}
	})

	t.Run("any provider may be of type anthropic", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  claude:\n    type: anthropic\n    api_key: k\n  gateway:\n    type: anthropic\n    base_url: https://gw.example/anthropic\n", nil)
		if p := cfg.Providers["claude"]; p.Type != "anthropic" || p.BaseURL != "https://api.anthropic.com" || !p.PromptCache {
			t.Errorf("claude = %+v", p)
		}
		if p := cfg.Providers["gateway"]; p.BaseURL != "https://gw.example/anthropic" {
			t.Errorf("gateway = %+v", p)
		}
	})
}

// validConsortium is a well-formed consortium, valid as it is.
const validConsortium = `
providers:
  openai: {api_key: k}
  local: {base_url: "http://127.0.0.1:8000/v1"}
consortia:
  c:
    members:
      - {model: openai/a, count: 2}
      - {model: local/b}
    arbiter: {model: openai/j, prompt: "{{.Question}}"}
`

// withFallbacks gives the second member of validConsortium fallbacks.
const withFallbacks = "{model: local/b, fallbacks: [openai/c, local/d]}"

// withResilience is a valid file that sets every resilience key to a value
// that turns it on: client and provider limits, retries, breakers and member
// fallbacks.
const withResilience = `
auth:
  keys:
    - {name: alice, key: ka, rpm: 60}
    - {name: bob, key: kb}
providers:
  openai:
    api_key: k
    max_retries: 4
    rpm: 500
    max_concurrency: 8
    breaker: {failures: 3, cooldown: 10s}
  local:
    base_url: "http://127.0.0.1:8000/v1"
    max_retries: 0
    breaker: {failures: 1}
consortia:
  c:
    members:
      - {model: openai/a, count: 2, fallbacks: [local/a]}
      - {model: local/b, fallbacks: [openai/b, openai/c]}
    arbiter: {model: openai/j}
`

func TestValidate(t *testing.T) {
	t.Run("a valid file", func(t *testing.T) {
		cfg := mustParse(t, `
listen: 0.0.0.0:8080
max_body: 1MiB
auth:
  keys:
    - {name: alice, key: ka}
    - {name: bob, key: kb, rpm: 0}
  admin_key: adm
store: {backend: memory, ttl: 1h, max_entries: 5}
providers:
  openai: {api_key: k, models: [gpt-4o-mini], max_retries: 0, headers: {OpenAI-Organization: org}}
  local: {base_url: "http://127.0.0.1:8000/v1", timeout: 5s, idle_timeout: 1s, rpm: 0, max_concurrency: 0}
`, nil)
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate again: %v", err)
		}
	})

	t.Run("a well-formed consortium", func(t *testing.T) {
		cfg := mustParse(t, validConsortium, nil)
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate again: %v", err)
		}
		if c := cfg.Consortia["c"]; c == nil || len(c.Members) != 2 || !slices.Equal(cfg.ConsortiumOrder, []string{"c"}) {
			t.Errorf("consortia %+v, order %v", cfg.Consortia, cfg.ConsortiumOrder)
		}
	})

	t.Run("a well-formed consortium with member fallbacks", func(t *testing.T) {
		cfg := mustParse(t, strings.Replace(validConsortium, "{model: local/b}", withFallbacks, 1), nil)
		if got := cfg.Consortia["c"].Members[1].Fallbacks; !slices.Equal(got, []string{"openai/c", "local/d"}) {
			t.Errorf("fallbacks = %q", got)
		}
		if got := cfg.Consortia["c"].Members[0].Fallbacks; got != nil {
			t.Errorf("member without fallbacks has %q", got)
		}
	})

	t.Run("limits, retries, breakers and fallbacks", func(t *testing.T) {
		cfg := mustParse(t, withResilience, nil)
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate again: %v", err)
		}
		if k := cfg.Auth.Keys; k[0].RPM != 60 || k[1].RPM != 0 {
			t.Errorf("client rpm = %d, %d", k[0].RPM, k[1].RPM)
		}
		o := cfg.Providers["openai"]
		if o.MaxRetries != 4 || o.RPM != 500 || o.MaxConcurrency != 8 || o.Breaker != (Breaker{Failures: 3, Cooldown: 10 * time.Second}) {
			t.Errorf("openai = %+v", o)
		}
		// A breaker key left out keeps its default.
		l := cfg.Providers["local"]
		if l.MaxRetries != 0 || l.RPM != 0 || l.MaxConcurrency != 0 || l.Breaker != (Breaker{Failures: 1, Cooldown: 30 * time.Second}) {
			t.Errorf("local = %+v", l)
		}
		m := cfg.Consortia["c"].Members
		if !slices.Equal(m[0].Fallbacks, []string{"local/a"}) || !slices.Equal(m[1].Fallbacks, []string{"openai/b", "openai/c"}) {
			t.Errorf("fallbacks = %q, %q", m[0].Fallbacks, m[1].Fallbacks)
		}
	})

	for _, tc := range []struct{ name, yaml, want string }{
		{"empty listen", `listen: ""`, `listen: must be an address such as 127.0.0.1:8080`},
		{"listen without a port", `listen: localhost`, `listen: "localhost" is not host:port`},
		{"zero max_body", `max_body: 0`, `max_body: must be more than 0`},
		{"negative shutdown_timeout", `shutdown_timeout: -1s`, `shutdown_timeout: must not be negative`},
		{"key without a name", "auth:\n  keys:\n    - {key: k}", `auth.keys[0].name: every key needs a name (the tenant)`},
		{"duplicate key names", "auth:\n  keys:\n    - {name: a, key: k1}\n    - {name: a, key: k2}", `auth.keys[1].name: "a" is used by another key`},
		{"empty client key", "auth:\n  keys:\n    - {name: a, key: \"\"}", `auth.keys[0].key: is empty (an unset ${VAR}?)`},
		{"missing client key", "auth:\n  keys:\n    - {name: a}", `auth.keys[0].key: is empty (an unset ${VAR}?)`},
		{"duplicate client keys", "auth:\n  keys:\n    - {name: a, key: k}\n    - {name: b, key: k}", `auth.keys[1].key: is the same as another key's`},
		{"negative client rpm", "auth:\n  keys:\n    - {name: a, key: k, rpm: -1}", `auth.keys[0].rpm: must not be negative`},
		{"bad store backend", "store: {backend: disk}", `store.backend: "disk" is not memory or redis`},
		{"bad redis url", "store: {backend: redis, url: \"http://r:6379\"}", `store.url: "http://r:6379" is not a redis:// or rediss:// URL`},
		{"redis url without a host", "store: {backend: redis, url: \"redis://\"}", `store.url: "redis://" is not a redis:// or rediss:// URL`},
		{"master_name without addrs", "store: {master_name: mymaster}", `store.master_name: needs store.addrs (the Sentinels)`},
		{"zero ttl", "store: {ttl: 0s}", `store.ttl: must be more than 0`},
		{"zero max_entries", "store: {max_entries: 0}", `store.max_entries: must be more than 0`},
		{"provider name with a slash", "providers:\n  a/b: {base_url: \"http://h/v1\"}", `providers.a/b: a provider name must not be empty or hold a slash or space`},
		{"provider name with a space", "providers:\n  my provider: {base_url: \"http://h/v1\"}", `providers.my provider: a provider name must not be empty or hold a slash or space`},
		{"empty provider name", "providers:\n  \"\": {base_url: \"http://h/v1\"}", `providers.: a provider name must not be empty or hold a slash or space`},
		{"bad provider type", "providers:\n  local: {type: grpc, base_url: \"http://h/v1\"}", `providers.local.type: "grpc" is not openai, anthropic or demo`},
		{"missing base_url", "providers:\n  local: {api_key: k}", `providers.local.base_url: is required for a provider that is not well known (openai, anthropic, openrouter, gemini, ollama)`},
		{"empty base_url on a well-known provider", "providers:\n  openai: {base_url: \"\", api_key: k}", `providers.openai.base_url: is required for a provider that is not well known (openai, anthropic, openrouter, gemini, ollama)`},
		{"base_url with another scheme", "providers:\n  local: {base_url: \"ftp://h/v1\"}", `providers.local.base_url: "ftp://h/v1" is not an http:// or https:// URL`},
		{"base_url without a scheme", "providers:\n  local: {base_url: \"localhost:8000/v1\"}", `providers.local.base_url: "localhost:8000/v1" is not an http:// or https:// URL`},
		{"base_url with a query", "providers:\n  local: {base_url: \"http://h/v1?api-version=1\"}", `providers.local.base_url: "http://h/v1?api-version=1" has a query or fragment, which is not supported yet: give the URL up to its path ("https://host/v1"); fixed parameters a provider needs can go in headers`},
		{"base_url with a fragment", "providers:\n  local: {base_url: \"http://h/v1#x\"}", `providers.local.base_url: "http://h/v1#x" has a query or fragment, which is not supported yet: give the URL up to its path ("https://host/v1"); fixed parameters a provider needs can go in headers`},
		{"base_url without a host", "providers:\n  local: {base_url: \"http:///v1\"}", `providers.local.base_url: "http:///v1" is not an http:// or https:// URL`},
		{"base_url that does not parse", "providers:\n  local: {base_url: \"http://h:x:y/%zz\"}", `providers.local.base_url: "http://h:x:y/%zz" is not an http:// or https:// URL`},
		{"authorization header", "providers:\n  openai: {api_key: k, headers: {authorization: Bearer x}}", `providers.openai.headers.authorization: is set from api_key; put the key there`},
		{"x-api-key header", "providers:\n  openai: {api_key: k, headers: {X-Api-Key: x}}", `providers.openai.headers.X-Api-Key: is set from api_key; put the key there`},
		{"zero timeout", "providers:\n  openai: {api_key: k, timeout: 0s}", `providers.openai.timeout: must be more than 0`},
		{"zero idle_timeout", "providers:\n  openai: {api_key: k, idle_timeout: 0s}", `providers.openai.idle_timeout: must be more than 0`},
		{"negative max_retries", "providers:\n  openai: {api_key: k, max_retries: -1}", `providers.openai.max_retries: must not be negative`},
		{"negative rpm", "providers:\n  openai: {api_key: k, rpm: -1}", `providers.openai.rpm: must not be negative`},
		{"negative max_concurrency", "providers:\n  openai: {api_key: k, max_concurrency: -1}", `providers.openai.max_concurrency: must not be negative`},
		{"zero breaker failures", "providers:\n  openai: {api_key: k, breaker: {failures: 0}}", `providers.openai.breaker.failures: must be at least 1`},
		{"zero breaker cooldown", "providers:\n  openai: {api_key: k, breaker: {cooldown: 0s}}", `providers.openai.breaker.cooldown: must be more than 0`},
		{"negative breaker failures", "providers:\n  openai: {api_key: k, breaker: {failures: -2}}", `providers.openai.breaker.failures: must be at least 1`},
		{"negative breaker cooldown", "providers:\n  openai: {api_key: k, breaker: {cooldown: -1s}}", `providers.openai.breaker.cooldown: must be more than 0`},
		{"empty model name", "providers:\n  openai: {api_key: k, models: [a, \" \"]}", `providers.openai.models[1]: is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.yaml+"\n", nil)
			if !slices.Contains(ps, tc.want) {
				t.Errorf("problems = %q\nwant one of them %q", ps, tc.want)
			}
		})
	}
}

func TestValidateConsortium(t *testing.T) {
	// Each case edits validConsortium with a replacement of one line (or an
	// added one) and checks that its problem is among those reported.
	for _, tc := range []struct{ name, old, new, want string }{
		{"named like a provider's model", "  c:\n", "  openai/x:\n", `consortia.openai/x: the name begins with the provider "openai" and a slash, so it would hide that provider's models`},
		{"unknown strategy", "    members:\n", "    strategy: debate\n    members:\n", `consortia.c.strategy: "debate" is not a known strategy (synthesize, rank, vote, cascade)`},
		{"no members", "      - {model: openai/a, count: 2}\n      - {model: local/b}\n", "      []\n", `consortia.c.members: a consortium needs at least one member`},
		{"members omitted", "    members:\n      - {model: openai/a, count: 2}\n      - {model: local/b}\n", "", `consortia.c.members: a consortium needs at least one member`},
		{"member of an unknown provider", "{model: openai/a,", "{model: nope/a,", `consortia.c.members[0].model: "nope/a" names the unknown provider "nope"`},
		{"member ref without a provider", "{model: openai/a,", "{model: gpt-4o,", `consortia.c.members[0].model: "gpt-4o" is not provider/model`},
		{"member without a model", "{model: openai/a, count: 2}", "{count: 2}", `consortia.c.members[0].model: "" is not provider/model`},
		{"zero count", "count: 2", "count: 0", `consortia.c.members[0].count: must be at least 1`},
		{"zero weight", "count: 2", "count: 2, weight: 0", `consortia.c.members[0].weight: must be more than 0`},
		{"fallback of an unknown provider", "{model: local/b}", "{model: local/b, fallbacks: [openai/c, nope/d]}", `consortia.c.members[1].fallbacks[1]: "nope/d" names the unknown provider "nope"`},
		{"fallback ref without a provider", "{model: local/b}", "{model: local/b, fallbacks: [gpt-4o]}", `consortia.c.members[1].fallbacks[0]: "gpt-4o" is not provider/model`},
		{"no arbiter", "    arbiter: {model: openai/j, prompt: \"{{.Question}}\"}\n", "", `consortia.c.arbiter.model: a consortium needs an arbiter model`},
		{"arbiter of an unknown provider", "model: openai/j", "model: nope/j", `consortia.c.arbiter.model: "nope/j" names the unknown provider "nope"`},
		{"threshold above 1", "    members:\n", "    confidence_threshold: 1.5\n    members:\n", `consortia.c.confidence_threshold: must be between 0 and 1`},
		{"threshold below 0", "    members:\n", "    confidence_threshold: -0.1\n    members:\n", `consortia.c.confidence_threshold: must be between 0 and 1`},
		{"zero min_iterations", "    members:\n", "    min_iterations: 0\n    members:\n", `consortia.c.min_iterations: must be at least 1`},
		{"zero max_iterations", "    members:\n", "    max_iterations: 0\n    members:\n", `consortia.c.max_iterations: must be at least 1`},
		{"min_iterations above max_iterations", "    members:\n", "    min_iterations: 4\n    members:\n", `consortia.c.min_iterations: 4 is more than max_iterations (3)`},
		{"negative quorum", "    members:\n", "    quorum: -1\n    members:\n", `consortia.c.quorum: must not be negative`},
		{"quorum above instances", "    members:\n", "    quorum: 4\n    members:\n", `consortia.c.quorum: 4 is more than the 3 member instances`},
		{"zero min_answers", "    members:\n", "    min_answers: 0\n    members:\n", `consortia.c.min_answers: must be at least 1`},
		{"min_answers above instances", "    members:\n", "    min_answers: 4\n    members:\n", `consortia.c.min_answers: 4 is more than the 3 member instances`},
		{"zero member_timeout", "    members:\n", "    member_timeout: 0s\n    members:\n", `consortia.c.member_timeout: must be more than 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validConsortium, tc.old) {
				t.Fatalf("%q is not in validConsortium", tc.old)
			}
			ps := problemsOf(t, strings.Replace(validConsortium, tc.old, tc.new, 1), nil)
			if !slices.Contains(ps, tc.want) && !slices.ContainsFunc(ps, func(p string) bool {
				return strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(p, tc.want)
			}) {
				t.Errorf("problems = %q\nwant one of them %q", ps, tc.want)
			}
		})
	}

	// The limits themselves are accepted: counts are included in the number
	// of instances, and 0 and 1 are thresholds.
	for _, tc := range []struct{ name, old, new string }{
		{"quorum equal to instances", "    members:\n", "    quorum: 3\n    min_answers: 3\n    members:\n"},
		{"threshold 0", "    members:\n", "    confidence_threshold: 0\n    members:\n"},
		{"threshold 1", "    members:\n", "    confidence_threshold: 1\n    members:\n"},
		{"min_iterations equal to max_iterations", "    members:\n", "    min_iterations: 5\n    max_iterations: 5\n    members:\n"},
		{"a slash in a name that is not a provider", "  c:\n", "  team/c:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validConsortium, tc.old) {
				t.Fatalf("%q is not in validConsortium", tc.old)
			}
			mustParse(t, strings.Replace(validConsortium, tc.old, tc.new, 1), nil)
		})
	}
}

func TestNewKeys(t *testing.T) {
	t.Run("max_response", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  a: {base_url: \"http://h/v1\", max_response: 1MiB}\n  b: {base_url: \"http://h/v1\"}\n", nil)
		if got := cfg.Providers["a"].MaxResponse; got != 1<<20 {
			t.Errorf("a.max_response = %d", got)
		}
		if got := cfg.Providers["b"].MaxResponse; got != 32<<20 {
			t.Errorf("b.max_response = %d, want the 32MiB default", got)
		}
		firstProblem(t, problemsOf(t, "providers:\n  a: {base_url: \"http://h/v1\", max_response: 0}\n", nil), "providers.a.max_response: must be more than 0")
		firstProblem(t, problemsOf(t, "providers:\n  a: {base_url: \"http://h/v1\", max_response: big}\n", nil),
			`providers.a.max_response: invalid size "big" (want a number of bytes or e.g. 10MiB)`)
	})
	t.Run("log", func(t *testing.T) {
		if cfg := mustParse(t, "", nil); cfg.Log != (Log{Level: "info", Format: "text"}) {
			t.Errorf("log defaults = %+v", cfg.Log)
		}
		if cfg := mustParse(t, "log: {level: debug, format: json}\n", nil); cfg.Log != (Log{Level: "debug", Format: "json"}) {
			t.Errorf("log = %+v", cfg.Log)
		}
		ps := problemsOf(t, "log: {level: loud, format: xml}\n", nil)
		want := Problems{`log.level: "loud" is not debug, info, warn or error`, `log.format: "xml" is not text or json`}
		if !slices.Equal(ps, want) {
			t.Errorf("problems = %q, want %q", ps, want)
		}
	})
	t.Run("an unknown strategy is unknown, not unbuilt", func(t *testing.T) {
		ps := problemsOf(t, strings.Replace(validConsortium, "    members:\n", "    strategy: debate\n    members:\n", 1), nil)
		if want := (Problems{`consortia.c.strategy: "debate" is not a known strategy (synthesize, rank, vote, cascade)`}); !slices.Equal(ps, want) {
			t.Errorf("problems = %q, want %q", ps, want)
		}
	})
	t.Run("an arbiter prompt is checked by the check passed in", func(t *testing.T) {
		file := strings.Replace(validConsortium, "{{.Question}}", "{{.Nope}}", 1)
		if _, err := Parse([]byte(file), noEnv); err != nil {
			t.Errorf("without a check: %v", err)
		}
		check := func(text string) error { return fmt.Errorf("checked %q", text) }
		_, err := Parse([]byte(file), noEnv, WithPromptCheck(check))
		if want := `consortia.c.arbiter.prompt: is not a valid arbiter prompt: checked "{{.Nope}}"`; err == nil || err.Error() != want {
			t.Errorf("Parse = %v, want %s", err, want)
		}
	})
}

func TestSyntaxErrorNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mine.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:1\nauth: \"unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, noEnv)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2: found unexpected end of stream") {
		t.Errorf("Load = %v, want %s:2: ...", err, p)
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		vars       map[string]string
		want       []string
	}{
		{"no providers", "", nil, []string{"providers: none configured, so no model can answer: set OPENAI_API_KEY (or another provider variable), add providers to the file, or run with --demo"}},
		{"a key variable unset", "providers:\n  openai: {api_key: \"${OPENAI_API_KEY}\"}\n", nil,
			[]string{"providers.openai.api_key: is empty (OPENAI_API_KEY not set), so the provider will refuse every call"}},
		{"a well-known provider without its variable", "providers:\n  openai: {models: [gpt-4o]}\n  anthropic: {}\n", nil, []string{
			"providers.openai.api_key: is empty (OPENAI_API_KEY not set), so the provider will refuse every call",
			"providers.anthropic.api_key: is empty (ANTHROPIC_API_KEY not set), so the provider will refuse every call",
		}},
		{"an anthropic provider without a key", "providers:\n  claude: {type: anthropic}\n", nil,
			[]string{"providers.claude.api_key: is empty, so the provider will refuse every call"}},
		{"any provider whose key variable is unset", "providers:\n  local: {base_url: \"http://h/v1\", api_key: \"${LOCAL_KEY}\"}\n", nil,
			[]string{"providers.local.api_key: is empty (LOCAL_KEY not set), so the provider will refuse every call"}},
		{"the example's client key", "auth:\n  keys:\n    - {name: alice, key: \"${ALICE_KEY:-change-me-alice}\"}\nproviders:\n  local: {base_url: \"http://h/v1\"}\n", nil,
			[]string{`auth.keys[0].key: is the example's placeholder "change-me-alice", which anyone who read config.example.yaml knows: set a secret of your own`}},
		{"a local server without a key is fine", "providers:\n  local: {base_url: \"http://h/v1\", api_key: \"\"}\n", nil, nil},
		{"keys set", "providers:\n  openai: {}\n", map[string]string{"OPENAI_API_KEY": "k"}, nil},
		{"a demo provider needs no key", "providers:\n  d: {type: demo}\n", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if cfg := mustParse(t, tc.yaml, tc.vars); !slices.Equal(cfg.Warnings, tc.want) {
				t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(cfg.Warnings, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestUnbuilt(t *testing.T) {
	// The keys that once were refused are accepted, alongside every
	// resilience key.
	t.Run("anthropic and prompt_cache are built", func(t *testing.T) {
		mustParse(t, "providers:\n  claude:\n    type: anthropic\n    api_key: k\n    prompt_cache: true\n  anthropic:\n    api_key: k\n    prompt_cache: false\n", nil)
		mustParse(t, strings.Replace(withResilience, "max_retries: 4", "max_retries: 4\n    prompt_cache: true", 1), nil)
	})

	// The mechanism stays for the keys of behaviour to come: an entry is
	// refused with its path, set in the file or implied by a default.
	t.Run("an unbuilt key is refused", func(t *testing.T) {
		saved := unbuilt
		t.Cleanup(func() { unbuilt = saved })
		unbuilt = []unbuiltKey{
			{key: "providers.*.models", what: "listing models is not supported yet"},
			{key: "providers.*.type", set: func(c *Config, name string) bool { return c.Providers[name].Type == "anthropic" },
				what: "the anthropic provider type is not supported yet", implied: true},
			{key: "passthrough", set: func(c *Config, _ string) bool { return !c.Passthrough }, what: "turning passthrough off is not supported yet"},
		}
		ps := problemsOf(t, "passthrough: false\nproviders:\n  openai:\n    api_key: k\n    models: [a]\n  anthropic:\n    api_key: k\n", nil)
		want := Problems{
			"providers.openai.models: listing models is not supported yet",
			"providers.anthropic.type: the anthropic provider type is not supported yet",
			"passthrough: turning passthrough off is not supported yet",
		}
		slices.Sort(ps)
		slices.Sort(want)
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
		mustParse(t, "passthrough: true\nproviders:\n  openai:\n    api_key: k\n", nil)
	})

	// Adaptive weights and pricing are built: accepted, and checked.
	t.Run("pricing and weights are built", func(t *testing.T) {
		cfg := mustParse(t, `
pricing:
  "openai/gpt-4o": {input: 2.5, output: 10}
  "openai/gpt-4o-mini": {input: 0.15, output: 0.6, cached_input: 0.075}
providers:
  openai: {api_key: k}
consortia:
  best:
    strategy: rank
    members: [{model: openai/a}]
    judges: [{model: openai/j}]
    weights: adaptive
  plain:
    members: [{model: openai/a}]
    arbiter: {model: openai/j}
`, nil)
		if got := cfg.Pricing["openai/gpt-4o-mini"]; got.Input != 0.15 || got.Output != 0.6 || got.CachedInput == nil || *got.CachedInput != 0.075 {
			t.Errorf("pricing %+v", got)
		}
		if cfg.Pricing["openai/gpt-4o"].CachedInput != nil {
			t.Error("an omitted cached_input is set")
		}
		if cfg.Consortia["best"].Weights != WeightsAdaptive || cfg.Consortia["plain"].Weights != WeightsFixed {
			t.Errorf("weights %q and %q", cfg.Consortia["best"].Weights, cfg.Consortia["plain"].Weights)
		}
	})
	t.Run("bad pricing and weights are refused", func(t *testing.T) {
		ps := problemsOf(t, `
pricing:
  "nope/x": {input: 1, output: 1}
  "gpt-4o": {input: 1, output: 1}
  "openai/neg": {input: -1, output: -0.5, cached_input: -2}
  "openai/nan": {input: .nan, output: 1}
  "openai/inf": {input: 1, output: .inf, cached_input: .inf}
  "openai/half": {input: 1}
  "openai/none": {}
providers:
  openai: {api_key: k}
consortia:
  best:
    members: [{model: openai/a}]
    arbiter: {model: openai/j}
    weights: learned
  up:
    strategy: cascade
    tiers: [best, openai/big]
    weights: adaptive
`, nil)
		want := Problems{
			"consortia.best.weights: \"learned\" is not fixed or adaptive",
			"consortia.up.weights: strategy cascade does not use it: it is a key of the strategies with members (a cascade's tiers have their own)",
			"pricing.gpt-4o: \"gpt-4o\" is not provider/model",
			"pricing.nope/x: \"nope/x\" names the unknown provider \"nope\"",
			"pricing.openai/half.output: is required (US dollars per million tokens; 0 for a free model): omitted, it would price every output token at 0",
			"pricing.openai/inf.cached_input: must be finite (US dollars per million tokens)",
			"pricing.openai/inf.output: must be finite (US dollars per million tokens)",
			"pricing.openai/nan.input: must not be negative (US dollars per million tokens)",
			"pricing.openai/neg.cached_input: must not be negative (US dollars per million tokens)",
			"pricing.openai/neg.input: must not be negative (US dollars per million tokens)",
			"pricing.openai/neg.output: must not be negative (US dollars per million tokens)",
			"pricing.openai/none.input: is required (US dollars per million tokens; 0 for a free model): omitted, it would price every input token at 0",
			"pricing.openai/none.output: is required (US dollars per million tokens; 0 for a free model): omitted, it would price every output token at 0",
		}
		slices.Sort(ps)
		if !slices.Equal(ps, want) {
			t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(want, "\n  "))
		}
	})

	// The values that mean "off" are accepted: the key does no harm.
	t.Run("values that change nothing are accepted", func(t *testing.T) {
		mustParse(t, `
store: {backend: memory, url: "redis://127.0.0.1:6379/0", addrs: []}
auth:
  keys:
    - {name: a, key: k, rpm: 0}
providers:
  openai: {api_key: k, rpm: 0, max_concurrency: 0, max_retries: 0, type: openai}
  local:
    base_url: http://h/v1
    breaker:
consortia:
  c:
    members:
      - {model: local/m, fallbacks: []}
    arbiter: {model: local/m}
`, nil)
	})
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"10MiB", 10 << 20},
		{"512KB", 512000},
		{"512KiB", 512 << 10},
		{"1048576", 1 << 20},
		{"0", 0},
		{"1GB", 1e9},
		{"1GiB", 1 << 30},
		{"2MB", 2e6},
		{"1K", 1 << 10},
		{"1M", 1 << 20},
		{"1G", 1 << 30},
		{"100B", 100},
		{" 10 MiB ", 10 << 20},
		{"9223372036854775807", 1<<63 - 1},
		{"8589934591GiB", 8589934591 << 30},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", " ", "MiB", "B", "ten", "-1", "-1KiB", "+5", "1.5MiB", "10mb", "10 XB", "1e6", "0x10", "007", "10MiBs", "10 MiB MiB",
		"9223372036854775808", "8589934592GiB", "9223372036854775807KiB",
	} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), "invalid size") {
			t.Errorf("ParseByteSize(%q) error %q", in, err)
		}
	}

	t.Run("UnmarshalYAML", func(t *testing.T) {
		var v struct{ B ByteSize }
		if err := yaml.Unmarshal([]byte("b: 2KiB"), &v); err != nil || v.B != 2048 {
			t.Errorf("b: 2KiB = %d, %v", v.B, err)
		}
		// A bad size is a yaml.TypeError with its position, so the decoder
		// goes on to the rest of the file.
		err := yaml.Unmarshal([]byte("b: two"), &v)
		var te *yaml.TypeError
		if !errors.As(err, &te) || len(te.Errors) != 1 || te.Errors[0] != `line 1 column 4: invalid size "two" (want a number of bytes or e.g. 10MiB)` || v.B != 2048 {
			t.Errorf("b: two = %d, %v; want a type error and no change", v.B, err)
		}
	})
}

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct {
		ref, provider, model string
		ok                   bool
	}{
		{"openai/gpt-4o-mini", "openai", "gpt-4o-mini", true},
		{"openrouter/meta-llama/llama-3.1-8b-instruct", "openrouter", "meta-llama/llama-3.1-8b-instruct", true},
		{"gpt-4o", "gpt-4o", "", false},
		{"/gpt-4o", "", "gpt-4o", false},
		{"openai/", "openai", "", false},
		{"", "", "", false},
	} {
		p, m, ok := SplitRef(tc.ref)
		if ok != tc.ok || tc.ok && (p != tc.provider || m != tc.model) {
			t.Errorf("SplitRef(%q) = %q, %q, %v; want %q, %q, %v", tc.ref, p, m, ok, tc.provider, tc.model, tc.ok)
		}
	}
}

func TestPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	withEnv := env(map[string]string{"CONSORTIUM_CONFIG": "/etc/consortium/env.yaml"})
	emptyEnv := env(map[string]string{"CONSORTIUM_CONFIG": ""})

	t.Run("nothing", func(t *testing.T) {
		if got := Path("", noEnv); got != "" {
			t.Errorf("Path = %q, want the built-in defaults", got)
		}
		if got := Path("", emptyEnv); got != "" {
			t.Errorf("Path with CONSORTIUM_CONFIG empty = %q, want the built-in defaults", got)
		}
	})
	t.Run("the flag wins over the environment", func(t *testing.T) {
		if got := Path("flag.yaml", withEnv); got != "flag.yaml" {
			t.Errorf("Path = %q", got)
		}
	})
	t.Run("the environment without a flag", func(t *testing.T) {
		if got := Path("", withEnv); got != "/etc/consortium/env.yaml" {
			t.Errorf("Path = %q", got)
		}
	})

	if err := os.WriteFile(filepath.Join(dir, "consortium.yaml"), []byte("listen: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("./consortium.yaml when it exists", func(t *testing.T) {
		if got := Path("", noEnv); got != "consortium.yaml" {
			t.Errorf("Path = %q", got)
		}
		if got := Path("", emptyEnv); got != "consortium.yaml" {
			t.Errorf("Path with CONSORTIUM_CONFIG empty = %q", got)
		}
		cfg, err := Load(Path("", noEnv), noEnv)
		if err != nil || cfg.Listen != "127.0.0.1:1" || cfg.Source != "consortium.yaml" {
			t.Errorf("Load = %+v, %v", cfg, err)
		}
	})
	t.Run("the environment and the flag win over ./consortium.yaml", func(t *testing.T) {
		if got := Path("", withEnv); got != "/etc/consortium/env.yaml" {
			t.Errorf("Path = %q", got)
		}
		if got := Path("flag.yaml", withEnv); got != "flag.yaml" {
			t.Errorf("Path = %q", got)
		}
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("built-in defaults", func(t *testing.T) {
		cfg, err := Load("", env(map[string]string{"OPENAI_API_KEY": "k"}))
		if err != nil || cfg.Source != "built-in defaults" || cfg.Providers["openai"] == nil {
			t.Errorf("Load = %+v, %v", cfg, err)
		}
	})
	t.Run("a file", func(t *testing.T) {
		p := write("ok.yaml", "listen: ${ADDR}\n")
		cfg, err := Load(p, env(map[string]string{"ADDR": "127.0.0.1:2"}))
		if err != nil || cfg.Source != p || cfg.Listen != "127.0.0.1:2" {
			t.Errorf("Load = %+v, %v", cfg, err)
		}
	})
	t.Run("a missing file", func(t *testing.T) {
		cfg, err := Load(filepath.Join(dir, "missing.yaml"), noEnv)
		if cfg != nil || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load = %+v, %v; want fs.ErrNotExist", cfg, err)
		}
	})
	t.Run("an invalid file", func(t *testing.T) {
		cfg, err := Load(write("bad.yaml", "listn: x\n"), noEnv)
		var ps Problems
		if cfg != nil || !errors.As(err, &ps) || len(ps) != 1 {
			t.Errorf("Load = %+v, %v; want one problem", cfg, err)
		}
	})
}

func TestDemo(t *testing.T) {
	t.Run("type demo needs no key or URL and lists the demo models", func(t *testing.T) {
		cfg := mustParse(t, `
providers:
  fake: {type: demo}
consortia:
  try:
    members: [{model: fake/alpha}, {model: fake/beta}]
    arbiter: {model: fake/arbiter}
`, map[string]string{"OPENAI_API_KEY": ""})
		p := cfg.Providers["fake"]
		if p.Type != TypeDemo || !p.Demo || !cfg.Demo || p.BaseURL != "" || p.APIKey != "" {
			t.Errorf("fake = %+v, config Demo %v", p, cfg.Demo)
		}
		if want := []string{"alpha", "beta", "gamma", "arbiter", "judge-1", "judge-2"}; !slices.Equal(p.Models, want) {
			t.Errorf("models = %q, want %q", p.Models, want)
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("warnings = %q", cfg.Warnings)
		}
		if err := cfg.ServeDemo("http://127.0.0.1:4567/v1"); err != nil {
			t.Fatalf("ServeDemo: %v", err)
		}
		if p.Type != "openai" || p.BaseURL != "http://127.0.0.1:4567/v1" || !p.Demo {
			t.Errorf("served fake = %+v", p)
		}
	})
	t.Run("a demo provider named openai takes nothing from OPENAI_API_KEY", func(t *testing.T) {
		cfg := mustParse(t, "providers:\n  openai: {type: demo, models: [x]}\n", map[string]string{"OPENAI_API_KEY": "sk-env"})
		if p := cfg.Providers["openai"]; p.APIKey != "" || p.BaseURL != "" || !slices.Equal(p.Models, []string{"x"}) {
			t.Errorf("openai = %+v", p)
		}
	})
	t.Run("a demo provider takes no base_url or api_key", func(t *testing.T) {
		ps := problemsOf(t, "providers:\n  d: {type: demo, base_url: \"http://h/v1\", api_key: k}\n", nil)
		want := Problems{
			"providers.d.base_url: is not set for a demo provider: it is served in process",
			"providers.d.api_key: is not set for a demo provider: it needs no key",
		}
		if !slices.Equal(ps, want) {
			t.Errorf("problems = %q, want %q", ps, want)
		}
	})

	// Before, serve --demo -c mine.yaml said "demo/alpha" names the
	// unknown provider "demo": the demo was added after validation.
	t.Run("WithDemo: the file may name demo/alpha", func(t *testing.T) {
		file := "consortia:\n  mine:\n    members: [{model: demo/alpha}, {model: demo/gamma}]\n    arbiter: {model: demo/arbiter}\n"
		if _, err := Parse([]byte(file), noEnv); err == nil || !strings.Contains(err.Error(), `names the unknown provider "demo"`) {
			t.Errorf("without the demo: %v", err)
		}
		cfg, err := Parse([]byte("providers:\n  openai: {api_key: k}\n"+file), noEnv, WithDemo())
		if err != nil {
			t.Fatalf("Parse WithDemo: %v", err)
		}
		if want := []string{"openai", "demo"}; !slices.Equal(cfg.ProviderOrder, want) {
			t.Errorf("ProviderOrder = %v, want %v", cfg.ProviderOrder, want)
		}
		if want := []string{"demo", "demo-rank", "demo-vote", "demo-cascade", "mine"}; !slices.Equal(cfg.ConsortiumOrder, want) {
			t.Errorf("ConsortiumOrder = %v, want %v", cfg.ConsortiumOrder, want)
		}
		p := cfg.Providers[DemoProvider]
		if !p.Demo || !cfg.Demo || !strings.Contains(p.Origin, "--demo") {
			t.Errorf("demo = %+v", p)
		}
		c := cfg.Consortia[DemoConsortium]
		if len(c.Members) != 3 || c.Arbiter.Model != "demo/arbiter" || c.MaxIterations != 2 || !strings.HasPrefix(c.Description, "demo: ") {
			t.Errorf("demo consortium = %+v", c)
		}
		if !slices.Equal(p.Models, []string{"alpha", "beta", "gamma", "arbiter", "judge-1", "judge-2"}) {
			t.Errorf("demo models = %v", p.Models)
		}
		for _, name := range []string{DemoRank, DemoVote, DemoCascade} {
			if k := cfg.Consortia[name]; k == nil || !strings.HasPrefix(k.Description, "demo: ") {
				t.Errorf("%s = %+v, want a consortium described as a demo", name, k)
			}
		}
		if k := cfg.Consortia[DemoRank]; k.Strategy != "rank" || len(k.Members) != 3 || len(k.Judges) != 2 || k.Judges[0].Model != "demo/judge-1" {
			t.Errorf("demo-rank = %+v", k)
		}
		if k := cfg.Consortia[DemoVote]; k.Strategy != "vote" || len(k.Members) != 3 || k.Extract == "" || !strings.Contains(k.System, "Answer:") {
			t.Errorf("demo-vote = %+v", k)
		}
		if k := cfg.Consortia[DemoCascade]; k.Strategy != "cascade" || !slices.Equal(k.Tiers, []string{"demo-vote", "demo"}) || len(k.Members) != 0 {
			t.Errorf("demo-cascade = %+v", k)
		}
	})
	t.Run("demo-vote's extract reads the demo members' last line", func(t *testing.T) {
		re := regexp.MustCompile(demoExtract)
		m := re.FindStringSubmatch("This is a demo answer.\n\nAnswer: it depends \n")
		if m == nil || m[1] != "it depends" {
			t.Errorf("extract %q on a demo answer: %q", demoExtract, m)
		}
	})
	t.Run("WithDemo keeps the file's own demo provider", func(t *testing.T) {
		cfg, err := Parse([]byte("providers:\n  demo: {type: demo, models: [a]}\n"), noEnv, WithDemo())
		if err != nil || !slices.Equal(cfg.Providers["demo"].Models, []string{"a"}) {
			t.Errorf("Parse = %+v, %v", cfg, err)
		}
	})
	t.Run("WithDemo: the names are taken", func(t *testing.T) {
		_, err := Parse([]byte("providers:\n  demo: {base_url: \"http://h/v1\"}\nconsortia:\n  demo: {members: [{model: demo/a}], arbiter: {model: demo/a}}\n"), noEnv, WithDemo())
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 2 || !strings.HasPrefix(ps[0], "providers.demo: ") || !strings.HasPrefix(ps[1], "consortia.demo: ") {
			t.Errorf("Parse = %v", err)
		}
		_, err = Parse([]byte("consortia:\n  demo-vote: {members: [{model: demo/a}], arbiter: {model: demo/a}}\n"), noEnv, WithDemo())
		if !errors.As(err, &ps) || len(ps) != 1 || !strings.HasPrefix(ps[0], "consortia.demo-vote: the name demo-vote is taken by --demo") {
			t.Errorf("Parse = %v", err)
		}
	})
}
