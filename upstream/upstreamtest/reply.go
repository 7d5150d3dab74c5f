package upstreamtest

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/consortium-dev/consortium/openai"
)

// Reply scripts one answer of the fake provider. The zero Reply answers 200
// with empty content. Fields are applied in this order: Hang, Delay, Drop,
// Body, Error (or an error Status), then the route's own answer. The same
// Reply scripts an OpenAI answer (POST /v1/chat/completions) and an
// Anthropic one (POST /v1/messages, see the package comment), each in its
// provider's wire format.
type Reply struct {
	// Status is the HTTP status. If zero, 200 is used, or 500 when Error is
	// set. A status of 400 or more without Body or Error gets an error
	// envelope whose message names the status.
	Status int
	// Header holds extra response headers (Retry-After,
	// x-ratelimit-remaining ...). They are set last, so they may override
	// Content-Type.
	Header http.Header
	// Body, when not empty, is sent verbatim with Status (for malformed
	// JSON or odd error shapes), as application/json unless Header says
	// otherwise. It overrides every field below.
	Body string
	// Error, when not empty, sends OpenAI's error envelope
	// {"error":{"message":Error,"type":ErrorType,"param":null,"code":ErrorCode}}
	// with Status. With an explicit Status of 200 it makes the 200-with-an-
	// error-body some providers send.
	Error string
	// ErrorType is the envelope's type. If empty, it follows the status:
	// invalid_request_error, authentication_error, permission_error,
	// rate_limit_error or server_error (for Anthropic: also
	// not_found_error, request_too_large, api_error for 5xx and
	// overloaded_error for 529).
	ErrorType string
	// ErrorCode is the envelope's code; if empty, code is null.
	ErrorCode string

	// Content is the assistant's text. For a non-streamed answer with an
	// empty Content, the concatenation of Chunks is used.
	Content string
	// Chunks are the content deltas of a streamed answer, in order. If nil,
	// Content is split into word-sized deltas (each word with the spaces
	// before it, trailing spaces with the last) that concatenate exactly to
	// Content. A non-nil empty slice
	// streams no content.
	Chunks []string
	// FinishReason is the choice's finish_reason. If empty, "stop" is used,
	// or "tool_calls" when ToolCalls is set. For Anthropic it is the
	// stop_reason: stop, length, tool_calls and content_filter become
	// end_turn, max_tokens, tool_use and refusal, and any other value
	// (stop_sequence, pause_turn ...) is sent as it is.
	FinishReason string
	// ToolCalls are function calls the answer makes, after its content:
	// OpenAI's tool_calls (content is null when there is no text), or
	// Anthropic's tool_use blocks. Streamed, each call's arguments arrive
	// in pieces of a few bytes, split wherever they fall.
	ToolCalls []ToolCall
	// Usage is the usage reported. If nil, it is computed: prompt tokens are
	// the words of the request's messages, completion tokens the words of
	// the content, total their sum. For embeddings, only PromptTokens and
	// TotalTokens are sent. For Anthropic, PromptTokens is input_tokens
	// (the tokens read neither from nor into the cache) and
	// CompletionTokens output_tokens.
	Usage *openai.Usage
	// CacheReadTokens and CacheCreationTokens are Anthropic's
	// cache_read_input_tokens and cache_creation_input_tokens, reported
	// beside Usage's input tokens. OpenAI answers do not carry them.
	CacheReadTokens     int
	CacheCreationTokens int
	// NoUsage sends no usage at all: no usage field in a JSON answer, no
	// usage frame (nor usage: null) in a stream even if include_usage was
	// asked for.
	NoUsage bool
	// UsageInFinal makes a stream that asked for include_usage carry its
	// usage on the frame with finish_reason, which also carries the last
	// content delta, instead of a separate usage-only frame with
	// choices: [].
	UsageInFinal bool

	// Delay is how long to wait before sending the response headers. The
	// wait ends early if the client goes away or the server closes.
	Delay time.Duration
	// ChunkDelay is how long a stream waits before each content delta. The
	// wait ends early if the client goes away or the server closes.
	ChunkDelay time.Duration
	// NoDone ends a stream without "data: [DONE]" (for Anthropic, without
	// message_stop).
	NoDone bool
	// StreamError ends a stream after its content deltas with an error
	// event carrying this message, of type ErrorType (server_error, or
	// Anthropic's overloaded_error, by default), instead of finishing it:
	// OpenAI's data: {"error": ...} or Anthropic's event: error. Then the
	// connection closes.
	StreamError string
	// CutAfter cuts the connection of a stream abruptly after this many
	// content deltas, so that the client sees an unexpected EOF in the
	// middle of the chunked body. If the stream has fewer deltas, it is cut
	// after the last one, before the frame with finish_reason. Zero never
	// cuts.
	CutAfter int
	// Drop closes the connection after Delay without sending anything, as
	// a provider that crashes or resets connections does.
	Drop bool
	// Hang never answers: the request blocks until the client goes away or
	// the server closes.
	Hang bool

	// EchoKey makes the reply carry the credential the request was sent
	// with (its Authorization header, or else its x-api-key), as some
	// providers echo the key they received: appended to Error and
	// StreamError, and, for an error status without Error, in the
	// message "Incorrect API key provided: KEY". Tests use it to check
	// that no key reaches a client or a log.
	EchoKey bool
	// BodySize, when positive, makes a non-streamed chat answer (OpenAI's
	// route) whose content is BodySize bytes of filler, written in pieces
	// as the client reads them, so that a test of a huge answer costs the
	// fake no memory.
	BodySize int64
	// Endless makes a streamed chat answer (OpenAI's route) send content
	// deltas (Content, or "x" when empty) without end, until the client
	// goes away or the server closes, ChunkDelay apart.
	Endless bool

	// Embedding is the vector returned for every input of an embeddings
	// request. If nil, each input gets a deterministic unit vector of 8
	// dimensions derived from a SHA-256 hash of its text.
	Embedding []float64
	// Embeddings, if set, are the vectors of an embeddings request's
	// inputs, one per input in order; they win over Embedding. A count
	// that differs from the inputs' is a 500.
	Embeddings [][]float64
}

// withKey applies EchoKey: the credential rec was sent with joins the
// reply's error messages.
func (r Reply) withKey(rec *Request) Reply {
	if !r.EchoKey {
		return r
	}
	key := rec.Header.Get("Authorization")
	if key == "" {
		key = rec.Header.Get("X-Api-Key")
	}
	switch {
	case r.Error != "":
		r.Error += " (key: " + key + ")"
	case r.Status >= 400:
		r.Error = "Incorrect API key provided: " + key
	}
	if r.StreamError != "" {
		r.StreamError += " (key: " + key + ")"
	}
	return r
}

// status returns the reply's status, or def when it has none.
func (r Reply) status(def int) int {
	if r.Status == 0 {
		return def
	}
	return r.Status
}

// clone copies the reply's headers and slices, so that a scripted reply does
// not share memory with its caller.
func (r Reply) clone() Reply {
	r.Header = r.Header.Clone()
	if r.Chunks != nil {
		r.Chunks = slices.Clone(r.Chunks)
	}
	r.Embedding = slices.Clone(r.Embedding)
	r.Embeddings = slices.Clone(r.Embeddings)
	r.ToolCalls = slices.Clone(r.ToolCalls)
	if r.Usage != nil {
		u := *r.Usage
		r.Usage = &u
	}
	return r
}

// text returns the text a chat answer carries and, for a stream, its deltas.
func (r Reply) text() (string, []string) {
	if r.Chunks != nil {
		if r.Content != "" {
			// Explicit deltas are streamed as they are; a JSON answer
			// still carries Content.
			return r.Content, r.Chunks
		}
		return strings.Join(r.Chunks, ""), r.Chunks
	}
	return r.Content, splitWords(r.Content)
}

func (r Reply) finishReason() string {
	switch {
	case r.FinishReason != "":
		return r.FinishReason
	case len(r.ToolCalls) > 0:
		return "tool_calls"
	}
	return "stop"
}

// ToolCall is a function call a scripted answer makes.
type ToolCall struct {
	// ID is the call's id. If empty, one is made up: call_upstreamtestN
	// (OpenAI) or toolu_upstreamtestN (Anthropic).
	ID string
	// Name is the function's name.
	Name string
	// Arguments is the call's arguments as JSON text. If empty, "{}" is
	// used. Anthropic's input is this JSON, so it must be an object there.
	Arguments string
}

func (c ToolCall) arguments() string {
	if c.Arguments == "" {
		return "{}"
	}
	return c.Arguments
}

// argumentPieces splits a call's arguments for streaming into pieces of
// a few bytes, cut wherever they fall (inside strings and escapes too),
// as providers do, but never inside a UTF-8 character.
func (c ToolCall) argumentPieces() []string {
	const size = 5
	args := c.arguments()
	var out []string
	for len(args) > 0 {
		n := min(size, len(args))
		for n < len(args) && !utf8.RuneStart(args[n]) {
			n++
		}
		out = append(out, args[:n])
		args = args[n:]
	}
	return out
}

// Request is one request the server received, as recorded.
type Request struct {
	Method string
	Path   string      // the URL path, for example "/v1/chat/completions"
	Header http.Header // every header the client sent
	Body   []byte
	// Model is the body's "model" field; empty when the body has none.
	Model string
	// Stream is the body's "stream" field.
	Stream bool
	// Chat is the parsed body of a chat completions request; nil for other
	// routes and for bodies openai.ParseChatRequest rejects. Copies share
	// it: treat it as read-only.
	Chat *openai.ChatRequest
	// Anthropic is the parsed body of an Anthropic Messages request (POST
	// /v1/messages); nil for other routes and for bodies that do not
	// decode. Copies share it: treat it as read-only.
	Anthropic *AnthropicRequest
	// Cancelled reports that the client went away (the request's context
	// was cancelled) before the reply was finished.
	Cancelled bool
	// Received is when the request's body had been read.
	Received time.Time
}

// clone copies the request's header and body.
func (r *Request) clone() Request {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = bytes.Clone(r.Body)
	return c
}

// LastUserText returns the text of the last user message of a chat request
// (OpenAI's or Anthropic's), or "" when there is none.
func (r *Request) LastUserText() string {
	if r.Anthropic != nil {
		return r.Anthropic.lastUserText()
	}
	if r.Chat == nil {
		return ""
	}
	for i := len(r.Chat.Messages) - 1; i >= 0; i-- {
		if m := r.Chat.Messages[i]; m.Role == "user" {
			return m.Content.String()
		}
	}
	return ""
}

// Responder computes the reply to a request. It receives a copy of the
// record and may be called concurrently.
type Responder func(r *Request) Reply

// Echo returns the initial default responder: it answers a chat request with
// "echo: " followed by the text of the last user message.
func Echo() Responder { return echo }

func echo(r *Request) Reply {
	return Reply{Content: "echo: " + r.LastUserText()}
}

// script is the reply queue of one model.
type script struct {
	replies   []Reply // never empty
	repeating bool    // the last reply has been served and now repeats
}

func (sc *script) next() Reply {
	r := sc.replies[0]
	if len(sc.replies) > 1 {
		sc.replies = sc.replies[1:]
	} else {
		sc.repeating = true
	}
	return r
}

// splitWords splits s into deltas that each hold one word and the spaces
// before it, as tokenizers tend to, so that they concatenate to s exactly.
// Trailing spaces stay with the last word.
func splitWords(s string) []string {
	var out []string
	start, end := 0, len(strings.TrimRight(s, " \t\r\n"))
	for i := 1; i < end; i++ {
		if isSpace(s[i]) && !isSpace(s[i-1]) {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// countWords is the fake's tokenizer: one token per word.
func countWords(s string) int { return len(strings.Fields(s)) }

// promptTokens counts the words of every message of a chat request.
func promptTokens(chat *openai.ChatRequest) int {
	if chat == nil {
		return 0
	}
	n := 0
	for _, m := range chat.Messages {
		n += countWords(m.Content.String())
	}
	return n
}

// chatUsage returns the usage a chat answer reports, or nil for NoUsage.
func chatUsage(rec *Request, reply Reply, text string) *openai.Usage {
	if reply.NoUsage {
		return nil
	}
	if reply.Usage != nil {
		u := *reply.Usage
		return &u
	}
	p, c := promptTokens(rec.Chat), countWords(text)
	return &openai.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}
}
