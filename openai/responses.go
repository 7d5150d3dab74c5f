package openai

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// The Responses API (POST /v1/responses) is served by translating it into
// a chat completion request: ResponseRequest reads the part the proxy
// supports and says which parts it does not, Messages turns its input into
// chat messages, and Response and ResponseEvent are what goes back.

// ResponseRequest is the part of a Responses API request the proxy reads.
// Fields it does not name (truncation, include, reasoning ...) are ignored:
// they change nothing a chat completion can express. The ones that ask
// for what it cannot do (tools, background, n, conversation, prompt) are
// refused by ParseResponseRequest rather than ignored.
type ResponseRequest struct {
	Model              string            `json:"model"`
	Input              Input             `json:"input"`
	Instructions       *string           `json:"instructions"`
	PreviousResponseID string            `json:"previous_response_id"`
	Store              *bool             `json:"store"`
	Stream             bool              `json:"stream"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	Text               *TextConfig       `json:"text"`
	Metadata           map[string]string `json:"metadata"`
	User               string            `json:"user"`

	// The unsupported: present only to be refused with a clear message.
	Tools        []json.RawMessage `json:"tools"`
	ToolChoice   json.RawMessage   `json:"tool_choice"`
	Background   *bool             `json:"background"`
	N            *int              `json:"n"`
	Conversation json.RawMessage   `json:"conversation"`
	Prompt       json.RawMessage   `json:"prompt"`
}

// Stored reports whether the response is to be stored: store defaults to
// true.
func (r *ResponseRequest) Stored() bool { return r.Store == nil || *r.Store }

// TextConfig is the request's and the response's text object.
type TextConfig struct {
	Format *TextFormat `json:"format,omitempty"`
}

// TextFormat is text.format: {"type":"text"}, {"type":"json_object"} or
// {"type":"json_schema","name":...,"schema":{...},"strict":...}.
type TextFormat struct {
	Type        string    `json:"type"`
	Name        string    `json:"name,omitempty"`
	Description string    `json:"description,omitempty"`
	Schema      RawObject `json:"schema,omitempty"`
	Strict      *bool     `json:"strict,omitempty"`
}

// ResponseFormat returns the chat completion response_format that asks
// for the same output, nil for plain text.
func (f *TextFormat) ResponseFormat() (*ResponseFormat, error) {
	if f == nil {
		return nil, nil
	}
	switch f.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return &ResponseFormat{Type: "json_object"}, nil
	case "json_schema":
		if f.Name == "" {
			return nil, &FieldError{Param: "text.format.name", Message: "text.format of type json_schema needs a name"}
		}
		if len(f.Schema) == 0 || string(f.Schema) == "null" {
			return nil, &FieldError{Param: "text.format.schema", Message: "text.format of type json_schema needs a schema"}
		}
		schema, err := json.Marshal(struct {
			Name        string    `json:"name"`
			Description string    `json:"description,omitempty"`
			Schema      RawObject `json:"schema"`
			Strict      *bool     `json:"strict,omitempty"`
		}{f.Name, f.Description, f.Schema, f.Strict})
		if err != nil {
			return nil, &FieldError{Param: "text.format.schema", Message: "text.format.schema is not valid JSON"}
		}
		return &ResponseFormat{Type: "json_schema", JSONSchema: schema}, nil
	}
	return nil, &FieldError{Param: "text.format.type", Message: fmt.Sprintf("text.format.type %q is not supported: use text, json_object or json_schema", f.Type)}
}

// Input is a request's input: a string, which is one user message, or an
// array of input items.
type Input struct {
	Text  string
	Items []InputItem // non-nil when the input was an array
	Set   bool        // the input was given, not null
}

// UnmarshalJSON accepts a string, an array of input items, or null.
func (in *Input) UnmarshalJSON(data []byte) error {
	*in = Input{}
	switch firstByte(data) {
	case 'n':
		return nil
	case '"':
		in.Set = true
		return json.Unmarshal(data, &in.Text)
	case '[':
		in.Set = true
		in.Items = []InputItem{}
		return decodeValue(data, reflect.ValueOf(&in.Items).Elem())
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[Input]()}
}

// InputItem is one item of an input array. The proxy reads messages
// (type "message", or no type with a role), which include the output
// message items of an earlier response, and item references (type
// "item_reference", or no type and no role, with an id), which name such
// an item by its id for the caller of Messages to resolve; other items
// (function calls and their outputs, reasoning) are refused by Messages.
type InputItem struct {
	Type    string      `json:"type"`
	ID      string      `json:"id"`
	Role    string      `json:"role"`
	Status  string      `json:"status"`
	Content ItemContent `json:"content"`
}

// ItemContent is a message item's content: a string, or an array of parts.
type ItemContent struct {
	Text  string
	Parts []InputPart // non-nil when the content was an array
}

// UnmarshalJSON accepts a string, an array of parts, or null.
func (c *ItemContent) UnmarshalJSON(data []byte) error {
	*c = ItemContent{}
	switch firstByte(data) {
	case 'n':
		return nil
	case '"':
		return json.Unmarshal(data, &c.Text)
	case '[':
		c.Parts = []InputPart{}
		return decodeValue(data, reflect.ValueOf(&c.Parts).Elem())
	}
	return &json.UnmarshalTypeError{Value: jsonKind(data), Type: reflect.TypeFor[ItemContent]()}
}

// InputPart is one content part of a message item: input_text,
// input_image, or, in an earlier response's output, output_text and
// refusal.
type InputPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL string `json:"image_url"`
	Detail   string `json:"detail"`
	FileID   string `json:"file_id"`
	Refusal  string `json:"refusal"`
}

// UnmarshalJSON decodes a request with exact keys, as ChatRequest's;
// fields it does not name are ignored.
func (r *ResponseRequest) UnmarshalJSON(data []byte) error { return decodeFields(data, r, nil) }

// UnmarshalJSON decodes with exact keys, as ChatRequest's.
func (c *TextConfig) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes with exact keys, as ChatRequest's.
func (f *TextFormat) UnmarshalJSON(data []byte) error { return decodeFields(data, f, nil) }

// UnmarshalJSON decodes with exact keys, as ChatRequest's.
func (it *InputItem) UnmarshalJSON(data []byte) error { return decodeFields(data, it, nil) }

// UnmarshalJSON decodes with exact keys, as ChatRequest's.
func (p *InputPart) UnmarshalJSON(data []byte) error { return decodeFields(data, p, nil) }

// ParseResponseRequest decodes and checks a Responses API request body.
// A wrong type, a missing model, and every part the proxy does not serve
// are FieldErrors naming the field.
func ParseResponseRequest(body []byte) (*ResponseRequest, error) {
	var req ResponseRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, &FieldError{Param: "model", Message: "you must provide a model parameter"}
	}
	if len(req.Tools) > 0 {
		return nil, &FieldError{Param: "tools", Message: "tools are not supported: neither function tools nor built-in tools (web search, file search, code interpreter ...) can be used through this proxy's Responses API"}
	}
	switch s := string(req.ToolChoice); s {
	case "", "null", `"none"`, `"auto"`:
	default:
		return nil, &FieldError{Param: "tool_choice", Message: "tool_choice " + s + " is not supported: tools are not supported"}
	}
	if req.Background != nil && *req.Background {
		return nil, &FieldError{Param: "background", Message: "background: true is not supported: responses are answered while the request waits"}
	}
	if req.N != nil {
		return nil, &FieldError{Param: "n", Message: "n is not supported by the Responses API: it writes one answer"}
	}
	if len(req.Conversation) > 0 && string(req.Conversation) != "null" {
		return nil, &FieldError{Param: "conversation", Message: "conversation is not supported: continue a response with previous_response_id"}
	}
	if len(req.Prompt) > 0 && string(req.Prompt) != "null" {
		return nil, &FieldError{Param: "prompt", Message: "prompt templates are not supported: send instructions and input"}
	}
	if req.MaxOutputTokens != nil && *req.MaxOutputTokens < 1 {
		return nil, &FieldError{Param: "max_output_tokens", Message: "max_output_tokens must be at least 1"}
	}
	if req.Text != nil {
		if _, err := req.Text.Format.ResponseFormat(); err != nil {
			return nil, err
		}
	}
	// Item references are resolved later, by the caller of Messages: here
	// only their shape is checked.
	if _, err := req.Messages(func(string, string) (Message, error) {
		return Message{Role: "assistant", Content: TextContent("")}, nil
	}); err != nil {
		return nil, err
	}
	return &req, nil
}

// ItemResolver returns the message that an item_reference input item
// names by id; param is the item's place in the request ("input[2]"),
// for the error of an id that names nothing. Its errors are returned by
// Messages as they are.
type ItemResolver func(param, id string) (Message, error)

// isReference reports whether the item is an item_reference: by its type,
// or, as OpenAI's API allows, by an id without a type or a role.
func (it *InputItem) isReference() bool {
	return it.Type == "item_reference" || it.Type == "" && it.Role == "" && it.ID != ""
}

// Messages returns the request's input as chat messages: a string is one
// user message; message items keep their role, their text parts become
// text parts and their images image_url parts; an item reference becomes
// the message resolve returns for its id (with a nil resolve, it is a
// FieldError). Instructions are not among them (they are the caller's
// system message). Any other item or part is a FieldError naming it.
func (r *ResponseRequest) Messages(resolve ItemResolver) ([]Message, error) {
	if !r.Input.Set {
		if r.PreviousResponseID != "" {
			return nil, &FieldError{Param: "input", Message: "input is required: the new turn after the previous response"}
		}
		return nil, &FieldError{Param: "input", Message: "you must provide an input parameter"}
	}
	if r.Input.Items == nil {
		return []Message{{Role: "user", Content: TextContent(r.Input.Text)}}, nil
	}
	if len(r.Input.Items) == 0 {
		return nil, &FieldError{Param: "input", Message: "input must be a non-empty string or array of input items"}
	}
	msgs := make([]Message, 0, len(r.Input.Items))
	for i, it := range r.Input.Items {
		param := fmt.Sprintf("input[%d]", i)
		if it.isReference() {
			if it.ID == "" {
				return nil, &FieldError{Param: param + ".id", Message: "an item_reference needs the id of the item it refers to"}
			}
			if resolve == nil {
				return nil, &FieldError{Param: param, Message: "item references cannot be resolved here: send the message itself"}
			}
			m, err := resolve(param, it.ID)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
			continue
		}
		m, err := it.message()
		if err != nil {
			err.Param = param + err.Param
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// message translates a message item; the error's Param is relative to
// the item.
func (it *InputItem) message() (Message, *FieldError) {
	switch it.Type {
	case "", "message":
	default:
		return Message{}, &FieldError{Param: ".type", Message: fmt.Sprintf("input items of type %q are not supported: tools are not supported, and only messages can be sent", it.Type)}
	}
	switch it.Role {
	case "user", "assistant", "system", "developer":
	case "":
		return Message{}, &FieldError{Param: ".role", Message: "each input message needs a role"}
	default:
		return Message{}, &FieldError{Param: ".role", Message: fmt.Sprintf("role %q is not supported: use user, assistant, system or developer", it.Role)}
	}
	if it.Content.Parts == nil {
		return Message{Role: it.Role, Content: TextContent(it.Content.Text)}, nil
	}
	parts := make([]Part, 0, len(it.Content.Parts))
	for j, p := range it.Content.Parts {
		switch p.Type {
		case "input_text", "output_text":
			parts = append(parts, Part{Type: "text", Text: p.Text})
		case "refusal":
			parts = append(parts, Part{Type: "text", Text: p.Refusal})
		case "input_image":
			if p.ImageURL == "" {
				return Message{}, &FieldError{Param: fmt.Sprintf(".content[%d].image_url", j), Message: "input_image needs an image_url (a URL or a data: URL); file_id is not supported"}
			}
			parts = append(parts, Part{Type: "image_url", ImageURL: &ImageURL{URL: p.ImageURL, Detail: p.Detail}})
		default:
			return Message{}, &FieldError{Param: fmt.Sprintf(".content[%d].type", j), Message: fmt.Sprintf("content parts of type %q are not supported: use input_text or input_image", p.Type)}
		}
	}
	return Message{Role: it.Role, Content: Content{Parts: parts}}, nil
}

// Response is the Responses API's response object. Consortium is the
// consortium object of a consortium's answer, which clients ignore.
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []OutputItem       `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	Text               TextConfig         `json:"text"`
	ToolChoice         string             `json:"tool_choice"`
	Tools              []json.RawMessage  `json:"tools"`
	TopP               *float64           `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *ResponseUsage     `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
	Consortium         json.RawMessage    `json:"consortium,omitempty"`
}

// ResponseError is a failed response's error.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// OutputItem is an output message item.
type OutputItem struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []OutputText `json:"content"`
}

// OutputText is an output_text content part.
type OutputText struct {
	Type        string            `json:"type"`
	Text        string            `json:"text"`
	Annotations []json.RawMessage `json:"annotations"`
}

// ResponseUsage is a response's token usage.
type ResponseUsage struct {
	InputTokens         int                `json:"input_tokens"`
	InputTokensDetails  InputTokenDetails  `json:"input_tokens_details"`
	OutputTokens        int                `json:"output_tokens"`
	OutputTokensDetails OutputTokenDetails `json:"output_tokens_details"`
	TotalTokens         int                `json:"total_tokens"`
	// CostUSD is a consortium's cost, as Usage.CostUSD.
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// InputTokenDetails details a response's input tokens.
type InputTokenDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// OutputTokenDetails details a response's output tokens.
type OutputTokenDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// UsageOf returns the response usage of a chat completion's usage, nil
// for none: usage that was not reported is not invented.
func UsageOf(u *Usage) *ResponseUsage {
	if u == nil {
		return nil
	}
	return &ResponseUsage{InputTokens: u.PromptTokens, InputTokensDetails: InputTokenDetails{CachedTokens: u.Cached()},
		OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, CostUSD: u.CostUSD}
}

// ResponseEvent is one event of a Responses stream, sent as "event: Type"
// with the event as its data. Which fields are set depends on Type.
type ResponseEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *Response       `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	Item           *OutputItem     `json:"item,omitempty"`
	Part           *OutputText     `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Logprobs       json.RawMessage `json:"logprobs,omitempty"`
}

// DeletedResponse is the answer to DELETE /v1/responses/{id}.
type DeletedResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}
