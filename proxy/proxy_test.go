package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m))
}

// env is a proxy on a loopback port in front of a fake provider named
// "fake", with the configuration a test gives.
type env struct {
	t     *testing.T
	fake  *upstreamtest.Server
	proxy *httptest.Server
	URL   string // the proxy's base URL with /v1
	logs  *logBuffer
}

// start runs a proxy with the YAML configuration yaml, in which
// {{FAKE}} stands for the fake provider's base URL.
func start(t *testing.T, yaml string, options ...func(*app.Options)) *env {
	t.Helper()
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	logs := &logBuffer{}
	options = append([]func(*app.Options){func(o *app.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) }}, options...)
	ts := httptest.NewServer(newProxy(t, fake, yaml, options...))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return &env{t: t, fake: fake, proxy: ts, URL: ts.URL + "/v1", logs: logs}
}

// newProxy builds the proxy for the YAML configuration yaml (defaultYAML
// when empty), in which {{FAKE}} stands for fake's base URL. It is the one
// place the tests construct a server; it is closed when the test ends.
func newProxy(t testing.TB, fake *upstreamtest.Server, yaml string, options ...func(*app.Options)) http.Handler {
	t.Helper()
	if yaml == "" {
		yaml = defaultYAML
	}
	yaml = strings.ReplaceAll(yaml, "{{FAKE}}", fake.URL)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	opts := app.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Backoff: time.Millisecond}
	for _, o := range options {
		o(&opts)
	}
	srv, err := app.New(opts)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

const defaultYAML = `
providers:
  fake:
    base_url: {{FAKE}}
    api_key: provider-secret
    headers: {X-Custom: hello}
    timeout: 2s
    idle_timeout: 2s
    models: [m1, m2]
`

// do sends a request to the proxy and returns the response with its body
// read.
func (e *env) do(method, path, key, body string, headers ...string) (*http.Response, []byte) {
	e.t.Helper()
	return fetch(e.t, http.DefaultClient, newRequest(e.t, context.Background(), method, e.proxy.URL+path, key, body, headers...))
}

// newRequest is a client's request: key, when not empty, as its bearer
// token, and headers given as name, value pairs.
func newRequest(t testing.TB, ctx context.Context, method, url, key, body string, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// fetch sends req with client and returns the response with its body
// read.
func fetch(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (e *env) post(path, body string, headers ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodPost, path, "", body, headers...)
}

// apiError decodes OpenAI's error envelope.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error: %s (%v)", body, err)
	}
	return e
}

const chatBody = `{"model":"fake/m1","messages":[{"role":"user","content":"hello"}]}`

// streamChatBody asks fake/m1 for a stream.
const streamChatBody = `{"model":"fake/m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`

func TestPassthroughJSON(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "hi there", Header: http.Header{
		"X-Ratelimit-Remaining-Requests": {"99"}, "Openai-Organization": {"operator-org"}, "Set-Cookie": {"a=b"},
	}})
	body := `{"model":"fake/m1","messages":[{"role":"user","content":"hello"}],"reasoning_effort":"low","logprobs":true,` +
		`"response_format":{"type":"json_object"},"x_vendor":{"nested":[1,2,{"k":"v"}]},"temperature":0.2}`
	resp, got := e.post("/v1/chat/completions", body,
		"Authorization", "Bearer client-secret", "OpenAI-Organization", "client-org", "OpenAI-Project", "p", "Cookie", "c=d")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if resp.ContentLength != int64(len(got)) {
		t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(got))
	}
	var cc struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage *struct{ TotalTokens int } `json:"usage"`
	}
	if err := json.Unmarshal(got, &cc); err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content != "hi there" || cc.Usage == nil {
		t.Fatalf("body %s (%v)", got, err)
	}
	for h := range resp.Header {
		if strings.HasPrefix(strings.ToLower(h), "x-ratelimit") || strings.EqualFold(h, "Openai-Organization") || strings.EqualFold(h, "Set-Cookie") {
			t.Errorf("provider header %s reached the client", h)
		}
	}
	if resp.Header.Get("X-Consortium-Overhead-Ms") == "" {
		t.Error("no X-Consortium-Overhead-Ms")
	}

	reqs := e.fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d upstream requests", len(reqs))
	}
	up := reqs[0]
	if got := up.Header.Get("Authorization"); got != "Bearer provider-secret" {
		t.Errorf("upstream Authorization %q, want the provider's key", got)
	}
	if up.Header.Get("X-Custom") != "hello" {
		t.Error("configured header not sent upstream")
	}
	for _, h := range []string{"OpenAI-Organization", "OpenAI-Project", "Cookie"} {
		if up.Header.Get(h) != "" {
			t.Errorf("client header %s reached the provider", h)
		}
	}
	want := strings.Replace(body, `"model":"fake/m1"`, `"model":"m1"`, 1)
	if string(up.Body) != want {
		t.Errorf("upstream body\n got %s\nwant %s", up.Body, want)
	}
}

func TestPassthroughStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reply     upstreamtest.Reply
		usage     bool
		wantUsage bool
		wantError bool // an error event before [DONE]
	}{
		{name: "usage frame", reply: upstreamtest.Reply{Content: "one two three"}, usage: true, wantUsage: true},
		{name: "usage in final frame", reply: upstreamtest.Reply{Content: "one two three", UsageInFinal: true}, usage: true, wantUsage: true},
		{name: "no usage asked", reply: upstreamtest.Reply{Content: "one two three"}},
		{name: "provider sends no usage", reply: upstreamtest.Reply{Content: "one two three", NoUsage: true}, usage: true},
		// A stream the provider cut short is not passed on as complete.
		{name: "no done", reply: upstreamtest.Reply{Content: "one two three", NoDone: true}, usage: true, wantUsage: true, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, "")
			e.fake.Script("m1", tc.reply)
			body := fmt.Sprintf(`{"model":"fake/m1","stream":true,"stream_options":{"include_usage":%v},"messages":[{"role":"user","content":"hi"}]}`, tc.usage)
			resp, got := e.post("/v1/chat/completions", body)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			frames := readFrames(t, got)
			if text(frames) != "one two three" {
				t.Errorf("text %q", text(frames))
			}
			if hasUsage(frames) != tc.wantUsage {
				t.Errorf("usage %v, want %v", hasUsage(frames), tc.wantUsage)
			}
			if se := streamError(frames); (se != nil) != tc.wantError {
				t.Errorf("error event %+v, want one: %v", se, tc.wantError)
			}
		})
	}
}

// TestStreamFlushesEachChunk checks that a chunk reaches the client while
// the provider is still writing the rest, not when the stream ends.
func TestStreamFlushesEachChunk(t *testing.T) {
	inBubble(t, "", func(t *testing.T, e *memEnv) {
		e.fake.Script("m1", upstreamtest.Reply{Chunks: []string{"first", " second"}, ChunkDelay: time.Hour / 2})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := e.open(ctx, streamChatBody)
		// The role frame arrives although the first content delta is half
		// an hour away: nothing waits for the stream to end.
		began := time.Now()
		if f, done := newSSEReader(resp.Body).nextFrame(t); done || len(f.Choices) != 1 || f.Choices[0].Delta.Role != "assistant" {
			t.Fatalf("first frame %+v, want the role chunk", f)
		}
		if took := time.Since(began); took != 0 {
			t.Errorf("the role frame came after %v, want at once", took)
		}
		cancel()
		// The client went away: the provider's call is cancelled too.
		waitIdle(t, e.fake)
		if reqs := e.fake.Requests(); len(reqs) != 1 || !reqs[0].Cancelled {
			t.Fatalf("upstream not cancelled: %+v", reqs)
		}
	})
}

func TestStreamLongLines(t *testing.T) {
	e := start(t, "")
	long := strings.Repeat("x", 300<<10) // one SSE line of 300 KiB
	e.fake.Script("m1", upstreamtest.Reply{Chunks: []string{long, "end"}})
	resp, got := e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if frames := readFrames(t, got); text(frames) != long+"end" || streamError(frames) != nil {
		t.Fatalf("long line lost: got %d bytes", len(text(frames)))
	}
}

func TestStreamCutMidway(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "one two three four", CutAfter: 2})
	resp, got := e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := string(got)
	if !strings.Contains(s, `data: {"error":`) || !strings.HasSuffix(s, "data: [DONE]\n\n") {
		t.Fatalf("a cut stream must end with an error event and [DONE]:\n%s", s)
	}
	// Every frame, the error included, is well formed.
	if text := text(readFrames(t, got)); text != "one two" {
		t.Errorf("text before the cut %q", text)
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	inBubble(t, strings.Replace(defaultYAML, "idle_timeout: 2s", "idle_timeout: 100ms", 1), func(t *testing.T, e *memEnv) {
		e.fake.Script("m1", upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: time.Hour})
		began := time.Now()
		_, got := e.post(streamChatBody)
		s := string(got)
		if !strings.Contains(s, `"type":"timeout"`) || !strings.HasSuffix(s, "data: [DONE]\n\n") {
			t.Fatalf("a silent stream must end with a timeout event and [DONE]:\n%s", s)
		}
		// In fake time, to the tick: the stream ends when idle_timeout
		// has passed without a chunk.
		if took := time.Since(began); took != 100*time.Millisecond {
			t.Errorf("the stream ended after %v, want idle_timeout (100ms)", took)
		}
		synctest.Wait()
		if r := e.fake.Requests(); len(r) != 1 || !r[0].Cancelled || e.fake.InFlight() != 0 {
			t.Errorf("the silent upstream call was not cancelled: %+v", r)
		}
	})
}

func TestErrors(t *testing.T) {
	long := `{"model":"fake/m1","messages":[{"role":"user","content":"` + strings.Repeat("a", 2<<20) + `"}]}`
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		body       string
		reply      *upstreamtest.Reply
		status     int
		typ, code  string
		param      string
		retryAfter bool
		upstream   int // calls the provider must have seen
		msg        string
	}{
		{name: "not json", body: `{"model":`, status: 400, typ: "invalid_request_error"},
		{name: "array body", body: `[1,2]`, status: 400, typ: "invalid_request_error"},
		{name: "model wrong type", body: `{"model":5,"messages":[{"role":"user","content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "model"},
		{name: "messages missing", body: `{"model":"fake/m1"}`, status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "messages empty", body: `{"model":"fake/m1","messages":[]}`, status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "role wrong type", body: `{"model":"fake/m1","messages":[{"role":1,"content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "messages.role"},
		{name: "content wrong type", body: `{"model":"fake/m1","messages":[{"role":"user","content":{"a":1}}]}`, status: 400, typ: "invalid_request_error", param: "messages.content"},
		{name: "stream wrong type", body: `{"model":"fake/m1","stream":"yes","messages":[{"role":"user","content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "stream"},
		{name: "temperature wrong type", body: `{"model":"fake/m1","temperature":"hot","messages":[{"role":"user","content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "temperature"},
		{name: "tools wrong type", body: `{"model":"fake/m1","tools":{},"messages":[{"role":"user","content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "tools"},
		{name: "null content is legal", body: `{"model":"fake/m1","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[]},{"role":"user","content":"y"}]}`, status: 200, upstream: 1},
		{name: "unknown model", body: `{"model":"nope/m1","messages":[{"role":"user","content":"x"}]}`, status: 404, typ: "invalid_request_error", code: "model_not_found", param: "model"},
		{name: "model without provider", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, status: 404, typ: "invalid_request_error", code: "model_not_found"},
		{name: "too large", body: long, status: 413, typ: "invalid_request_error", code: "request_too_large"},
		{name: "unknown path", path: "/v1/nothing", body: `{}`, status: 404, typ: "invalid_request_error"},
		{name: "wrong method", method: "GET", path: "/v1/chat/completions", status: 405, typ: "invalid_request_error"},
		{name: "provider 400", reply: &upstreamtest.Reply{Status: 400, Error: "bad temperature", ErrorCode: "invalid_value"}, status: 400, typ: "invalid_request_error", code: "invalid_value", upstream: 1, msg: "bad temperature"},
		{name: "provider 404", reply: &upstreamtest.Reply{Status: 404, Error: "no such model"}, status: 404, typ: "invalid_request_error", upstream: 1, msg: "no such model"},
		{name: "provider 413", reply: &upstreamtest.Reply{Status: 413, Error: "too long"}, status: 413, upstream: 1, msg: "too long"},
		{name: "provider 422", reply: &upstreamtest.Reply{Status: 422, Error: "unprocessable"}, status: 422, upstream: 1, msg: "unprocessable"},
		{name: "provider 401 is the operator's", reply: &upstreamtest.Reply{Status: 401, Error: "bad key sk-123"}, status: 502, typ: "upstream_error", upstream: 1, msg: "the provider refused the proxy's credentials"},
		{name: "provider 403", reply: &upstreamtest.Reply{Status: 403, Error: "forbidden"}, status: 502, typ: "upstream_error", upstream: 1, msg: "the provider refused the proxy's credentials"},
		{name: "provider 500 is retried", reply: &upstreamtest.Reply{Status: 500, Error: "boom"}, status: 502, typ: "upstream_error", upstream: 3, msg: "fake/m1: status 500 after 3 attempts: boom"},
		{name: "provider 429", reply: &upstreamtest.Reply{Status: 429, Error: "slow down", Header: http.Header{"Retry-After": {"7"}}}, status: 429, typ: "rate_limit_error", retryAfter: true, upstream: 1},
		{name: "malformed 200", reply: &upstreamtest.Reply{Body: `{"choices": [`}, status: 502, typ: "upstream_error", upstream: 1, msg: "not valid JSON"},
		{name: "dropped connection is retried", reply: &upstreamtest.Reply{Drop: true}, status: 502, typ: "upstream_error", upstream: 3, msg: "after 3 attempts"},
		{name: "first byte timeout", reply: &upstreamtest.Reply{Hang: true}, status: 504, typ: "timeout", upstream: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, strings.Replace(defaultYAML, "timeout: 2s", "timeout: 200ms", 1)+"max_body: 1MiB\n", func(t *testing.T, e *memEnv) {
				if tc.reply != nil {
					e.fake.Script("m1", *tc.reply)
				}
				method, path, body := tc.method, tc.path, tc.body
				if method == "" {
					method = http.MethodPost
				}
				if path == "" {
					path = "/v1/chat/completions"
				}
				if body == "" && method == http.MethodPost {
					body = chatBody
				}
				resp, got := e.do(method, path, "", body)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
				}
				if n := len(e.fake.Requests()); n != tc.upstream {
					t.Errorf("%d upstream calls, want %d", n, tc.upstream)
				}
				if tc.status == 200 {
					return
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				ae := decodeError(t, got)
				if tc.typ != "" && ae.Error.Type != tc.typ {
					t.Errorf("type %q, want %q", ae.Error.Type, tc.typ)
				}
				if tc.code != "" && (ae.Error.Code == nil || *ae.Error.Code != tc.code) {
					t.Errorf("code %v, want %q", ae.Error.Code, tc.code)
				}
				if tc.param != "" && (ae.Error.Param == nil || *ae.Error.Param != tc.param) {
					t.Errorf("param %v, want %q", ae.Error.Param, tc.param)
				}
				if tc.msg != "" && !strings.Contains(ae.Error.Message, tc.msg) {
					t.Errorf("message %q does not mention %q", ae.Error.Message, tc.msg)
				}
				if strings.Contains(string(got), "provider-secret") || strings.Contains(string(got), "sk-123") {
					t.Errorf("a key leaked to the client: %s", got)
				}
				if tc.retryAfter && resp.Header.Get("Retry-After") != "7" {
					t.Errorf("Retry-After %q, want 7", resp.Header.Get("Retry-After"))
				}
				if tc.status == 405 && resp.Header.Get("Allow") != "POST" {
					t.Errorf("Allow %q", resp.Header.Get("Allow"))
				}
			})
		})
	}
}

func TestPassthroughOff(t *testing.T) {
	e := start(t, defaultYAML+"passthrough: false\n")
	resp, got := e.post("/v1/chat/completions", chatBody)
	if resp.StatusCode != 404 || !strings.Contains(string(got), "model_not_found") {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	resp, got = e.do("GET", "/v1/models", "", "")
	if resp.StatusCode != 200 || strings.Contains(string(got), "fake/m1") {
		t.Fatalf("passthrough models listed with passthrough off: %s", got)
	}
}

func TestAuth(t *testing.T) {
	e := start(t, defaultYAML+`
auth:
  keys:
    - {name: alice, key: alice-key}
    - {name: bob, key: bob-key}
  admin_key: admin-key
`)
	for _, tc := range []struct {
		name, method, path, key string
		status                  int
	}{
		{"no key", "POST", "/v1/chat/completions", "", 401},
		{"wrong key", "POST", "/v1/chat/completions", "mallory", 401},
		{"alice", "POST", "/v1/chat/completions", "alice-key", 200},
		{"bob", "POST", "/chat/completions", "bob-key", 200},
		{"models need a key", "GET", "/v1/models", "", 401},
		{"models", "GET", "/models", "bob-key", 200},
		{"healthz is open", "GET", "/healthz", "", 200},
		{"readyz is open", "GET", "/readyz", "", 200},
		{"metrics need the admin key", "GET", "/metrics", "alice-key", 401},
		{"metrics", "GET", "/metrics", "admin-key", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = chatBody
			}
			resp, got := e.do(tc.method, tc.path, tc.key, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.status == 401 && decodeError(t, got).Error.Type != "authentication_error" {
				t.Errorf("type: %s", got)
			}
		})
	}
	for _, r := range e.fake.Requests() {
		if a := r.Header.Get("Authorization"); a != "Bearer provider-secret" {
			t.Errorf("upstream Authorization %q", a)
		}
	}
	if strings.Contains(e.logs.String(), "alice-key") || strings.Contains(e.logs.String(), "provider-secret") {
		t.Error("a key reached the log")
	}
	if !strings.Contains(e.logs.String(), "tenant=alice") || !strings.Contains(e.logs.String(), "tenant=bob") {
		t.Errorf("tenants not logged:\n%s", e.logs.String())
	}
}

func TestNoPromptInLogs(t *testing.T) {
	e := start(t, "")
	e.post("/v1/chat/completions", `{"model":"fake/m1","messages":[{"role":"user","content":"my secret prompt"}]}`)
	e.fake.Script("m1", upstreamtest.Reply{Status: 400, Error: "bad"})
	e.post("/v1/chat/completions", `{"model":"fake/m1","messages":[{"role":"user","content":"my secret prompt"}]}`)
	if strings.Contains(e.logs.String(), "secret prompt") {
		t.Fatalf("prompt text in the log:\n%s", e.logs.String())
	}
}

func TestModels(t *testing.T) {
	e := start(t, "")
	resp, got := e.do("GET", "/v1/models", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var list struct {
		Object string
		Data   []struct{ ID, Object, OwnedBy string }
	}
	json.Unmarshal(got, &list)
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "fake/m1" || list.Data[1].ID != "fake/m2" {
		t.Fatalf("models %s", got)
	}
	for _, path := range []string{"/v1/models/fake/m1", "/v1/models/fake%2Fm1", "/models/fake/m1"} {
		resp, got := e.do("GET", path, "", "")
		if resp.StatusCode != 200 || !strings.Contains(string(got), `"id":"fake/m1"`) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, got)
		}
	}
	resp, got = e.do("GET", "/v1/models/fake/none", "", "")
	if resp.StatusCode != 404 || decodeError(t, got).Error.Code == nil {
		t.Errorf("unknown model: %d %s", resp.StatusCode, got)
	}
}

func TestEmbeddings(t *testing.T) {
	e := start(t, "")
	for _, path := range []string{"/v1/embeddings", "/embeddings"} {
		resp, got := e.post(path, `{"model":"fake/emb","input":["a","b"],"encoding_format":"float"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", path, resp.StatusCode, got)
		}
		var out struct {
			Data []struct{ Embedding []float64 }
		}
		if err := json.Unmarshal(got, &out); err != nil || len(out.Data) != 2 || len(out.Data[0].Embedding) == 0 {
			t.Fatalf("embeddings %s", got)
		}
	}
	up := e.fake.Requests()[0]
	if up.Path != "/v1/embeddings" || up.Model != "emb" || !strings.Contains(string(up.Body), `"encoding_format":"float"`) {
		t.Errorf("upstream %s %s", up.Path, up.Body)
	}
	resp, got := e.post("/v1/embeddings", `{"model":"fake/emb"}`)
	if resp.StatusCode != 400 || *decodeError(t, got).Error.Param != "input" {
		t.Errorf("missing input: %d %s", resp.StatusCode, got)
	}
}

func TestMetrics(t *testing.T) {
	e := start(t, "")
	e.post("/v1/chat/completions", chatBody)
	e.fake.Script("m2", upstreamtest.Reply{Status: 500, Error: "boom"})
	e.post("/v1/chat/completions", `{"model":"fake/m2","messages":[{"role":"user","content":"x"}]}`)
	_, got := e.do("GET", "/metrics", "", "")
	for _, want := range []string{
		`consortium_requests_total{route="/v1/chat/completions",status="200"} 1`,
		`consortium_requests_total{route="/v1/chat/completions",status="502"} 1`,
		// Counted by upstream's OnCall, which the wiring points at
		// Metrics.ObserveCall: 500 is retried, and still one call.
		`consortium_upstream_requests_total{model="m1",outcome="ok",provider="fake",role="passthrough"} 1`,
		`consortium_upstream_requests_total{model="m2",outcome="error",provider="fake",role="passthrough"} 1`,
		`consortium_request_duration_seconds_bucket`,
		`consortium_upstream_duration_seconds_bucket`,
		`consortium_overhead_seconds_bucket`,
		`consortium_streams_in_flight 0`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	inBubble(t, "", func(t *testing.T, e *memEnv) {
		e.fake.Script("m1", upstreamtest.Reply{Hang: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := e.send(ctx, http.MethodPost, "/v1/chat/completions", "", chatBody); err == nil {
				resp.Body.Close()
			}
		}()
		synctest.Wait()
		if n := e.fake.InFlight(); n != 1 {
			t.Fatalf("%d upstream calls under way, want 1", n)
		}
		cancel()
		<-done
		synctest.Wait()
		if n := e.fake.InFlight(); n != 0 {
			t.Fatalf("%d upstream calls still running after the client left", n)
		}
		if !e.fake.Requests()[0].Cancelled {
			t.Error("upstream call not cancelled")
		}
	})
}

// logBuffer collects log lines written by handler goroutines.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed at the next write
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until the log holds s, for up to 5s.
func (l *logBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	bound := within(t, 5*time.Second)
	for {
		l.mu.Lock()
		found := strings.Contains(l.b.String(), s)
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-bound.Done():
			t.Fatalf("the log has no %q after 5s:\n%s", s, l.String())
		}
	}
}

// within returns a context that ends after d, a bound on a wait that
// would otherwise hang a broken test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
