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
// content is a string or text, image, tool_use and tool_result blocks (an
// image's base64 or url source becomes an image_url part, a tool_use an
// assistant tool call, a tool_result a tool message before the rest of
// its user turn), tools (client tools: name, description, input_schema as
// parameters) and tool_choice (auto, any as required, tool, none;
// disable_parallel_tool_use as parallel_tool_calls: false), max_tokens
// (required, as Anthropic requires it), stop_sequences, temperature,
// top_p and stream. metadata is accepted and not forwarded;
// cache_control and citations are hints that are dropped, as is a tool
// result's is_error, which chat completions cannot say. Server tools,
// thinking, top_k, document blocks and any field the Messages API does
// not have are refused with a FieldError: nothing is silently ignored.
// Whether a model may use tools at all (a consortium may not) is the
// caller's to decide, with UsesTools.

// MessagesRequest is a Messages API request. Its keys are exact and each
// known field may appear once, as in ChatRequest; unknown fields are
// refused by ParseMessagesRequest.
type MessagesRequest struct {
	Model         string              `json:"model"`
	MaxTokens     *int                `json:"max_tokens"`
	System        *MessagesText       `json:"system"`
	Messages      []MessagesTurn      `json:"messages"`
	StopSequences []string            `json:"stop_sequences"`
	Temperature   *float64            `json:"temperature"`
	TopP          *float64            `json:"top_p"`
	TopK          *int                `json:"top_k"`
	Stream        bool                `json:"stream"`
	Metadata      RawObject           `json:"metadata"`
	Tools         []MessagesTool      `json:"tools"`
	ToolChoice    *MessagesToolChoice `json:"tool_choice"`
	Thinking      json.RawMessage     `json:"thinking"`

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

// MessagesBlock is one content block of a request: text, image,
// tool_use (ID, Name, Input) or tool_result (ToolUseID, Content, IsError).
type MessagesBlock struct {
	Type         string               `json:"type"`
	Text         *string              `json:"text"`
	Source       *MessagesImageSource `json:"source"`
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	Input        json.RawMessage      `json:"input"`
	ToolUseID    string               `json:"tool_use_id"`
	Content      json.RawMessage      `json:"content"` // a tool result's: a MessagesText (not typed so, as a type may not hold itself here)
	IsError      *bool                `json:"is_error"`
	CacheControl json.RawMessage      `json:"cache_control"`
	Citations    json.RawMessage      `json:"citations"`
}

// MessagesTool is a tool the model may call: a client tool, with its
// input's JSON Schema. Anthropic's server tools (web search ...) have a
// Type and are refused.
type MessagesTool struct {
	Type         string          `json:"type"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	InputSchema  RawObject       `json:"input_schema"`
	CacheControl json.RawMessage `json:"cache_control"`
}

// MessagesToolChoice is the request's tool_choice: auto, any, tool (Name)
// or none.
type MessagesToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
}

// UnmarshalJSON decodes a tool with exact keys.
func (t *MessagesTool) UnmarshalJSON(data []byte) error { return decodeFields(data, t, nil) }

// UnmarshalJSON decodes a tool choice with exact keys.
func (c *MessagesToolChoice) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UsesTools reports whether the request declares tools or carries tool
// calls or results, which only a provider's model can serve.
func (m *MessagesRequest) UsesTools() (param string, ok bool) {
	if len(m.Tools) > 0 {
		return "tools", true
	}
	if m.ToolChoice != nil {
		return "tool_choice", true
	}
	for i, t := range m.Messages {
		for j, b := range t.Content.Blocks {
			if b.Type == "tool_use" || b.Type == "tool_result" {
				return fmt.Sprintf("messages[%d].content[%d].type", i, j), true
			}
		}
	}
	return "", false
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
	if len(m.Thinking) > 0 && string(m.Thinking) != "null" {
		return nil, &FieldError{Param: "thinking", Message: "thinking is not supported by the proxy's Messages API: chat completions, which every model is served through, have no thinking blocks"}
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
		msgs, err := t.chatMessages(i)
		if err != nil {
			return nil, err
		}
		req.Messages = append(req.Messages, msgs...)
	}
	if err := m.chatTools(req); err != nil {
		return nil, err
	}
	return req, nil
}

// chatTools sets req's tools, tool_choice and parallel_tool_calls.
func (m *MessagesRequest) chatTools(req *ChatRequest) error {
	for i, t := range m.Tools {
		if t.Type != "" && t.Type != "custom" {
			return &FieldError{Param: fmt.Sprintf("tools[%d].type", i), Message: fmt.Sprintf("server tools (%s) are not supported by the proxy's Messages API; client tools are", t.Type)}
		}
		if t.Name == "" {
			return &FieldError{Param: fmt.Sprintf("tools[%d].name", i), Message: "field required"}
		}
		schema := t.InputSchema
		if len(schema) == 0 || string(schema) == "null" {
			return &FieldError{Param: fmt.Sprintf("tools[%d].input_schema", i), Message: "field required"}
		}
		f, err := json.Marshal(struct {
			Name        string    `json:"name"`
			Description string    `json:"description,omitempty"`
			Parameters  RawObject `json:"parameters"`
		}{t.Name, t.Description, schema})
		if err != nil {
			return &FieldError{Param: fmt.Sprintf("tools[%d].input_schema", i), Message: err.Error()}
		}
		req.Tools = append(req.Tools, Tool{Type: "function", Function: f})
	}
	c := m.ToolChoice
	if c == nil {
		return nil
	}
	switch c.Type {
	case "auto", "none":
		req.ToolChoice = json.RawMessage(`"` + c.Type + `"`)
	case "any":
		req.ToolChoice = json.RawMessage(`"required"`)
	case "tool":
		if c.Name == "" {
			return &FieldError{Param: "tool_choice.name", Message: "field required"}
		}
		b, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": c.Name}})
		req.ToolChoice = b
	default:
		return &FieldError{Param: "tool_choice.type", Message: fmt.Sprintf("must be auto, any, tool or none, not %q", c.Type)}
	}
	if c.DisableParallelToolUse != nil && *c.DisableParallelToolUse && c.Type != "none" {
		req.Extra = map[string]any{"parallel_tool_calls": json.RawMessage("false")}
	}
	return nil
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

// chatMessages translates message i: one chat message, but for a user
// message with tool results, whose results come first, one tool message
// each, then what else it holds as a user message.
func (t *MessagesTurn) chatMessages(i int) ([]Message, error) {
	param := fmt.Sprintf("messages[%d]", i)
	if t.Role != "user" && t.Role != "assistant" {
		return nil, &FieldError{Param: param + ".role", Message: fmt.Sprintf("must be user or assistant, not %q", t.Role)}
	}
	if t.Content.Blocks == nil {
		return []Message{{Role: t.Role, Content: TextContent(t.Content.Text)}}, nil
	}
	var out []Message
	var parts []Part
	var calls []ToolCall
	for j, b := range t.Content.Blocks {
		at := fmt.Sprintf("%s.content[%d]", param, j)
		switch b.Type {
		case "text":
			if b.Text == nil {
				return nil, &FieldError{Param: at + ".text", Message: "field required"}
			}
			parts = append(parts, Part{Type: "text", Text: *b.Text})
		case "image":
			if t.Role != "user" {
				return nil, &FieldError{Param: at + ".type", Message: "images belong in user messages"}
			}
			url, err := imageURL(b.Source)
			if err != nil {
				return nil, &FieldError{Param: at + ".source", Message: err.Error()}
			}
			parts = append(parts, Part{Type: "image_url", ImageURL: &ImageURL{URL: url}})
		case "tool_use":
			if t.Role != "assistant" {
				return nil, &FieldError{Param: at + ".type", Message: "tool_use blocks belong in assistant messages"}
			}
			if b.ID == "" || b.Name == "" {
				return nil, &FieldError{Param: at, Message: "a tool_use block needs an id and a name"}
			}
			args := "{}"
			if len(b.Input) > 0 && string(b.Input) != "null" {
				args = string(b.Input)
			}
			calls = append(calls, ToolCall{ID: b.ID, Type: "function", Function: FunctionCall{Name: b.Name, Arguments: args}})
		case "tool_result":
			if t.Role != "user" {
				return nil, &FieldError{Param: at + ".type", Message: "tool_result blocks belong in user messages"}
			}
			if b.ToolUseID == "" {
				return nil, &FieldError{Param: at + ".tool_use_id", Message: "field required"}
			}
			result, err := resultText(b.Content, at+".content")
			if err != nil {
				return nil, err
			}
			// Tool messages must follow the assistant's calls at once.
			if len(parts) > 0 {
				return nil, &FieldError{Param: at, Message: "tool_result blocks must come before a user message's other content"}
			}
			out = append(out, Message{Role: "tool", ToolCallID: b.ToolUseID, Content: TextContent(result)})
		default:
			return nil, &FieldError{Param: at + ".type", Message: fmt.Sprintf("content blocks of type %q are not supported by the proxy's Messages API (text, image, tool_use and tool_result are)", b.Type)}
		}
	}
	if len(parts) == 0 && len(calls) == 0 && len(out) > 0 {
		return out, nil
	}
	msg := Message{Role: t.Role}
	// One text block is plain text, which every provider and the
	// conversation store's transcripts read alike; an assistant's
	// blocks join into its one text, as chat answers are strings.
	switch {
	case len(parts) == 0 && len(calls) > 0:
		msg.Content = Content{Null: true}
	case len(parts) == 1 && parts[0].Type == "text", t.Role == "assistant":
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		msg.Content = TextContent(b.String())
	default:
		msg.Content = Content{Parts: parts}
	}
	if len(calls) > 0 {
		raw, err := json.Marshal(calls)
		if err != nil {
			return nil, &FieldError{Param: param + ".content", Message: "a tool_use input is not valid JSON"}
		}
		msg.ToolCalls = raw
	}
	return append(out, msg), nil
}

// resultText is the text of a tool result's content.
func resultText(raw json.RawMessage, param string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	c := new(MessagesText)
	if err := c.UnmarshalJSON(raw); err != nil {
		return "", &FieldError{Param: param, Message: "must be a string or an array of content blocks"}
	}
	if c.Blocks == nil {
		return c.Text, nil
	}
	var texts []string
	for j, b := range c.Blocks {
		if b.Type != "text" || b.Text == nil {
			return "", &FieldError{Param: fmt.Sprintf("%s[%d]", param, j), Message: "tool results are translated as text: only text blocks are supported"}
		}
		texts = append(texts, *b.Text)
	}
	return strings.Join(texts, "\n"), nil
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
	Content      []AnswerBlock   `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        MessagesUsage   `json:"usage"`
	Consortium   json.RawMessage `json:"consortium,omitempty"`
}

// AnswerBlock is a content block of an answer: text (Text, even when
// empty) or tool_use (ID, Name, Input).
type AnswerBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

// MessagesUsage is an answer's usage in Anthropic's words.
type MessagesUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	// CostUSD is a consortium's cost, as Usage.CostUSD.
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// MessagesUsageOf counts u as Anthropic does; nil (a provider that
// reported none) counts zero, since Anthropic's usage is never absent.
func MessagesUsageOf(u *Usage) MessagesUsage {
	if u == nil {
		return MessagesUsage{}
	}
	return MessagesUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, CostUSD: u.CostUSD}
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
// answer with the given id and model: its first choice's text as a text
// block, then its tool calls as tool_use blocks. The text block is there
// even when empty, unless the answer calls tools.
func MessagesResponseFrom(cc *ChatCompletion, id, model string) (*MessagesResponse, error) {
	text, finish := "", ""
	var calls []ToolCall
	if len(cc.Choices) > 0 {
		m := cc.Choices[0].Message
		if m.Content != nil {
			text = *m.Content
		}
		finish = cc.Choices[0].FinishReason
		if len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null" {
			if err := json.Unmarshal(m.ToolCalls, &calls); err != nil {
				return nil, fmt.Errorf("tool_calls: %w", err)
			}
		}
	}
	reason := StopReason(finish)
	r := &MessagesResponse{
		ID: id, Type: "message", Role: "assistant", Model: model,
		Content:    []AnswerBlock{},
		StopReason: &reason,
		Usage:      MessagesUsageOf(cc.Usage),
		Consortium: cc.Consortium,
	}
	if text != "" || len(calls) == 0 {
		r.Content = append(r.Content, AnswerBlock{Type: "text", Text: &text})
	}
	for _, c := range calls {
		r.Content = append(r.Content, AnswerBlock{Type: "tool_use", ID: c.ID, Name: c.Function.Name, Input: toolInput(c.Function.Arguments)})
	}
	return r, nil
}

// toolInput is a call's arguments as a tool_use input, which must be an
// object: arguments that are none (a model that sent "") are {}.
func toolInput(args string) json.RawMessage {
	if s := strings.TrimSpace(args); s != "" && s[0] == '{' && json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return json.RawMessage("{}")
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
// usage, and content_block_start of a text block), a text_delta per
// content delta (Chunk) and, for each tool call, a tool_use block whose
// input arrives as input_json_delta pieces, then End (content_block_stop,
// message_delta with the stop reason, the usage and the consortium
// object, message_stop). Ping and Error write Anthropic's keep-alive and
// its error event.
type MessagesStream struct {
	ID, Model  string
	finish     string
	usage      *Usage
	consortium json.RawMessage
	block      int    // the index of the open block
	tool       bool   // the open block is a tool_use block
	call       int    // the chat index of the tool call being read
	callID     string // and its id
}

// Start writes message_start and the text block's content_block_start.
func (s *MessagesStream) Start(ew *EventWriter) error {
	msg := MessagesResponse{ID: s.ID, Type: "message", Role: "assistant", Model: s.Model, Content: []AnswerBlock{}}
	if err := event(ew, "message_start", struct {
		Type    string            `json:"type"`
		Message *MessagesResponse `json:"message"`
	}{"message_start", &msg}); err != nil {
		return err
	}
	return s.open(ew, AnswerBlock{Type: "text", Text: new(string)})
}

// open starts content block b, at the next index unless it is the first.
func (s *MessagesStream) open(ew *EventWriter, b AnswerBlock) error {
	s.tool = b.Type == "tool_use"
	return event(ew, "content_block_start", struct {
		Type         string      `json:"type"`
		Index        int         `json:"index"`
		ContentBlock AnswerBlock `json:"content_block"`
	}{"content_block_start", s.block, b})
}

// next closes the open block and starts b after it.
func (s *MessagesStream) next(ew *EventWriter, b AnswerBlock) error {
	if err := s.stop(ew); err != nil {
		return err
	}
	s.block++
	return s.open(ew, b)
}

func (s *MessagesStream) stop(ew *EventWriter) error {
	return event(ew, "content_block_stop", struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}{"content_block_stop", s.block})
}

// blockDelta is a content_block_delta's delta: a text_delta's text or an
// input_json_delta's partial_json, never empty.
type blockDelta struct {
	Type        string `json:"type"`
	Text        string `json:"text,omitempty"`
	PartialJSON string `json:"partial_json,omitempty"`
}

func (s *MessagesStream) delta(ew *EventWriter, d blockDelta) error {
	return event(ew, "content_block_delta", struct {
		Type  string     `json:"type"`
		Index int        `json:"index"`
		Delta blockDelta `json:"delta"`
	}{"content_block_delta", s.block, d})
}

// Chunk writes the text and tool calls of the first choice of c, and
// keeps its finish reason, usage and consortium object for End.
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
			if s.tool {
				if err := s.next(ew, AnswerBlock{Type: "text", Text: new(string)}); err != nil {
					return err
				}
			}
			if err := s.delta(ew, blockDelta{Type: "text_delta", Text: *ch.Delta.Content}); err != nil {
				return err
			}
		}
		if len(ch.Delta.ToolCalls) == 0 || string(ch.Delta.ToolCalls) == "null" {
			continue
		}
		var calls []ToolCall
		if err := json.Unmarshal(ch.Delta.ToolCalls, &calls); err != nil {
			return fmt.Errorf("tool_calls: %w", err)
		}
		for _, call := range calls {
			index := s.call
			if call.Index != nil {
				index = *call.Index
			}
			// A call begins with its id; its later pieces carry its
			// index and arguments (and, from some servers, its id
			// again).
			if !s.tool || index != s.call || call.ID != "" && call.ID != s.callID {
				s.call, s.callID = index, call.ID
				if err := s.next(ew, AnswerBlock{Type: "tool_use", ID: call.ID, Name: call.Function.Name, Input: json.RawMessage("{}")}); err != nil {
					return err
				}
			}
			if call.Function.Arguments != "" {
				if err := s.delta(ew, blockDelta{Type: "input_json_delta", PartialJSON: call.Function.Arguments}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// End writes content_block_stop, message_delta and message_stop.
func (s *MessagesStream) End(ew *EventWriter) error {
	if err := s.stop(ew); err != nil {
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
