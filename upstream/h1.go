package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Transport carries calls to plain-HTTP providers (a model server on the
// same host or network: vLLM, Ollama, llama.cpp, a sidecar) over HTTP/1.1
// in the calling goroutine: it writes the request and reads the answer on
// a pooled connection itself, where net/http's Transport hands each
// request to a connection's write goroutine and the answer back from its
// read goroutine. That handoff is most of what a call costs on a fast
// local provider (docs/performance.md). Everything else (https, where
// HTTP/2 and TLS matter more than a goroutine; a proxy from the
// environment; a body of unknown length) goes to fallback, net/http's
// Transport.
//
// Where net/http's Transport keeps reading every idle connection to notice
// that the provider closed it, h1Transport peeks at one (a non-blocking
// read, one system call) as it takes it from the pool.
type h1Transport struct {
	fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)

	maxIdlePerHost int
	idleTimeout    time.Duration
	maxHeader      int64 // bytes of a response's status line and headers

	proxied sync.Map // host -> bool: the environment sends it through a proxy

	mu       sync.Mutex
	idle     map[string][]*h1Conn // by host:port, the most recently used last
	sweeping bool                 // a sweep is due
}

// newH1Transport returns an h1Transport with fallback's dialer and pool
// settings.
func newH1Transport(fallback *http.Transport) *h1Transport {
	return &h1Transport{
		fallback:       fallback,
		dial:           fallback.DialContext,
		maxIdlePerHost: fallback.MaxIdleConnsPerHost,
		idleTimeout:    fallback.IdleConnTimeout,
		maxHeader:      1 << 20,
		idle:           map[string][]*h1Conn{},
	}
}

// CloseIdleConnections closes the idle connections, this transport's and
// the fallback's.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	for _, conns := range t.idle {
		for _, c := range conns {
			c.conn.Close()
		}
	}
	clear(t.idle)
	t.mu.Unlock()
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.URL.User != nil || req.Trailer != nil ||
		(req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.GetBody == nil)) ||
		t.viaProxy(req.URL) {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	c, err := t.conn(ctx, addr)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		closeBody(req)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return resp, nil
}

// closeBody closes a request's body, as a RoundTripper must even when it
// fails.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// viaProxy reports whether the environment (HTTP_PROXY, NO_PROXY) sends
// requests to u's host through a proxy; the answer is kept per host, as
// net/http reads the environment once.
func (t *h1Transport) viaProxy(u *url.URL) bool {
	if v, ok := t.proxied.Load(u.Host); ok {
		return v.(bool)
	}
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	proxied := p != nil || err != nil
	t.proxied.Store(u.Host, proxied)
	return proxied
}

// conn returns an idle connection to addr that is still open, or dials
// one.
func (t *h1Transport) conn(ctx context.Context, addr string) (*h1Conn, error) {
	for {
		t.mu.Lock()
		conns := t.idle[addr]
		if len(conns) == 0 {
			t.mu.Unlock()
			break
		}
		c := conns[len(conns)-1]
		t.idle[addr] = conns[:len(conns)-1]
		t.mu.Unlock()
		if time.Since(c.idleAt) < t.idleTimeout && c.open() {
			return c, nil
		}
		c.conn.Close()
	}
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{t: t, addr: addr, conn: nc}
	c.interrupt = func() { nc.SetDeadline(aLongTimeAgo) }
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.br = bufio.NewReaderSize(&c.limited, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	c.limited.r = nc
	c.limited.n = -1
	return c, nil
}

// put keeps c for the next request to its host, or closes it when the
// pool is full. Connections idle past the idle timeout are closed as the
// pool is used, and by a sweep while any is kept.
func (t *h1Transport) put(c *h1Conn) {
	if c.br.Buffered() > 0 {
		// The provider sent more than the answer: the connection's
		// next answer could not be trusted.
		c.conn.Close()
		return
	}
	c.idleAt = time.Now()
	t.mu.Lock()
	conns := t.idle[c.addr]
	if len(conns) >= t.maxIdlePerHost {
		t.mu.Unlock()
		c.conn.Close()
		return
	}
	t.idle[c.addr] = append(conns, c)
	if !t.sweeping {
		t.sweeping = true
		time.AfterFunc(t.idleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle past the idle timeout, and comes back
// while any is left.
func (t *h1Transport) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, conns := range t.idle {
		i := 0
		for i < len(conns) && time.Since(conns[i].idleAt) >= t.idleTimeout {
			conns[i].conn.Close()
			i++
		}
		if i == len(conns) {
			delete(t.idle, addr)
			continue
		}
		t.idle[addr] = conns[i:]
	}
	t.sweeping = len(t.idle) > 0
	if t.sweeping {
		time.AfterFunc(t.idleTimeout, t.sweep)
	}
}

// h1Conn is one HTTP/1.1 connection, used by one request at a time.
type h1Conn struct {
	t       *h1Transport
	addr    string
	conn    net.Conn
	raw     syscall.RawConn // for open; nil if the connection has none
	limited limitedConn
	br      *bufio.Reader
	bw      *bufio.Writer
	body    lengthWriter // a request's body goes through it, without an allocation
	tp      textproto.Reader
	idleAt  time.Time // when it was put back in the pool
	// interrupt makes the pending reads and writes fail: a request's
	// context calls it when it ends (made once per connection).
	interrupt func()
}

// limitedConn reads from r and fails after n bytes, while n is not -1: it
// bounds a response's head.
type limitedConn struct {
	r io.Reader
	n int64
}

var errHeaderTooLarge = errors.New("upstream: the provider's response headers are too large")

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

// aLongTimeAgo is a deadline that makes every pending read and write
// fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req and reads the head of its answer. The connection
// belongs to the returned body until it is read to its end or closed.
func (c *h1Conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, c.interrupt)
	resp, err := c.exchange(req)
	if err != nil {
		stop()
		c.conn.Close()
		return nil, err
	}
	// A request that said Connection: close is the connection's last,
	// whatever the answer says (RFC 9112 section 9.6).
	body := &h1Body{c: c, ctx: ctx, stop: stop, reusable: !resp.Close && !req.Close}
	switch {
	case req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified:
		resp.ContentLength = 0
		resp.Body = http.NoBody
		body.release()
		return resp, nil
	case len(resp.TransferEncoding) > 0:
		body.r = httputil.NewChunkedReader(c.br)
		body.chunked = true
	case resp.ContentLength >= 0:
		if resp.ContentLength == 0 {
			resp.Body = http.NoBody
			body.release()
			return resp, nil
		}
		body.remain = resp.ContentLength
		body.r = c.br
	default:
		body.r = c.br // until the provider closes the connection
		body.remain = -1
		body.reusable = false
	}
	resp.Body = body
	return resp, nil
}

// exchange writes req on the connection and reads the head of the answer,
// past any 1xx interim responses.
func (c *h1Conn) exchange(req *http.Request) (*http.Response, error) {
	if err := c.writeRequest(req); err != nil {
		return nil, err
	}
	c.limited.n = c.t.maxHeader
	defer func() { c.limited.n = -1 }()
	for {
		resp, err := c.readHead(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// writeRequest writes req's head and body and flushes them, in one write
// when they fit the buffer.
func (c *h1Conn) writeRequest(req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHeaderValue(host) || !validHeaderKey(req.Method) { // a method is a token too
		return errors.New("upstream: invalid host or method")
	}
	w := c.bw
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		if !validHeaderKey(k) {
			return fmt.Errorf("upstream: invalid header name %q", k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return fmt.Errorf("upstream: invalid value for header %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	if req.Body != nil && req.Body != http.NoBody {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), req.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		c.body = lengthWriter{w: w, n: req.ContentLength}
		n, err := io.Copy(&c.body, req.Body)
		req.Body.Close()
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return fmt.Errorf("upstream: the request body was %d bytes, not its Content-Length %d", n, req.ContentLength)
		}
	} else {
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			w.WriteString("Content-Length: 0\r\n")
		}
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// lengthWriter writes at most n bytes to w and fails past them: the
// excess of a body longer than its Content-Length would reach the
// provider as the start of another request.
type lengthWriter struct {
	w io.Writer
	n int64
}

var errBodyTooLong = errors.New("upstream: the request body is longer than its Content-Length")

func (l *lengthWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		n, err := l.w.Write(p[:l.n])
		l.n -= int64(n)
		if err == nil {
			err = errBodyTooLong
		}
		return n, err
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// validHeaderKey reports a header name made of token characters.
func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isToken(k[i]) {
			return false
		}
	}
	return true
}

func isToken(b byte) bool { return tokenTable[b] }

// tokenTable marks the bytes of RFC 9110's tchar.
var tokenTable = func() (t [256]bool) {
	for b := '!'; b <= '~'; b++ {
		t[b] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, b)
	}
	return t
}()

// validHeaderValue reports a value with no control character but tab (no
// CR or LF that would end the header early).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// readHead reads a status line and its headers.
func (c *h1Conn) readHead(req *http.Request) (*http.Response, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			err = errHeaderTooLarge
		}
		return nil, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	proto, status, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(status) < 3 {
		return nil, fmt.Errorf("upstream: malformed HTTP response %q", line)
	}
	major, minor, ok := http.ParseHTTPVersion(string(proto))
	if !ok || major != 1 {
		return nil, fmt.Errorf("upstream: malformed HTTP version %q", proto)
	}
	code, err := strconv.Atoi(string(status[:3]))
	if err != nil || code < 100 || code > 999 || (len(status) > 3 && status[3] != ' ') {
		return nil, fmt.Errorf("upstream: malformed HTTP status %q", status)
	}
	resp := &http.Response{
		Status: statusText(status), StatusCode: code,
		Proto: protoText(minor), ProtoMajor: 1, ProtoMinor: minor,
		Request: req, ContentLength: -1,
	}
	c.tp.R = c.br
	header, err := c.tp.ReadMIMEHeader()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	resp.Header = http.Header(header)
	if err := frame(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// statusText returns the status ("200 OK") without allocating for the
// usual one.
func statusText(status []byte) string {
	if string(status) == "200 OK" {
		return "200 OK"
	}
	return string(status)
}

// protoText returns the protocol of an HTTP/1 response ("HTTP/1.1")
// without allocating for the usual ones.
func protoText(minor int) string {
	switch minor {
	case 1:
		return "HTTP/1.1"
	case 0:
		return "HTTP/1.0"
	}
	return "HTTP/1." + strconv.Itoa(minor)
}

// frame reads how resp's body is delimited, as RFC 9112 section 6.3 says,
// and whether the connection closes after it. It refuses what net/http
// refuses: a transfer coding other than chunked, and Content-Length
// values that disagree or are not numbers, even beside chunked.
func frame(resp *http.Response) error {
	h := resp.Header
	resp.Close = resp.ProtoMinor == 0 && !hasToken(h["Connection"], "keep-alive") || hasToken(h["Connection"], "close")
	if cl, ok := h["Content-Length"]; ok {
		first := strings.TrimSpace(cl[0])
		for _, v := range cl[1:] {
			if strings.TrimSpace(v) != first {
				return fmt.Errorf("upstream: conflicting Content-Length headers %q", cl)
			}
		}
		n, err := strconv.ParseUint(first, 10, 63)
		if err != nil {
			return fmt.Errorf("upstream: bad Content-Length %q", first)
		}
		resp.ContentLength = int64(n)
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1]
		}
	}
	if te, ok := h["Transfer-Encoding"]; ok {
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") || resp.ProtoMinor == 0 {
			return fmt.Errorf("upstream: unsupported transfer encoding %q", te)
		}
		delete(h, "Transfer-Encoding")
		delete(h, "Content-Length")
		resp.TransferEncoding = []string{"chunked"}
		resp.ContentLength = -1
	}
	return nil
}

// hasToken reports whether a comma-separated header holds token, in any
// case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// h1Body reads an answer's body from its connection, and gives the
// connection back to the pool once the body has been read to its end.
type h1Body struct {
	c        *h1Conn
	ctx      context.Context
	stop     func() bool // ends the context's hold on the connection
	r        io.Reader
	remain   int64 // bytes left of a Content-Length body; -1 otherwise
	chunked  bool
	reusable bool
	err      error // how reading ended, once it has
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.remain > 0 && int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.r.Read(p)
	switch {
	case b.remain > 0:
		b.remain -= int64(n)
		if b.remain == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case b.chunked && err == io.EOF:
		err = b.trailer()
	case b.remain == -1 && err == io.EOF:
		b.reusable = false
	}
	if err != nil {
		b.end(err)
		err = b.err
	}
	return n, err
}

// Buffered returns how many bytes of the answer have arrived and wait to
// be read (with a chunked body's framing).
func (b *h1Body) Buffered() int {
	if b.err != nil {
		return 0
	}
	return b.c.br.Buffered()
}

// trailer reads a chunked body's trailer section, to its empty line, so
// that the connection is ready for the next response. Trailers are
// dropped: no provider sends one a call needs. It reads them as net/http
// does, no more leniently: the usual empty section is one CRLF, and
// fields are well formed and end with CRLF CRLF within the read buffer.
func (b *h1Body) trailer() error {
	c := b.c
	c.limited.n = c.t.maxHeader
	defer func() { c.limited.n = -1 }()
	end, err := c.br.Peek(2)
	if string(end) == "\r\n" {
		c.br.Discard(2)
		return io.EOF
	}
	if len(end) < 2 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if !upcomingDoubleCRLF(c.br) {
		return errors.New("upstream: malformed or too long chunked trailer")
	}
	c.tp.R = c.br
	if _, err := c.tp.ReadMIMEHeader(); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return io.EOF
}

// upcomingDoubleCRLF reports whether br holds, or is about to, a CRLF CRLF
// within its buffer's size.
func upcomingDoubleCRLF(br *bufio.Reader) bool {
	for n := 4; ; n++ {
		buf, err := br.Peek(n)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// end records how reading ended and gives the connection back or closes
// it.
func (b *h1Body) end(err error) {
	if b.err != nil {
		return
	}
	b.err = err
	if err == io.EOF && b.reusable {
		b.release()
		return
	}
	b.stop()
	b.c.conn.Close()
	if err != io.EOF && err != errBodyClosed && b.ctx.Err() != nil {
		b.err = b.ctx.Err() // the deadline the context set, read as why
	}
}

// release gives the connection back to the pool, unless its context ended
// while it was in use (its deadline may then be in the past).
func (b *h1Body) release() {
	if b.err == nil {
		b.err = io.EOF
	}
	if !b.stop() || !b.reusable {
		b.c.conn.Close()
		return
	}
	b.c.t.put(b.c)
}

// Close ends the body; before its end, that closes the connection, which
// cannot carry another answer until this one is read.
func (b *h1Body) Close() error {
	if b.err == nil {
		b.end(errBodyClosed)
	}
	return nil
}

var errBodyClosed = errors.New("upstream: read on a closed response body")
