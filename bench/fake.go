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
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/openai"
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
	usage := &openai.Usage{PromptTokens: 10, CompletionTokens: n, TotalTokens: n + 10}
	f.json, _ = json.Marshal(openai.ChatCompletion{
		ID: "chatcmpl-bench", Object: "chat.completion", Created: 1700000000, Model: "bench",
		Choices: []openai.Choice{{Message: openai.ResponseMessage{Role: "assistant", Content: &content}, FinishReason: "stop"}},
		Usage:   usage,
	})

	// The frames are rendered once, through the project's one SSE writer,
	// so that serving them costs the fake nothing but the writes.
	var buf bytes.Buffer
	ew := openai.NewEventWriter(&buf)
	frame := func(write func()) {
		buf.Reset()
		write()
		f.frames = append(f.frames, bytes.Clone(buf.Bytes()))
	}
	chunk := func(choices []openai.ChunkChoice, usage *openai.Usage) {
		frame(func() {
			ew.JSON(openai.ChatCompletionChunk{ID: "chatcmpl-bench", Object: "chat.completion.chunk", Created: 1700000000, Model: "bench",
				Choices: choices, Usage: usage})
		})
	}
	empty, stop := "", "stop"
	chunk([]openai.ChunkChoice{{Delta: openai.Delta{Role: "assistant", Content: &empty}}}, nil)
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		chunk([]openai.ChunkChoice{{Delta: openai.Delta{Content: &w}}}, nil)
	}
	chunk([]openai.ChunkChoice{{FinishReason: &stop}}, nil)
	chunk([]openai.ChunkChoice{}, usage)
	frame(func() { ew.Done() })
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
	ew := openai.NewEventWriter(w)
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
		if err := ew.Raw(frame); err != nil {
			return
		}
	}
}
