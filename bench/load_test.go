package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// TestBodies: a request with Bodies sends them in turn, round and round,
// each a valid chat body, and a fan-out's copies share one.
func TestBodies(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body struct {
			Messages []struct{ Content string }
		}
		if err := json.Unmarshal(b, &body); err != nil || len(body.Messages) != 1 {
			t.Errorf("body %s: %v", b, err)
			return
		}
		mu.Lock()
		got = append(got, body.Messages[0].Content)
		mu.Unlock()
	}))
	defer srv.Close()
	prompts := []string{"one", `two "quoted" <b>`, "tr\u00e8s"}
	r := &Request{URL: srv.URL, Bodies: ChatBodies("m", false, prompts)}
	Sequential(context.Background(), srv.Client(), r, 4)
	if want := []string{"one", `two "quoted" <b>`, "tr\u00e8s", "one"}; !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	got = nil
	r = &Request{URL: srv.URL, Bodies: ChatBodies("m", false, prompts[:2]), Fanout: 3}
	Sequential(context.Background(), srv.Client(), r, 2)
	slices.Sort(got)
	if want := []string{"one", "one", "one", `two "quoted" <b>`, `two "quoted" <b>`, `two "quoted" <b>`}; !slices.Equal(got, want) {
		t.Errorf("fan-out sent %q, want %q", got, want)
	}
}
