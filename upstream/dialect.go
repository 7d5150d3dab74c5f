package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"

	sse "github.com/tmaxmax/go-sse"

	"github.com/consortium-dev/consortium/openai"
)

// dialect is one wire protocol: how a chat request is written, where it is
// sent with which credentials, and how the answer reads, as a whole or
// streamed. The retry loop, the breakers and the limits know nothing of
// it; a Provider holds one dialect for its lifetime.
type dialect interface {
	// endpoint maps a passthrough path ("/chat/completions",
	// "/embeddings") to the provider's own, or returns the *Error a
	// provider lacking it would answer (with Provider and Model unset).
	endpoint(path string) (string, *Error)

	// headers sets the protocol's headers on h, the provider's (its
	// configured headers already in): the credential for key, unless key
	// is empty (a local server), and the protocol's own.
	headers(h http.Header, key string)

	// encode writes req for model, appended to dst when the dialect can
	// (the caller pools dst), asking for a streamed answer when stream is
	// true, whatever req's Stream says. A request the dialect cannot
	// carry is an error naming the field (an *openai.FieldError when it
	// can).
	encode(dst []byte, req *openai.ChatRequest, model string, stream bool) ([]byte, error)

	// decode reads a 2xx JSON answer. An answer that is not a chat
	// completion with choices wraps ErrMalformed.
	decode(data []byte, model string) (*openai.ChatCompletion, error)

	// chunks reads a 2xx event stream. It ends at the end of the answer;
	// an error ends it and is yielded with a nil chunk: a read error as
	// the body returned it, an error event as an *Error (Message set, the
	// status its type stands for), a malformed event wrapping
	// ErrMalformed. An answer that ends too early is an error where the
	// protocol says when it ends (Anthropic's message_stop; OpenAI's
	// servers do not all send [DONE]).
	chunks(body io.Reader, model string) iter.Seq2[*openai.ChatCompletionChunk, error]

	// passRequest, passJSON and passStream serve Do, the passthrough,
	// whose callers speak OpenAI's API whatever the provider: the
	// client's body (OpenAI JSON, its model set) in the dialect, and
	// includeUsage, whether it asked for usage in a stream; a 2xx JSON
	// answer checked and, when translated, replaced in buf; a 2xx event
	// stream as OpenAI's. The content type is "" when the provider's
	// stands. The openai dialect sends the body as it is, checks the
	// JSON and forwards the stream as it is.
	passRequest(body []byte, model string) (wire []byte, includeUsage bool, err error)
	passJSON(data []byte, model string, buf *bytes.Buffer) (contentType string, err error)
	passStream(body *idleBody, model string, includeUsage bool) (rc io.ReadCloser, contentType string)
}

// openaiDialect speaks OpenAI's Chat Completions: the passthrough is the
// identity, and chunks are read from the data lines of the event stream.
type openaiDialect struct{}

func (openaiDialect) endpoint(path string) (string, *Error) { return path, nil }

func (openaiDialect) headers(h http.Header, key string) {
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
}

// includeUsage is the stream_options of every stream the openai dialect
// asks for; it is only read.
var includeUsage = &openai.StreamOptions{IncludeUsage: true}

func (openaiDialect) encode(dst []byte, req *openai.ChatRequest, model string, stream bool) ([]byte, error) {
	r := *req
	r.Model = model
	r.Stream = stream
	r.StreamOptions = nil
	if stream {
		r.StreamOptions = includeUsage
	}
	return r.AppendJSON(dst)
}

func (openaiDialect) decode(data []byte, _ string) (*openai.ChatCompletion, error) {
	cc, err := openai.DecodeCompletion(data)
	if err != nil || len(cc.Choices) == 0 {
		return nil, fmt.Errorf("%w: a 200 answer without choices", ErrMalformed)
	}
	return cc, nil
}

func (openaiDialect) passRequest(body []byte, _ string) ([]byte, bool, error) {
	return body, false, nil
}

func (openaiDialect) passJSON(data []byte, _ string, _ *bytes.Buffer) (string, error) {
	if !json.Valid(data) {
		return "", fmt.Errorf("%w: the body of its 200 answer is not valid JSON", ErrMalformed)
	}
	return "", nil
}

// passStream forwards the provider's own lines: the passthrough hot path
// parses nothing. Only the end of the stream is looked at: a passthrough
// client's SDK reads an answer without [DONE] as complete, so the body
// fails there (ErrNoDone), for the caller to say so and for the breaker to
// count. The typed chunks, below, still end without an error there: a
// member's answer is judged by its content and finish_reason, and many
// OpenAI-compatible servers close their streams so.
func (openaiDialect) passStream(body *idleBody, _ string, _ bool) (io.ReadCloser, string) {
	body.wantDone = true
	return body, ""
}

// ErrNoDone is the cause of a passthrough event stream that ended without
// data: [DONE]: the provider, or something between, cut it, so the answer
// may be incomplete. It wraps ErrMalformed (Call.Outcome "malformed").
var ErrNoDone = fmt.Errorf("%w: the stream ended without [DONE]", ErrMalformed)

// doneTail keeps the last bytes of an event stream, enough to tell at its
// end whether the last event was data: [DONE] (a few bytes copied per
// read, nothing parsed).
type doneTail struct {
	b [16]byte
	n int
}

func (t *doneTail) keep(p []byte) {
	if len(p) >= len(t.b) {
		t.n = copy(t.b[:], p[len(p)-len(t.b):])
		return
	}
	keep := min(t.n, len(t.b)-len(p))
	copy(t.b[:], t.b[t.n-keep:t.n])
	t.n = keep + copy(t.b[keep:], p)
}

// done reports a stream whose last event is data: [DONE].
func (t *doneTail) done() bool {
	last := bytes.TrimRight(t.b[:t.n], "\r\n ")
	return bytes.HasSuffix(last, []byte("data: [DONE]")) || bytes.HasSuffix(last, []byte("data:[DONE]"))
}

// readConfig is how every stream is read (maxEventSize): one for all,
// as go-sse only reads it.
var readConfig = &sse.ReadConfig{MaxEventSize: maxEventSize}

// chunks yields the chunks of an OpenAI event stream until [DONE]. A body
// that ends without [DONE] ends the sequence without an error: many
// OpenAI-compatible servers close their streams so.
func (openaiDialect) chunks(body io.Reader, _ string) iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {
		// Each event's data is copied into one buffer for the stream:
		// the decoders take bytes, and keep none of them.
		var data []byte
		var decoder openai.ChunkDecoder
		for ev, err := range sse.Read(body, readConfig) {
			if err != nil {
				yield(nil, err)
				return
			}
			text := strings.TrimSpace(ev.Data)
			if text == "" {
				continue
			}
			if text == "[DONE]" {
				return
			}
			data = append(data[:0], text...)
			chunk, errorEvent, err := decoder.Decode(data)
			if err != nil {
				yield(nil, fmt.Errorf("%w: a stream chunk is not JSON", ErrMalformed))
				return
			}
			if errorEvent {
				if pe, ok := openai.ParseError(data); ok {
					yield(nil, streamError(pe.Type, pe.Message))
					return
				}
			}
			if !yield(&chunk, nil) {
				return
			}
		}
	}
}

// streamError is the *Error of an error event mid-stream of type typ: the
// answer had begun, so its status is the one the type stands for.
func streamError(typ, msg string) *Error {
	return &Error{Status: errorTypeStatus(typ), Type: typ, Message: msg, Err: fmt.Errorf("error event mid-stream: %s", msg)}
}

// errorTypeStatus is the HTTP status that goes with an error type
// (OpenAI's or Anthropic's), for errors that arrive inside a 200 stream.
func errorTypeStatus(typ string) int {
	switch typ {
	case "invalid_request_error":
		return http.StatusBadRequest
	case "authentication_error":
		return http.StatusUnauthorized
	case "permission_error":
		return http.StatusForbidden
	case "not_found_error":
		return http.StatusNotFound
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "rate_limit_error":
		return http.StatusTooManyRequests
	case "timeout_error":
		return http.StatusGatewayTimeout
	case "overloaded_error":
		return 529
	}
	return http.StatusInternalServerError
}
