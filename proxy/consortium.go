package proxy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// consortium answers a chat completion with a consortium.
func (s *Server) consortium(w http.ResponseWriter, r *http.Request, start time.Time, e Consortium, req *openai.ChatRequest) {
	if err := consortia.Check(req); err != nil {
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
	ew.JSON(chunk(openai.ChunkChoice{Delta: openai.Delta{Role: "assistant", Content: &empty}}))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(s.keepAlive)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			case <-tick.C:
				ew.Comment("keep-alive")
			}
		}
	})

	first := true
	res, err := e.Run(consortia.WithRunID(r.Context(), runID), req, func(delta string) {
		if first {
			first = false
			s.metrics.firstSynthesis.WithLabelValues(e.Name()).Observe(time.Since(start).Seconds())
		}
		ew.JSON(chunk(openai.ChunkChoice{Delta: openai.Delta{Content: &delta}}))
	})
	close(stop)
	wg.Wait()

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
	last := chunk(openai.ChunkChoice{FinishReason: &res.FinishReason})
	last.Consortium, _ = json.Marshal(res.Run.Summary())
	ew.JSON(last)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := chunk()
		u.Usage = &res.Usage
		ew.JSON(u)
	}
	ew.Done()
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
	var members []any
	for _, round := range run.Rounds {
		for _, m := range round.Members {
			s.metrics.members.WithLabelValues(consortium, m.Model, m.Status).Inc()
			if m.Status == consortia.StatusOK || m.Status == consortia.StatusCancelled {
				continue
			}
			s.log.LogAttrs(ctx, slog.LevelWarn, "consortium member failed",
				slog.String("request_id", info(ctx).id), slog.String("run_id", run.ID), slog.String("consortium", consortium),
				slog.Int("round", round.Number), slog.String("model", m.Model), slog.Int("instance", m.Instance),
				slog.String("status", m.Status), slog.String("error", m.Error))
		}
	}
	if n := len(run.Rounds); n > 0 {
		// The last round's members are the ones the answer rests on, as in
		// the consortium object.
		for _, m := range run.Rounds[n-1].Members {
			members = append(members, slog.String(m.Model+"#"+strconv.Itoa(m.Instance), m.Status+" "+strconv.FormatInt(m.LatencyMs, 10)+"ms"))
		}
	}
	attrs = append(attrs, slog.Group("members", members...))
	s.log.LogAttrs(ctx, slog.LevelInfo, "consortium run", attrs...)
}

// runFailed logs and counts a run that ended without an answer. The
// engine returns no record then; the error names each failed member.
func (s *Server) runFailed(r *http.Request, consortium, runID, conversation string, err error) {
	outcome := errorFrom(err).Type
	s.metrics.runs.WithLabelValues(consortium, outcome).Inc()
	level := slog.LevelWarn
	if outcome == "client_closed" {
		level = slog.LevelInfo
	}
	s.log.LogAttrs(r.Context(), level, "consortium run failed",
		slog.String("request_id", info(r.Context()).id), slog.String("run_id", runID),
		slog.String("conversation_id", conversation), slog.String("consortium", consortium), slog.String("outcome", outcome), slog.String("error", err.Error()))
}
