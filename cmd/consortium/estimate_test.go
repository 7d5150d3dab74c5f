package main

import (
	"strings"
	"testing"
)

// TestValidateEstimate: validate --estimate prints each consortium's
// calls, tokens and cost for its representative request, or why the cost
// is unknown; it calls no provider (the base_url answers nothing).
func TestValidateEstimate(t *testing.T) {
	clean(t)
	file := writeFile(t, `
pricing:
  "local/a": {input: 1, output: 2}
  "local/j": {input: 10, output: 20}
providers:
  local:
    base_url: http://127.0.0.1:9/v1
consortia:
  priced:
    members: [{model: local/a, count: 2}]
    arbiter: {model: local/j, params: {max_tokens: 400}}
    max_iterations: 2
  loose:
    members: [{model: local/a}]
    arbiter: {model: local/j}
  unpriced:
    strategy: vote
    members: [{model: local/a}, {model: local/b}]
`)
	code, out, errOut := runCmd("validate", "-c", file, "--estimate")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"estimates for one user message of 2000 characters with max_tokens 1000",
		// Low: one round, a token an answer; high: two rounds of two
		// members at 1000 and the arbiter at 400.
		"estimate priced: input ",
		", output 3–4800 tokens, $0.",
		"  member local/a ×2, rounds 1–2\n  arbiter local/j ×1, rounds 1–2\n",
		"estimate loose: input ",
		"output unbounded (a call without max_tokens), cost unknown (an arbiter's or judge's output has no bound: set its params' max_tokens)",
		"estimate unpriced: input 1002–1002 tokens, output 2–2000 tokens, cost unknown (no price for local/b)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}

	// Without the flag, no estimate.
	if _, out, _ := runCmd("validate", "-c", file); strings.Contains(out, "estimate") {
		t.Errorf("estimates without --estimate:\n%s", out)
	}
	// The demo's consortiums estimate too.
	if code, out, errOut := runCmd("validate", "--demo", "--estimate"); code != 0 || !strings.Contains(out, "estimate demo-cascade: ") {
		t.Errorf("demo: exit %d\n%s%s", code, out, errOut)
	}
}
