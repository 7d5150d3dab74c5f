package proxy_test

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// memEnv is a proxy served in memory for tests under testing/synctest. The
// proxy calls the fake (made in the bubble by upstreamtest.NewInMemory)
// through the fake's RoundTripper, and clients reach the proxy over real
// HTTP, a net/http client and server, on net.Pipe connections: no socket,
// so the bubble's fake clock runs timeouts, breakers, limits, backoffs and
// keep-alives, and a client that goes away closes its connection as it
// would over TCP.
type memEnv struct {
	t      *testing.T
	fake   *upstreamtest.Server
	h      http.Handler
	client *http.Client
	logs   *logBuffer
	ln     *pipeListener
}

// memBase is the proxy's URL in memory; its host is never dialled.
const memBase = "http://proxy.test"

// inBubble runs test inside a testing/synctest bubble, with a fake made in
// the bubble and the proxy for yaml (as newProxy reads it) served in
// memory in front of it.
func inBubble(t *testing.T, yaml string, test func(t *testing.T, e *memEnv), options ...func(*app.Options)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		fake := upstreamtest.NewInMemory()
		t.Cleanup(fake.Close) // after the proxy has closed
		test(t, startMem(t, fake, yaml, options...))
	})
}

// startMem runs the proxy for yaml in memory, in front of fake (from
// upstreamtest.NewInMemory); call it inside the bubble. The proxy's log is
// e.logs.
func startMem(t *testing.T, fake *upstreamtest.Server, yaml string, options ...func(*app.Options)) *memEnv {
	t.Helper()
	logs := &logBuffer{}
	options = append([]func(*app.Options){func(o *app.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.Transport = fake.RoundTripper()
	}}, options...)
	h := newProxy(t, fake, yaml, options...)
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	// The bubble ends only once every goroutine of the server has: Close
	// does not wait for connections that are winding down (net/http waits
	// a while after closing a connection whose request body it left
	// unread), so each connection's end is awaited.
	var mu sync.Mutex
	open := map[net.Conn]chan struct{}{}
	srv := &http.Server{Handler: h, ConnState: func(c net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			open[c] = make(chan struct{})
		case http.StateClosed, http.StateHijacked:
			close(open[c])
		}
	}}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // http.ErrServerClosed once Close has run
	}()
	tr := &http.Transport{DialContext: ln.dial}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served // no connection is accepted now
		mu.Lock()
		ends := slices.Collect(maps.Values(open))
		mu.Unlock()
		for _, closed := range ends {
			<-closed
		}
	})
	return &memEnv{t: t, fake: fake, h: h, client: &http.Client{Transport: tr}, logs: logs, ln: ln}
}

// send sends a request to the proxy and returns its response, whose body
// the caller reads and closes; a client that cancels ctx goes away.
func (e *memEnv) send(ctx context.Context, method, path, key, body string) (*http.Response, error) {
	e.t.Helper()
	return e.client.Do(newRequest(e.t, ctx, method, memBase+path, key, body))
}

// open posts body, a streamed chat request, and returns the response as
// soon as its headers have come, its body to read as the proxy writes it
// (closed when the test ends); a client that cancels ctx goes away.
func (e *memEnv) open(ctx context.Context, body string) *http.Response {
	e.t.Helper()
	resp, err := e.send(ctx, http.MethodPost, "/v1/chat/completions", "", body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// dial opens a connection to the proxy, for a test that speaks HTTP on it
// by hand; the test closes it.
func (e *memEnv) dial() net.Conn {
	e.t.Helper()
	conn, err := e.ln.dial(context.Background(), "tcp", "proxy.test:80")
	if err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// do sends a request to the proxy and returns the response with its body.
func (e *memEnv) do(method, path, key, body string) (*http.Response, []byte) {
	e.t.Helper()
	return fetch(e.t, e.client, newRequest(e.t, context.Background(), method, memBase+path, key, body))
}

func (e *memEnv) post(body string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodPost, "/v1/chat/completions", "", body)
}

// pipeListener is a net.Listener whose connections are net.Pipe pairs made
// by dial: the proxy's http.Server accepts one end, the client's
// http.Transport gets the other.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr("proxy.test:80") }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- pipeConn{server}:
		return client, nil
	case <-l.closed:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

// pipeConn is the server's end of a pipe: it comes from a client address,
// as a TCP connection does, for the code that reads one.
type pipeConn struct{ net.Conn }

func (pipeConn) RemoteAddr() net.Addr { return pipeAddr("192.0.2.1:1234") }

type pipeAddr string

func (pipeAddr) Network() string  { return "tcp" }
func (a pipeAddr) String() string { return string(a) }
