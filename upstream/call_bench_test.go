package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

// BenchmarkCall measures whole typed calls over a local server and the
// provider's own transport, as a consortium makes them: a member's Chat
// (a short request, a JSON answer) and the arbiter's ChatStream (a request
// of a few KB, 40 deltas streamed). The server answers with canned bytes;
// run with -memprofile and pprof -focus 'consortium/(upstream|openai)' to
// leave its own work out.
func BenchmarkCall(b *testing.B) {
	answer := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("A member's answer. ", 30) +
		`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":60,"completion_tokens":120,"total_tokens":180}}`
	events := arbiterEvents("m")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [8 << 10]byte
		for {
			if _, err := r.Body.Read(body[:]); err != nil {
				break
			}
		}
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(events)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answer))
	}))
	defer srv.Close()
	p, err := New(Config{Name: "bench", BaseURL: srv.URL + "/v1", APIKey: "sk-bench-0123456789"})
	if err != nil {
		b.Fatal(err)
	}
	temp := 0.7
	member := &openai.ChatRequest{
		Temperature: &temp,
		Messages: []openai.Message{
			{Role: "system", Content: openai.TextContent("You are one of several experts. Be precise.")},
			{Role: "user", Content: openai.TextContent("What are the trade-offs of write-ahead logging?")},
		},
	}
	arbiter := &openai.ChatRequest{
		Messages: []openai.Message{
			{Role: "system", Content: openai.TextContent("You weigh the experts' answers and write the best one.")},
			{Role: "user", Content: openai.TextContent("What are the trade-offs of write-ahead logging?\n\n" +
				strings.Repeat("Expert answer: \"an answer of some length, quoted\".\n", 60))},
		},
	}
	b.Run("member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Chat(context.Background(), "m", member); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("arbiter", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, err := range p.ChatStream(context.Background(), "m", arbiter) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != 43 {
				b.Fatalf("%d chunks, want 43", n)
			}
		}
	})
}
