package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// bothTransports are the transports a plain-HTTP provider may be called
// through: its own (nil, the default) and net/http's.
func bothTransports() []struct {
	name      string
	transport http.RoundTripper
} {
	return []struct {
		name      string
		transport http.RoundTripper
	}{{"h1", nil}, {"net/http", NewTransport()}}
}

// TestChatBodiesUnderRetries: the pooled bodies of concurrent chat calls
// each reach the provider whole, on every attempt, over the provider's
// own HTTP/1.1 transport and over net/http's.
func TestChatBodiesUnderRetries(t *testing.T) {
	var tries sync.Map // the question -> attempts seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req openai.ChatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := req.Messages[0].Content.Text
		n, _ := tries.LoadOrStore(q, new(atomic.Int32))
		if n.(*atomic.Int32).Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // each question is tried again once
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, q)
	}))
	defer srv.Close()
	for _, tc := range bothTransports() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{Name: "fake", BaseURL: srv.URL, Transport: tc.transport, MaxRetries: 1,
				Backoff: time.Millisecond, Breaker: BreakerSettings{Failures: 1000}})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIdle(p)
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Go(func() {
					// Bodies of many sizes, so that pooled buffers of one
					// size are reused for others.
					q := fmt.Sprintf("%s question %d %s", tc.name, i, strings.Repeat("x", i*i*10))
					req := &openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: openai.TextContent(q)}}}
					cc, err := p.Chat(context.Background(), "m", req)
					if err != nil {
						t.Error(err)
						return
					}
					if got := *cc.Choices[0].Message.Content; got != q {
						t.Errorf("answer %.40q, want %.40q", got, q)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestRedirectNotFollowed: a provider's 3xx is its answer, never
// followed, and a pooled body is given back once.
func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			elsewhere.Store(true)
		}
		io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	for _, tc := range bothTransports() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{Name: "fake", BaseURL: srv.URL, Transport: tc.transport})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIdle(p)
			var released atomic.Int32
			req := chat("m")
			req.Release = func() { released.Add(1) }
			_, err = p.Do(context.Background(), req)
			if e := upstreamError(t, err); e.Status != http.StatusTemporaryRedirect {
				t.Errorf("status %d, want 307", e.Status)
			}
			if released.Load() != 1 {
				t.Errorf("released %d times, want 1", released.Load())
			}
			_, err = p.Chat(context.Background(), "m", &openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: openai.TextContent("hi")}}})
			if e := upstreamError(t, err); e.Status != http.StatusTemporaryRedirect {
				t.Errorf("Chat: status %d, want 307", e.Status)
			}
			if elsewhere.Load() {
				t.Error("the redirect was followed")
			}
		})
	}
}

// TestURLCredentials: credentials in the base URL are sent as basic
// authorization, as http.Client sends them, and never as an error's text.
func TestURLCredentials(t *testing.T) {
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	}))
	defer srv.Close()
	p, err := New(Config{Name: "fake", BaseURL: strings.Replace(srv.URL, "http://", "http://user:secret-password@", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeIdle(p)
	if _, err := p.Do(context.Background(), chat("m")); err != nil {
		t.Fatal(err)
	}
	if got, want := auth.Load(), "Basic dXNlcjpzZWNyZXQtcGFzc3dvcmQ="; got != want {
		t.Errorf("Authorization %q, want %q", got, want)
	}
	srv.Close()
	_, err = p.Do(context.Background(), chat("m"))
	if err == nil || strings.Contains(err.Error(), "secret-password") || !strings.Contains(err.Error(), `Post "http://user:***@`) {
		t.Errorf("error %v, want one that reads as http.Client's, the password hidden", err)
	}
}

// TestChunksOwnTheirData: the chunks of a stream keep their values once
// the stream has read past them (its events are decoded from one reused
// buffer).
func TestChunksOwnTheirData(t *testing.T) {
	var sse strings.Builder
	for i := range 5 {
		fmt.Fprintf(&sse, `data: {"id":"id-%d","object":"chat.completion.chunk","model":"model-%d","choices":[{"index":0,"delta":{"content":"part %d","tool_calls":[{"index":%d}]}}]}`+"\n\n", i, i, i, i)
	}
	sse.WriteString("data: [DONE]\n\n")
	s := newChunkStream(openaiDialect{}, testBody(strings.NewReader(sse.String())), "m")
	defer s.Close()
	var chunks []*openai.ChatCompletionChunk
	for c, err := range s.Chunks() {
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	if len(chunks) != 5 {
		t.Fatalf("%d chunks, want 5", len(chunks))
	}
	for i, c := range chunks {
		d := c.Choices[0].Delta
		if c.ID != fmt.Sprint("id-", i) || c.Model != fmt.Sprint("model-", i) || *d.Content != fmt.Sprint("part ", i) ||
			string(d.ToolCalls) != fmt.Sprintf(`[{"index":%d}]`, i) {
			t.Errorf("chunk %d: %+v %q %s", i, c, *d.Content, d.ToolCalls)
		}
	}
}
