package upstream

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestReleaseOnceDoIsDone: a call's Release comes once, after every
// attempt, and as Do returns when the body was written whole.
func TestReleaseOnceDoIsDone(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fake, Config{MaxRetries: 2, Breaker: BreakerSettings{Failures: 100}})
	fake.Script("m", upstreamtest.Reply{Status: 503}, upstreamtest.Reply{Content: "ok"})
	fake.Script("s", upstreamtest.Reply{Content: "a b"})
	for _, req := range []*Request{chat("m"), stream("s"), chat("missing-then-fine")} {
		var released atomic.Int32
		req.Release = func() { released.Add(1) }
		resp, err := p.Do(context.Background(), req)
		if n := released.Load(); n != 1 {
			t.Errorf("%s: released %d times as Do returned, want 1", req.Model, n)
		}
		if err == nil && resp.Body != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if n := released.Load(); n != 1 {
			t.Errorf("%s: released %d times, want 1", req.Model, n)
		}
	}
}

// earlyAnswer is a transport that answers at once and goes on reading the
// request body until told to stop, as net/http does when a provider
// answers before reading it all.
type earlyAnswer struct {
	reading, stop chan struct{}
}

func (e *earlyAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	go func() {
		defer req.Body.Close()
		buf := make([]byte, 16)
		req.Body.Read(buf)
		close(e.reading)
		<-e.stop
		io.Copy(io.Discard, req.Body)
	}()
	return &http.Response{StatusCode: 200, ProtoMajor: 1, Header: http.Header{"Content-Type": {"application/json"}}, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"choices":[{"index":0,"message":{"role":"assistant","content":"early"},"finish_reason":"stop"}]}`))}, nil
}

// TestReleaseWaitsForTheTransport: Release comes only once the transport
// has closed the body it may still be reading after Do returned.
func TestReleaseWaitsForTheTransport(t *testing.T) {
	rt := &earlyAnswer{reading: make(chan struct{}), stop: make(chan struct{})}
	p, err := New(Config{Name: "fake", BaseURL: "http://provider.invalid/v1", Transport: rt, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int32
	req := chat("m")
	req.Release = func() { released.Add(1) }
	if _, err := p.Do(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	<-rt.reading
	if n := released.Load(); n != 0 {
		t.Fatal("released while the transport was still reading the body")
	}
	close(rt.stop)
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times after the transport closed the body, want 1", n)
	}
}

// scribbler is a writer that closes the request body it is written from
// in the middle of the write: what HTTP/2's transport does from another
// goroutine when an answer comes before the body was sent (it closes the
// body while its writer may still be reading it, and may read once more).
type scribbler struct {
	body   io.Closer
	got    []byte
	closed bool
}

func (s *scribbler) Write(p []byte) (int, error) {
	half := len(p) / 2
	s.got = append(s.got, p[:half]...)
	if !s.closed {
		s.closed = true
		s.body.Close()
	}
	s.got = append(s.got, p[half:]...)
	return len(p), nil
}

// TestCallBodyClosedWhileRead: a request body closed while a read of it
// is in flight is given back only once that read has ended, and a read
// after Close gets none of it: the memory may already hold another
// request.
func TestCallBodyClosedWhileRead(t *testing.T) {
	body := []byte(strings.Repeat("x", 64))
	var released atomic.Int32
	c := &call{body: body}
	c.hold(func() {
		released.Add(1)
		copy(body, strings.Repeat("y", len(body))) // reused, as a pooled buffer is
	})
	b := c.newBody()
	c.dropBody() // the call is over; the transport still holds its body
	w := &scribbler{body: b}
	if _, err := b.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	if string(w.got) != strings.Repeat("x", len(body)) {
		t.Errorf("the transport read %q: the body was given back while it was read", w.got)
	}
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times once the read ended, want 1", n)
	}
	if n, err := b.Read(make([]byte, 8)); n != 0 || err == nil {
		t.Errorf("Read after Close = %d, %v; want 0 and an error", n, err)
	}

	// The same through Read, from another goroutine (go test -race sees
	// a read of released memory).
	body = []byte(strings.Repeat("x", 64<<10))
	released.Store(0)
	c = &call{body: body}
	c.hold(func() {
		released.Add(1)
		copy(body, strings.Repeat("y", len(body)))
	})
	b = c.newBody()
	c.dropBody()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := make([]byte, 16)
		for {
			n, err := b.Read(p)
			if err != nil {
				return
			}
			if string(p[:n]) != strings.Repeat("x", n) {
				t.Errorf("read %q: the body was given back while it was read", p[:n])
				return
			}
		}
	}()
	b.Close()
	<-done
	if n := released.Load(); n != 1 {
		t.Errorf("released %d times, want 1", n)
	}
}
