package upstream

import (
	"bytes"
	"io"
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
		if _, _, err := translateChatRequest(body, "claude-haiku-4-5", true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnthropicStream translates a streamed answer into chunks.
func BenchmarkAnthropicStream(b *testing.B) {
	in, err := os.ReadFile(filepath.Join("testdata", "anthropic", "stream", "text.anthropic.sse"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		call := &anthropicCall{model: "m", includeUsage: true}
		s := call.stream("anthropic", io.NopCloser(bytes.NewReader(in)), nil)
		if _, err := io.Copy(io.Discard, s); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
