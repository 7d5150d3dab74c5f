package consortium_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/consortium-dev/consortium"

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Doc        string
	Deps       []string
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

// TestDependencyDirection keeps the architecture one way: proxy →
// consortia → upstream, with cache and ratelimit beside them importing none
// of the three, and the wire types importing nothing of the project.
func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		"upstream":        {"proxy", "consortia"},
		"consortia":       {"proxy"},
		"cache":           {"proxy", "consortia", "upstream"},
		"ratelimit":       {"proxy", "consortia", "upstream"},
		"openai":          {"proxy", "consortia", "upstream", "cache", "ratelimit", "internal/config"},
		"internal/config": {"proxy", "consortia", "upstream", "cache", "ratelimit"},
	}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for owner, banned := range forbidden {
			if rel != owner && !strings.HasPrefix(rel, owner+"/") {
				continue
			}
			if strings.HasSuffix(rel, "test") && rel != owner {
				continue // test doubles such as upstream/upstreamtest may use anything below them
			}
			for _, dep := range p.Deps {
				for _, b := range banned {
					if dep == module+"/"+b || strings.HasPrefix(dep, module+"/"+b+"/") {
						t.Errorf("%s imports %s: the dependency direction is broken", p.ImportPath, dep)
					}
				}
			}
		}
	}
}
