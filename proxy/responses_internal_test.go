package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

// translateStream runs a chat stream, written in the pieces given, through
// a responseWriter and returns the Responses stream it wrote.
func translateStream(t *testing.T, s *Server, pieces ...[]byte) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	req := &openai.ResponseRequest{Model: "m", Store: new(false)}
	rw := &responseWriter{s: s, w: rec, r: httptest.NewRequest(http.MethodPost, "/v1/responses", nil),
		t: &responseTurn{id: "resp_1", item: "msg_1", req: req, created: 1}, header: http.Header{}}
	rw.Header().Set("Content-Type", "text/event-stream")
	rw.WriteHeader(http.StatusOK)
	for _, p := range pieces {
		if _, err := rw.Write(p); err != nil {
			break
		}
	}
	rw.end()
	return rec.Body.Bytes()
}

// FuzzResponseStream: whatever a provider's stream holds and however it
// is cut into writes, the Responses stream numbers its events from 0 up,
// names each by its type, ends with exactly one of response.completed and
// response.failed, and does not depend on where the writes were cut.
func FuzzResponseStream(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n: keep-alive\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"), 40)
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: {\"error\":{\"message\":\"broke\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n"), 7)
	f.Add([]byte("event: consortium.member\ndata: {}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n"), 3)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		s := newTestServer(t)
		whole := translateStream(t, s, stream)
		cut = max(0, min(cut, len(stream)))
		if split := translateStream(t, s, stream[:cut], stream[cut:]); !bytes.Equal(split, whole) {
			t.Fatalf("cut at %d:\n%s\nwhole:\n%s", cut, split, whole)
		}
		var types []string
		for _, block := range strings.Split(string(whole), "\n\n") {
			if block == "" || strings.HasPrefix(block, ":") {
				continue
			}
			name, data, ok := strings.Cut(block, "\n")
			var ev struct {
				Type string `json:"type"`
				Seq  int    `json:"sequence_number"`
			}
			if !ok || json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &ev) != nil || name != "event: "+ev.Type || ev.Seq != len(types) {
				t.Fatalf("event %d: %q in\n%s", len(types), block, whole)
			}
			types = append(types, ev.Type)
		}
		ends := 0
		for _, typ := range types {
			if typ == "response.completed" || typ == "response.failed" {
				ends++
			}
		}
		if ends != 1 || (types[len(types)-1] != "response.completed" && types[len(types)-1] != "response.failed") {
			t.Fatalf("events %q", types)
		}
	})
}
