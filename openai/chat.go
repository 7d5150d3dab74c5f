// Package openai holds the OpenAI wire types that every layer of the proxy
// speaks: chat completion requests, responses and stream chunks, models,
// embeddings and the error envelope. It owns their JSON shape (keys matched
// exactly, as OpenAI's API matches them) and the checks on the fields the
// proxy reads, with the one scanner the passthrough hot path needs; it does
// no I/O and knows nothing of providers, consortiums or HTTP routing.
package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
)

// ChatRequest is the part of a Chat Completions request the proxy reads.
// Passthrough forwards the client's raw JSON (see SetModel), so fields the
// proxy does not know reach the provider untouched. Its JSON keys are
// exact, as in OpenAI's API: "STREAM" is not "stream" (see UnmarshalJSON).
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	Stop                Stop            `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ResponseFormat      *ResponseFormat `json:"response_format,omitempty"`
	User                string          `json:"user,omitempty"`

	// Extra holds fields set on top of the ones above when the request is
	// encoded (a consortium member's params overrides). Decoding puts
	// there the fields the ones above do not name, each as its
	// json.RawMessage.
	Extra map[string]any `json:"-"`
}

// MarshalJSON encodes the request with Extra's fields set over the typed
// ones. With Extra set, the result is an object whose keys are sorted, as
// it goes through a map. Without, the typed fields are written in struct
// order, as json.Marshal writes them (see appendFields).
func (r *ChatRequest) MarshalJSON() ([]byte, error) {
	if len(r.Extra) == 0 {
		b, err := r.appendFields(nil)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := json.Marshal((*plainChatRequest)(r))
	if err != nil {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("param %s: %w", k, err)
		}
		fields[k] = raw
	}
	return json.Marshal(fields)
}

// AppendJSON appends r's JSON encoding (see MarshalJSON) to dst and returns
// the extended buffer; on error dst is returned unchanged.
func (r *ChatRequest) AppendJSON(dst []byte) ([]byte, error) {
	if len(r.Extra) == 0 {
		return r.appendFields(dst)
	}
	b, err := r.MarshalJSON()
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// StreamOptions is the request's stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat is the request's response_format object. JSONSchema is kept
// raw: the proxy passes it on and never interprets it.
type ResponseFormat struct {
	Type       string    `json:"type"`
	JSONSchema RawObject `json:"json_schema,omitempty"`
}

// Tool is one entry of the request's tools array, kept raw apart from its
// type so that tool definitions reach the provider as the client wrote them.
type Tool struct {
	Type     string    `json:"type"`
	Function RawObject `json:"function,omitempty"`
}

// RawObject is a JSON object kept raw, as json.RawMessage keeps any value:
// decoding anything but an object or null into it is a type error.
type RawObject []byte

// MarshalJSON returns o, or null when o is nil.
func (o RawObject) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("null"), nil
	}
	return o, nil
}

// UnmarshalJSON keeps a copy of an object or null.
func (o *RawObject) UnmarshalJSON(data []byte) error {
	switch firstByte(data) {
	case '{', 'n':
		*o = append((*o)[:0], data...)
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[RawObject]()}
}

// Message is one chat message. Content is a string, an array of content
// parts, or null (legal for assistant messages that carry tool calls).
type Message struct {
	Role       string          `json:"role"`
	Content    Content         `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// Content is a message's content: plain text, content parts, or null.
type Content struct {
	Text  string
	Parts []Part // non-nil when the content was an array
	Null  bool   // the content was null or absent
}

// Part is one content part: {"type":"text","text":...} or
// {"type":"image_url","image_url":{"url":...}}; other types are kept by type.
type Part struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is the image_url object of an image content part.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// TextContent returns plain-text content.
func TextContent(s string) Content { return Content{Text: s} }

// String returns the text of the content: the text itself, or the text parts
// joined by newlines.
func (c Content) String() string {
	if c.Parts == nil {
		return c.Text
	}
	var b bytes.Buffer
	for _, p := range c.Parts {
		if p.Type != "text" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

// UnmarshalJSON accepts a string, an array of parts, or null.
func (c *Content) UnmarshalJSON(data []byte) error {
	*c = Content{}
	switch firstByte(data) {
	case 'n':
		c.Null = true
		return nil
	case '"':
		if s, ok := plainString(data); ok {
			c.Text = s
			return nil
		}
		return json.Unmarshal(data, &c.Text)
	case '[':
		return decodeValue(data, reflect.ValueOf(&c.Parts).Elem())
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[Content]()}
}

// plainString returns the text of a JSON string that has nothing to
// unescape or replace (no backslash, no invalid UTF-8): its bytes between
// the quotes, without a second scan by encoding/json. ok is false for
// anything else, which json.Unmarshal then reads or refuses.
func plainString(data []byte) (s string, ok bool) {
	n := len(data)
	if n < 2 || data[0] != '"' || data[n-1] != '"' {
		return "", false
	}
	inner := data[1 : n-1]
	for _, c := range inner {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(inner) {
		return "", false
	}
	return string(inner), true
}

// MarshalJSON writes the text, the parts, or null, as json.Marshal writes
// a string or a []Part.
func (c Content) MarshalJSON() ([]byte, error) {
	return c.appendJSON(nil), nil
}

// Stop is the request's stop field: one string or a list of strings.
type Stop []string

// UnmarshalJSON accepts a string, an array of strings, or null.
func (s *Stop) UnmarshalJSON(data []byte) error {
	switch firstByte(data) {
	case 'n':
		*s = nil
		return nil
	case '"':
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*s = Stop{one}
		return nil
	case '[':
		var many []string
		if err := json.Unmarshal(data, &many); err != nil {
			return err
		}
		*s = many
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[Stop]()}
}

// ChatCompletion is a non-streamed Chat Completions response.
type ChatCompletion struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	Choices           []Choice        `json:"choices"`
	Usage             *Usage          `json:"usage,omitempty"`
	SystemFingerprint string          `json:"system_fingerprint,omitempty"`
	Consortium        json.RawMessage `json:"consortium,omitempty"`
}

// Choice is one choice of a ChatCompletion. Logprobs is kept raw, as the
// proxy never reads it: nil leaves it out, and a translation that writes
// OpenAI's "logprobs": null sets it to null.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
	FinishReason string          `json:"finish_reason"`
}

// ResponseMessage is the assistant message of a choice. Refusal and
// ToolCalls are kept raw, as Logprobs is: nil leaves them out. ToolCall
// reads and writes the calls.
type ResponseMessage struct {
	Role      string          `json:"role"`
	Content   *string         `json:"content"`
	Refusal   json.RawMessage `json:"refusal,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// ToolCall is one function call of a message's tool_calls or, in pieces,
// of a stream delta's, which carries its Index.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function of a ToolCall: its name and its arguments as
// JSON text (a piece of it, in a stream delta).
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ChatCompletionChunk is one frame of a streamed Chat Completions response.
type ChatCompletionChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	Choices           []ChunkChoice   `json:"choices"`
	Usage             *Usage          `json:"usage,omitempty"`
	SystemFingerprint string          `json:"system_fingerprint,omitempty"`
	Consortium        json.RawMessage `json:"consortium,omitempty"`
}

// ChunkChoice is one choice of a stream chunk.
type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is the incremental message of a ChunkChoice. Content is nil when
// the chunk carries none; OpenAI's first chunk carries an empty one beside
// the role. ToolCalls is kept raw, as in ResponseMessage.
type Delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// Usage counts the tokens of one or more calls.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// PromptTokensDetails, when the provider reports it, says how many
	// prompt tokens it read from its prompt cache, which pricing's
	// cached_input prices.
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
	// CostUSD is what the calls cost in US dollars, priced by the
	// configuration's pricing: set only on a consortium's usage, and left
	// out when a call's model has no price (unknown, never 0).
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// PromptTokensDetails details a usage's prompt tokens.
type PromptTokensDetails struct {
	// CachedTokens are the prompt tokens read from the provider's cache.
	CachedTokens int `json:"cached_tokens"`
}

// Add adds u2's token counts to u, cached tokens included. CostUSD is
// left as it is: a cost is priced from each call's model, which the
// counts no longer tell.
func (u *Usage) Add(u2 Usage) {
	u.PromptTokens += u2.PromptTokens
	u.CompletionTokens += u2.CompletionTokens
	u.TotalTokens += u2.TotalTokens
	if d := u2.PromptTokensDetails; d != nil {
		sum := *d
		if u.PromptTokensDetails != nil {
			sum.CachedTokens += u.PromptTokensDetails.CachedTokens
		}
		u.PromptTokensDetails = &sum
	}
}

// Cached returns the prompt tokens u says were read from the provider's
// cache; 0 when it does not say.
func (u *Usage) Cached() int {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
}

// ParseChatRequest decodes and checks a Chat Completions request body. The
// error names the offending field (see FieldError): a wrong type, or a
// field given twice. Keys are exact (see ChatRequest.UnmarshalJSON).
func ParseChatRequest(body []byte) (*ChatRequest, error) {
	var req ChatRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, &FieldError{Param: "model", Message: "you must provide a model parameter"}
	}
	if len(req.Messages) == 0 {
		return nil, &FieldError{Param: "messages", Message: "messages must be a non-empty array"}
	}
	for i, m := range req.Messages {
		if m.Role == "" {
			return nil, &FieldError{Param: fmt.Sprintf("messages[%d].role", i), Message: "each message needs a role"}
		}
	}
	if req.N != nil && *req.N < 1 {
		return nil, &FieldError{Param: "n", Message: "n must be at least 1"}
	}
	return &req, nil
}

// FieldError is a request that is not acceptable because of one field. Param
// is the field's path, as OpenAI reports it in error.param; it is empty when
// the body as a whole is at fault.
type FieldError struct {
	Param   string
	Message string
}

func (e *FieldError) Error() string { return e.Message }

// decodeRequest decodes a JSON object body into v and turns decoding
// errors into FieldErrors that name the field.
func decodeRequest(body []byte, v json.Unmarshaler) error {
	if firstByte(body) != '{' {
		if !json.Valid(body) {
			return &FieldError{Message: "the request body is not valid JSON"}
		}
		return &FieldError{Message: "the request body must be a JSON object"}
	}
	err := v.UnmarshalJSON(body)
	var typeErr *json.UnmarshalTypeError
	var dup *duplicateError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		param := typeErr.Field
		return &FieldError{Param: param, Message: fmt.Sprintf("invalid type for %q: expected %s, got %s", param, typeName(typeErr.Type), typeErr.Value)}
	case errors.As(err, &dup):
		return &FieldError{Param: dup.Field, Message: fmt.Sprintf("%q is given more than once; a field may appear once", dup.Field)}
	}
	return &FieldError{Message: "the request body is not valid JSON: " + err.Error()}
}

// typeName says a Go type the way a JSON user would.
func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Content]():
		return "a string, an array of content parts, or null"
	case reflect.TypeFor[Stop]():
		return "a string or an array of strings"
	case reflect.TypeFor[RawObject]():
		return "an object"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// firstByte returns the first non-space byte of data, or 0.
func firstByte(data []byte) byte {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

// jsonKind names the kind of a JSON value from its first byte.
func jsonKind(data []byte) string {
	switch firstByte(data) {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
