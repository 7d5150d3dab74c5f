package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// consortium answers a chat completion with a consortium.
func (s *Server) consortium(w http.ResponseWriter, r *http.Request, start time.Time, e *consortia.Engine, req *openai.ChatRequest) {
	if err := consortia.Check(req); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.placeTurn(r.Context(), r, e.Name(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	whole := *req
	whole.Messages = t.messages
	req = &whole
	if t.id != "" {
		w.Header().Set(conversationHeader, t.id)
	}
	if req.Stream {
		s.consortiumStream(w, r, start, e, req, t)
		return
	}
	res, err := e.Run(r.Context(), req, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res.Run.ConversationID = t.id
	s.saveTurn(r.Context(), e.Name(), t, res)
	overhead := time.Since(start) - res.Waited
	info(r.Context()).overhead = overhead
	summary, _ := json.Marshal(res.Run.Summary())
	content := res.Synthesis
	body, err := json.Marshal(openai.ChatCompletion{
		ID:      "chatcmpl-" + res.Run.ID,
		Object:  "chat.completion",
		Created: res.Run.Created.Unix(),
		Model:   e.Name(),
		Choices: []openai.Choice{{
			Message:      openai.ResponseMessage{Role: "assistant", Content: &content},
			FinishReason: res.FinishReason,
		}},
		Usage:      &res.Usage,
		Consortium: summary,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Consortium-Run-Id", res.Run.ID)
	h.Set("X-Consortium-Overhead-Ms", fmt.Sprintf("%.3f", float64(overhead.Microseconds())/1000))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// consortiumStream answers with SSE: the role chunk at once, keep-alive
// comments while members work, the synthesis as the arbiter writes it, the
// chunk with finish_reason and the consortium object, the usage chunk when
// asked, and [DONE].
func (s *Server) consortiumStream(w http.ResponseWriter, r *http.Request, start time.Time, e *consortia.Engine, req *openai.ChatRequest, t *turn) {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	runID := consortia.NewID("run_")
	id := "chatcmpl-" + runID
	created := time.Now().Unix()
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	// Every chunk of this stream begins the same way; only the delta
	// changes, so it is written once.
	prefix := fmt.Appendf(nil, `data: {"id":%q,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":[`,
		id, created, quoteJSON(e.Name()))

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Consortium-Run-Id", runID)
	w.WriteHeader(http.StatusOK)
	sw.write(prefix, `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.keepAlive)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			case <-t.C:
				sw.comment(": keep-alive\n\n")
			}
		}
	}()

	res, err := e.Run(consortia.WithRunID(r.Context(), runID), req, func(delta string) {
		sw.write(prefix, `{"index":0,"delta":{"content":`, quoteJSON(delta), `},"finish_reason":null}]}`)
	})
	close(stop)
	wg.Wait()

	if err != nil {
		if r.Context().Err() != nil {
			info(r.Context()).err = r.Context().Err()
			return
		}
		info(r.Context()).err = err
		writeStreamError(sw, errorFrom(err))
		sw.flush()
		return
	}
	info(r.Context()).overhead = time.Since(start) - res.Waited
	res.Run.ConversationID = t.id
	s.saveTurn(r.Context(), e.Name(), t, res)
	summary, _ := json.Marshal(res.Run.Summary())
	sw.write(prefix, `{"index":0,"delta":{},"finish_reason":`, quoteJSON(res.FinishReason), `}],"consortium":`, string(summary), `}`)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		usage, _ := json.Marshal(res.Usage)
		sw.write(prefix, `],"usage":`, string(usage), `}`)
	}
	sw.comment("data: [DONE]\n\n")
}

// sseWriter writes SSE frames from the engine's goroutine and the
// keep-alive goroutine, one at a time, flushing each.
type sseWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

// write sends one data frame: prefix, then parts, then a blank line.
func (s *sseWriter) write(prefix []byte, parts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := getBuffer()
	defer putBuffer(buf)
	buf.Write(prefix)
	for _, p := range parts {
		buf.WriteString(p)
	}
	buf.WriteString("\n\n")
	s.w.Write(buf.Bytes())
	s.rc.Flush()
}

// comment sends raw text (a comment or [DONE]).
func (s *sseWriter) comment(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Write([]byte(text))
	s.rc.Flush()
}

// Write lets writeStreamError use the writer.
func (s *sseWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *sseWriter) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rc.Flush()
}

// quoteJSON encodes s as a JSON string.
func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
