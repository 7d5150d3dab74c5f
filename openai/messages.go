package openai

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Anthropic's Messages API as an ingress: the proxy's POST /v1/messages
// reads a Messages request, translates it into the ChatRequest every model
// is served from (ChatRequest), and writes the chat completion it gets
// back as a Messages response (MessagesResponseFrom) or, chunk by chunk,
// as the Messages event stream (MessagesStream). Translating the other
// way, to call a provider of type anthropic, is upstream's business.
//
// What is translated: system (a string or text blocks), messages whose
// content is a string or text and image blocks (an image's base64 or url
// source becomes an image_url part), max_tokens (required, as Anthropic
// requires it), stop_sequences, temperature, top_p and stream. metadata
// is accepted and not forwarded; cache_control and citations on a text
// block are hints that are dropped. Tools, tool_use and tool_result
// blocks, thinking and top_k are refused with a FieldError, as is any
// field the Messages API does not have: nothing is silently ignored.

// MessagesRequest is a Messages API request. Its keys are exact and each
// known field may appear once, as in ChatRequest; unknown fields are
// refused by ParseMessagesRequest.
type MessagesRequest struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	System        *MessagesText   `json:"system"`
	Messages      []MessagesTurn  `json:"messages"`
	StopSequences []string        `json:"stop_sequences"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int            `json:"top_k"`
	Stream        bool            `json:"stream"`
	Metadata      RawObject       `json:"metadata"`
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	Thinking      json.RawMessage `json:"thinking"`

	unknown string // the first field the Messages API does not have
}

// MessagesTurn is one message of a Messages request: user or assistant.
type MessagesTurn struct {
	Role    string       `json:"role"`
	Content MessagesText `json:"content"`
}

// MessagesText is a content field of the Messages API: a string, or an
// array of content blocks (Blocks is non-nil then).
type MessagesText struct {
	Text   string
	Blocks []MessagesBlock
}

// MessagesBlock is one content block of a request. The fields of the
// block types the ingress refuses (tool_use, tool_result ...) are not
// read: Type is enough to refuse them.
type MessagesBlock struct {
	Type         string               `json:"type"`
	Text         *string              `json:"text"`
	Source       *MessagesImageSource `json:"source"`
	CacheControl json.RawMessage      `json:"cache_control"`
	Citations    json.RawMessage      `json:"citations"`
}

// MessagesImageSource is the source of an image block: base64 data with
// its media type, or a URL.
type MessagesImageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
}

// UnmarshalJSON decodes a request with exact keys, and remembers the first
// key the Messages API does not have.
func (m *MessagesRequest) UnmarshalJSON(data []byte) error {
	return decodeFields(data, m, func(key, _ []byte) {
		if m.unknown == "" {
			m.unknown = string(key)
		}
	})
}

// UnmarshalJSON decodes a message with exact keys.
func (t *MessagesTurn) UnmarshalJSON(data []byte) error { return decodeFields(data, t, nil) }

// UnmarshalJSON decodes a block with exact keys.
func (b *MessagesBlock) UnmarshalJSON(data []byte) error { return decodeFields(data, b, nil) }

// UnmarshalJSON decodes an image source with exact keys.
func (s *MessagesImageSource) UnmarshalJSON(data []byte) error { return decodeFields(data, s, nil) }

// UnmarshalJSON accepts a string or an array of content blocks.
func (c *MessagesText) UnmarshalJSON(data []byte) error {
	*c = MessagesText{}
	switch firstByte(data) {
	case '"':
		return json.Unmarshal(data, &c.Text)
	case '[':
		return decodeValue(data, reflect.ValueOf(&c.Blocks).Elem())
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[MessagesText]()}
}

// ParseMessagesRequest decodes and checks a Messages request body. The
// error is a *FieldError naming the field at fault, as Anthropic names it
// in its message.
func ParseMessagesRequest(body []byte) (*MessagesRequest, error) {
	var req MessagesRequest
	if err := decodeRequest(body, &req); err != nil {
		// A content field is typed MessagesText, a struct, which the
		// type error would call an object.
		if fe, ok := err.(*FieldError); ok && (fe.Param == "system" || strings.HasSuffix(fe.Param, ".content")) {
			fe.Message = strings.Replace(fe.Message, "expected an object", "expected a string or an array of content blocks", 1)
		}
		return nil, err
	}
	switch {
	case req.unknown != "":
		return nil, &FieldError{Param: req.unknown, Message: "this field is not part of the Messages API, or the proxy does not translate it"}
	case req.Model == "":
		return nil, &FieldError{Param: "model", Message: "field required"}
	case req.MaxTokens == nil:
		return nil, &FieldError{Param: "max_tokens", Message: "field required"}
	case *req.MaxTokens < 1:
		return nil, &FieldError{Param: "max_tokens", Message: "must be at least 1"}
	case len(req.Messages) == 0:
		return nil, &FieldError{Param: "messages", Message: "at least one message is required"}
	}
	return &req, nil
}

// ChatRequest translates the request into the chat completion request the
// proxy serves. A streamed request asks for usage (stream_options), which
// the event stream's message_delta reports.
func (m *MessagesRequest) ChatRequest() (*ChatRequest, error) {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tools", m.Tools}, {"tool_choice", m.ToolChoice}, {"thinking", m.Thinking}} {
		if len(f.raw) > 0 && string(f.raw) != "null" && string(f.raw) != "[]" {
			return nil, &FieldError{Param: f.name, Message: f.name + " is not supported by the proxy's Messages API: consortiums answer with text, " +
				"and tool use and thinking are not translated for provider/model either (use /v1/chat/completions for tools)"}
		}
	}
	if m.TopK != nil {
		return nil, &FieldError{Param: "top_k", Message: "top_k is not supported by the proxy's Messages API: chat completions, which every model is served through, have no top_k"}
	}
	req := &ChatRequest{
		Model:       m.Model,
		MaxTokens:   m.MaxTokens,
		Temperature: m.Temperature,
		TopP:        m.TopP,
		Stream:      m.Stream,
	}
	if len(m.StopSequences) > 0 {
		req.Stop = Stop(m.StopSequences)
	}
	if m.Stream {
		req.StreamOptions = &StreamOptions{IncludeUsage: true}
	}
	if m.System != nil {
		text, err := systemText(m.System)
		if err != nil {
			return nil, err
		}
		if text != "" {
			req.Messages = append(req.Messages, Message{Role: "system", Content: TextContent(text)})
		}
	}
	for i, t := range m.Messages {
		msg, err := t.chatMessage(i)
		if err != nil {
			return nil, err
		}
		req.Messages = append(req.Messages, msg)
	}
	return req, nil
}

// systemText joins the system prompt's text blocks.
func systemText(s *MessagesText) (string, error) {
	if s.Blocks == nil {
		return s.Text, nil
	}
	var texts []string
	for j, b := range s.Blocks {
		if b.Type != "text" {
			return "", &FieldError{Param: fmt.Sprintf("system[%d].type", j), Message: fmt.Sprintf("a system prompt holds text blocks, not %q", b.Type)}
		}
		if b.Text == nil {
			return "", &FieldError{Param: fmt.Sprintf("system[%d].text", j), Message: "field required"}
		}
		texts = append(texts, *b.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// chatMessage translates message i.
func (t *MessagesTurn) chatMessage(i int) (Message, error) {
	param := fmt.Sprintf("messages[%d]", i)
	if t.Role != "user" && t.Role != "assistant" {
		return Message{}, &FieldError{Param: param + ".role", Message: fmt.Sprintf("must be user or assistant, not %q", t.Role)}
	}
	msg := Message{Role: t.Role}
	if t.Content.Blocks == nil {
		msg.Content = TextContent(t.Content.Text)
		return msg, nil
	}
	var parts []Part
	for j, b := range t.Content.Blocks {
		at := fmt.Sprintf("%s.content[%d]", param, j)
		switch b.Type {
		case "text":
			if b.Text == nil {
				return Message{}, &FieldError{Param: at + ".text", Message: "field required"}
			}
			parts = append(parts, Part{Type: "text", Text: *b.Text})
		case "image":
			if t.Role != "user" {
				return Message{}, &FieldError{Param: at + ".type", Message: "images belong in user messages"}
			}
			url, err := imageURL(b.Source)
			if err != nil {
				return Message{}, &FieldError{Param: at + ".source", Message: err.Error()}
			}
			parts = append(parts, Part{Type: "image_url", ImageURL: &ImageURL{URL: url}})
		case "tool_use", "tool_result", "server_tool_use", "web_search_tool_result":
			return Message{}, &FieldError{Param: at + ".type", Message: b.Type + " blocks are not supported by the proxy's Messages API: " +
				"consortiums answer with text, and tool use is not translated for provider/model either"}
		default:
			return Message{}, &FieldError{Param: at + ".type", Message: fmt.Sprintf("content blocks of type %q are not supported by the proxy's Messages API (text and image are)", b.Type)}
		}
	}
	// One text block is plain text, which every provider and the
	// conversation store's transcripts read alike; an assistant's
	// blocks join into its one text, as chat answers are strings.
	switch {
	case len(parts) == 1 && parts[0].Type == "text", t.Role == "assistant":
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		msg.Content = TextContent(b.String())
	default:
		msg.Content = Content{Parts: parts}
	}
	return msg, nil
}

// imageURL is the image_url of an image block's source: a data: URL for
// base64 data, or the URL itself.
func imageURL(s *MessagesImageSource) (string, error) {
	if s == nil {
		return "", fmt.Errorf("field required")
	}
	switch s.Type {
	case "base64":
		if s.MediaType == "" || s.Data == "" {
			return "", fmt.Errorf("a base64 image needs media_type and data")
		}
		return "data:" + s.MediaType + ";base64," + s.Data, nil
	case "url":
		if s.URL == "" {
			return "", fmt.Errorf("a url image needs url")
		}
		return s.URL, nil
	}
	return "", fmt.Errorf("image sources of type %q are not supported (base64 and url are)", s.Type)
}

// MessagesResponse is a Messages API answer, and the message of the event
// stream's message_start. Consortium is the consortium object, as on a
// chat completion.
type MessagesResponse struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []TextBlock     `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        MessagesUsage   `json:"usage"`
	Consortium   json.RawMessage `json:"consortium,omitempty"`
}

// TextBlock is a text content block of an answer.
type TextBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// MessagesUsage is an answer's usage in Anthropic's words.
type MessagesUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// MessagesUsageOf counts u as Anthropic does; nil (a provider that
// reported none) counts zero, since Anthropic's usage is never absent.
func MessagesUsageOf(u *Usage) MessagesUsage {
	if u == nil {
		return MessagesUsage{}
	}
	return MessagesUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
}

// StopReason maps a chat finish_reason to Anthropic's stop_reason. A chat
// answer does not say whether a stop sequence ended it, so "stop" is
// always end_turn.
func StopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "content_filter":
		return "refusal"
	case "tool_calls", "function_call":
		return "tool_use"
	}
	return "end_turn"
}

// MessagesResponseFrom translates a chat completion into a Messages
// answer with the given id and model: its first choice's text as one text
// block.
func MessagesResponseFrom(cc *ChatCompletion, id, model string) *MessagesResponse {
	text, finish := "", ""
	if len(cc.Choices) > 0 {
		if c := cc.Choices[0].Message.Content; c != nil {
			text = *c
		}
		finish = cc.Choices[0].FinishReason
	}
	reason := StopReason(finish)
	return &MessagesResponse{
		ID: id, Type: "message", Role: "assistant", Model: model,
		Content:    []TextBlock{{Type: "text", Text: text}},
		StopReason: &reason,
		Usage:      MessagesUsageOf(cc.Usage),
		Consortium: cc.Consortium,
	}
}

// MessagesError is Anthropic's error shape:
// {"type":"error","error":{"type":...,"message":...}}, with the request id
// as Anthropic sends it.
type MessagesError struct {
	Type      string            `json:"type"`
	Error     MessagesErrorBody `json:"error"`
	RequestID string            `json:"request_id,omitempty"`
}

// MessagesErrorBody is the error of a MessagesError.
type MessagesErrorBody struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// MessagesStream writes the Messages event stream of one answer from the
// chat completion chunks it is given: Start (message_start with zero
// usage, and the one text block's content_block_start), a text_delta per
// content delta (Chunk), then End (content_block_stop, message_delta with
// the stop reason, the usage and the consortium object, message_stop).
// Ping and Error write Anthropic's keep-alive and its error event.
type MessagesStream struct {
	ID, Model  string
	finish     string
	usage      *Usage
	consortium json.RawMessage
}

// Start writes message_start and the text block's content_block_start.
func (s *MessagesStream) Start(ew *EventWriter) error {
	msg := MessagesResponse{ID: s.ID, Type: "message", Role: "assistant", Model: s.Model, Content: []TextBlock{}}
	if err := event(ew, "message_start", struct {
		Type    string            `json:"type"`
		Message *MessagesResponse `json:"message"`
	}{"message_start", &msg}); err != nil {
		return err
	}
	return event(ew, "content_block_start", struct {
		Type         string    `json:"type"`
		Index        int       `json:"index"`
		ContentBlock TextBlock `json:"content_block"`
	}{"content_block_start", 0, TextBlock{Type: "text"}})
}

// Chunk writes the text of the first choice of c, and keeps its finish
// reason, usage and consortium object for End.
func (s *MessagesStream) Chunk(ew *EventWriter, c *ChatCompletionChunk) error {
	if c.Usage != nil {
		u := *c.Usage
		s.usage = &u
	}
	if c.Consortium != nil {
		s.consortium = c.Consortium
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		if ch.FinishReason != nil {
			s.finish = *ch.FinishReason
		}
		if ch.Delta.Content != nil && *ch.Delta.Content != "" {
			type delta struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if err := event(ew, "content_block_delta", struct {
				Type  string `json:"type"`
				Index int    `json:"index"`
				Delta delta  `json:"delta"`
			}{"content_block_delta", 0, delta{"text_delta", *ch.Delta.Content}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// End writes content_block_stop, message_delta and message_stop.
func (s *MessagesStream) End(ew *EventWriter) error {
	if err := event(ew, "content_block_stop", struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}{"content_block_stop", 0}); err != nil {
		return err
	}
	type delta struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	}
	if err := event(ew, "message_delta", struct {
		Type       string          `json:"type"`
		Delta      delta           `json:"delta"`
		Usage      MessagesUsage   `json:"usage"`
		Consortium json.RawMessage `json:"consortium,omitempty"`
	}{"message_delta", delta{StopReason: StopReason(s.finish)}, MessagesUsageOf(s.usage), s.consortium}); err != nil {
		return err
	}
	return event(ew, "message_stop", struct {
		Type string `json:"type"`
	}{"message_stop"})
}

// Ping writes Anthropic's keep-alive event.
func (s *MessagesStream) Ping(ew *EventWriter) error {
	return ew.Event("ping", []byte(`{"type":"ping"}`))
}

// Error writes an error event, which ends the stream.
func (s *MessagesStream) Error(ew *EventWriter, e *MessagesError) error {
	return event(ew, "error", e)
}

// event writes v, encoded as JSON, as the event name.
func event(ew *EventWriter, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ew.Event(name, data)
}
