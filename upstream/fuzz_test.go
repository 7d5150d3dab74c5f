package upstream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzStreamChunks feeds arbitrary bytes to the SSE chunk reader: it must
// never panic or hang, and every chunk it yields must have come from a
// data line that decodes as a chunk.
func FuzzStreamChunks(f *testing.F) {
	for _, seed := range []string{
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n",
		": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n",
		"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"cut",
		"data: not json\n\n",
		"event: ping\ndata: {}\n\n",
		"data: " + strings.Repeat("x", 70000) + "\n\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s := newChunkStream(openaiDialect{}, testBody(bytes.NewReader(body)), "m")
		defer s.Close()
		n := 0
		for chunk, err := range s.Chunks() {
			if err != nil {
				if chunk != nil {
					t.Fatal("a chunk came with an error")
				}
				continue
			}
			if chunk == nil {
				t.Fatal("a nil chunk without an error")
			}
			n++
		}
		if n > bytes.Count(body, []byte("data:"))+bytes.Count(body, []byte("data\n")) {
			t.Fatalf("%d chunks from %d data lines", n, bytes.Count(body, []byte("data:")))
		}
	})
}

// FuzzAnthropicStream feeds arbitrary bytes to the Anthropic stream
// translator: it must never panic or hang, and what it writes must be a
// well-formed OpenAI chunk stream, ended by [DONE] unless it fails, and
// then with ErrMalformed (a body read in memory has no other way to fail).
func FuzzAnthropicStream(f *testing.F) {
	for _, seed := range []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\ndata: {\"type\":\"message_stop\"}\n\n",
		"data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{\"a\":1}}}\n\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
		"data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
		"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":-5}}\n\n",
		"event: ping\ndata: {}\n\n",
		"data: {\"type\":\"content_block_delta\",\"delta\":\"text\"}\n\n",
		"data: " + strings.Repeat("{", 70000) + "\n\n",
	} {
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, includeUsage bool) {
		out, err, _ := translateStream(t, body, includeUsage, func(r io.Reader) io.Reader { return r })
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("read error %v is not ErrMalformed", err)
		}
		chunks := checkChunks(t, out, err == nil)
		if events := bytes.Count(body, []byte("\n")) + 1; len(chunks) > 2*events+2 {
			t.Fatalf("%d chunks from %d lines", len(chunks), events)
		}
	})
}
