package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/consortium-dev/consortium/internal/config"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	cfg, err := config.Parse(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPanicIsA500 checks that a panicking handler is answered with a 500 in
// OpenAI's shape and counted, and that the server goes on serving.
func TestPanicIsA500(t *testing.T) {
	s := newTestServer(t)
	h := s.requestID(s.observe(s.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		var m map[string]int
		m["boom"]++ // a nil map write: a real bug's panic
	}))))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/chat/completions", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	var body struct {
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Type != "server_error" {
		t.Fatalf("body %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("healthz after a panic: %d", rec.Code)
	}
}

func TestReadyzWhileDraining(t *testing.T) {
	s := newTestServer(t)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("readyz %d", rec.Code)
	}
	s.Drain()
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("readyz while draining: %d", rec.Code)
	}
}

func TestModelLabelsAreBounded(t *testing.T) {
	s := newTestServer(t)
	for i := range maxModelLabels {
		s.metrics.modelLabel("p", string(rune('a'+i%26))+string(rune(i)))
	}
	if got := s.metrics.modelLabel("p", "one-too-many"); got != "other" {
		t.Fatalf("label %q past the bound", got)
	}
}
