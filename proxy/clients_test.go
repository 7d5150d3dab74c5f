package proxy_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestClientRequests replays the request bodies that real clients send
// (openai-python, openai-node, LangChain, LangChain.js, the AI SDK, llm:
// testdata/clients, captured by the compatibility suites in compat/), so
// that a change in request checking that would turn them away fails here,
// not only in the slower suites. Each body must pass through to a provider
// unchanged but for its model, and a consortium must answer it (or refuse
// tools with a 400 naming them, as it does not call tools yet).
func TestClientRequests(t *testing.T) {
	files, err := filepath.Glob("testdata/clients/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no client bodies in testdata/clients: %v", err)
	}
	e := startCouncil(t, councilYAML)
	const synthesis = `{"answer": 4, "reason": "x"}` // JSON, for the clients that ask for it
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			captured, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]any
			if err := json.Unmarshal(captured, &fields); err != nil {
				t.Fatal(err)
			}
			stream, _ := fields["stream"].(bool)
			_, tools := fields["tools"]
			e.fake.Reset()

			fields["model"] = "fake/m1"
			resp, body := e.post("/v1/chat/completions", mustJSON(t, fields))
			if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
				t.Fatalf("passthrough: %d %s", resp.StatusCode, body)
			}
			sent := e.fake.RequestsFor("m1")
			if len(sent) != 1 {
				t.Fatalf("the provider got %d requests", len(sent))
			}
			var want, got any
			json.Unmarshal(captured, &want)
			json.Unmarshal(sent[0].Body, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the provider got\n%s\nwant\n%s", sent[0].Body, captured)
			}

			scriptCouncil(e.fake, synthesis)
			fields["model"] = "council"
			resp, body = e.post("/v1/chat/completions", mustJSON(t, fields))
			if tools {
				if resp.StatusCode != http.StatusBadRequest || decodeError(t, body).Error.Param == nil || *decodeError(t, body).Error.Param != "tools" {
					t.Errorf("consortium with tools: %d %s, want 400 naming tools", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
				t.Fatalf("consortium: %d %s", resp.StatusCode, body)
			}
			if stream {
				if !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
					t.Errorf("consortium stream: %s", body)
				}
				return
			}
			var cc struct {
				Choices []struct {
					Message struct{ Content string }
				}
			}
			if err := json.Unmarshal(body, &cc); err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content != synthesis {
				t.Errorf("consortium answer: %s", body)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
