package upstreamtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// ControlPrefix is the path under which ControlHandler serves, and under
// which a server started by NewControlServer answers its control API beside
// the provider's own routes.
const ControlPrefix = "/_control/"

// NewControlServer starts a Server on addr, as NewServerAddr does, whose
// listener also serves ControlHandler under ControlPrefix, so that one
// address both fakes the provider and lets another process script it. It is
// for the fakeprovider command, which the client compatibility suites (in
// Python and Node.js) start; in-process callers script the Server directly
// and have no use for it, and the binary's --demo never serves it. The
// caller must call Close.
func NewControlServer(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstreamtest: listen on %s: %w", addr, err)
	}
	s := newServer()
	s.URL = "http://" + dialAddr(ln.Addr()) + "/v1"
	mux := http.NewServeMux()
	mux.Handle(ControlPrefix, s.ControlHandler())
	mux.Handle("/", s.handler)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// ControlHandler returns an HTTP API that scripts and inspects the server
// from another process, with JSON bodies:
//
//	POST /_control/script    {"model": "m", "replies": [REPLY, ...]}   as Script; no replies removes the script
//	POST /_control/reset                                              as Reset
//	POST /_control/models    {"models": ["m1", "m2"]}                 as SetModels
//	GET  /_control/requests[?model=m]                                 the recorded requests, as RequestsFor (or Requests)
//
// A REPLY is a Reply as JSON, every field optional: status, header (an
// object of strings), body, error, error_type, error_code, content, chunks,
// finish_reason, usage ({"prompt_tokens", "completion_tokens",
// "total_tokens"}), no_usage, usage_in_final, delay and chunk_delay (Go
// durations such as "250ms"), no_done, cut_after, drop, hang, embedding,
// echo_key, body_size, endless.
// Unknown fields are refused, so that a misspelt one is not silently a
// zero.
//
// A recorded request is {"method", "path", "model", "stream", "header",
// "body", "messages", "cancelled", "received"}: body is the request's JSON
// as sent (a string when it was not JSON), and messages, for a chat request,
// the role and text of each message.
//
// Every answer is JSON; a mistake is a 400 whose "error" says what was
// wrong. The handler checks no key: it belongs on a loopback address, in a
// test.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ControlPrefix+"script", s.controlScript)
	mux.HandleFunc("POST "+ControlPrefix+"reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, nil, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST "+ControlPrefix+"models", s.controlModels)
	mux.HandleFunc("GET "+ControlPrefix+"requests", s.controlRequests)
	mux.HandleFunc(ControlPrefix, func(w http.ResponseWriter, r *http.Request) {
		controlError(w, http.StatusNotFound, fmt.Sprintf("no control route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) controlScript(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model   string         `json:"model"`
		Replies []controlReply `json:"replies"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	replies := make([]Reply, len(req.Replies))
	for i, cr := range req.Replies {
		reply, err := cr.reply()
		if err != nil {
			controlError(w, http.StatusBadRequest, fmt.Sprintf("replies[%d]: %v", i, err))
			return
		}
		replies[i] = reply
	}
	s.Script(req.Model, replies...)
	writeJSON(w, http.StatusOK, nil, map[string]bool{"ok": true})
}

func (s *Server) controlModels(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Models []string `json:"models"`
	}
	if !decodeControl(w, r, &req) {
		return
	}
	s.SetModels(req.Models...)
	writeJSON(w, http.StatusOK, nil, map[string]bool{"ok": true})
}

func (s *Server) controlRequests(w http.ResponseWriter, r *http.Request) {
	var reqs []Request
	if model, ok := r.URL.Query()["model"]; ok {
		reqs = s.RequestsFor(strings.Join(model, ""))
	} else {
		reqs = s.Requests()
	}
	out := make([]controlRequest, len(reqs))
	for i := range reqs {
		out[i] = newControlRequest(&reqs[i])
	}
	writeJSON(w, http.StatusOK, nil, out)
}

// decodeControl reads a control request's JSON body into v, refusing
// unknown fields; on failure it answers 400 and returns false.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		controlError(w, http.StatusBadRequest, "the control request's body: "+err.Error())
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, nil, map[string]string{"error": msg})
}

// controlReply is a Reply as the control API writes it.
type controlReply struct {
	Status       int               `json:"status"`
	Header       map[string]string `json:"header"`
	Body         string            `json:"body"`
	Error        string            `json:"error"`
	ErrorType    string            `json:"error_type"`
	ErrorCode    string            `json:"error_code"`
	Content      string            `json:"content"`
	Chunks       []string          `json:"chunks"`
	FinishReason string            `json:"finish_reason"`
	Usage        *openai.Usage     `json:"usage"`
	NoUsage      bool              `json:"no_usage"`
	UsageInFinal bool              `json:"usage_in_final"`
	Delay        string            `json:"delay"`
	ChunkDelay   string            `json:"chunk_delay"`
	NoDone       bool              `json:"no_done"`
	CutAfter     int               `json:"cut_after"`
	Drop         bool              `json:"drop"`
	Hang         bool              `json:"hang"`
	Embedding    []float64         `json:"embedding"`
	EchoKey      bool              `json:"echo_key"`
	BodySize     int64             `json:"body_size"`
	Endless      bool              `json:"endless"`
}

func (c controlReply) reply() (Reply, error) {
	r := Reply{
		Status: c.Status, Body: c.Body, Error: c.Error, ErrorType: c.ErrorType, ErrorCode: c.ErrorCode,
		Content: c.Content, Chunks: c.Chunks, FinishReason: c.FinishReason, Usage: c.Usage,
		NoUsage: c.NoUsage, UsageInFinal: c.UsageInFinal, NoDone: c.NoDone, CutAfter: c.CutAfter,
		Drop: c.Drop, Hang: c.Hang, Embedding: c.Embedding, EchoKey: c.EchoKey, BodySize: c.BodySize, Endless: c.Endless,
	}
	if len(c.Header) > 0 {
		r.Header = http.Header{}
		for k, v := range c.Header {
			r.Header.Set(k, v)
		}
	}
	var err error
	if r.Delay, err = parseDuration("delay", c.Delay); err != nil {
		return Reply{}, err
	}
	if r.ChunkDelay, err = parseDuration("chunk_delay", c.ChunkDelay); err != nil {
		return Reply{}, err
	}
	return r, nil
}

func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if d < 0 {
		return 0, errors.New(field + " is negative")
	}
	return d, nil
}

// controlRequest is a recorded Request as the control API shows it.
type controlRequest struct {
	Method    string           `json:"method"`
	Path      string           `json:"path"`
	Model     string           `json:"model"`
	Stream    bool             `json:"stream"`
	Header    http.Header      `json:"header"`
	Body      json.RawMessage  `json:"body"`
	Messages  []controlMessage `json:"messages,omitempty"`
	Cancelled bool             `json:"cancelled"`
	Received  time.Time        `json:"received"`
}

type controlMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func newControlRequest(r *Request) controlRequest {
	c := controlRequest{
		Method: r.Method, Path: r.Path, Model: r.Model, Stream: r.Stream,
		Header: r.Header, Cancelled: r.Cancelled, Received: r.Received,
	}
	if json.Valid(r.Body) {
		c.Body = r.Body
	} else {
		c.Body, _ = json.Marshal(string(r.Body))
	}
	if r.Chat != nil {
		c.Messages = make([]controlMessage, len(r.Chat.Messages))
		for i, m := range r.Chat.Messages {
			c.Messages[i] = controlMessage{Role: m.Role, Content: m.Content.String()}
		}
	}
	return c
}
