package consortium_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/consortium-dev/consortium"

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Doc        string
	Deps       []string
	Imports    []string
	Name       string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestPackageComments keeps every package saying what it owns.
func TestPackageComments(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue // only test files, as this one
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package comment saying what it owns", p.ImportPath)
		}
	}
}

// allowed lists, for every package of the module, the packages of the
// module it may import; nil means none. The flow reads from it: the wire
// types import nothing of the project, cache and ratelimit sit beside the
// flow, upstream calls providers, consortia fans out over upstream, proxy
// serves HTTP over built dependencies, and internal/app is the one place
// that reads the configuration to build them; cmd runs it. A package that
// is not listed fails the test, so a new one takes its place here on
// purpose.
var allowed = map[string][]string{
	"":                   nil, // this test
	"openai":             nil,
	"cache":              {"openai"},
	"ratelimit":          {"openai"},
	"upstream":           {"openai", "ratelimit"},
	"consortia":          {"openai", "upstream", "cache"}, // cache.NewID: one id function
	"scores":             {"openai", "consortia"},         // a run record in, ratings out
	"internal/config":    nil,
	"internal/redistest": nil,
	"internal/batch":     {"openai", "consortia"}, // the batch commands' jobs: engines and providers through interfaces it declares
	"proxy":              {"openai", "consortia", "upstream", "cache", "ratelimit", "proxy/ui", "scores"},
	"proxy/ui":           {"openai", "consortia", "cache"},
	"internal/app":       {"openai", "consortia", "upstream", "cache", "ratelimit", "proxy", "internal/config", "scores"},
	"cmd/consortium": {"openai", "consortia", "upstream", "cache", "ratelimit", "proxy", "internal/config", "internal/app",
		"internal/batch", "upstream/upstreamtest"},
	// Test doubles and tools.
	"upstream/upstreamtest":              {"openai", "upstream"},
	"upstream/upstreamtest/fakeprovider": {"openai", "upstream", "upstream/upstreamtest"},
	"bench":                              {"openai", "upstream", "upstream/upstreamtest"},
	"bench/cmd/bench":                    {"openai", "upstream", "upstream/upstreamtest", "bench", "consortia", "internal/batch"}, // consortia: the default judge prompt of the rank critical path; internal/batch: bench batch's selection
}

// TestDependencyDirection keeps the architecture one way: each package
// imports only what allowed lists for it.
func TestDependencyDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		may, listed := allowed[rel]
		if !listed {
			t.Errorf("%s is not in arch_test.go's allowed list: add it with the project packages it may import", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module+"/")
			if ours && !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which it may not (allowed: %v): the dependency direction is broken", p.ImportPath, imp, may)
			}
		}
	}
}
