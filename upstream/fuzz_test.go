package upstream

import (
	"bytes"
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
	p := &Provider{name: "fuzz"}
	f.Fuzz(func(t *testing.T, body []byte) {
		s := newStream(p, "m", io.NopCloser(bytes.NewReader(body)))
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
