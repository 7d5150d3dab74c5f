package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Server starts a server that counts the connections it accepts.
func h1Server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// newH1 returns an h1Transport whose fallback is recorded.
func newH1(t *testing.T) *h1Transport {
	t.Helper()
	tr := newH1Transport(NewTransport())
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// post sends body to url through rt and returns the answer's body.
func post(t *testing.T, rt http.RoundTripper, ctx context.Context, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Test", "yes")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

func TestH1ReusesItsConnection(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Host == "" || r.Header.Get("X-Test") != "yes" || r.ContentLength != int64(len(body)) || r.URL.RawQuery != "a=1" {
			http.Error(w, "bad request head", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append([]byte("echo:"), body...))
	})
	tr := newH1(t)
	for i := range 20 {
		prompt := strings.Repeat("x", i*1000) // past the write buffer, too
		resp, body := post(t, tr, context.Background(), srv.URL+"/v1/chat?a=1", prompt)
		if resp.StatusCode != 200 || body != "echo:"+prompt || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, body %.40q", resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 calls one after another opened %d connections, want 1", n)
	}
}

func TestH1ChunkedBodyAndTrailers(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			io.WriteString(w, strings.Repeat("ab", 3000*i+1))
			http.NewResponseController(w).Flush() // chunked, not Content-Length
		}
		w.Header().Set("X-Sum", "done")
	})
	tr := newH1(t)
	want := strings.Repeat("ab", 1) + strings.Repeat("ab", 3001) + strings.Repeat("ab", 6001)
	for range 3 {
		resp, body := post(t, tr, context.Background(), srv.URL, "{}")
		if body != want || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
			t.Fatalf("body of %d bytes, length %d, encoding %q", len(body), resp.ContentLength, resp.TransferEncoding)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("chunked answers with trailers opened %d connections, want 1: the trailer was not read", n)
	}
}

func TestH1StreamsWhatHasArrived(t *testing.T) {
	next := make(chan struct{})
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		<-next
		io.WriteString(w, "data: two\n\n")
	})
	tr := newH1(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 100)
	n, err := resp.Body.Read(buf)
	if err != nil || string(buf[:n]) != "data: one\n\n" {
		t.Fatalf("first read %q, %v; want the first event before the second is written", buf[:n], err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "data: two\n\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

// rawServer answers each connection's requests with the answers replies
// returns, written as they are, and closes the connection when close says
// so; closed receives once each connection has been closed.
func rawServer(t *testing.T, reply func(n int) (answer string, close bool)) (url string, conns *atomic.Int32) {
	url, conns, _ = rawServerClosing(t, reply)
	return url, conns
}

func rawServerClosing(t *testing.T, reply func(n int) (answer string, close bool)) (url string, conns *atomic.Int32, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int32)
	var served atomic.Int32
	closes := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer func() {
					c.Close()
					select {
					case closes <- struct{}{}:
					default:
					}
				}()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					answer, end := reply(int(served.Add(1)))
					io.WriteString(c, answer)
					if end {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), conns, closes
}

func TestH1ReplacesAConnectionTheProviderClosed(t *testing.T) {
	url, conns, closed := rawServerClosing(t, func(int) (string, bool) {
		// Keep-alive as far as the headers say, then closed: as a
		// server whose idle timeout ran out.
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	tr := newH1(t)
	for i := range 3 {
		if _, body := post(t, tr, context.Background(), url, "{}"); body != "ok" {
			t.Fatalf("call %d: %q", i, body)
		}
		<-closed // the provider closed the connection while it sat idle
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestH1ReadsAnswersNetHTTPReads(t *testing.T) {
	for _, tc := range []struct {
		name, answer, body string
		status             int
		reused             bool
	}{
		{"close delimited", "HTTP/1.0 200 OK\r\n\r\nuntil the end", "until the end", 200, false},
		{"interim response first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", 200, false},
		{"keep-alive 1.0", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
		{"error status", "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow", "slow", 429, true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
		{"repeated length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "ok", 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, conns := rawServer(t, func(int) (string, bool) { return tc.answer, !tc.reused })
			tr := newH1(t)
			for range 2 {
				resp, body := post(t, tr, context.Background(), url, "{}")
				if resp.StatusCode != tc.status || body != tc.body {
					t.Fatalf("status %d, body %q; want %d, %q", resp.StatusCode, body, tc.status, tc.body)
				}
			}
			if want := map[bool]int32{true: 1, false: 2}[tc.reused]; conns.Load() != want {
				t.Errorf("%d connections, want %d", conns.Load(), want)
			}
		})
	}
}

func TestH1RefusesMalformedAnswers(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n"},
		{"http/2 line", "HTTP/2 200 OK\r\n\r\n"},
		{"short status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"long status", "HTTP/1.1 2000 OK\r\n\r\n"},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok"},
		{"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"},
		{"header too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"},
		{"cut in the head", "HTTP/1.1 200 OK\r\nContent-Le"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := rawServer(t, func(int) (string, bool) { return tc.answer, true })
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
			resp, err := newH1(t).RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d, want an error", resp.StatusCode)
			}
		})
	}

	url, _ := rawServer(t, func(int) (string, bool) { return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true })
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	resp, err := newH1(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a body cut short read as %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestH1ContextEndsACall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mid" {
			io.WriteString(w, "part")
			http.NewResponseController(w).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tr := newH1(t)

	// Before the answer begins.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/head", strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call past its deadline failed with %v, want context.DeadlineExceeded", err)
	}

	// In the middle of the body.
	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/mid", strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, _ := resp.Body.Read(buf); string(buf[:n]) != "part" {
		t.Fatalf("read %q", buf[:n])
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("a read when the call was canceled failed with %v, want context.Canceled", err)
	}
	resp.Body.Close()

	// An ended context leaves no connection in the pool.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, conns := range tr.idle {
		if len(conns) > 0 {
			t.Errorf("%d connections kept from canceled calls", len(conns))
		}
	}
}

func TestH1ClosedEarlyLeavesItsConnection(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("z"), 64<<10))
	})
	tr := newH1(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); err == nil {
		t.Error("a read after Close succeeded")
	}
	if _, body := post(t, tr, context.Background(), srv.URL, "{}"); len(body) != 64<<10 {
		t.Fatalf("next call read %d bytes", len(body))
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a body closed before its end cannot give its connection back", n)
	}
}

// countingTransport counts the calls it carries.
type countingTransport struct {
	http.RoundTripper
	calls atomic.Int32
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.RoundTripper.RoundTrip(req)
}

func TestH1LeavesTheRestToNetHTTP(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	plain, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	fallback := &countingTransport{RoundTripper: srv.Client().Transport}
	tr := newH1Transport(NewTransport())
	tr.fallback = fallback
	defer tr.CloseIdleConnections()

	post(t, tr, context.Background(), srv.URL, "{}") // https
	req, _ := http.NewRequest(http.MethodPost, plain.URL, io.MultiReader(strings.NewReader("{}")))
	resp, err := tr.RoundTrip(req) // a body of unknown length
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := fallback.calls.Load(); n != 2 {
		t.Errorf("net/http carried %d calls, want 2", n)
	}
	post(t, tr, context.Background(), plain.URL, "{}")
	if n := fallback.calls.Load(); n != 2 {
		t.Errorf("net/http carried a plain call of known length")
	}
}

func TestH1RefusesHeadersThatWouldSplitTheRequest(t *testing.T) {
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	req.Header.Set("X-Evil", "a\r\nX-Injected: 1")
	if resp, err := newH1(t).RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("a header value with CR LF was sent")
	}
}

// FuzzH1Response holds h1Transport's reading of an answer to net/http's:
// whatever it reads whole, http.ReadResponse reads whole too, with the same
// status and body.
func FuzzH1Response(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2;ext=1\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length:  3 \r\n\r\nabc",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nok",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		want, werr := readByNetHTTP(answer)
		got, gerr := readByH1(answer)
		if gerr != nil {
			return // stricter than net/http is allowed
		}
		if werr != nil {
			t.Fatalf("h1 read %d %q; net/http refused it: %v", got.status, got.body, werr)
		}
		if want.status < 200 {
			return // net/http returns an interim answer; h1 reads past it
		}
		if got.status != want.status || !bytes.Equal(got.body, want.body) {
			t.Fatalf("h1 read %d %q; net/http %d %q", got.status, got.body, want.status, want.body)
		}
	})
}

type readAnswer struct {
	status int
	body   []byte
}

func readByNetHTTP(answer []byte) (readAnswer, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://fuzz/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), req)
	if err != nil {
		return readAnswer{}, err
	}
	body, err := io.ReadAll(resp.Body)
	return readAnswer{resp.StatusCode, body}, err
}

// readByH1 has an h1Transport read answer from a connection in memory.
func readByH1(answer []byte) (readAnswer, error) {
	client, server := net.Pipe()
	tr := newH1Transport(NewTransport())
	tr.maxHeader = 64 << 10
	tr.dial = func(context.Context, string, string) (net.Conn, error) { return client, nil }
	go func() {
		defer server.Close()
		req, err := http.ReadRequest(bufio.NewReader(server))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		server.Write(answer)
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://fuzz/", strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return readAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return readAnswer{resp.StatusCode, body}, err
}

// TestArrivedSaysTheBodyBegan: a stream's Response says whether its first
// bytes came with its headers, which is known over plain HTTP.
func TestArrivedSaysTheBodyBegan(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if r.URL.Path == "/thinking/chat/completions" {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush() // the headers alone, then a wait
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\ndata: [DONE]\n\n")
	})
	for _, tc := range []struct {
		path    string
		arrived bool
	}{{"", true}, {"/thinking", false}} {
		p, err := New(Config{Name: "fake", BaseURL: srv.URL + tc.path, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := p.Do(context.Background(), &Request{Model: "m", Path: "/chat/completions", Stream: true, Body: []byte(`{"model":"m","stream":true}`)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Arrived != tc.arrived {
			t.Errorf("%q: Arrived %v, want %v", tc.path, resp.Arrived, tc.arrived)
		}
		resp.Body.Close()
	}
}

// TestH1KeepsNoConnectionItAskedToClose: a request with Connection: close
// (req.Close) is the connection's last, even when the provider's answer
// does not say close (RFC 9112 section 9.6).
func TestH1KeepsNoConnectionItAskedToClose(t *testing.T) {
	url, conns := rawServer(t, func(int) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	tr := newH1(t)
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		req.Close = true
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a connection was used after Connection: close", n)
	}
}

// TestH1SendsNoMoreThanContentLength: a body longer than the request's
// ContentLength fails, and its excess never reaches the provider, which
// would read it as another request.
func TestH1SendsNoMoreThanContentLength(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		data, _ := io.ReadAll(c) // until the client closes
		received <- data
	}()
	smuggled := "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 8192\r\n\r\n" + strings.Repeat("x", 8192)
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String(), strings.NewReader("{}"+smuggled))
	req.ContentLength = 2
	if resp, err := newH1(t).RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("a body longer than its Content-Length was sent")
	}
	if data := <-received; bytes.Contains(data, []byte("/smuggled")) {
		t.Errorf("the provider received the body's excess: %.120q", data)
	}
}

// TestH1RefusesAnInvalidMethod: a method that is not a token would break
// the request line.
func TestH1RefusesAnInvalidMethod(t *testing.T) {
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	req.Method = "POST /elsewhere"
	if resp, err := newH1(t).RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a method with a space was sent (status %d)", resp.StatusCode)
	}
}
