package upstreamtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// NewInMemory returns a Server that listens on no port: its URL names a
// host that is never dialled, and RoundTripper serves the requests by
// calling the handler directly. A test under testing/synctest creates it
// inside its bubble, so that scripted delays and hangs, and the retries,
// backoffs and timeouts of the code under test, all run on the bubble's
// fake clock. The caller must call Close.
func NewInMemory() *Server {
	s := newServer()
	s.URL = "http://upstreamtest.invalid/v1"
	return s
}

// RoundTripper returns an http.RoundTripper that serves every request with
// the server's handler, in memory, whatever host the request names: no
// sockets, so that it runs under testing/synctest (with a server from
// NewInMemory). The response comes back once the handler has written its
// headers; its body carries what the handler writes as it writes it. As
// over a real connection: a reply that drops the connection (Drop) fails
// the round trip, one cut midway (CutAfter, a body shorter than its
// Content-Length) ends the body with io.ErrUnexpectedEOF, and a client
// that cancels its request or closes the body goes away, which the
// handler sees (and records as Cancelled).
func (s *Server) RoundTripper() http.RoundTripper { return memTransport{s.handler} }

type memTransport struct{ h http.Handler }

func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	sreq := req.Clone(ctx)
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "192.0.2.1:1234"
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	pr, pw := io.Pipe()
	w := &memWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			if v := recover(); v != nil {
				// The connection is cut, as net/http cuts it; a panic
				// other than http.ErrAbortHandler is a bug in the fake,
				// and crashes the test loudly.
				w.abort()
				if v != http.ErrAbortHandler {
					panic(v)
				}
				return
			}
			w.finish()
		}()
		t.h.ServeHTTP(w, sreq)
	}()
	select {
	case <-w.ready:
	case <-req.Context().Done():
		cancel()
		pr.Close()
		return nil, req.Context().Err()
	}
	if w.dropped {
		cancel()
		return nil, fmt.Errorf("upstreamtest: the server closed the connection before answering: %w", io.EOF)
	}
	length := int64(-1)
	if n, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil {
		length = n
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          newMemBody(req.Context(), pr, cancel),
		ContentLength: length,
		Request:       req,
	}, nil
}

// memWriter is the handler's side of an in-memory response.
type memWriter struct {
	mu      sync.Mutex
	header  http.Header
	sent    http.Header // the header as WriteHeader found it
	status  int
	written int64
	ready   chan struct{} // closed once the headers are sent, or the handler dropped the connection first
	dropped bool
	pw      *io.PipeWriter
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *memWriter) writeHeaderLocked(code int) {
	if w.sent != nil || code < 200 {
		return
	}
	w.status, w.sent = code, w.header.Clone()
	close(w.ready)
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writeHeaderLocked(http.StatusOK)
	w.mu.Unlock()
	n, err := w.pw.Write(p)
	w.written += int64(n)
	return n, err
}

// Flush sends the headers; the body has no buffer to flush.
func (w *memWriter) Flush() { w.WriteHeader(http.StatusOK) }

// finish ends a response whose handler returned: the body ends, cut if it
// is shorter than the Content-Length it announced.
func (w *memWriter) finish() {
	w.WriteHeader(http.StatusOK)
	if n, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil && w.written < n {
		w.pw.CloseWithError(io.ErrUnexpectedEOF)
		return
	}
	w.pw.Close()
}

// abort cuts the connection: before the headers, the round trip fails.
func (w *memWriter) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent == nil {
		w.dropped = true
		close(w.ready)
		w.pw.Close()
		return
	}
	w.pw.CloseWithError(io.ErrUnexpectedEOF)
}

// memBody is the client's side: closing it is the client going away. Once
// the request's context ends, reads fail with its error, as they do over
// a real connection.
type memBody struct {
	ctx    context.Context
	pr     *io.PipeReader
	cancel context.CancelFunc
	stop   func() bool
}

func newMemBody(ctx context.Context, pr *io.PipeReader, cancel context.CancelFunc) *memBody {
	b := &memBody{ctx: ctx, pr: pr, cancel: cancel}
	b.stop = context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	return b
}

func (b *memBody) Read(p []byte) (int, error) {
	n, err := b.pr.Read(p)
	if err != nil && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *memBody) Close() error {
	b.stop()
	b.cancel()
	return b.pr.Close()
}
