package upstream

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkAnthropicRequest translates a consortium member's later-round
// thread: system prompt, question, earlier answer, feedback.
func BenchmarkAnthropicRequest(b *testing.B) {
	long := strings.Repeat("A paragraph of earlier answer that the member wrote. ", 80)
	body := []byte(`{"model":"m","max_tokens":1024,"temperature":0.7,"messages":[` +
		`{"role":"system","content":"You are one of several experts.\n\nBe precise."},` +
		`{"role":"user","content":"What are the trade-offs of write-ahead logging?"},` +
		`{"role":"assistant","content":"` + long + `"},` +
		`{"role":"user","content":"Refine: address durability on power loss."}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := translateChatRequest(body, "claude-haiku-4-5", true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnthropicStream translates a streamed answer into chunks, as
// a consortium member reads it.
func BenchmarkAnthropicStream(b *testing.B) {
	in, err := os.ReadFile(filepath.Join("testdata", "anthropic", "stream", "text.anthropic.sse"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		n := 0
		for _, err := range (&anthropicDialect{}).chunks(bytes.NewReader(in), "m") {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n == 0 {
			b.Fatal("no chunks")
		}
	}
}
