package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/consortium-dev/consortium/upstream"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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

// TestObserveCall checks the hook the wiring passes as
// upstream.Config.OnCall: one count per call by provider, model, role and
// outcome, the model label bounded, a call without a role still counted.
func TestObserveCall(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []upstream.Call{
		{Provider: "openai", Model: "gpt-4o-mini", Role: "member", Outcome: "ok", Status: 200, Attempts: 1},
		{Provider: "openai", Model: "gpt-4o-mini", Role: "member", Outcome: "ok", Status: 200, Attempts: 2},
		{Provider: "openai", Model: "gpt-4o-mini", Role: "arbiter", Outcome: "timeout"},
		{Provider: "openai", Model: "gpt-4o-mini", Outcome: "breaker_open"},
	} {
		m.ObserveCall(c)
	}
	for _, tc := range []struct {
		role, outcome string
		want          float64
	}{
		{"member", "ok", 2},
		{"arbiter", "timeout", 1},
		{"unknown", "breaker_open", 1},
		{"passthrough", "ok", 0},
	} {
		if got := calls(t, reg, "gpt-4o-mini", tc.role, tc.outcome); got != tc.want {
			t.Errorf("role %s, outcome %s: %v calls, want %v", tc.role, tc.outcome, got, tc.want)
		}
	}
	for i := range maxModelLabels {
		m.ObserveCall(upstream.Call{Provider: "p", Model: fmt.Sprint("random-", i), Role: "passthrough", Outcome: "ok"})
	}
	if got := calls(t, reg, "other", "passthrough", "ok"); got != 1 {
		t.Errorf("%v calls counted as model other, want the one past the bound", got)
	}
}

// calls reads consortium_upstream_requests_total for a model, role and
// outcome from what reg serves.
func calls(t *testing.T, reg *prometheus.Registry, model, role, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "consortium_upstream_requests_total" {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				want := map[string]string{"model": model, "role": role, "outcome": outcome}[l.GetName()]
				if want != "" && l.GetValue() != want {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
