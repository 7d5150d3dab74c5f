package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// Anthropic's Messages API, reached by providers of type "anthropic", is
// a dialect (dialect.go): Chat and ChatStream translate the ChatRequest
// struct into a Messages request and read the answer into a
// ChatCompletion or typed chunks (anthropicEvents, anthropic_stream.go);
// Do, the passthrough, parses the client's body first and writes the
// answer back as an OpenAI-compatible provider would have sent it (a
// chat.completion, or a chat.completion.chunk event stream). Each
// attempt's answer is read inside the retry loop, so that retries,
// breakers and limits apply unchanged. docs/anthropic.md lists what is
// translated and what is not.

// anthropicVersion is the version of the Messages API the translation
// speaks, sent as anthropic-version unless the provider's headers set one.
const anthropicVersion = "2023-06-01"

// defaultMaxTokens is the max_tokens sent when the request sets none:
// Anthropic requires one.
const defaultMaxTokens = 4096

// anthropicDialect speaks Anthropic's Messages API.
type anthropicDialect struct {
	messagesPath string // the Messages endpoint below the base URL
	promptCache  bool
}

// endpoint refuses, as Anthropic would, the endpoints it lacks
// (embeddings), without calling the provider.
func (d *anthropicDialect) endpoint(path string) (string, *Error) {
	if path != "/chat/completions" {
		return "", &Error{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("the provider is of type anthropic, and Anthropic has no %s endpoint (only chat completions)", strings.TrimPrefix(path, "/"))}
	}
	return d.messagesPath, nil
}

// headers sends the key as x-api-key (a bearer token, even one the
// configured headers set, would only be another credential on the wire),
// and anthropic-version unless the configured headers set one.
func (d *anthropicDialect) headers(h http.Header, key string) {
	h.Del("Authorization")
	if key != "" {
		h.Set("X-Api-Key", key)
	}
	if h.Get("Anthropic-Version") == "" {
		h.Set("Anthropic-Version", anthropicVersion)
	}
}

// encode leaves dst alone: translateRequest has a body of its own.
func (d *anthropicDialect) encode(_ []byte, req *openai.ChatRequest, model string, stream bool) ([]byte, error) {
	return translateRequest(req, model, stream, d.promptCache)
}

func (d *anthropicDialect) decode(data []byte, model string) (*openai.ChatCompletion, error) {
	c, err := answer(data, model)
	if err != nil {
		return nil, err
	}
	cc := c.ChatCompletion
	if c.Usage != nil {
		cc.Usage = c.Usage.priced()
	}
	return &cc, nil
}

// passRequest translates the client's Chat Completions body (see
// parseAnthropic).
func (d *anthropicDialect) passRequest(body []byte, model string) ([]byte, bool, error) {
	cr, err := parseAnthropic(body)
	if err != nil {
		return nil, false, err
	}
	wire, err := d.encode(nil, cr, model, cr.Stream)
	return wire, cr.StreamOptions != nil && cr.StreamOptions.IncludeUsage, err
}

// passJSON writes the answer as a chat.completion, with the prompt
// cache's details in its usage.
func (d *anthropicDialect) passJSON(data []byte, model string, buf *bytes.Buffer) (string, error) {
	c, err := answer(data, model)
	if err != nil {
		return "", err
	}
	buf.Reset()
	encodeJSON(buf, c)          // not failing: every field marshals
	buf.Truncate(buf.Len() - 1) // the encoder's newline
	return "application/json", nil
}

func (d *anthropicDialect) chunks(body io.Reader, model string) iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {
		for c, err := range anthropicEvents(body, model, true) {
			switch {
			case err != nil:
				yield(nil, err)
				return
			case c == nil: // a ping
			default:
				cc := c.ChatCompletionChunk
				if c.Usage != nil {
					cc.Usage = c.Usage.priced()
				}
				if !yield(&cc, nil) {
					return
				}
			}
		}
	}
}

// passStream serves the stream as the chat.completion.chunk stream an
// OpenAI-compatible provider would have sent (see anthropicEvents).
func (d *anthropicDialect) passStream(body *idleBody, model string, includeUsage bool) (io.ReadCloser, string) {
	b := &sseBody{body: body}
	b.w = openai.NewEventWriter(&b.out)
	b.next, b.stop = iter.Pull2(anthropicEvents(body, model, includeUsage))
	return b, "text/event-stream"
}

// parseAnthropic reads a Chat Completions body for an anthropic
// provider: the fields ChatRequest does not keep but the translation
// reads (top_k, which a member's params may set too, and
// parallel_tool_calls) go to its Extra.
func parseAnthropic(body []byte) (*openai.ChatRequest, error) {
	cr, err := openai.ParseChatRequest(body)
	if err != nil {
		return nil, err
	}
	var extra struct {
		TopK              json.RawMessage `json:"top_k"`
		ParallelToolCalls json.RawMessage `json:"parallel_tool_calls"`
	}
	if err := json.Unmarshal(body, &extra); err != nil {
		return nil, err
	}
	for k, v := range map[string]json.RawMessage{"top_k": extra.TopK, "parallel_tool_calls": extra.ParallelToolCalls} {
		if v != nil {
			if cr.Extra == nil {
				cr.Extra = map[string]any{}
			}
			cr.Extra[k] = v
		}
	}
	return cr, nil
}

// withExtra returns req with its Extra fields (a member's params) set over
// the typed ones, as AppendJSON would send them to an OpenAI-compatible
// provider, and the Extra fields the translation reads besides: top_k and
// parallel_tool_calls, whatever Go type holds them (raw JSON from a body,
// numbers from a member's params). req is not changed.
func withExtra(req *openai.ChatRequest) (r *openai.ChatRequest, topK *int, parallel *bool, err error) {
	if len(req.Extra) == 0 {
		return req, nil, nil, nil
	}
	raw, err := json.Marshal(req.Extra)
	if err != nil {
		return nil, nil, nil, err
	}
	var set map[string]json.RawMessage
	var over openai.ChatRequest
	var more struct {
		TopK              *int  `json:"top_k"`
		ParallelToolCalls *bool `json:"parallel_tool_calls"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, nil, nil, err
	}
	if err := json.Unmarshal(raw, &more); err != nil {
		return nil, nil, nil, fmt.Errorf("top_k and parallel_tool_calls must be an integer and a boolean: %w", err)
	}
	if err := json.Unmarshal(raw, &over); err != nil {
		return nil, nil, nil, err
	}
	c := *req
	for k := range set {
		switch k {
		case "messages":
			c.Messages = over.Messages
		case "stream_options":
			c.StreamOptions = over.StreamOptions
		case "temperature":
			c.Temperature = over.Temperature
		case "top_p":
			c.TopP = over.TopP
		case "max_tokens":
			c.MaxTokens = over.MaxTokens
		case "max_completion_tokens":
			c.MaxCompletionTokens = over.MaxCompletionTokens
		case "stop":
			c.Stop = over.Stop
		case "n":
			c.N = over.N
		case "tools":
			c.Tools = over.Tools
		case "tool_choice":
			c.ToolChoice = over.ToolChoice
		case "response_format":
			c.ResponseFormat = over.ResponseFormat
		case "user":
			c.User = over.User
		}
		// Other fields (seed, penalties, logprobs ...) have no place in
		// a Messages request.
	}
	return &c, more.TopK, more.ParallelToolCalls, nil
}

// messagesRequest is the body of POST /v1/messages.
type messagesRequest struct {
	Model         string           `json:"model"`
	MaxTokens     int              `json:"max_tokens"`
	System        []block          `json:"system,omitempty"`
	Messages      []message        `json:"messages"`
	Temperature   *float64         `json:"temperature,omitempty"`
	TopP          *float64         `json:"top_p,omitempty"`
	TopK          *int             `json:"top_k,omitempty"`
	StopSequences []string         `json:"stop_sequences,omitempty"`
	Stream        bool             `json:"stream,omitempty"`
	Tools         []tool           `json:"tools,omitempty"`
	ToolChoice    *toolChoice      `json:"tool_choice,omitempty"`
	Metadata      *requestMetadata `json:"metadata,omitempty"`
}

// message is one turn of a Messages request: user or assistant.
type message struct {
	Role    string  `json:"role"`
	Content []block `json:"content"`
}

// block is a content block: text, image, tool_use or tool_result, with
// only the fields of its type set.
type block struct {
	Type         string          `json:"type"`
	Text         string          `json:"text,omitempty"`
	Source       *imageSource    `json:"source,omitempty"`
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	ToolUseID    string          `json:"tool_use_id,omitempty"`
	Content      []block         `json:"content,omitempty"`
	CacheControl *cacheControl   `json:"cache_control,omitempty"`
}

type imageSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type cacheControl struct {
	Type string `json:"type"`
}

// ephemeral marks the end of a prefix for Anthropic's prompt cache.
var ephemeral = &cacheControl{Type: "ephemeral"}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type toolChoice struct {
	Type                   string `json:"type"` // auto, any, tool, none
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type requestMetadata struct {
	UserID string `json:"user_id"`
}

// emptySchema is the input schema of a function tool that declares no
// parameters: Anthropic requires one.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// translateRequest turns a chat request into a Messages body for model.
// With cache, the stable prefix is marked for the prompt cache (see
// markCache).
func translateRequest(cr *openai.ChatRequest, model string, stream, cache bool) ([]byte, error) {
	cr, topK, parallel, err := withExtra(cr)
	if err != nil {
		return nil, err
	}
	if cr.N != nil && *cr.N > 1 {
		return nil, &openai.FieldError{Param: "n", Message: "Anthropic writes one choice per request; n must be 1"}
	}

	m := messagesRequest{Model: model, MaxTokens: defaultMaxTokens, Stream: stream, TopP: cr.TopP, TopK: topK, StopSequences: cr.Stop}
	switch {
	case cr.MaxCompletionTokens != nil:
		m.MaxTokens = *cr.MaxCompletionTokens
	case cr.MaxTokens != nil:
		m.MaxTokens = *cr.MaxTokens
	}
	if cr.Temperature != nil {
		// OpenAI's scale runs to 2, Anthropic's to 1, which it enforces:
		// the hottest setting of one is the hottest of the other.
		t := min(max(*cr.Temperature, 0), 1)
		m.Temperature = &t
	}
	if cr.User != "" {
		m.Metadata = &requestMetadata{UserID: cr.User}
	}

	for i, msg := range cr.Messages {
		var role string
		var blocks []block
		switch msg.Role {
		case "system", "developer":
			// Anthropic has one system prompt, before the conversation:
			// every system turn joins it, in order.
			if t := msg.Content.String(); strings.TrimSpace(t) != "" {
				m.System = append(m.System, block{Type: "text", Text: t})
			}
			continue
		case "user":
			role = "user"
			blocks, err = userBlocks(msg.Content, i)
		case "assistant":
			role = "assistant"
			blocks, err = assistantBlocks(msg, i)
		case "tool":
			// A tool's result goes back to the model in the next user
			// turn; consecutive results merge into one.
			if msg.ToolCallID == "" {
				return nil, &openai.FieldError{Param: fmt.Sprintf("messages[%d].tool_call_id", i), Message: "a tool message needs the id of the call it answers"}
			}
			role = "user"
			blocks = []block{{Type: "tool_result", ToolUseID: toolID(msg.ToolCallID), Content: textBlocks(msg.Content)}}
		default:
			return nil, &openai.FieldError{Param: fmt.Sprintf("messages[%d].role", i),
				Message: fmt.Sprintf("%q cannot be sent to Anthropic (system, developer, user, assistant or tool)", msg.Role)}
		}
		if err != nil {
			return nil, err
		}
		if len(blocks) == 0 {
			continue // Anthropic refuses empty turns
		}
		// Anthropic wants turns that alternate: same-role neighbours
		// merge.
		if n := len(m.Messages); n > 0 && m.Messages[n-1].Role == role {
			m.Messages[n-1].Content = append(m.Messages[n-1].Content, blocks...)
			continue
		}
		m.Messages = append(m.Messages, message{Role: role, Content: blocks})
	}
	if len(m.Messages) == 0 {
		return nil, &openai.FieldError{Param: "messages", Message: "Anthropic needs at least one user or assistant message with content"}
	}
	// A last assistant turn is a prefill the model continues, which
	// Anthropic refuses when it ends in white space.
	if last := &m.Messages[len(m.Messages)-1]; last.Role == "assistant" {
		if b := &last.Content[len(last.Content)-1]; b.Type == "text" {
			b.Text = strings.TrimRight(b.Text, " \t\r\n")
		}
	}

	if err := translateTools(&m, cr, parallel); err != nil {
		return nil, err
	}
	if s := formatInstruction(cr.ResponseFormat); s != "" {
		m.System = append(m.System, block{Type: "text", Text: s})
	}
	if cache {
		markCache(&m)
	}
	return json.Marshal(&m)
}

// markCache puts Anthropic's cache breakpoints on the stable prefix of a
// conversation: the end of the system prompt, and the end of the turn
// before the last user turn. In a consortium's later round that turn is
// the member's own earlier answer, and in a continuation the previous
// reply, so that everything before the newest user turn is read from the
// cache rather than billed again.
func markCache(m *messagesRequest) {
	if n := len(m.System); n > 0 {
		m.System[n-1].CacheControl = ephemeral
	}
	for i := len(m.Messages) - 1; i > 0; i-- {
		if m.Messages[i].Role == "user" {
			prev := m.Messages[i-1].Content
			prev[len(prev)-1].CacheControl = ephemeral
			return
		}
	}
}

// userBlocks translates a user message's content: text and images.
func userBlocks(c openai.Content, i int) ([]block, error) {
	if c.Parts == nil {
		return textBlocks(c), nil
	}
	var out []block
	for j, part := range c.Parts {
		switch part.Type {
		case "text":
			if strings.TrimSpace(part.Text) != "" {
				out = append(out, block{Type: "text", Text: part.Text})
			}
		case "image_url":
			param := fmt.Sprintf("messages[%d].content[%d].image_url", i, j)
			if part.ImageURL == nil || part.ImageURL.URL == "" {
				return nil, &openai.FieldError{Param: param, Message: "an image part needs a url"}
			}
			src, err := imageFrom(part.ImageURL.URL)
			if err != nil {
				return nil, &openai.FieldError{Param: param, Message: err.Error()}
			}
			out = append(out, block{Type: "image", Source: src})
		default:
			return nil, &openai.FieldError{Param: fmt.Sprintf("messages[%d].content[%d].type", i, j),
				Message: fmt.Sprintf("content parts of type %q cannot be sent to Anthropic (text and image_url can)", part.Type)}
		}
	}
	return out, nil
}

// textBlocks returns content's text as one text block, or none when it
// holds nothing but white space, which Anthropic refuses.
func textBlocks(c openai.Content) []block {
	t := c.String()
	if strings.TrimSpace(t) == "" {
		return nil
	}
	return []block{{Type: "text", Text: t}}
}

// imageFrom makes an image source of an image_url: a base64 data: URL, or
// an http(s) URL that Anthropic fetches itself.
func imageFrom(u string) (*imageSource, error) {
	if rest, ok := cutPrefixFold(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		params := strings.Split(meta, ";")
		if !ok || len(params) < 2 || params[0] == "" || !strings.EqualFold(params[len(params)-1], "base64") {
			return nil, errors.New("a data: URL must name its media type and be base64-encoded (data:image/png;base64,...)")
		}
		return &imageSource{Type: "base64", MediaType: strings.ToLower(params[0]), Data: data}, nil
	}
	if _, ok := cutPrefixFold(u, "https://"); ok {
		return &imageSource{Type: "url", URL: u}, nil
	}
	if _, ok := cutPrefixFold(u, "http://"); ok {
		return &imageSource{Type: "url", URL: u}, nil
	}
	return nil, errors.New("an image url must be a data: URL or an http(s) URL")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// assistantBlocks translates an assistant message: its text, then its tool
// calls as tool_use blocks.
func assistantBlocks(msg openai.Message, i int) ([]block, error) {
	var out []block
	if msg.Content.Parts != nil {
		for j, part := range msg.Content.Parts {
			switch part.Type {
			case "text":
				if strings.TrimSpace(part.Text) != "" {
					out = append(out, block{Type: "text", Text: part.Text})
				}
			case "refusal":
				// A refusal the model wrote: nothing to send back.
			default:
				return nil, &openai.FieldError{Param: fmt.Sprintf("messages[%d].content[%d].type", i, j),
					Message: fmt.Sprintf("assistant content parts of type %q cannot be sent to Anthropic", part.Type)}
			}
		}
	} else {
		out = textBlocks(msg.Content)
	}
	if len(msg.ToolCalls) == 0 || string(msg.ToolCalls) == "null" {
		return out, nil
	}
	var calls []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if err := json.Unmarshal(msg.ToolCalls, &calls); err != nil {
		return nil, &openai.FieldError{Param: fmt.Sprintf("messages[%d].tool_calls", i), Message: "must be an array of function calls: " + err.Error()}
	}
	for j, c := range calls {
		param := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
		if c.Type != "" && c.Type != "function" {
			return nil, &openai.FieldError{Param: param + ".type", Message: fmt.Sprintf("tool calls of type %q cannot be sent to Anthropic (function can)", c.Type)}
		}
		if c.ID == "" || c.Function.Name == "" {
			return nil, &openai.FieldError{Param: param, Message: "a tool call needs an id and a function name"}
		}
		args := strings.TrimSpace(c.Function.Arguments)
		if args == "" {
			args = "{}"
		}
		if !json.Valid([]byte(args)) || args[0] != '{' {
			return nil, &openai.FieldError{Param: param + ".function.arguments",
				Message: "is not a JSON object, which Anthropic needs as the call's input"}
		}
		out = append(out, block{Type: "tool_use", ID: toolID(c.ID), Name: c.Function.Name, Input: json.RawMessage(args)})
	}
	return out, nil
}

// toolID makes a tool call id acceptable to Anthropic, which allows only
// letters, digits, _ and -, so that a conversation begun with another
// provider's ids can continue; the same id always maps the same way, so a
// call and its result still match.
func toolID(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, id)
}

// translateTools sets m's tools and tool_choice from the request's.
func translateTools(m *messagesRequest, cr *openai.ChatRequest, parallel *bool) error {
	for i, t := range cr.Tools {
		if t.Type != "function" {
			return &openai.FieldError{Param: fmt.Sprintf("tools[%d].type", i), Message: fmt.Sprintf("tools of type %q cannot be sent to Anthropic (function can)", t.Type)}
		}
		var f struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		}
		if err := json.Unmarshal(t.Function, &f); err != nil || f.Name == "" {
			return &openai.FieldError{Param: fmt.Sprintf("tools[%d].function", i), Message: "must be an object with a name"}
		}
		schema := f.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = emptySchema
		}
		m.Tools = append(m.Tools, tool{Name: f.Name, Description: f.Description, InputSchema: schema})
	}
	if len(m.Tools) == 0 {
		return nil // a tool_choice without tools would only be refused
	}
	raw := cr.ToolChoice
	var s string
	switch {
	case len(raw) == 0 || string(raw) == "null":
	case json.Unmarshal(raw, &s) == nil:
		switch s {
		case "auto":
			m.ToolChoice = &toolChoice{Type: "auto"}
		case "none":
			m.ToolChoice = &toolChoice{Type: "none"}
		case "required":
			m.ToolChoice = &toolChoice{Type: "any"}
		default:
			return &openai.FieldError{Param: "tool_choice", Message: fmt.Sprintf("%q is not auto, none or required", s)}
		}
	default:
		var o struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(raw, &o) != nil || o.Type != "function" || o.Function.Name == "" {
			return &openai.FieldError{Param: "tool_choice", Message: `must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}`}
		}
		m.ToolChoice = &toolChoice{Type: "tool", Name: o.Function.Name}
	}
	if parallel != nil && !*parallel {
		if m.ToolChoice == nil {
			m.ToolChoice = &toolChoice{Type: "auto"}
		}
		if m.ToolChoice.Type != "none" {
			m.ToolChoice.DisableParallelToolUse = true
		}
	}
	return nil
}

// formatInstruction turns response_format, which the Messages API lacks,
// into an instruction for the system prompt; "" when there is none.
func formatInstruction(rf *openai.ResponseFormat) string {
	if rf == nil {
		return ""
	}
	switch rf.Type {
	case "json_object":
		return "Reply with one valid JSON object and nothing else: no prose, no code fences."
	case "json_schema":
		var js struct {
			Schema json.RawMessage `json:"schema"`
		}
		if json.Unmarshal(rf.JSONSchema, &js) != nil || len(js.Schema) == 0 {
			return "Reply with one valid JSON value and nothing else: no prose, no code fences."
		}
		return "Reply with one valid JSON value that conforms to this JSON Schema, and nothing else (no prose, no code fences):\n" + string(js.Schema)
	}
	return ""
}

// anthropicMessage is a Messages answer, as JSON or in message_start.
type anthropicMessage struct {
	ID         string           `json:"id"`
	Type       string           `json:"type"`
	Model      string           `json:"model"`
	Content    []anthropicBlock `json:"content"`
	StopReason string           `json:"stop_reason"`
	Usage      *anthropicUsage  `json:"usage"`
}

type anthropicBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// anthropicUsage is a usage object; message_delta's holds only the counts
// that changed, hence the pointers.
type anthropicUsage struct {
	InputTokens              *int `json:"input_tokens"`
	OutputTokens             *int `json:"output_tokens"`
	CacheCreationInputTokens *int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int `json:"cache_read_input_tokens"`
}

// merge sets the counts u2 holds over u's: Anthropic's counts are
// cumulative, never increments.
func (u *anthropicUsage) merge(u2 *anthropicUsage) {
	for _, f := range []struct{ dst, src **int }{
		{&u.InputTokens, &u2.InputTokens}, {&u.OutputTokens, &u2.OutputTokens},
		{&u.CacheCreationInputTokens, &u2.CacheCreationInputTokens}, {&u.CacheReadInputTokens, &u2.CacheReadInputTokens},
	} {
		if *f.src != nil {
			v := **f.src
			*f.dst = &v
		}
	}
}

// openai counts the tokens as OpenAI does: prompt tokens are every input
// token, read from the cache, written to it or neither.
func (u *anthropicUsage) openai() *usage {
	n := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	prompt := n(u.InputTokens) + n(u.CacheCreationInputTokens) + n(u.CacheReadInputTokens)
	return &usage{
		Usage:               openai.Usage{PromptTokens: prompt, CompletionTokens: n(u.OutputTokens), TotalTokens: prompt + n(u.OutputTokens)},
		PromptTokensDetails: promptDetails{CachedTokens: n(u.CacheReadInputTokens), CacheCreationTokens: n(u.CacheCreationInputTokens)},
	}
}

// usage is OpenAI's usage object with the details Anthropic can fill, as
// a passthrough answer carries them; the engine keeps only the cached
// tokens (see priced).
type usage struct {
	openai.Usage
	PromptTokensDetails promptDetails `json:"prompt_tokens_details"`
}

// priced returns the usage as the engine records it: OpenAI's counts,
// with the prompt tokens read from the cache when there were any, so that
// they are priced at the cached input price.
func (u *usage) priced() *openai.Usage {
	out := u.Usage
	if n := u.PromptTokensDetails.CachedTokens; n > 0 {
		out.PromptTokensDetails = &openai.PromptTokensDetails{CachedTokens: n}
	}
	return &out
}

// promptDetails says how many prompt tokens were read from the cache, as
// OpenAI's cached_tokens does, and how many were written to it, which
// OpenAI has no field for.
type promptDetails struct {
	CachedTokens        int `json:"cached_tokens"`
	CacheCreationTokens int `json:"cache_creation_tokens"`
}

// finishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop" // end_turn, stop_sequence, pause_turn
}

// completion is a chat.completion whose usage has the details: its Usage
// hides ChatCompletion's, as encoding/json prefers the shallower field, and
// comes out where that one would, after choices.
type completion struct {
	openai.ChatCompletion
	Usage *usage `json:"usage,omitempty"`
}

// null is what an OpenAI-compatible provider writes for the logprobs and
// the refusal it does not have.
var null = json.RawMessage("null")

// answer translates a Messages answer into a chat.completion. An answer
// that is not a message is ErrMalformed, as a 200 that is not JSON is.
func answer(data []byte, model string) (*completion, error) {
	var msg anthropicMessage
	if err := json.Unmarshal(data, &msg); err != nil {
		return nil, fmt.Errorf("%w: its 200 answer is not an Anthropic message", ErrMalformed)
	}
	if msg.Type != "message" {
		if pe, ok := openai.ParseError(data); ok {
			return nil, fmt.Errorf("%w: its 200 answer is an error: %s", ErrMalformed, pe.Message)
		}
		return nil, fmt.Errorf("%w: its 200 answer is not an Anthropic message", ErrMalformed)
	}
	out := completion{ChatCompletion: openai.ChatCompletion{ID: msg.ID, Object: "chat.completion", Created: time.Now().Unix(), Model: msg.Model}}
	if out.Model == "" {
		out.Model = model
	}
	var text strings.Builder
	var calls []openai.ToolCall
	hasText := false
	for _, b := range msg.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
			hasText = true
		case "tool_use":
			calls = append(calls, openai.ToolCall{ID: b.ID, Type: "function", Function: openai.FunctionCall{Name: b.Name, Arguments: toolArguments(b.Input)}})
		}
		// Thinking blocks and server tools' results have no place in a
		// chat completion.
	}
	m := openai.ResponseMessage{Role: "assistant", Refusal: null}
	if len(calls) > 0 {
		m.ToolCalls = toolCallsJSON(calls)
	}
	if hasText || len(calls) == 0 {
		s := text.String()
		m.Content = &s
	}
	out.Choices = []openai.Choice{{Message: m, Logprobs: null, FinishReason: finishReason(msg.StopReason)}}
	if msg.Usage != nil {
		out.Usage = msg.Usage.openai()
	}
	return &out, nil
}

// encodeJSON writes v and a newline to b as an OpenAI-compatible provider
// would, without escaping <, > and & (the arbiter's tags stay readable on
// the wire).
func encodeJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// toolCallsJSON encodes calls for the tool_calls that the openai types keep
// raw, without escaping <, > and & as encodeJSON does not.
func toolCallsJSON(calls []openai.ToolCall) json.RawMessage {
	var b bytes.Buffer
	encodeJSON(&b, calls) // not failing: every field marshals
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// toolArguments writes a tool_use input as OpenAI's arguments string.
func toolArguments(input json.RawMessage) string {
	if len(input) == 0 || string(input) == "null" {
		return "{}"
	}
	var b bytes.Buffer
	if json.Compact(&b, input) != nil {
		return string(input)
	}
	return b.String()
}
