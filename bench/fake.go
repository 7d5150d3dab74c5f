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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// Fake is a fast OpenAI-compatible upstream for load tests: it answers
// every chat completion with the same pre-rendered body, after Latency,
// streamed as Chunks deltas TokenInterval apart when the request asks to
// stream. It does no parsing beyond finding "stream":true (and, with
// Rank, the labels of a judge prompt), so that the proxy, not the fake, is
// what a load test measures.
type Fake struct {
	Latency       time.Duration // before the answer begins
	Chunks        int           // deltas of a streamed answer; if zero, 20
	TokenInterval time.Duration // between streamed deltas
	// Rank, if set, answers a JSON request whose prompt shows answers
	// under "### Response X" headings (a rank judge's prompt, as
	// consortia/judge.tmpl writes it) with a critique and a ranking that
	// names each label shown once, in the order shown. The reply for each
	// set of labels is rendered once.
	Rank bool
	// Burst, with no TokenInterval, writes a streamed answer whole, in one
	// write, instead of flushing it frame by frame: the answer of a
	// provider that had it all at once, for the fake's least work where
	// what is measured is not a stream's frames (a consortium's calls).
	Burst bool

	once     sync.Once
	json     []byte
	frames   [][]byte
	burst    []byte   // the frames joined
	rankings sync.Map // labels joined by " > " -> rendered JSON answer
}

// FakeContent is the answer a Fake of chunks deltas (0: the default)
// writes.
func FakeContent(chunks int) string { return strings.Join(fakeWords(chunks), " ") }

func fakeWords(n int) []string {
	if n <= 0 {
		n = 20
	}
	words := make([]string, n)
	for i := range words {
		words[i] = "word" + strconv.Itoa(i)
	}
	return words
}

func (f *Fake) render() {
	words := fakeWords(f.Chunks)
	n := len(words)
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
	f.burst = bytes.Join(f.frames, nil)
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
		answer := f.json
		if f.Rank {
			if labels := judgeLabels(body); len(labels) > 0 {
				answer = f.ranking(labels)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		w.Write(answer)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	if f.Burst && f.TokenInterval == 0 {
		// Left unflushed, it leaves with the end of the body.
		w.Write(f.burst)
		return
	}
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

// responseHeading is how the default judge prompt heads each answer.
var responseHeading = []byte("### Response ")

// judgeLabels returns the labels a judge prompt shows ("A", "B" ... "AA"),
// each once, in the order shown; none for any other request.
func judgeLabels(body []byte) []string {
	var labels []string
	for {
		i := bytes.Index(body, responseHeading)
		if i < 0 {
			return labels
		}
		body = body[i+len(responseHeading):]
		n := 0
		for n < len(body) && body[n] >= 'A' && body[n] <= 'Z' {
			n++
		}
		if l := string(body[:n]); n > 0 && !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
}

// ranking returns the rendered answer that ranks labels in order.
func (f *Fake) ranking(labels []string) []byte {
	key := strings.Join(labels, " > ")
	if b, ok := f.rankings.Load(key); ok {
		return b.([]byte)
	}
	content := "<critique>Every answer is a list of words; none is wrong.</critique>\n<ranking>" + key + "</ranking>"
	b, _ := json.Marshal(openai.ChatCompletion{
		ID: "chatcmpl-bench", Object: "chat.completion", Created: 1700000000, Model: "bench",
		Choices: []openai.Choice{{Message: openai.ResponseMessage{Role: "assistant", Content: &content}, FinishReason: "stop"}},
		Usage:   &openai.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30},
	})
	f.rankings.Store(key, b)
	return b
}
