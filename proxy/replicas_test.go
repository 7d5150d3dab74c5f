package proxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/internal/redistest"
)

// TestReplicasOnEachBackend runs two proxies on one Redis, as a single
// server, a Cluster and a Sentinel-watched master with a replica: a
// conversation begun on one continues on the other, by header and by
// transcript, its run is read there, a response continues there, and a
// client key's rpm holds across both.
func TestReplicasOnEachBackend(t *testing.T) {
	for _, backend := range redistest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			yaml := convYAML("store: " + backend.Store() + "\n")
			yaml = strings.Replace(yaml, "    - {name: bob, key: bob-key}\n", "    - {name: bob, key: bob-key}\n    - {name: carol, key: carol-key, rpm: 2}\n", 1)
			a := start(t, yaml)
			b := start(t, yaml)

			scriptSynthesis(a, "from A")
			first := a.turn(t, "alice-key", `[{"role":"user","content":"q1"}]`, "")
			if first.status != 200 || first.conversation == "" {
				t.Fatalf("on A: %d %q %s", first.status, first.warning, first.raw)
			}
			scriptSynthesis(b, "from B")
			second := b.turn(t, "alice-key", `[{"role":"user","content":"q2"}]`, first.conversation)
			if second.status != 200 || second.conversation != first.conversation {
				t.Fatalf("header continuation on B: %d %s", second.status, second.raw)
			}
			sameLines(t, lastMemberMessages(t, b), "user: q1", "assistant: from A", "user: q2")
			scriptSynthesis(a, "from A again")
			third := a.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"from A"},{"role":"user","content":"q2"},{"role":"assistant","content":"from B"},{"role":"user","content":"q3"}]`, "")
			if third.status != 200 || third.conversation != first.conversation {
				t.Fatalf("transcript continuation on A: %d %q", third.status, third.conversation)
			}
			for _, e := range []*env{a, b} {
				for _, run := range []string{first.body.Consortium.RunID, second.body.Consortium.RunID} {
					if resp, raw := e.do("GET", "/v1/consortium/runs/"+run, "alice-key", ""); resp.StatusCode != 200 || !bytes.Contains(raw, []byte(first.conversation)) {
						t.Fatalf("run %s: %d %s", run, resp.StatusCode, raw)
					}
				}
			}
			if resp, _ := b.do("GET", "/v1/consortium/runs/"+first.body.Consortium.RunID, "bob-key", ""); resp.StatusCode != 404 {
				t.Errorf("bob read alice's run: %d", resp.StatusCode)
			}

			scriptSynthesis(a, "response A")
			one := a.mustRespond(t, "alice-key", `{"model":"council","input":"r1"}`)
			scriptSynthesis(b, "response B")
			b.mustRespond(t, "alice-key", `{"model":"council","input":"r2","previous_response_id":"`+one.ID+`"}`)
			sameLines(t, lastMemberMessages(t, b), "user: r1", "assistant: response A", "user: r2")

			for i, e := range []*env{a, b} {
				if resp, raw := e.do("GET", "/v1/models", "carol-key", ""); resp.StatusCode != 200 {
					t.Fatalf("carol's request %d: %d %s", i, resp.StatusCode, raw)
				}
			}
			resp, raw := a.do("GET", "/v1/models", "carol-key", "")
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("carol's third request across replicas: %d %s", resp.StatusCode, raw)
			}
			if strings.Contains(a.logs.String(), "limiting in this process") {
				t.Error("the limit fell back to this process")
			}
		})
	}
}
