package proxy

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// consortium answers a chat completion with a consortium.
func (s *Server) consortium(w http.ResponseWriter, r *http.Request, start time.Time, e Consortium, req *openai.ChatRequest) {
	if err := e.Check(req); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := s.placeTurn(w, r, e.Name(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	whole := *req
	whole.Messages = t.messages
	req = &whole
	if req.Stream {
		s.consortiumStream(w, r, start, e, req, t)
		return
	}
	runID := cache.NewID("run_")
	res, err := e.Run(consortia.WithRunID(r.Context(), runID), req, nil)
	if err != nil {
		s.runFailed(r, e.Name(), runID, t.id, err)
		s.fail(w, r, err)
		return
	}
	s.saveTurn(w, r, t, res)
	s.runDone(r, e.Name(), res.Run)
	overhead := time.Since(start) - res.Waited
	info(r.Context()).overhead = overhead
	summary, _ := json.Marshal(res.Run.Summary())
	var choices []openai.Choice
	for i, content := range answers(res) {
		choices = append(choices, openai.Choice{
			Index:        i,
			Message:      openai.ResponseMessage{Role: "assistant", Content: &content},
			FinishReason: finishReason(res, i),
		})
	}
	body, err := json.Marshal(openai.ChatCompletion{
		ID:         "chatcmpl-" + res.Run.ID,
		Object:     "chat.completion",
		Created:    res.Run.Created.Unix(),
		Model:      e.Name(),
		Choices:    choices,
		Usage:      &res.Usage,
		Consortium: summary,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("X-Consortium-Run-Id", res.Run.ID)
	h.Set("X-Consortium-Overhead-Ms", overheadMs(overhead))
	writeAnswer(w, body)
}

// answers returns the answer's choices: the synthesis, or with n > 1 (rank)
// the answers in rank order, the synthesis first.
func answers(res *consortia.Result) []string {
	if len(res.Choices) > 1 {
		return res.Choices
	}
	return []string{res.Synthesis}
}

// finishReason is choice i's finish_reason: the client's bounds cut only
// the synthesis, choice 0.
func finishReason(res *consortia.Result, i int) string {
	if i == 0 {
		return res.FinishReason
	}
	return "stop"
}

// consortiumStream answers with SSE: the role chunk at once (one for each
// choice when the client asked for n > 1), keep-alive comments while
// members work, the synthesis as the arbiter writes it (choice 0), then
// the other choices' content in rank order, the chunks with finish_reason,
// the last of which carries the consortium object, the usage chunk when
// asked, and [DONE].
func (s *Server) consortiumStream(w http.ResponseWriter, r *http.Request, start time.Time, e Consortium, req *openai.ChatRequest, t *turn) {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	runID := cache.NewID("run_")
	// Every chunk of this stream shares its id, time and model; only the
	// choices (and on the last ones the consortium object and usage) change.
	chunk := func(choices ...openai.ChunkChoice) *openai.ChatCompletionChunk {
		if choices == nil {
			choices = []openai.ChunkChoice{} // the usage chunk's "choices": []
		}
		return &openai.ChatCompletionChunk{ID: "chatcmpl-" + runID, Object: "chat.completion.chunk", Created: start.Unix(), Model: e.Name(), Choices: choices}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Consortium-Run-Id", runID)
	w.WriteHeader(http.StatusOK)
	ew := openai.NewEventWriter(w)
	empty := ""
	n := 1
	if req.N != nil {
		n = max(*req.N, 1)
	}
	for i := range n {
		ew.JSON(chunk(openai.ChunkChoice{Index: i, Delta: openai.Delta{Role: "assistant", Content: &empty}}))
	}

	stopKeepAlive := keepAlive(ew, s.keepAlive)

	first := true
	ctx := withEvents(consortia.WithRunID(r.Context(), runID), r, ew)
	// The synthesis's chunks are held until the stream they come from is
	// about to wait for the provider: a burst that arrived in one read
	// goes to the client in one write.
	ctx = upstream.WithBeforeRead(ctx, func() { ew.FlushHeld() })
	res, err := e.Run(ctx, req, func(delta string) {
		if first {
			first = false
			s.metrics.firstSynthesis.WithLabelValues(e.Name()).Observe(time.Since(start).Seconds())
		}
		ew.Hold(chunk(openai.ChunkChoice{Delta: openai.Delta{Content: &delta}}))
	})
	// What the synthesis held waits for the stream's last events: the
	// client has the answer when it has the finish, and the handler's
	// return sends them all, with the end of the body, in one write.
	stopKeepAlive()

	if err != nil {
		s.runFailed(r, e.Name(), runID, t.id, err)
		if r.Context().Err() != nil {
			info(r.Context()).err = r.Context().Err()
			return
		}
		info(r.Context()).err = err
		writeStreamError(ew, errorFrom(err))
		return
	}
	info(r.Context()).overhead = time.Since(start) - res.Waited
	s.saveTurn(w, r, t, res)
	s.runDone(r, e.Name(), res.Run)
	choices := answers(res)
	for i := 1; i < len(choices); i++ {
		if choices[i] != "" {
			ew.Hold(chunk(openai.ChunkChoice{Index: i, Delta: openai.Delta{Content: &choices[i]}}))
		}
	}
	for i := range choices {
		reason := finishReason(res, i)
		finish := chunk(openai.ChunkChoice{Index: i, FinishReason: &reason})
		if i == len(choices)-1 {
			finish.Consortium, _ = json.Marshal(res.Run.Summary())
		}
		ew.Hold(finish)
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := chunk()
		u.Usage = &res.Usage
		ew.Hold(u)
	}
	ew.End()
}

// runDone logs a finished run, one line with each member's status and
// latency, then each member failure at warn, and counts it. Neither
// carries prompt text: member errors are upstream's scrubbed descriptions.
func (s *Server) runDone(r *http.Request, consortium string, run *consortia.Run) {
	ctx := r.Context()
	s.metrics.runs.WithLabelValues(consortium, "ok").Inc()
	s.metrics.rounds.WithLabelValues(consortium).Observe(float64(run.Iterations))
	attrs := []slog.Attr{
		slog.String("request_id", info(ctx).id),
		slog.String("run_id", run.ID),
		slog.String("conversation_id", run.ConversationID),
		slog.String("consortium", consortium),
		slog.Int("rounds", run.Iterations),
	}
	if run.Confidence != nil {
		s.metrics.confidence.WithLabelValues(consortium).Observe(*run.Confidence)
		attrs = append(attrs, slog.Float64("confidence", *run.Confidence))
	}
	for _, round := range run.Rounds {
		for _, m := range round.Members {
			s.metrics.members.WithLabelValues(consortium, m.Model, m.Status).Inc()
		}
	}
	attrs = append(attrs, s.members(r, consortium, run))
	s.log.LogAttrs(ctx, slog.LevelInfo, "consortium run", attrs...)
}

// members logs at warn each member failure of every round of run, and
// returns the log attribute of the last round's members, the
// ones the answer rests on (as in the consortium object): each one's
// status and latency.
func (s *Server) members(r *http.Request, consortium string, run *consortia.Run) slog.Attr {
	ctx := r.Context()
	for _, round := range run.Rounds {
		for _, m := range round.Members {
			if m.Status == consortia.StatusOK || m.Status == consortia.StatusCancelled {
				continue
			}
			s.log.LogAttrs(ctx, slog.LevelWarn, "consortium member failed",
				slog.String("request_id", info(ctx).id), slog.String("run_id", run.ID), slog.String("consortium", consortium),
				slog.Int("round", round.Number), slog.String("model", m.Model), slog.Int("instance", m.Instance),
				slog.String("status", m.Status), slog.String("error", m.Error))
		}
	}
	var members []any
	if n := len(run.Rounds); n > 0 {
		for _, m := range run.Rounds[n-1].Members {
			members = append(members, slog.String(m.Model+"#"+strconv.Itoa(m.Instance), m.Status+" "+strconv.FormatInt(m.LatencyMs, 10)+"ms"))
		}
	}
	return slog.Group("members", members...)
}

// runFailed logs and counts a run that ended without an answer: one line
// with the outcome and the error and, for a run that had begun (a
// *consortia.RunError), its rounds and each member's status and latency,
// with each member failure at warn, as runDone logs them. Its member
// answers are not counted: that metric counts those of successful runs.
func (s *Server) runFailed(r *http.Request, consortium, runID, conversation string, err error) {
	outcome := errorFrom(err).Type
	s.metrics.runs.WithLabelValues(consortium, outcome).Inc()
	level := slog.LevelWarn
	if outcome == "client_closed" {
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{
		slog.String("request_id", info(r.Context()).id), slog.String("run_id", runID),
		slog.String("conversation_id", conversation), slog.String("consortium", consortium),
		slog.String("outcome", outcome), slog.String("error", err.Error()),
	}
	if re, ok := errors.AsType[*consortia.RunError](err); ok {
		attrs = append(attrs, slog.Int("rounds", re.Run.Iterations), s.members(r, consortium, re.Run))
	}
	s.log.LogAttrs(r.Context(), level, "consortium run failed", attrs...)
}

// keepAlive sends a keep-alive comment on ew every d until the returned
// stop is called; after stop returns, none is sent. It is a timer, not a
// goroutine: most runs end before the first comment is due.
func keepAlive(ew *openai.EventWriter, d time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock() // the first comment waits until t is set
	defer mu.Unlock()
	t = time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if ew.Comment("keep-alive") != nil {
			return // the client is gone: nothing more to keep alive
		}
		t.Reset(d)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
