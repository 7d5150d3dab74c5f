package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exampleFile is the example configuration at the repository root.
var exampleFile = filepath.Join("..", "..", "config.example.yaml")

// TestExampleConfig checks that config.example.yaml loads: no unknown keys,
// no wrong types, and no problem but keys of behaviour not built yet
// (which are logged, so that the test tightens by itself as they are
// built).
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist yet", exampleFile)
	}
	if err != nil {
		t.Fatal(err)
	}

	// Every variable the file references without a default is set, so that
	// the file is read as a user who followed its comments would have it.
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`).FindAllStringSubmatch(string(data), -1) {
		if m[2] == "" {
			vars[m[1]] = "test-" + strings.ToLower(m[1])
		}
	}
	if _, ok := vars["OLLAMA_HOST"]; ok {
		vars["OLLAMA_HOST"] = "127.0.0.1:11434"
	}

	// The demo provider the file shows commented out loads too, once
	// uncommented.
	demo := regexp.MustCompile(`(?m)^  # (playground:\n)  # (  type: demo\n)  # (  models: .*\n)`)
	if !demo.Match(data) {
		t.Errorf("%s has no commented-out demo provider playground", exampleFile)
	} else if cfg, err := Parse(demo.ReplaceAll(data, []byte("  $1  $2  $3")), env(vars)); err != nil {
		t.Errorf("with the demo provider uncommented: %v", err)
	} else if p := cfg.Providers["playground"]; p == nil || !p.Demo {
		t.Errorf("playground = %+v", p)
	}

	cfg, err := Load(exampleFile, env(vars))
	if err == nil {
		if cfg.Source != exampleFile {
			t.Errorf("Source = %q", cfg.Source)
		}
		if cfg.Log != (Log{Level: "info", Format: "text"}) || cfg.Providers["openai"].MaxResponse != 32<<20 {
			t.Errorf("log %+v, openai max_response %d", cfg.Log, cfg.Providers["openai"].MaxResponse)
		}
		// The file shows a consortium of every strategy.
		for _, s := range strategies {
			if !slices.ContainsFunc(cfg.ConsortiumOrder, func(name string) bool { return cfg.Consortia[name].Strategy == s }) {
				t.Errorf("%s has no consortium of strategy %s", exampleFile, s)
			}
		}
		return
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: %v", err)
	}
	for _, p := range ps {
		if strings.Contains(p, "not supported yet") {
			t.Logf("refused until built: %s", p)
			continue
		}
		t.Errorf("%s: %s", exampleFile, p)
	}

	// The structure must decode whatever is refused.
	if cfg, problems, _ := decode(data, env(vars)); cfg == nil || len(problems) > 0 {
		t.Errorf("decode: %v", problems)
	}
}
