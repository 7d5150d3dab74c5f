package consortia_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// fixture is the engine of one consortium, "council", whose members and
// arbiter are models of a fake provider named "fake", reached through
// upstream.Provider.
type fixture struct {
	fake   *upstreamtest.Server
	engine *consortia.Engine
}

// newFixture starts a fake provider, reached over real HTTP, and builds
// the engine of a consortium from the YAML of its body (members, arbiter,
// ...), in the configuration file's keys.
func newFixture(t testing.TB, body string) *fixture {
	t.Helper()
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	transport := upstream.NewTransport()
	t.Cleanup(transport.CloseIdleConnections)
	return &fixture{fake: fake, engine: newEngine(t, fake.URL, transport, body)}
}

// inBubble runs test inside a testing/synctest bubble, with the engine of
// the consortium body over a fake provider whose handler is called in
// memory (memTransport): no socket, so the bubble's clock runs the
// member_timeout, the providers' timeouts and the fake's replies. The fake
// is made outside the bubble (its server listens on a socket) and closed
// after it has ended; the engine is built inside.
func inBubble(t *testing.T, body string, test func(t *testing.T, f *fixture)) {
	t.Helper()
	fake := upstreamtest.NewServer()
	defer fake.Close()
	synctest.Test(t, func(t *testing.T) {
		test(t, &fixture{fake: fake, engine: newEngine(t, "http://fake.invalid/v1", memTransport{fake.Handler()}, body)})
	})
}

// consortiumYAML is a consortium as the tests write it, in the
// configuration file's keys. A Member's and an Arbiter's fields read as
// their keys do (yaml.v3 lowercases field names).
type consortiumYAML struct {
	Strategy            string             `yaml:"strategy"`
	System              string             `yaml:"system"`
	Members             []consortia.Member `yaml:"members"`
	Arbiter             consortia.Arbiter  `yaml:"arbiter"`
	ConfidenceThreshold float64            `yaml:"confidence_threshold"`
	MinIterations       int                `yaml:"min_iterations"`
	MaxIterations       int                `yaml:"max_iterations"`
	Quorum              int                `yaml:"quorum"`
	MemberTimeout       time.Duration      `yaml:"member_timeout"`
	MinAnswers          int                `yaml:"min_answers"`
}

// consortiumConfig reads a consortium's YAML into the engine's Config,
// with the configuration file's defaults.
func consortiumConfig(t testing.TB, body string) consortia.Config {
	t.Helper()
	y := consortiumYAML{ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 3, MemberTimeout: time.Minute, MinAnswers: 1}
	dec := yaml.NewDecoder(strings.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil {
		t.Fatalf("consortium:\n%s\n%v", body, err)
	}
	for i := range y.Members {
		m := &y.Members[i]
		m.Count = max(m.Count, 1)
		if m.Weight == 0 {
			m.Weight = 1
		}
	}
	return consortia.Config{
		Strategy: y.Strategy, System: y.System, Members: y.Members,
		Quorum: y.Quorum, MemberTimeout: y.MemberTimeout, MinAnswers: y.MinAnswers,
		Synthesize: consortia.Synthesize{
			Arbiter:             y.Arbiter,
			ConfidenceThreshold: y.ConfidenceThreshold, MinIterations: y.MinIterations, MaxIterations: y.MaxIterations,
		},
	}
}

// newEngine builds the consortium "council" over the provider "fake" at
// fakeURL, called through transport.
func newEngine(t testing.TB, fakeURL string, transport http.RoundTripper, body string) *consortia.Engine {
	t.Helper()
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fakeURL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	e, err := consortia.New("council", consortiumConfig(t, body), map[string]consortia.Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run answers a client's request body and returns the result and the
// deltas the engine sent, checking that they add up to the synthesis.
func (f *fixture) run(t testing.TB, body string) (*consortia.Result, []string, error) {
	t.Helper()
	req, err := openai.ParseChatRequest([]byte(body))
	if err != nil {
		t.Fatalf("request %s: %v", body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var deltas []string
	res, err := f.engine.Run(ctx, req, func(d string) { deltas = append(deltas, d) })
	if err == nil && strings.Join(deltas, "") != res.Synthesis {
		t.Errorf("deltas %q do not add up to the synthesis %q", deltas, res.Synthesis)
	}
	return res, deltas, err
}

// mustRun is run for a request that must succeed.
func (f *fixture) mustRun(t testing.TB, body string) (*consortia.Result, []string) {
	t.Helper()
	res, deltas, err := f.run(t, body)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res, deltas
}

// waitIdle waits until the fake has no request in flight, so that the
// cancellation of a call has reached it.
func waitIdle(t testing.TB, fake *upstreamtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatalf("the provider still has %d requests in flight: %v", fake.InFlight(), err)
	}
}

// memTransport is an http.RoundTripper that serves every request with a
// handler in the calling process: no socket, no connection pool, nothing a
// testing/synctest bubble cannot wait for. The handler runs on a goroutine
// of its own and writes into a pipe, so each write waits for the client to
// read it, as a flushed stream over a small window would: a provider can
// never run ahead of the engine reading it. When the request's context
// ends, the pipe breaks and the handler's next write fails, as if the
// connection had been closed.
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	pr, pw := io.Pipe()
	w := &pipeResponse{header: http.Header{}, body: pw, ready: make(chan struct{})}
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(context.Cause(ctx)) })
	go func() {
		defer func() {
			err := io.EOF
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				err = io.ErrUnexpectedEOF // the handler cut the connection
			}
			w.end(err)
		}()
		m.h.ServeHTTP(w, req)
	}()
	select {
	case <-w.ready:
	case <-ctx.Done():
		// The pipe is broken: the handler's next write fails, and it ends
		// on its own.
		return nil, ctx.Err()
	}
	if w.cut {
		stop()
		return nil, errors.New("memTransport: the handler cut the connection before answering")
	}
	return &http.Response{
		Status: http.StatusText(w.status), StatusCode: w.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: &pipeBody{PipeReader: pr, stop: stop}, ContentLength: -1, Request: req,
	}, nil
}

// pipeResponse is the http.ResponseWriter a memTransport handler writes.
type pipeResponse struct {
	mu     sync.Mutex
	header http.Header // the handler's, then the response's once sent
	status int
	cut    bool // the handler ended with http.ErrAbortHandler
	sent   bool
	body   *io.PipeWriter
	ready  chan struct{} // closed when the status is set or the handler ended
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(status int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return
	}
	w.sent, w.status, w.header = true, status, w.header.Clone()
	close(w.ready)
}

func (w *pipeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Flush has nothing to do: every write has reached the client when it
// returns.
func (w *pipeResponse) Flush() {}

// end closes the body after the handler returned: with io.EOF, or with
// err when it cut the connection.
func (w *pipeResponse) end(err error) {
	w.mu.Lock()
	if !w.sent {
		w.sent, w.cut = true, err != io.EOF
		if !w.cut {
			w.status = http.StatusOK
		}
		close(w.ready)
	}
	w.mu.Unlock()
	if err == io.EOF {
		w.body.Close()
		return
	}
	w.body.CloseWithError(err)
}

// pipeBody is a memTransport response's body.
type pipeBody struct {
	*io.PipeReader
	stop func() bool
}

func (b *pipeBody) Close() error {
	b.stop()
	return b.PipeReader.CloseWithError(errors.New("memTransport: the client closed the body"))
}
