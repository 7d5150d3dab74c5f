// Package upstreamtest is a scriptable fake of an OpenAI-compatible provider,
// in the manner of net/http/httptest: a real HTTP server on a loopback port
// whose replies, latency, chunking and failures the caller scripts per model.
// It serves POST /v1/chat/completions (JSON, or SSE when the request asks to
// stream), POST /v1/embeddings and GET /v1/models, and records every request
// it receives, headers included, so that a test can check what reached the
// provider.
//
// The proxy's tests, the client compatibility suites, the benchmarks and the
// binary's --demo mode (see Demo) all use it. It owns the provider's side of
// the wire and nothing else: it does not check API keys, or validate
// OpenAI requests beyond what it needs to answer them. A body that is not a
// JSON object gets 400; anything else is answered as scripted, so a test
// decides how strict its provider is.
//
// It also fakes Anthropic's Messages API: POST /v1/messages answers in
// Anthropic's wire format (a message, or its event stream when the request
// says "stream": true) and its error shape, from the same scripts and
// Reply fields, so that an anthropic provider pointed at the server (its
// base URL with or without /v1) is tested like any other. Requests there
// are recorded with their model and a parsed Anthropic field (Chat stays
// nil), and are refused with Anthropic's 400 when they break the rules of
// the Messages API that a translation from Chat Completions could break:
// max_tokens missing, roles other than user and assistant or not
// alternating, empty content or text blocks.
//
// Every SSE frame it writes goes through openai.EventWriter, the project's
// one SSE writer.
//
// NewInMemory makes a server that listens on no port, reached through
// RoundTripper (which serves any Server's handler in memory): under
// testing/synctest, scripted delays and the code under test's retries,
// timeouts and breaker cooldowns then run on the bubble's fake clock.
//
// A minimal test:
//
//	s := upstreamtest.NewServer()
//	defer s.Close()
//	s.Script("gpt-4o-mini",
//		upstreamtest.Reply{Status: 503, Header: http.Header{"Retry-After": {"1"}}},
//		upstreamtest.Reply{Content: "hello"})
//	// point the code under test at s.URL, then inspect s.Requests().
package upstreamtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// maxBody bounds the request bodies the server reads, so that the fake stays
// safe to run inside the real binary (--demo).
const maxBody = 64 << 20

// Server is a fake OpenAI-compatible provider, listening on a loopback port
// unless NewServerAddr was given another address. Its methods are safe for
// concurrent use, also while requests are being served.
type Server struct {
	// URL is the base URL clients use, including the /v1 prefix, for
	// example "http://127.0.0.1:41234/v1". An anthropic provider takes it
	// as its base URL too (it then posts to URL + "/messages"), or URL
	// without /v1.
	URL string

	handler   http.Handler
	srv       *http.Server
	served    chan struct{} // closed when srv.Serve has returned
	closing   chan struct{} // closed when Close begins
	closeOnce sync.Once
	seq       atomic.Uint64 // for response ids
	started   int64         // Unix time reported as the models' created

	mu       sync.Mutex
	scripts  map[string]*script
	handlers map[string]Responder
	def      Responder // nil means Echo
	models   []string
	reqs     []*Request
	received int           // requests recorded since the last Reset, dropped ones included
	limit    int           // see SetRecordLimit
	inFlight int           // requests inside the handler
	changed  chan struct{} // closed and replaced whenever reqs or inFlight change
}

// NewServer starts a Server on 127.0.0.1 (or [::1] when the machine has no
// IPv4 loopback) on a port the system picks. It serves at once and panics if
// it cannot listen, as httptest.NewServer does. The caller must call Close.
func NewServer() *Server {
	s, err := NewServerAddr("127.0.0.1:0")
	if err != nil {
		var err6 error
		if s, err6 = NewServerAddr("[::1]:0"); err6 != nil {
			panic(fmt.Sprintf("upstreamtest: failed to listen on a port: %v", err))
		}
	}
	return s
}

// NewServerAddr starts a Server listening on addr ("127.0.0.1:8090", ":0"),
// for callers that run the fake as a process of its own and need a known
// port. When addr leaves the host unspecified, URL names the IPv4 loopback
// address. The caller must call Close.
func NewServerAddr(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: listen on %s: %w", addr, err)
	}
	s := newServer()
	s.URL = "http://" + dialAddr(ln.Addr()) + "/v1"
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		// Serve returns http.ErrServerClosed once Close has run; any other
		// error means the listener broke, and Close still cleans up.
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func newServer() *Server {
	s := &Server{
		closing:  make(chan struct{}),
		started:  time.Now().Unix(),
		scripts:  make(map[string]*script),
		handlers: make(map[string]Responder),
		changed:  make(chan struct{}),
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// dialAddr returns an address a client can dial for a listener's address,
// replacing an unspecified host (0.0.0.0, ::) with the IPv4 loopback.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// Close stops the server: it closes the listener and every open connection,
// hung and delayed requests included, and waits for the handlers to return.
// Requests still in progress are not marked Cancelled, since the client did
// not go away. Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		// closing goes first, so that handlers woken by their connection
		// closing can tell a shutdown from a client that went away.
		close(s.closing)
		if s.srv != nil { // nil for NewInMemory
			_ = s.srv.Close()
			<-s.served
		}
	})
	_ = s.waitFor(context.Background(), func() bool { return s.inFlight == 0 })
}

// Handler returns the server's HTTP handler, for mounting the fake inside
// another server or calling it directly. Requests it serves are recorded and
// scripted like those that arrive on URL. Replies that cut the connection
// (CutAfter, Drop), and requests whose client goes away or whose server
// closes before the reply is finished, end with panic(http.ErrAbortHandler),
// which net/http turns into a cut connection.
func (s *Server) Handler() http.Handler { return s.handler }

// Script queues replies for model, used one per request in order. The last
// reply of the queue repeats for every later request. Calling Script again
// appends to the queue, except that a last reply which has already been
// served (and so is repeating) is replaced by the new ones. Script with no
// replies removes the model's script.
//
// While a model has a script its Handle responder is not called. The replies
// are copied, so the caller may reuse their headers and slices.
func (s *Server) Script(model string, replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(replies) == 0 {
		delete(s.scripts, model)
		return
	}
	copies := make([]Reply, len(replies))
	for i, r := range replies {
		copies[i] = r.clone()
	}
	sc := s.scripts[model]
	if sc == nil || sc.repeating {
		s.scripts[model] = &script{replies: copies}
		return
	}
	sc.replies = append(sc.replies, copies...)
}

// Handle makes fn compute the replies for model. A script for the model, if
// any, takes precedence (see Script). A nil fn removes the model's handler.
// fn may be called concurrently.
func (s *Server) Handle(model string, fn Responder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.handlers, model)
		return
	}
	s.handlers[model] = fn
}

// SetDefault makes fn answer requests for models that have neither a script
// nor a handler, including requests that name no model. A nil fn restores
// the initial default, Echo. fn may be called concurrently.
func (s *Server) SetDefault(fn Responder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = fn
}

// SetModels sets the model ids that GET /v1/models lists, in order, with
// owned_by "upstreamtest". Until it is called the list is empty.
func (s *Server) SetModels(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = append([]string(nil), ids...)
}

// SetRecordLimit bounds the recorded requests to the n most recent ones, so
// that a long-running server (--demo, benchmarks) does not grow without end.
// n == 0, the initial setting, keeps every request; n < 0 keeps none.
func (s *Server) SetRecordLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Drop what the old limit hid, so that a looser limit cannot bring it
	// back.
	s.reqs = slices.Clone(s.recordedLocked())
	s.limit = n
	s.trimLocked()
}

// Reset forgets every script, handler and recorded request. The default
// responder, the model list and the record limit stay as they are. Requests
// in flight finish with the replies they already have.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.scripts)
	clear(s.handlers)
	s.reqs = nil
	s.received = 0
	s.notifyLocked()
}

// Requests returns copies of the recorded requests, in arrival order. A
// request's Cancelled field is as it stands at the time of the call.
func (s *Server) Requests() []Request {
	return s.requests(func(*Request) bool { return true })
}

// RequestsFor returns copies of the recorded requests for model, in arrival
// order.
func (s *Server) RequestsFor(model string) []Request {
	return s.requests(func(r *Request) bool { return r.Model == model })
}

func (s *Server) requests(keep func(*Request) bool) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Request{}
	for _, r := range s.recordedLocked() {
		if keep(r) {
			out = append(out, r.clone())
		}
	}
	return out
}

// InFlight returns the number of requests being handled now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// WaitIdle blocks until no request is being handled, or ctx is done. Tests
// use it to check that a cancellation reached the provider.
func (s *Server) WaitIdle(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.inFlight == 0 })
}

// WaitRequests blocks until at least n requests have been recorded since the
// last Reset, or ctx is done. Tests use it to know that a request has reached
// the provider (for instance before cancelling it). It counts requests whose
// records the record limit has since dropped.
func (s *Server) WaitRequests(ctx context.Context, n int) error {
	return s.waitFor(ctx, func() bool { return s.received >= n })
}

// waitFor blocks until cond, called with s.mu held, holds or ctx is done.
func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes every waitFor.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// serveHTTP records the request and routes it. Only /v1 paths are served:
// clients that leave the prefix out are the proxy's concern, not the
// provider's.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.begin()
	defer s.end()

	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	rec := &Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		Header:   r.Header.Clone(),
		Body:     body,
		Received: time.Now(),
	}
	f := parseFields(body)
	rec.Model, rec.Stream = f.model, f.stream
	switch r.URL.Path {
	case "/v1/chat/completions":
		rec.Chat, _ = openai.ParseChatRequest(body)
	case "/v1/messages":
		rec.Anthropic = parseAnthropicRequest(body)
	}
	s.record(rec)

	if readErr != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(readErr, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, nil, "invalid_request_error", "request_too_large",
				fmt.Sprintf("the request body is larger than %d bytes", tooLarge.Limit))
			return
		}
		// The client went away while sending its body.
		s.cancelled(rec)
		abort()
	}

	path := r.URL.Path
	switch {
	case path == "/v1/chat/completions":
		if allow(w, r, http.MethodPost) {
			s.serveChat(w, r, rec, f)
		}
	case path == "/v1/messages":
		if allow(w, r, http.MethodPost) {
			s.serveMessages(w, r, rec, f)
		}
	case path == "/v1/embeddings":
		if allow(w, r, http.MethodPost) {
			s.serveEmbeddings(w, r, rec, f)
		}
	case path == "/v1/models":
		if allow(w, r, http.MethodGet) {
			s.serveModels(w)
		}
	case strings.HasPrefix(path, "/v1/models/"):
		if allow(w, r, http.MethodGet) {
			s.serveModel(w, strings.TrimPrefix(path, "/v1/models/"))
		}
	default:
		writeError(w, http.StatusNotFound, nil, "invalid_request_error", "",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, path))
	}
}

// allow answers 405 with an Allow header unless r uses method.
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, nil, "invalid_request_error", "",
		fmt.Sprintf("Method %s is not allowed for %s; use %s", r.Method, r.URL.Path, method))
	return false
}

func (s *Server) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight++
	s.notifyLocked()
}

func (s *Server) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	s.notifyLocked()
}

func (s *Server) record(rec *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received++
	if s.limit >= 0 {
		s.reqs = append(s.reqs, rec)
		s.trimLocked()
	}
	s.notifyLocked()
}

// trimLocked drops the oldest records past the limit. It lets the slice grow
// to twice the limit before copying, so that recording stays cheap.
func (s *Server) trimLocked() {
	switch {
	case s.limit < 0:
		s.reqs = nil
	case s.limit > 0 && len(s.reqs) >= 2*s.limit:
		n := copy(s.reqs, s.reqs[len(s.reqs)-s.limit:])
		clear(s.reqs[n:])
		s.reqs = s.reqs[:n]
	}
}

// recordedLocked returns the records the limit keeps.
func (s *Server) recordedLocked() []*Request {
	if s.limit > 0 && len(s.reqs) > s.limit {
		return s.reqs[len(s.reqs)-s.limit:]
	}
	return s.reqs
}

// cancelled marks rec as abandoned by its client, unless the server is
// closing: then the connection was closed by Close, not by the client.
func (s *Server) cancelled(rec *Request) {
	if s.isClosing() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Cancelled = true
	s.notifyLocked()
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// hold blocks until timer fires. If the client goes away or the server
// closes first, it aborts the response (see abort); a nil timer never fires.
func (s *Server) hold(r *http.Request, rec *Request, timer <-chan time.Time) {
	select {
	case <-timer:
	case <-r.Context().Done():
		s.cancelled(rec)
		abort()
	case <-s.closing:
		abort()
	}
}

// sleep is hold for a duration; d <= 0 returns at once.
func (s *Server) sleep(r *http.Request, rec *Request, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	s.hold(r, rec, t.C)
}

// abort ends the handler and cuts the connection without finishing the
// response. A handler that returned normally instead would leave net/http
// to complete it: an empty 200, or a chunked stream closed cleanly, which
// the client could mistake for an answer.
func abort() { panic(http.ErrAbortHandler) }

// replyFor picks the reply for a request (see pick), EchoKey applied.
func (s *Server) replyFor(rec *Request) Reply {
	return s.pick(rec).withKey(rec)
}

// pick picks the reply for a request: the model's script, else its
// handler, else the default responder.
func (s *Server) pick(rec *Request) Reply {
	s.mu.Lock()
	if sc := s.scripts[rec.Model]; sc != nil {
		r := sc.next()
		s.mu.Unlock()
		return r
	}
	fn := s.handlers[rec.Model]
	if fn == nil {
		fn = s.def
	}
	if fn == nil {
		fn = echo
	}
	// Responders run unlocked, so that a slow one does not hold up others,
	// and on a copy, so that they cannot change the record.
	s.mu.Unlock()
	c := rec.clone()
	return fn(&c)
}

// answer carries out the parts of a reply that every route shares (Hang,
// Delay, Drop, Body, Error and error statuses) and reports whether the route
// still has to write its own answer. Errors are in OpenAI's shape.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, rec *Request, reply Reply) bool {
	return s.answerAs(w, r, rec, reply, writeError, errorType)
}

// answerAs is answer with errors written by writeErr, their default type
// following the status as typeOf says.
func (s *Server) answerAs(w http.ResponseWriter, r *http.Request, rec *Request, reply Reply,
	writeErr func(w http.ResponseWriter, status int, extra http.Header, typ, code, msg string), typeOf func(status int) string) bool {
	if reply.Hang {
		s.hold(r, rec, nil)
	}
	s.sleep(r, rec, reply.Delay)
	if reply.Drop {
		abort()
	}
	switch {
	case reply.Body != "":
		writeBody(w, reply.status(http.StatusOK), "application/json", reply.Header, []byte(reply.Body))
		return false
	case reply.Error != "" || reply.Status >= 400:
		status := reply.status(http.StatusInternalServerError)
		msg, typ := reply.Error, reply.ErrorType
		if msg == "" {
			msg = fmt.Sprintf("upstreamtest: scripted status %d %s", status, http.StatusText(status))
		}
		if typ == "" {
			typ = typeOf(status)
		}
		writeErr(w, status, reply.Header, typ, reply.ErrorCode, msg)
		return false
	}
	return true
}

// errorType is the error type OpenAI sends with a status.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500 || status < 400:
		return "server_error"
	}
	return "invalid_request_error"
}

// writeError writes OpenAI's error envelope. param is always null; code is
// null when empty.
func writeError(w http.ResponseWriter, status int, extra http.Header, typ, code, msg string) {
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	e.Error.Message, e.Error.Type = msg, typ
	if code != "" {
		e.Error.Code = &code
	}
	writeJSON(w, status, extra, e)
}

func writeJSON(w http.ResponseWriter, status int, extra http.Header, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the package's own types reach here; they always marshal.
		panic(fmt.Sprintf("upstreamtest: encoding a response: %v", err))
	}
	writeBody(w, status, "application/json", extra, append(b, '\n'))
}

// writeBody writes a complete response. The reply's extra headers are set
// last, so that they can override Content-Type and Content-Length.
func writeBody(w http.ResponseWriter, status int, contentType string, extra http.Header, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", fmt.Sprint(len(body)))
	setHeaders(h, extra)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// setHeaders copies extra into h, replacing keys h already has.
func setHeaders(h, extra http.Header) {
	for k := range extra {
		h.Del(k)
	}
	for k, vs := range extra {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

// fields are the top-level request fields the server routes and records by.
// Each is read on its own, so that a mistyped one does not hide the others.
type fields struct {
	object       bool // the body is a JSON object
	model        string
	stream       bool
	includeUsage bool
	raw          map[string]json.RawMessage
}

func parseFields(body []byte) fields {
	var f fields
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(body, &f.raw) != nil {
		return f
	}
	f.object = true
	_ = json.Unmarshal(f.raw["model"], &f.model)
	_ = json.Unmarshal(f.raw["stream"], &f.stream)
	var opts struct {
		IncludeUsage bool `json:"include_usage"`
	}
	if json.Unmarshal(f.raw["stream_options"], &opts) == nil {
		f.includeUsage = opts.IncludeUsage
	}
	return f
}
