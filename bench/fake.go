// Package bench measures the proxy: a fast fake upstream, a bare
// httputil.ReverseProxy hop as the floor any Go proxy is measured against,
// a load generator (fixed concurrency, and fixed rate without coordinated
// omission), and the harness in bench/cmd/bench that runs every target in
// one interleaved run and writes docs/benchmarks.md. Nothing here runs in
// the default test run; Go micro-benchmarks of hot paths live beside the
// code they measure and here (go test -bench).
package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fake is a fast OpenAI-compatible upstream for load tests: it answers
// every chat completion with the same pre-rendered body, after Latency,
// streamed as Chunks deltas TokenInterval apart when the request asks to
// stream. It does no parsing beyond finding "stream":true, so that the
// proxy, not the fake, is what a load test measures.
type Fake struct {
	Latency       time.Duration // before the answer begins
	Chunks        int           // deltas of a streamed answer; if zero, 20
	TokenInterval time.Duration // between streamed deltas

	once   sync.Once
	json   []byte
	frames [][]byte
}

func (f *Fake) render() {
	n := f.Chunks
	if n <= 0 {
		n = 20
	}
	words := make([]string, n)
	for i := range words {
		words[i] = "word" + strconv.Itoa(i)
	}
	content := strings.Join(words, " ")
	f.json = fmt.Appendf(nil, `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}`, content, n, n+10)
	chunk := func(delta, finish string) []byte {
		return fmt.Appendf(nil, `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench",`+
			`"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n", delta, finish)
	}
	f.frames = append(f.frames, chunk(`{"role":"assistant","content":""}`, "null"))
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		f.frames = append(f.frames, chunk(fmt.Sprintf(`{"content":%q}`, w), "null"))
	}
	f.frames = append(f.frames, chunk(`{}`, `"stop"`),
		fmt.Appendf(nil, `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[],`+
			`"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n", n, n+10),
		[]byte("data: [DONE]\n\n"))
}

var streamTrue = []byte(`"stream":true`)

// ServeHTTP answers a chat completion.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.once.Do(f.render)
	body, _ := io.ReadAll(r.Body)
	stream := bytes.Contains(body, streamTrue) || bytes.Contains(body, []byte(`"stream": true`))
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if !stream {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(f.json)))
		w.Write(f.json)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for i, frame := range f.frames {
		if i > 0 && f.TokenInterval > 0 && i < len(f.frames)-2 {
			t := time.NewTimer(f.TokenInterval)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
		rc.Flush()
	}
}
