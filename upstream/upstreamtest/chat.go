package upstreamtest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// serveChat answers POST /v1/chat/completions.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, rec *Request, f fields) {
	if !f.object {
		writeError(w, http.StatusBadRequest, nil, "invalid_request_error", "",
			"We could not parse the JSON body of your request: the body must be a JSON object")
		return
	}
	reply := s.replyFor(rec)
	if !s.answer(w, r, rec, reply) {
		return
	}
	if rec.Stream {
		s.streamChat(w, r, rec, reply, f.includeUsage)
		return
	}
	if reply.BodySize > 0 {
		s.hugeChat(w, rec, reply)
		return
	}
	text, _ := reply.text()
	msg := openai.ResponseMessage{Role: "assistant", Content: &text}
	if len(reply.ToolCalls) > 0 {
		calls := make([]openai.ToolCall, len(reply.ToolCalls))
		for i, c := range reply.ToolCalls {
			calls[i] = openai.ToolCall{ID: s.toolCallID(c, "call_"), Type: "function",
				Function: openai.FunctionCall{Name: c.Name, Arguments: c.arguments()}}
		}
		msg.ToolCalls, _ = json.Marshal(calls)
		if text == "" {
			msg.Content = nil // OpenAI's content is null beside tool calls
		}
	}
	writeJSON(w, reply.status(http.StatusOK), reply.Header, openai.ChatCompletion{
		ID:      s.newID(),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   rec.Model,
		Choices: []openai.Choice{{
			Message:      msg,
			FinishReason: reply.finishReason(),
		}},
		Usage: chatUsage(rec, reply, text),
	})
}

// hugeChat writes a chat completion whose content is reply.BodySize bytes
// of filler, a piece at a time.
func (s *Server) hugeChat(w http.ResponseWriter, rec *Request, reply Reply) {
	head := fmt.Sprintf(`{"id":%s,"object":"chat.completion","created":%d,"model":%s,"choices":[{"index":0,"message":{"role":"assistant","content":"`,
		quote(s.newID()), time.Now().Unix(), quote(rec.Model))
	tail := `"},"finish_reason":"stop"}]}` + "\n"
	h := w.Header()
	h.Set("Content-Type", "application/json")
	setHeaders(h, reply.Header)
	w.WriteHeader(reply.status(http.StatusOK))
	piece := bytes.Repeat([]byte("x"), 32<<10)
	write := func(p []byte) {
		if _, err := w.Write(p); err != nil {
			s.cancelled(rec)
			abort()
		}
	}
	write([]byte(head))
	for left := reply.BodySize; left > 0; left -= int64(len(piece)) {
		write(piece[:min(left, int64(len(piece)))])
	}
	write([]byte(tail))
}

// quote returns s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// toolCallID returns c's id, or makes one up with prefix.
func (s *Server) toolCallID(c ToolCall, prefix string) string {
	if c.ID != "" {
		return c.ID
	}
	return fmt.Sprintf("%supstreamtest%d", prefix, s.seq.Add(1))
}

func (s *Server) newID() string {
	return fmt.Sprintf("chatcmpl-upstreamtest%d", s.seq.Add(1))
}

// chunk is one SSE frame of a streamed answer. Its Usage is raw and hides
// ChatCompletionChunk's (encoding/json prefers the shallower field), to
// write what OpenAI writes and openai.Usage cannot: "usage": null on every
// frame but the one with the usage when the client asked for include_usage.
type chunk struct {
	openai.ChatCompletionChunk
	Usage json.RawMessage `json:"usage,omitempty"`
}

var nullUsage = json.RawMessage("null")

// streamChat answers a chat request as OpenAI streams one: a role frame,
// the content deltas, a frame with finish_reason, the usage frame when
// include_usage asked for it, and [DONE]. Every frame is flushed as it is
// written.
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, rec *Request, reply Reply, includeUsage bool) {
	_, deltas := reply.text()
	var usage json.RawMessage
	if includeUsage {
		if u := chatUsage(rec, reply, strings.Join(deltas, "")); u != nil {
			usage, _ = json.Marshal(u)
		}
	}
	// OpenAI puts "usage": null on the frames before the usage frame.
	pending := json.RawMessage(nil)
	if usage != nil {
		pending = nullUsage
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	setHeaders(h, reply.Header)
	w.WriteHeader(reply.status(http.StatusOK))

	st := &stream{
		s: s, ew: openai.NewEventWriter(w), rec: rec,
		base: chunk{ChatCompletionChunk: openai.ChatCompletionChunk{ID: s.newID(), Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: rec.Model}},
	}
	empty := ""
	st.send([]openai.ChunkChoice{{Delta: openai.Delta{Role: "assistant", Content: &empty}}}, pending)
	finish := reply.finishReason()
	final := reply.UsageInFinal && usage != nil && len(reply.ToolCalls) == 0 && reply.StreamError == ""
	if reply.Endless {
		d := cmp.Or(reply.Content, "x")
		for {
			s.sleep(r, rec, reply.ChunkDelay)
			st.send([]openai.ChunkChoice{{Delta: openai.Delta{Content: &d}}}, pending)
		}
	}
	for i, d := range deltas {
		s.sleep(r, rec, reply.ChunkDelay)
		choice, u := openai.ChunkChoice{Delta: openai.Delta{Content: &d}}, pending
		if final && i == len(deltas)-1 {
			// Some providers end with one frame that holds the last
			// content, the finish_reason and the usage.
			choice.FinishReason, u = &finish, usage
		}
		st.send([]openai.ChunkChoice{choice}, u)
		if i+1 == reply.CutAfter {
			abort()
		}
	}
	if reply.CutAfter > 0 {
		abort()
	}
	if reply.StreamError != "" {
		typ := reply.ErrorType
		if typ == "" {
			typ = "server_error"
		}
		st.check(st.ew.JSON(openai.ErrorResponse{Error: openai.Error{Message: reply.StreamError, Type: typ}}))
		return
	}
	for i, c := range reply.ToolCalls {
		st.sendToolCall(openai.ToolCall{Index: &i, ID: s.toolCallID(c, "call_"), Type: "function", Function: openai.FunctionCall{Name: c.Name}}, pending)
		for _, piece := range c.argumentPieces() {
			s.sleep(r, rec, reply.ChunkDelay)
			st.sendToolCall(openai.ToolCall{Index: &i, Function: openai.FunctionCall{Arguments: piece}}, pending)
		}
	}
	if !final || len(deltas) == 0 {
		u := pending
		if final {
			u = usage
		}
		st.send([]openai.ChunkChoice{{FinishReason: &finish}}, u)
	}
	if usage != nil && !final {
		st.send([]openai.ChunkChoice{}, usage)
	}
	if !reply.NoDone {
		st.check(st.ew.Done())
	}
}

// stream writes the frames of one streamed answer, through
// openai.EventWriter, which flushes each.
type stream struct {
	s    *Server
	ew   *openai.EventWriter
	rec  *Request
	base chunk
}

// send writes one chunk frame.
func (st *stream) send(choices []openai.ChunkChoice, usage json.RawMessage) {
	c := st.base
	c.Choices, c.Usage = choices, usage
	st.check(st.ew.JSON(c))
}

// sendToolCall writes a frame with one tool call, or a piece of it.
func (st *stream) sendToolCall(c openai.ToolCall, usage json.RawMessage) {
	calls, _ := json.Marshal([]openai.ToolCall{c}) // not failing: every field marshals
	st.send([]openai.ChunkChoice{{Delta: openai.Delta{ToolCalls: calls}}}, usage)
}

// check aborts the response if writing a frame failed: the client has
// gone away (or the server is closing, which cancelled tells apart).
func (st *stream) check(err error) {
	// A ResponseWriter that cannot flush (a recorder calling Handler
	// directly) gets the whole stream at the end instead.
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		st.s.cancelled(st.rec)
		abort()
	}
}
