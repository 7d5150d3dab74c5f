package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// conversationHeader carries a conversation id, in requests (to continue
// it) and in responses.
const conversationHeader = "X-Consortium-Conversation"

// warningHeader tells a client why its conversation was not saved.
const warningHeader = "X-Consortium-Warning"

// notSaved is the warning of a turn the store could not keep.
const notSaved = "the conversation store is unavailable: this turn was not saved, so it cannot be continued by " +
	conversationHeader + "; send the whole conversation to continue it"

// turn is a consortium request placed in its conversation.
type turn struct {
	// id is the conversation's id; "" when the store could not be reached
	// and nothing will be saved.
	id string
	// messages are what the consortium sees: the whole conversation.
	messages []openai.Message
	// stream is whether the answer is a stream, whose headers leave
	// before the turn is saved.
	stream    bool
	placement *cache.Placement
}

// placeTurn finds the conversation a consortium request continues, by its
// X-Consortium-Conversation header or by its transcript (cache places
// it), and maps what went wrong to an answer. A stream announces its
// conversation here, since its headers leave before the answer: only when
// the store answered just now. A turn that cannot be saved says why in
// X-Consortium-Warning.
func (s *Server) placeTurn(w http.ResponseWriter, r *http.Request, consortium string, req *openai.ChatRequest) (*turn, error) {
	ctx := r.Context()
	id := r.Header.Get(conversationHeader)
	p, err := s.store.Place(ctx, info(ctx).tenant, consortium, id, req.Messages)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return nil, conversationNotFound(id)
	case errors.Is(err, cache.ErrNoNewMessage):
		return nil, badRequest("messages", "a continuation of conversation %s needs a new user message after the stored transcript", id)
	case err != nil:
		s.storeFailed("latest", err)
		return nil, storeDown(err)
	}
	if p.Unsaved != nil {
		// The request carries its whole history, so it is served; but
		// nothing can be linked or saved.
		s.storeFailed("match", p.Unsaved)
		s.log.Warn("conversation store unavailable: serving without saving", "request_id", info(ctx).id, "error", p.Unsaved)
		w.Header().Set(warningHeader, notSaved)
	}
	if req.Stream && p.ID != "" {
		w.Header().Set(conversationHeader, p.ID)
	}
	return &turn{id: p.ID, messages: p.Messages, stream: req.Stream, placement: p}, nil
}

// saveTurn stores the turn and its run before the response ends, so that a
// continuation sent right after it finds it from any replica, and reports
// whether it did. A JSON answer, whose headers are still unsent, announces
// the conversation only once it is saved, or says in X-Consortium-Warning
// why it was not. The run's conversation id is the saved one, "" for none.
// A store that fails is logged and counted; the answer is still given.
// A request marked store: false (withoutStore) saves nothing, run record
// included.
func (s *Server) saveTurn(w http.ResponseWriter, r *http.Request, t *turn, res *consortia.Result) bool {
	ctx := r.Context()
	if t.id == "" || !storing(ctx) {
		res.Run.ConversationID = ""
		return false
	}
	res.Run.ConversationID = t.id
	var run *cache.RunRecord
	if record, err := json.Marshal(res.Run); err == nil {
		run = &cache.RunRecord{JSON: record, Summary: runSummary(res.Run)}
	}
	err := s.store.Save(ctx, info(ctx).tenant, t.placement, res.Synthesis, res.Run.ID, run)
	if err != nil {
		s.storeFailed("save", err)
		s.log.Warn("conversation store: the turn was not saved", "request_id", info(ctx).id, "error", err)
		res.Run.ConversationID = ""
	}
	if !t.stream {
		if err != nil {
			w.Header().Del(conversationHeader)
			w.Header().Set(warningHeader, notSaved)
		} else {
			w.Header().Set(conversationHeader, t.id)
		}
	}
	return err == nil
}

// runSummary is run's line in its tenant's index of recent runs: the
// fields of its record that a list of runs shows, taken from the run
// rather than decoded from the record again. The pointers are copied, so
// the index holds none of the run's memory.
func runSummary(run *consortia.Run) cache.RunSummary {
	return cache.RunSummary{
		RunID:          run.ID,
		Consortium:     run.Consortium,
		ConversationID: run.ConversationID,
		Strategy:       run.Strategy,
		Created:        run.Created,
		Rounds:         run.Iterations,
		Confidence:     cloneFloat(run.Confidence),
		DurationMs:     run.DurationMs,
		TotalTokens:    run.Usage.TotalTokens,
		CostUSD:        cloneFloat(run.Usage.CostUSD),
	}
}

// cloneFloat returns a pointer to a copy of *p, or nil.
func cloneFloat(p *float64) *float64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// getRun serves GET /v1/consortium/runs/{run_id}: the run record, to its
// own tenant only.
func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "run_id")
	data, err := s.store.Run(r.Context(), info(r.Context()).tenant, id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		s.fail(w, r, runNotFound(id))
		return
	case err != nil:
		s.storeFailed("run", err)
		s.fail(w, r, storeDown(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func conversationNotFound(id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "conversation_not_found",
		Message: "No conversation " + quoteJSON(id) + " was found for this API key."}
}

func storeDown(err error) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Code: "store_unavailable",
		Message: "The conversation store is unavailable, so stored conversations and runs cannot be read now. " +
			"Send the whole conversation without " + conversationHeader + ", or retry later.", RetryAfter: 5 * time.Second}
}

// storeFailed counts a failed store operation.
func (s *Server) storeFailed(op string, err error) {
	s.metrics.storeErrors.WithLabelValues(op).Inc()
}
