package upstream

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

// BenchmarkChunks reads an arbiter's streamed reply of 40 deltas, as the
// engine does: every event decoded into a chunk.
func BenchmarkChunks(b *testing.B) {
	sse := arbiterEvents("judge")
	b.ReportAllocs()
	b.SetBytes(int64(len(sse)))
	for b.Loop() {
		s := newChunkStream(openaiDialect{}, testBody(bytes.NewReader(sse)), "judge")
		n := 0
		for _, err := range s.Chunks() {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		s.Close()
		if n != 43 {
			b.Fatalf("%d chunks, want 43", n)
		}
	}
}

// arbiterEvents is the event stream of an arbiter's reply of 40 deltas
// from model: 43 chunks, the last with usage, and [DONE].
func arbiterEvents(model string) []byte {
	var sse bytes.Buffer
	frame := func(delta, finish string) {
		fmt.Fprintf(&sse, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":%q,`+
			`"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n", model, delta, finish)
	}
	frame(`{"role":"assistant","content":""}`, "null")
	for i := range 40 {
		frame(fmt.Sprintf(`{"content":" word%d"}`, i), "null")
	}
	frame(`{}`, `"stop"`)
	fmt.Fprintf(&sse, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":%q,"choices":[],`+
		`"usage":{"prompt_tokens":900,"completion_tokens":40,"total_tokens":940}}`+"\n\ndata: [DONE]\n\n", model)
	return sse.Bytes()
}

// BenchmarkMemberRequest encodes a member's request: a system prompt, a
// short conversation and a temperature, as Chat sends it.
func BenchmarkMemberRequest(b *testing.B) {
	temp := 0.7
	req := &openai.ChatRequest{
		Model:       "gpt-4o-mini",
		Temperature: &temp,
		Messages: []openai.Message{
			{Role: "system", Content: openai.TextContent("You are one of several experts. Be precise.")},
			{Role: "user", Content: openai.TextContent("What are the trade-offs of write-ahead logging?")},
			{Role: "assistant", Content: openai.TextContent(strings.Repeat("An earlier answer, \"quoted\". ", 20))},
			{Role: "user", Content: openai.TextContent("And on power loss?")},
		},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := req.AppendJSON(nil); err != nil {
			b.Fatal(err)
		}
	}
}
