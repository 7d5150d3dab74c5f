package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// chatCompletions serves POST /v1/chat/completions.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	buf, err := s.readBody(w, r)
	defer buffers.Put(buf)
	body := buf.Bytes()
	// The passthrough path checks the body in one pass without decoding
	// it; only a consortium needs the request decoded.
	var sum openai.ChatSummary
	if err == nil {
		sum, err = openai.CheckChatRequest(body)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveChat(w, r, start, sum, body, nil)
}

// serveChat answers a checked chat completion request: a consortium
// runs it, any other model is passed through. req, when the caller has
// already decoded body (the Responses and Messages APIs translate their
// own requests into one), saves decoding it again. The answer is OpenAI's
// chat completion, JSON or SSE: the other APIs translate it as it is
// written, so every model, strategy, limit and record applies to them
// unchanged.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, start time.Time, sum openai.ChatSummary, body []byte, req *openai.ChatRequest) {
	info(r.Context()).model = sum.Model
	if e := s.consortia[sum.Model]; e != nil {
		if req == nil {
			var err error
			if req, err = openai.ParseChatRequest(body); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		s.consortium(w, r, start, e, req)
		return
	}
	p, model, err := s.route(sum.Model)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.passthrough(w, r, start, p, &upstream.Request{Model: model, Path: "/chat/completions", Stream: sum.Stream}, body, sum.SetModel)
}

// embeddings serves POST /v1/embeddings, always a passthrough.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	buf, err := s.readBody(w, r)
	defer buffers.Put(buf)
	body := buf.Bytes()
	var req *openai.EmbeddingRequest
	if err == nil {
		req, err = openai.ParseEmbeddingRequest(body)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info(r.Context()).model = req.Model
	if s.consortia[req.Model] != nil {
		s.fail(w, r, badRequest("model", "%s is a consortium, which writes chat answers; embeddings need a provider/model", req.Model))
		return
	}
	p, model, err := s.route(req.Model)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.passthrough(w, r, start, p, &upstream.Request{Model: model, Path: "/embeddings"}, body, openai.SetModel)
}

// route finds the provider of a passthrough model ref.
func (s *Server) route(ref string) (Provider, string, error) {
	name, model, ok := strings.Cut(ref, "/")
	p := s.providers[name]
	switch {
	case !ok || name == "" || model == "" || !s.cfg.Passthrough:
		return nil, "", modelNotFound(ref)
	case p == nil:
		variable := ""
		if s.cfg.ProviderVariable != nil {
			variable = s.cfg.ProviderVariable(name)
		}
		return nil, "", providerNotConfigured(ref, name, variable)
	}
	return p, model, nil
}

// passthrough forwards the client's body to a provider with only its model
// rewritten, and the provider's answer back: JSON checked whole, SSE chunk
// by chunk as it arrives. setModel rewrites the model: openai.SetModel,
// or the same from a chat request's check, which knows where it lies.
func (s *Server) passthrough(w http.ResponseWriter, r *http.Request, start time.Time, p Provider, req *upstream.Request, body []byte,
	setModel func(dst, body []byte, model string) ([]byte, error)) {
	ri := info(r.Context())
	ri.provider = p.Name()

	// The rewritten body goes back to the pool when upstream says no
	// attempt will read it again, which may come after Do returns:
	// net/http can go on writing a request body after the answer came
	// (a provider that answers early).
	out := buffers.Get()
	out.Grow(len(body) + len(req.Model) + 2)
	rewritten, err := setModel(out.AvailableBuffer(), body, req.Model)
	if err != nil {
		buffers.Put(out)
		s.fail(w, r, badRequest("", "%v", err))
		return
	}
	req.Body = rewritten
	req.Release = func() { buffers.Put(out) }

	if !req.Stream {
		answer := buffers.Get()
		defer buffers.Put(answer)
		req.Buffer = answer
	}

	sent := time.Now()
	resp, err := p.Do(upstream.WithRole(r.Context(), "passthrough"), req)
	waited := time.Since(sent)
	s.metrics.upstreamTime.WithLabelValues(p.Name(), s.metrics.modelLabel(p.Name(), req.Model)).Observe(waited.Seconds())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ri.overhead = time.Since(start) - waited
	if resp.Body != nil {
		defer resp.Body.Close()
		s.forwardStream(w, r, resp.Body, req.Model, resp.Arrived)
		return
	}
	// upstream has read the JSON answer whole and checked it, so that a
	// malformed 200 became a clear 502 rather than a body the SDK chokes on.
	w.Header().Set("X-Consortium-Overhead-Ms", overheadMs(ri.overhead))
	writeAnswer(w, resp.Data)
}

// overheadMs is the X-Consortium-Overhead-Ms of an answer: the proxy's
// own time, in ms to the microsecond.
func overheadMs(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}

// writeAnswer writes a whole JSON answer with status 200 and its length,
// and flushes it: it leaves now, in the one write it would have had,
// rather than after the access log and the metrics that run when the
// handler returns.
func writeAnswer(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	http.NewResponseController(w).Flush()
}

// forwardStream copies an SSE body to the client, flushing after every read
// as httputil.ReverseProxy does for event streams, so each chunk leaves as
// soon as it arrives (the read that brings the provider's end is sent with
// the end of the response instead, in the same write). Lines of any length
// pass, since bytes are copied as they come rather than scanned line by
// line. A stream that breaks, or that
// ends without [DONE] (the provider cut it short; upstream's body fails
// with ErrNoDone then, and its breaker counts it), is ended with an error
// event and [DONE], never left hanging or passed on as if complete. model
// is the provider's own model name, for the error event. The headers are
// flushed at once, so that a client learns that the stream began, unless
// the first of the body has arrived with them (arrived): then they leave
// with it, in one write.
func (s *Server) forwardStream(w http.ResponseWriter, r *http.Request, body io.Reader, model string, arrived bool) {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if !arrived {
		rc.Flush()
	}

	// A stream that trickles (a chunk at a time, as a model writes) is
	// read through a small buffer, which it holds for as long as it lasts;
	// one whose read fills it (a burst of chunks already received) moves
	// to a pooled buffer, so that a burst is one write to the client.
	chunk := make([]byte, smallStreamBuffer)
	var tail eventTail
	for {
		n, err := body.Read(chunk)
		if n == len(chunk) && len(chunk) == smallStreamBuffer {
			buf := buffers.Get()
			defer buffers.Put(buf)
			big := buf.AvailableBuffer()[:cap(buf.AvailableBuffer())]
			copy(big, chunk[:n])
			chunk = big
		}
		if n > 0 {
			if _, werr := w.Write(chunk[:n]); werr != nil {
				info(r.Context()).err = werr
				return // the client went away; closing the body cancels upstream
			}
			tail.keep(chunk[:n])
			if err == io.EOF {
				// The handler returns now, and net/http sends what is
				// buffered with the end of the body: one write, not two.
				return
			}
			if ferr := rc.Flush(); ferr != nil {
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			if r.Context().Err() != nil {
				info(r.Context()).err = r.Context().Err()
				return
			}
			s.streamBroke(w, r, &tail, model, err)
			return
		}
	}
}

// streamBroke ends a passthrough stream that failed after it began: the
// event the provider was writing is closed, then an error event and [DONE]
// follow. The failure goes to the log as an upstream one.
func (s *Server) streamBroke(w http.ResponseWriter, r *http.Request, tail *eventTail, model string, err error) {
	ri := info(r.Context())
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		ue = &upstream.Error{Provider: ri.provider, Model: model, Err: err}
	}
	ri.err = ue
	s.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream stream failed",
		slog.String("request_id", ri.id), slog.String("provider", ri.provider), slog.String("model", model),
		slog.String("error", ue.Error()))
	ae := errorFrom(ue)
	if ae.Type == "upstream_error" {
		// upstreamMessage would say "no answer"; this one had begun.
		what := "the stream broke off midway (" + connectionProblem(ue.Err) + ")"
		if errors.Is(err, upstream.ErrNoDone) {
			what = "the stream ended without [DONE]; the answer may be incomplete"
		}
		ae.Message = "upstream " + ue.Ref() + ": " + what
	}
	ew := openai.NewEventWriter(w)
	ew.Raw(tail.closing())
	writeStreamError(ew, ae)
}

// eventTail keeps the last two bytes a stream sent: enough to tell how to
// close an event it left open.
type eventTail struct {
	b [2]byte
	n int
}

func (t *eventTail) keep(p []byte) {
	switch {
	case len(p) >= 2:
		t.b, t.n = [2]byte{p[len(p)-2], p[len(p)-1]}, 2
	case len(p) == 1:
		t.b, t.n = [2]byte{t.b[1], p[0]}, min(t.n+1, 2)
	}
}

// closing returns what ends the event the stream was cut in, so that the
// error event that follows is an event of its own.
func (t *eventTail) closing() []byte {
	switch {
	case t.n == 0, t.n == 2 && t.b == [2]byte{'\n', '\n'}:
		return nil
	case t.b[1] == '\n':
		return []byte("\n")
	}
	return []byte("\n\n")
}

// writeStreamError sends an error after a stream began: an error event
// then [DONE], as OpenAI's SDKs expect.
func writeStreamError(ew *openai.EventWriter, ae *apiError) {
	ew.Data(errorJSON(ae))
	ew.Done()
}

// readBody reads the request body, at most max_body bytes, into a pooled
// buffer, which the caller must give back with buffers.Put, whatever err.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (buf *bytes.Buffer, err error) {
	buf = buffers.Get()
	if r.ContentLength > int64(s.cfg.MaxBody) {
		return buf, &http.MaxBytesError{Limit: int64(s.cfg.MaxBody)}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	// A client that trickles its body (slow loris) gets a deadline; it is
	// lifted once the body is in, so a long stream is not cut by it.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxBody)))
	if err != nil && timedOut(err) {
		// The deadline stays: net/http reads what is left of a body after
		// the handler, and would wait on the silent client forever. With
		// Connection: close it then closes the connection.
		w.Header().Set("Connection", "close")
		return buf, errRequestTimeout
	}
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if !errors.As(err, &tooLarge) {
			err = badRequest("", "the request body could not be read: %v", err)
		}
		return buf, err
	}
	return buf, nil
}

// timedOut reports a read that failed at its deadline.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// smallStreamBuffer is what a passthrough stream reads through until a
// read fills it.
const smallStreamBuffer = 1 << 10

// bodyReadTimeout bounds the time a client may take to send its body.
// Tests run it in fake time (synctest), so it needs no override.
const bodyReadTimeout = time.Minute

// fail answers a request with the error it met and keeps the error for the
// log line.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ri := info(r.Context())
	ri.err = err
	writeError(w, errorFrom(err))
}

// buffers are reused across requests: request bodies, rewritten bodies,
// upstream answers and stream copies. They start small, since an open
// stream holds its buffers for as long as it lasts, and grow to fit; one
// past 1 MiB is not kept.
var buffers = upstream.NewBuffers(4<<10, 1<<20)

// writeJSON writes v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: "the answer could not be encoded"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
