package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/openai"
)

// messages serves POST /v1/messages, Anthropic's Messages API, for
// consortiums and provider/model alike. It adds no engine: the request is
// translated into a chat completion request (openai.MessagesRequest) and
// served by serveChat, whose answer — JSON, an SSE stream or an error —
// a messagesWriter translates into Anthropic's shapes as it is written.
// Statuses and X-Consortium-* headers are the chat completion's.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	buf, err := s.readBody(w, r)
	defer buffers.Put(buf)
	var mr *openai.MessagesRequest
	if err == nil {
		mr, err = openai.ParseMessagesRequest(buf.Bytes())
	}
	var req *openai.ChatRequest
	if err == nil {
		info(r.Context()).model = mr.Model
		if param, tools := mr.UsesTools(); tools && s.consortia[mr.Model] != nil {
			err = badRequest(param, "%s is a consortium, which answers with text: tools, tool_use and tool_result are for provider/model", mr.Model)
		} else {
			req, err = mr.ChatRequest()
		}
	}
	var body []byte
	if err == nil {
		body, err = req.AppendJSON(nil)
	}
	if err != nil {
		info(r.Context()).err = err
		writeMessagesError(w, r, errorFrom(err))
		return
	}
	mw := &messagesWriter{w: w, r: r, stream: openai.MessagesStream{ID: cache.NewID("msg_"), Model: mr.Model}}
	s.serveChat(mw, r, start, openai.ChatSummary{Model: req.Model, Stream: req.Stream}, body, req)
	mw.finish()
}

// maxTranslated bounds what a messagesWriter holds of the chat answer: a
// JSON answer, or one event of a stream. Upstream bounds what providers
// send (max_response) well below it.
const maxTranslated = 64 << 20

// messagesWriter is the http.ResponseWriter serveChat writes a chat answer
// to; it writes the Messages API's answer to the client. The headers are
// the client's (X-Consortium-* and Retry-After pass through). A JSON answer
// or an error is held until finish; a stream is translated event by event
// as it arrives, keep-alive comments becoming pings. serveChat writes from
// one goroutine at a time (a stream's keep-alives share its EventWriter's
// lock), so it needs no lock of its own.
type messagesWriter struct {
	w      http.ResponseWriter
	r      *http.Request
	stream openai.MessagesStream

	status int
	sse    bool
	held   bytes.Buffer // the JSON answer or error; in a stream, an unfinished line

	ew    *openai.EventWriter
	data  []byte // the data lines of the event being read
	named bool   // the event being read has a name: not a chat chunk
	ended bool   // the stream ended (message_stop or an error event)
}

func (m *messagesWriter) Header() http.Header { return m.w.Header() }

func (m *messagesWriter) WriteHeader(status int) {
	if m.status != 0 {
		return
	}
	m.status = status
	h := m.w.Header()
	if status != http.StatusOK || h.Get("Content-Type") != "text/event-stream" {
		// Held until finish, and translated: the chat answer's length is
		// not the translation's.
		h.Del("Content-Length")
		return
	}
	m.sse = true
	h.Set("Request-Id", info(m.r.Context()).id)
	m.w.WriteHeader(status)
	m.ew = openai.NewEventWriter(unflushed{m.w})
	m.stream.Start(m.ew)
}

func (m *messagesWriter) Write(p []byte) (int, error) {
	if m.status == 0 {
		m.WriteHeader(http.StatusOK)
	}
	if !m.sse {
		if m.held.Len()+len(p) > maxTranslated {
			return 0, errTooLarge
		}
		return m.held.Write(p)
	}
	n := len(p)
	if m.ended {
		return n, nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if m.held.Len()+len(p) > maxTranslated {
				m.fail(errTooLarge)
				return n, nil
			}
			m.held.Write(p)
			break
		}
		line := p[:i]
		if m.held.Len() > 0 {
			m.held.Write(line)
			line = m.held.Bytes()
		}
		m.line(bytes.TrimSuffix(line, []byte("\r")))
		m.held.Reset()
		p = p[i+1:]
	}
	// What the chat stream sends after its end (the [DONE] after an
	// error event) has no place in this one, and is dropped.
	return n, nil
}

// Flush passes serveChat's flushes on: the events translated since the
// last one go out together.
func (m *messagesWriter) Flush() {
	if m.sse {
		http.NewResponseController(m.w).Flush()
	}
}

// unflushed is the client's writer as a translated stream's EventWriter
// sees it: a plain io.Writer, which it never flushes. The translation is
// flushed when the chat stream it comes from is (responseWriter and
// messagesWriter pass those flushes on), so the events one chat burst
// becomes leave in one write, and the last ones with the end of the body.
type unflushed struct{ io.Writer }

// errTooLarge fails an answer larger than maxTranslated.
var errTooLarge = &apiError{Status: http.StatusBadGateway, Type: "upstream_error",
	Message: "the answer is larger than the proxy translates into the Messages API"}

// line reads one line of the chat stream.
func (m *messagesWriter) line(line []byte) {
	if m.ended {
		return
	}
	switch {
	case len(line) == 0:
		if m.data != nil && !m.named {
			m.event(m.data)
		}
		m.data, m.named = nil, false
	case line[0] == ':':
		m.stream.Ping(m.ew)
	case bytes.HasPrefix(line, []byte("data:")):
		v := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
		if m.data != nil {
			m.data = append(m.data, '\n')
		}
		if len(m.data)+len(v) > maxTranslated {
			m.fail(errTooLarge)
			return
		}
		m.data = append(m.data, v...)
	case bytes.HasPrefix(line, []byte("event:")):
		// X-Consortium-Events' named events have no Messages
		// counterpart.
		m.named = true
	}
}

// event translates one chat stream event.
func (m *messagesWriter) event(data []byte) {
	if string(data) == "[DONE]" {
		m.stream.End(m.ew)
		m.ended = true
		return
	}
	c, errorEvent, err := openai.DecodeChunk(data)
	if err != nil {
		m.fail(&apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "the answer's stream could not be read: " + err.Error()})
		return
	}
	if errorEvent {
		e, _ := openai.ParseError(data)
		m.fail(&apiError{Status: http.StatusBadGateway, Type: e.Type, Message: e.Message})
		return
	}
	if err := m.stream.Chunk(m.ew, &c); err != nil {
		m.fail(&apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "the answer's stream could not be read: " + err.Error()})
	}
}

// fail ends a stream that has begun with an error event.
func (m *messagesWriter) fail(ae *apiError) {
	if m.ended {
		return
	}
	m.ended = true
	m.stream.Error(m.ew, messagesError(m.r, ae))
}

// finish writes what was held until serveChat returned: the translated
// JSON answer or error; or ends a stream that stopped short.
func (m *messagesWriter) finish() {
	switch {
	case m.status == 0:
		// Nothing was written: the client went away (a 499).
	case m.sse:
		if !m.ended && m.r.Context().Err() == nil {
			m.fail(&apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "the answer's stream ended before it was complete"})
		}
	case m.status != http.StatusOK:
		var env openai.ErrorResponse
		ae := &apiError{Status: m.status, Type: "upstream_error", Message: http.StatusText(m.status)}
		if json.Unmarshal(m.held.Bytes(), &env) == nil && env.Error.Message != "" {
			ae.Type, ae.Message = env.Error.Type, env.Error.Message
			if env.Error.Param != nil {
				ae.Param = *env.Error.Param
			}
		}
		writeMessagesError(m.w, m.r, ae)
	default:
		cc, err := openai.DecodeCompletion(m.held.Bytes())
		if err != nil {
			writeMessagesError(m.w, m.r, &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "the answer could not be read: " + err.Error()})
			return
		}
		answer, err := openai.MessagesResponseFrom(cc, m.stream.ID, m.stream.Model)
		if err != nil {
			writeMessagesError(m.w, m.r, &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "the answer could not be read: " + err.Error()})
			return
		}
		b, err := json.Marshal(answer)
		if err != nil {
			writeMessagesError(m.w, m.r, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: "the answer could not be encoded"})
			return
		}
		h := m.w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Request-Id", info(m.r.Context()).id)
		m.w.WriteHeader(http.StatusOK)
		m.w.Write(b)
	}
}

// writeMessagesError writes e in Anthropic's error shape, with e's status.
func writeMessagesError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.Status == statusClientClosed {
		return // nobody is listening; the log has it
	}
	b, _ := json.Marshal(messagesError(r, e))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Request-Id", info(r.Context()).id)
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	w.WriteHeader(e.Status)
	w.Write(b)
}

// messagesError is e in Anthropic's shape. A param goes before the
// message, as Anthropic words field errors ("max_tokens: Field
// required").
func messagesError(r *http.Request, e *apiError) *openai.MessagesError {
	msg := e.Message
	if e.Param != "" {
		msg = e.Param + ": " + msg
	}
	return &openai.MessagesError{Type: "error", Error: openai.MessagesErrorBody{Type: messagesErrorType(e), Message: msg},
		RequestID: info(r.Context()).id}
}

// messagesErrorType is the error type Anthropic documents for e's status
// (docs.claude.com/en/api/errors, and the SDKs' ErrorType): 401
// authentication_error, 403 permission_error, 404 not_found_error, 413
// request_too_large, 429 rate_limit_error, 504 (a timeout) timeout_error,
// 503 (a resting breaker: try later) and 529 overloaded_error, any other
// 5xx api_error, any other 4xx invalid_request_error. An error event
// after the stream began has no status of its own: it is typed by the
// proxy's error type instead.
func messagesErrorType(e *apiError) string {
	switch e.Type {
	case "timeout":
		return "timeout_error"
	case "rate_limit_error":
		return "rate_limit_error"
	case "service_unavailable":
		return "overloaded_error"
	}
	switch s := e.Status; {
	case s == http.StatusUnauthorized:
		return "authentication_error"
	case s == http.StatusForbidden:
		return "permission_error"
	case s == http.StatusNotFound:
		return "not_found_error"
	case s == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case s == http.StatusTooManyRequests:
		return "rate_limit_error"
	case s == http.StatusGatewayTimeout:
		return "timeout_error"
	case s == http.StatusServiceUnavailable, s == 529:
		return "overloaded_error"
	case s >= 500:
		return "api_error"
	case e.Type == "invalid_request_error" || s >= 400:
		return "invalid_request_error"
	}
	return "api_error"
}
