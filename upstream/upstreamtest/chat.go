package upstreamtest

import (
	"bytes"
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
		s: s, w: w, rc: http.NewResponseController(w), rec: rec,
		base: chunk{ChatCompletionChunk: openai.ChatCompletionChunk{ID: s.newID(), Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: rec.Model}},
	}
	empty := ""
	st.send([]openai.ChunkChoice{{Delta: openai.Delta{Role: "assistant", Content: &empty}}}, pending)
	finish := reply.finishReason()
	final := reply.UsageInFinal && usage != nil && len(reply.ToolCalls) == 0 && reply.StreamError == ""
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
		b, _ := json.Marshal(openai.ErrorResponse{Error: openai.Error{Message: reply.StreamError, Type: typ}})
		st.write(fmt.Appendf(nil, "data: %s\n\n", b))
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
		st.write([]byte("data: [DONE]\n\n"))
	}
}

// stream writes the frames of one streamed answer.
type stream struct {
	s    *Server
	w    http.ResponseWriter
	rc   *http.ResponseController
	rec  *Request
	base chunk
	buf  bytes.Buffer
}

// send writes one chunk frame.
func (st *stream) send(choices []openai.ChunkChoice, usage json.RawMessage) {
	c := st.base
	c.Choices, c.Usage = choices, usage
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("upstreamtest: encoding a chunk: %v", err))
	}
	st.buf.Reset()
	st.buf.WriteString("data: ")
	st.buf.Write(b)
	st.buf.WriteString("\n\n")
	st.write(st.buf.Bytes())
}

// sendToolCall writes a frame with one tool call, or a piece of it.
func (st *stream) sendToolCall(c openai.ToolCall, usage json.RawMessage) {
	calls, _ := json.Marshal([]openai.ToolCall{c}) // not failing: every field marshals
	st.send([]openai.ChunkChoice{{Delta: openai.Delta{ToolCalls: calls}}}, usage)
}

// write writes and flushes raw bytes, and aborts the response if the client
// has gone away (or the server is closing, which cancelled tells apart).
func (st *stream) write(p []byte) {
	_, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
		// A ResponseWriter that cannot flush (a recorder calling Handler
		// directly) gets the whole stream at the end instead.
		if errors.Is(err, http.ErrNotSupported) {
			err = nil
		}
	}
	if err != nil {
		st.s.cancelled(st.rec)
		abort()
	}
}
