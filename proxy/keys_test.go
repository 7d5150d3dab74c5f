package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestKeysAreCaseSensitive: JSON keys are matched exactly, as OpenAI's API
// matches them (issue 14, item 5). "STREAM" and "Model" are unknown fields,
// forwarded untouched, so the proxy neither streams nor routes on them and
// the provider sees the body as the client wrote it; a known field given
// twice is a 400 before any upstream call.
func TestKeysAreCaseSensitive(t *testing.T) {
	e := start(t, "")

	resp, body := e.post("/chat/completions",
		`{"model":"fake/m1","STREAM":true,"Model":"fake/m2","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	reqs := e.fake.RequestsFor("m1")
	if len(reqs) != 1 || len(e.fake.RequestsFor("m2")) != 0 {
		t.Fatalf("requests to m1 %d, to m2 %d: \"Model\" routed", len(reqs), len(e.fake.RequestsFor("m2")))
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
		t.Fatal(err)
	}
	if string(sent["STREAM"]) != "true" || string(sent["Model"]) != `"fake/m2"` || string(sent["model"]) != `"m1"` {
		t.Errorf("the provider got %s", reqs[0].Body)
	}

	for _, body := range []string{
		`{"model":"fake/m1","model":"fake/m2","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"fake/m1","messages":[{"role":"user","content":"hi"}],"stream":false,"stream":true}`,
		`{"model":"fake/m1","messages":[{"role":"user","role":"system","content":"hi"}]}`,
	} {
		resp, got := e.post("/chat/completions", body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(got), "more than once") {
			t.Errorf("%s: status %d, %s", body, resp.StatusCode, got)
		}
	}
	if n := len(e.fake.Requests()); n != 1 {
		t.Errorf("%d upstream requests, want only the first", n)
	}
}
