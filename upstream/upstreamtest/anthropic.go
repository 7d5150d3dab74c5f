package upstreamtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/consortium-dev/consortium/openai"
)

// AnthropicRequest is the part of an Anthropic Messages request the fake
// reads. Tests that check more decode Request.Body themselves.
type AnthropicRequest struct {
	Model string `json:"model"`
	// System is the system prompt: a string, or an array of text blocks.
	System    json.RawMessage    `json:"system"`
	Messages  []AnthropicMessage `json:"messages"`
	MaxTokens *int               `json:"max_tokens"`
	Stream    bool               `json:"stream"`
}

// AnthropicMessage is one turn of an AnthropicRequest. Content is a string
// or an array of content blocks, kept as sent.
type AnthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// Text returns the message's text: the string content, or its text blocks
// joined by newlines.
func (m AnthropicMessage) Text() string { return blockText(m.Content) }

// SystemText returns the system prompt's text, its blocks joined by
// newlines.
func (r *AnthropicRequest) SystemText() string { return blockText(r.System) }

func (r *AnthropicRequest) lastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Text()
		}
	}
	return ""
}

// contentBlock is the part of a content block the fake reads.
type contentBlock struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// blockText reads a string, or the text of an array of content blocks.
func blockText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []contentBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var texts []string
	for _, b := range blocks {
		if b.Type == "text" && b.Text != nil {
			texts = append(texts, *b.Text)
		}
	}
	return strings.Join(texts, "\n")
}

func parseAnthropicRequest(body []byte) *AnthropicRequest {
	var r AnthropicRequest
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	return &r
}

// checkAnthropic returns what Anthropic would refuse in r, in its words,
// among the rules a translation from Chat Completions can break; "" when
// nothing.
func checkAnthropic(r *AnthropicRequest) string {
	if r == nil {
		return "the request body does not match the Messages API"
	}
	if r.MaxTokens == nil {
		return "max_tokens: Field required"
	}
	if *r.MaxTokens < 1 {
		return "max_tokens: Input should be greater than or equal to 1"
	}
	if len(r.Messages) == 0 {
		return "messages: at least one message is required"
	}
	if msg := checkContent("system", r.System, true); msg != "" {
		return msg
	}
	for i, m := range r.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		if i > 0 && m.Role == r.Messages[i-1].Role {
			return fmt.Sprintf("messages: roles must alternate between \"user\" and \"assistant\", but found multiple %q roles in a row", m.Role)
		}
		if msg := checkContent(fmt.Sprintf("messages.%d.content", i), m.Content, false); msg != "" {
			return msg
		}
	}
	return ""
}

// checkContent checks a string or an array of content blocks: not empty,
// and no text block without text.
func checkContent(path string, raw json.RawMessage, optional bool) string {
	if len(raw) == 0 || string(raw) == "null" {
		if optional {
			return ""
		}
		return path + ": Field required"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" && !optional {
			return path + ": messages must have non-empty content"
		}
		return ""
	}
	var blocks []contentBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return path + ": Input should be a valid string or list of content blocks"
	}
	if len(blocks) == 0 && !optional {
		return path + ": messages must have non-empty content"
	}
	for j, b := range blocks {
		if b.Type == "text" && (b.Text == nil || strings.TrimSpace(*b.Text) == "") {
			return fmt.Sprintf("%s.%d.text: text content blocks must contain non-whitespace text", path, j)
		}
	}
	return ""
}

// anthropicErrorType is the error type Anthropic sends with a status.
func anthropicErrorType(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return "invalid_request_error"
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == 529:
		return "overloaded_error"
	case status >= 500 || status < 400:
		return "api_error"
	}
	return "invalid_request_error"
}

// writeAnthropicError writes Anthropic's error shape:
// {"type":"error","error":{"type":...,"message":...}}. Anthropic has no
// error code; code is ignored.
func writeAnthropicError(w http.ResponseWriter, status int, extra http.Header, typ, _, msg string) {
	writeJSON(w, status, extra, anthropicErrorBody(typ, msg))
}

type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func anthropicErrorBody(typ, msg string) anthropicError {
	e := anthropicError{Type: "error"}
	e.Error.Type, e.Error.Message = typ, msg
	return e
}

// anthropicMessage is a Messages answer.
type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        *anthropicUsage  `json:"usage,omitempty"`
}

type anthropicBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// stopReason is a reply's stop_reason: OpenAI's finish reasons mapped to
// Anthropic's, anything else as it is.
func (r Reply) stopReason() string {
	switch reason := r.finishReason(); reason {
	case "stop":
		return "end_turn"
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	case "content_filter":
		return "refusal"
	default:
		return reason
	}
}

// anthropicUsageOf returns the usage an Anthropic answer reports, or nil
// for NoUsage.
func anthropicUsageOf(rec *Request, reply Reply, text string) *anthropicUsage {
	if reply.NoUsage {
		return nil
	}
	u := &anthropicUsage{CacheCreationInputTokens: reply.CacheCreationTokens, CacheReadInputTokens: reply.CacheReadTokens}
	if reply.Usage != nil {
		u.InputTokens, u.OutputTokens = reply.Usage.PromptTokens, reply.Usage.CompletionTokens
		return u
	}
	if a := rec.Anthropic; a != nil {
		u.InputTokens = countWords(a.SystemText())
		for _, m := range a.Messages {
			u.InputTokens += countWords(m.Text())
		}
	}
	u.OutputTokens = countWords(text)
	return u
}

// serveMessages answers POST /v1/messages as Anthropic's Messages API does.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request, rec *Request, f fields) {
	if !f.object {
		writeAnthropicError(w, http.StatusBadRequest, nil, "invalid_request_error", "",
			"the request body must be a JSON object")
		return
	}
	if msg := checkAnthropic(rec.Anthropic); msg != "" {
		writeAnthropicError(w, http.StatusBadRequest, nil, "invalid_request_error", "", msg)
		return
	}
	reply := s.replyFor(rec)
	if !s.answerAs(w, r, rec, reply, writeAnthropicError, anthropicErrorType) {
		return
	}
	if rec.Stream {
		s.streamMessage(w, r, rec, reply)
		return
	}
	text, _ := reply.text()
	msg := anthropicMessage{
		ID: s.messageID(), Type: "message", Role: "assistant", Model: rec.Model,
		Content: []anthropicBlock{}, Usage: anthropicUsageOf(rec, reply, text),
	}
	if text != "" {
		msg.Content = append(msg.Content, anthropicBlock{Type: "text", Text: &text})
	}
	for _, c := range reply.ToolCalls {
		msg.Content = append(msg.Content, anthropicBlock{Type: "tool_use", ID: s.toolCallID(c, "toolu_"), Name: c.Name,
			Input: json.RawMessage(c.arguments())})
	}
	stop := reply.stopReason()
	msg.StopReason = &stop
	writeJSON(w, reply.status(http.StatusOK), reply.Header, msg)
}

func (s *Server) messageID() string {
	return fmt.Sprintf("msg_upstreamtest%d", s.seq.Add(1))
}

// streamMessage answers as Anthropic streams: message_start, a ping, a
// text block (content_block_start, a text_delta per delta,
// content_block_stop), a tool_use block per tool call with its input in
// input_json_delta pieces, message_delta with the stop_reason and the
// output tokens, and message_stop. Every event is flushed as it is
// written.
func (s *Server) streamMessage(w http.ResponseWriter, r *http.Request, rec *Request, reply Reply) {
	_, deltas := reply.text()
	u := anthropicUsageOf(rec, reply, strings.Join(deltas, ""))

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	setHeaders(h, reply.Header)
	w.WriteHeader(reply.status(http.StatusOK))
	st := &stream{s: s, ew: openai.NewEventWriter(w), rec: rec}
	event := func(name string, data any) {
		b, err := json.Marshal(data)
		if err != nil {
			panic(fmt.Sprintf("upstreamtest: encoding an event: %v", err))
		}
		st.check(st.ew.Event(name, b))
	}
	type object = map[string]any

	start := anthropicMessage{ID: s.messageID(), Type: "message", Role: "assistant", Model: rec.Model, Content: []anthropicBlock{}}
	if u != nil {
		// Anthropic counts the first output token at the start; the
		// final count comes with message_delta and replaces it.
		first := *u
		first.OutputTokens = min(u.OutputTokens, 1)
		start.Usage = &first
	}
	event("message_start", object{"type": "message_start", "message": start})
	index := 0
	if len(deltas) > 0 {
		event("content_block_start", object{"type": "content_block_start", "index": index, "content_block": object{"type": "text", "text": ""}})
	}
	event("ping", object{"type": "ping"})
	for i, d := range deltas {
		s.sleep(r, rec, reply.ChunkDelay)
		event("content_block_delta", object{"type": "content_block_delta", "index": index, "delta": object{"type": "text_delta", "text": d}})
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
			typ = "overloaded_error"
		}
		event("error", anthropicErrorBody(typ, reply.StreamError))
		return
	}
	if len(deltas) > 0 {
		event("content_block_stop", object{"type": "content_block_stop", "index": index})
		index++
	}
	for _, c := range reply.ToolCalls {
		event("content_block_start", object{"type": "content_block_start", "index": index,
			"content_block": object{"type": "tool_use", "id": s.toolCallID(c, "toolu_"), "name": c.Name, "input": object{}}})
		for _, piece := range c.argumentPieces() {
			s.sleep(r, rec, reply.ChunkDelay)
			event("content_block_delta", object{"type": "content_block_delta", "index": index,
				"delta": object{"type": "input_json_delta", "partial_json": piece}})
		}
		event("content_block_stop", object{"type": "content_block_stop", "index": index})
		index++
	}
	md := object{"type": "message_delta", "delta": object{"stop_reason": reply.stopReason(), "stop_sequence": nil}}
	if u != nil {
		md["usage"] = object{"output_tokens": u.OutputTokens}
	}
	event("message_delta", md)
	if !reply.NoDone {
		event("message_stop", object{"type": "message_stop"})
	}
}
