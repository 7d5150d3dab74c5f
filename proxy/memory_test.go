package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// memEnv is a proxy served in memory for tests under testing/synctest:
// requests go to its handler directly and its upstream calls to the fake's
// handler (memTransport), so no socket is involved and the bubble's fake
// clock runs breakers, limits and backoffs. The fake itself is made
// outside the bubble, since its listener is not part of the test's time.
type memEnv struct {
	t    *testing.T
	fake *upstreamtest.Server
	h    http.Handler
}

// startMem runs the proxy for yaml in memory; call it inside the bubble.
func startMem(t *testing.T, fake *upstreamtest.Server, yaml string) *memEnv {
	t.Helper()
	h := newProxy(t, fake, yaml, func(o *app.Options) { o.Transport = memTransport{fake.Handler()} })
	return &memEnv{t: t, fake: fake, h: h}
}

// do sends a request to the proxy and returns the response with its body.
func (e *memEnv) do(method, path, key, body string) (*http.Response, []byte) {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *memEnv) post(body string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodPost, "/v1/chat/completions", "", body)
}

// memTransport answers a call with the fake's handler, in memory. The
// answer is read whole before it is returned, so it serves JSON answers,
// not streams that must arrive chunk by chunk.
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	defer func() {
		// The fake drops a connection by aborting its handler.
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, io.ErrUnexpectedEOF
		}
	}()
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	resp = rec.Result()
	resp.Request = r
	return resp, nil
}
