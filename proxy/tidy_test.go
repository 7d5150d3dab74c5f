package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/proxy"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestStreamWithoutDoneOpensBreaker: passthrough streams that the provider
// ends without [DONE] are upstream failures for the model's breaker and
// its metrics, not only in the log: after breaker.failures of them the
// model rests (503), and /metrics counts them as malformed.
func TestStreamWithoutDoneOpensBreaker(t *testing.T) {
	e := start(t, strings.Replace(defaultYAML, "models: [m1, m2]", "models: [m1, m2]\n    max_retries: 0\n    breaker: {failures: 2, cooldown: 1h}", 1))
	for i := range 2 {
		e.fake.Script("m1", upstreamtest.Reply{Content: "one two three", NoDone: true})
		resp, got := e.post("/v1/chat/completions", streamChatBody)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: status %d: %s", i+1, resp.StatusCode, got)
		}
		frames := readFrames(t, got)
		if se := streamError(frames); text(frames) != "one two three" || se == nil || !strings.Contains(se.Error.Message, "[DONE]") {
			t.Fatalf("stream %d:\n%s", i+1, got)
		}
	}
	e.fake.Script("m1", upstreamtest.Reply{Content: "one two three"})
	resp, got := e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after two cut streams: status %d, want 503 from the open breaker: %s", resp.StatusCode, got)
	}
	_, metrics := e.do(http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`consortium_upstream_requests_total{model="m1",outcome="malformed",provider="fake",role="passthrough"} 2`,
		`consortium_upstream_requests_total{model="m1",outcome="breaker_open",provider="fake",role="passthrough"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metricLines(string(metrics), "consortium_upstream"))
		}
	}
}

// TestProviderNotConfigured: the 404 for a model of a provider the
// configuration lacks names the environment variable only when the
// wiring knows one for that name, never a guessed one.
func TestProviderNotConfigured(t *testing.T) {
	variables := map[string]string{"openai": "OPENAI_API_KEY", "ollama": "OLLAMA_HOST"}
	for _, tc := range []struct {
		name     string
		lookup   func(string) string
		model    string
		want     []string
		wantNone []string
	}{
		{"known key", func(p string) string { return variables[p] }, "openai/gpt-4o-mini",
			[]string{"openai/gpt-4o-mini", "providers.openai", "set OPENAI_API_KEY"}, nil},
		{"known host", func(p string) string { return variables[p] }, "ollama/llama3",
			[]string{"providers.ollama", "set OLLAMA_HOST"}, []string{"OLLAMA_API_KEY"}},
		{"unknown name", func(p string) string { return variables[p] }, "mistral/large",
			[]string{"providers.mistral"}, []string{"MISTRAL_API_KEY", " set "}},
		{"no lookup", nil, "openai/gpt-4o-mini", []string{"providers.openai"}, []string{"OPENAI_API_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := proxy.New(proxy.Options{Settings: proxy.Settings{Passthrough: true, ProviderVariable: tc.lookup}})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
				strings.NewReader(`{"model":"`+tc.model+`","messages":[{"role":"user","content":"x"}]}`)))
			ae := decodeError(t, rec.Body.Bytes())
			if rec.Code != 404 || ae.Error.Code == nil || *ae.Error.Code != "model_not_found" {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			for _, want := range tc.want {
				if !strings.Contains(ae.Error.Message, want) {
					t.Errorf("message %q lacks %q", ae.Error.Message, want)
				}
			}
			for _, not := range tc.wantNone {
				if strings.Contains(ae.Error.Message, not) {
					t.Errorf("message %q has %q", ae.Error.Message, not)
				}
			}
		})
	}
}

// BenchmarkPassthroughProxy measures a passthrough through the whole
// proxy (router, middleware, body check, model rewrite, upstream, copy
// back) on a loopback port: a JSON answer and a stream of 40 deltas,
// from the fake provider in memory ("fake") and from a transport that
// answers canned bytes ("canned"), whose figures are the proxy's and
// upstream's own work with none of the fake's.
func BenchmarkPassthroughProxy(b *testing.B) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.SetRecordLimit(-1)
	answer := strings.Repeat("A sentence of a long enough answer. ", 40)
	fake.Script("m1", upstreamtest.Reply{Content: answer})
	canned := newCanned(b, fake)
	for _, transport := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"fake", fake.RoundTripper()},
		{"canned", canned},
	} {
		ts := httptest.NewServer(newProxy(b, fake, "", func(o *app.Options) { o.Transport = transport.rt }))
		client := ts.Client()
		for _, bc := range []struct{ name, body string }{
			{"json", chatBody},
			{"stream", streamChatBody},
		} {
			b.Run(transport.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					resp, err := client.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(bc.body))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
		ts.Close()
	}
}

// cannedTransport answers every call with the bytes the fake provider
// answered once: JSON, or an event stream when the call accepts one.
type cannedTransport struct {
	json, stream []byte
}

func newCanned(b *testing.B, fake *upstreamtest.Server) cannedTransport {
	b.Helper()
	var c cannedTransport
	for _, body := range []string{chatBody, streamChatBody} {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(strings.Replace(body, "fake/m1", "m1", 1)))
		rec := httptest.NewRecorder()
		fake.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("the fake answered %d: %s", rec.Code, rec.Body)
		}
		if strings.Contains(body, `"stream":true`) {
			c.stream = rec.Body.Bytes()
		} else {
			c.json = rec.Body.Bytes()
		}
	}
	return c
}

func (c cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req.Body.Close()
	body, typ := c.json, "application/json"
	if req.Header.Get("Accept") == "text/event-stream" {
		body, typ = c.stream, "text/event-stream"
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {typ}}, ContentLength: int64(len(body)),
		Body: io.NopCloser(bytes.NewReader(body)), Request: req}, nil
}
