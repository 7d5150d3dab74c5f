package proxy

import (
	"context"
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

// turn is a consortium request placed in its conversation.
type turn struct {
	// id is the conversation's id; "" when the store could not be reached
	// and nothing will be saved.
	id string
	// messages are what the consortium sees: the whole conversation.
	messages []openai.Message
}

// placeTurn finds the conversation a consortium request continues, by its
// X-Consortium-Conversation header or by its transcript, and returns the
// whole conversation the members and the arbiter must see.
func (s *Server) placeTurn(ctx context.Context, r *http.Request, consortium string, req *openai.ChatRequest) (*turn, error) {
	tenant := info(ctx).tenant
	system, rest := splitSystem(req.Messages)
	if id := r.Header.Get(conversationHeader); id != "" {
		latest, err := s.store.Latest(ctx, tenant, id)
		switch {
		case errors.Is(err, cache.ErrNotFound):
			return nil, conversationNotFound("conversation", id)
		case err != nil:
			s.storeFailed("latest", err)
			return nil, storeDown(err)
		}
		// The request's own system messages first, then the stored
		// transcript, then its other messages, without repeating a
		// transcript the client sent again.
		stored := fromTranscript(latest.Transcript)
		if hasPrefix(rest, stored) {
			rest = rest[len(stored):]
		}
		if lastUserIndex(rest) == len(rest) {
			return nil, badRequest("messages", "a continuation of conversation %s needs a new user message after the stored transcript", id)
		}
		msgs := make([]openai.Message, 0, len(system)+len(stored)+len(rest))
		msgs = append(append(append(msgs, system...), stored...), rest...)
		return &turn{id: id, messages: msgs}, nil
	}

	// Without the header, the messages before the last user turn may be a
	// stored transcript: then this turn continues (or forks) that
	// conversation. Only the id is taken; the client's own messages are
	// what the consortium sees.
	t := &turn{id: consortia.NewID("conv_"), messages: req.Messages}
	prior := rest[:lastUserIndex(rest)]
	if len(prior) == 0 {
		return t, nil
	}
	match, err := s.store.Match(ctx, tenant, consortium, cache.Hash(consortium, toTranscript(prior)))
	switch {
	case err == nil:
		t.id = match.Conversation
	case errors.Is(err, cache.ErrNotFound):
	default:
		// The request carries its whole history, so it is served; but
		// nothing can be linked or saved.
		s.storeFailed("match", err)
		s.log.Warn("conversation store unavailable: serving without saving", "request_id", info(ctx).id, "error", err)
		t.id = ""
	}
	return t, nil
}

// saveTurn stores the turn and its run before the response ends, so that a
// continuation sent right after it finds it from any replica. A store that
// fails is logged and counted; the answer is still given.
func (s *Server) saveTurn(ctx context.Context, consortium string, t *turn, res *consortia.Result) {
	if t.id == "" {
		return
	}
	_, rest := splitSystem(t.messages)
	transcript := append(toTranscript(rest), cache.Message{Role: "assistant", Content: res.Synthesis})
	record, err := json.Marshal(res.Run)
	if err != nil {
		record = nil
	}
	// The client may be gone already; the turn is saved all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err = s.store.Save(ctx, info(ctx).tenant, &cache.Turn{
		Conversation: t.id,
		Consortium:   consortium,
		Transcript:   transcript,
		RunID:        res.Run.ID,
		Time:         time.Now().UTC(),
	}, record)
	if err != nil {
		s.storeFailed("save", err)
		s.log.Warn("conversation store: the turn was not saved", "request_id", info(ctx).id, "error", err)
	}
}

// getRun serves GET /v1/consortium/runs/{run_id}: the run record, to its
// own tenant only.
func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "run_id")
	data, err := s.store.Run(r.Context(), info(r.Context()).tenant, id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		s.fail(w, r, conversationNotFound("run", id))
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

func conversationNotFound(what, id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "conversation_not_found",
		Message: "No " + what + " " + quoteJSON(id) + " was found for this API key."}
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

// splitSystem separates system and developer messages from the others.
func splitSystem(msgs []openai.Message) (system, rest []openai.Message) {
	for _, m := range msgs {
		if m.Role == "system" || m.Role == "developer" {
			system = append(system, m)
		} else {
			rest = append(rest, m)
		}
	}
	return system, rest
}

// lastUserIndex returns the index of the last user message, or len(msgs).
func lastUserIndex(msgs []openai.Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return i
		}
	}
	return len(msgs)
}

func toTranscript(msgs []openai.Message) []cache.Message {
	out := make([]cache.Message, len(msgs))
	for i, m := range msgs {
		out[i] = cache.Message{Role: m.Role, Content: m.Content.String()}
	}
	return out
}

func fromTranscript(t []cache.Message) []openai.Message {
	out := make([]openai.Message, len(t))
	for i, m := range t {
		out[i] = openai.Message{Role: m.Role, Content: openai.TextContent(m.Content)}
	}
	return out
}

// hasPrefix reports whether msgs begin with prefix, by role and text.
func hasPrefix(msgs, prefix []openai.Message) bool {
	if len(prefix) == 0 || len(msgs) < len(prefix) {
		return false
	}
	for i, p := range prefix {
		if msgs[i].Role != p.Role || msgs[i].Content.String() != p.Content.String() {
			return false
		}
	}
	return true
}
