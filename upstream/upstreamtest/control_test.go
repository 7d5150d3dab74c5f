package upstreamtest_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// controlEnv is a server started by NewControlServer and a client of it.
type controlEnv struct {
	t    *testing.T
	s    *upstreamtest.Server
	base string // the URL without /v1
	hc   *http.Client
}

func startControl(t *testing.T) *controlEnv {
	t.Helper()
	s, err := upstreamtest.NewControlServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.Close()
	})
	return &controlEnv{t: t, s: s, base: strings.TrimSuffix(s.URL, "/v1"), hc: &http.Client{Transport: tr}}
}

// call sends a request and returns the status and body.
func (e *controlEnv) call(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestControlScript(t *testing.T) {
	e := startControl(t)
	if status, body := e.call("POST", "/_control/script", `{"model": "m", "replies": [
		{"status": 503, "error": "overloaded", "header": {"Retry-After": "1"}},
		{"content": "hello world", "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "delay": "1ms"}]}`); status != 200 {
		t.Fatalf("script: %d %s", status, body)
	}
	chat := `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`
	status, body := e.call("POST", "/v1/chat/completions", chat)
	if status != 503 || !strings.Contains(body, "overloaded") {
		t.Errorf("first reply: %d %s", status, body)
	}
	status, body = e.call("POST", "/v1/chat/completions", chat)
	var cc struct {
		Choices []struct {
			Message struct{ Content string }
		}
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal([]byte(body), &cc); status != 200 || err != nil || cc.Choices[0].Message.Content != "hello world" || cc.Usage.TotalTokens != 5 {
		t.Errorf("second reply: %d %s", status, body)
	}

	// Streaming options reach the stream.
	e.call("POST", "/_control/script", `{"model": "s", "replies": [{"chunks": ["a", "b"], "no_done": true}]}`)
	status, body = e.call("POST", "/v1/chat/completions", `{"model": "s", "stream": true, "messages": [{"role": "user", "content": "hi"}]}`)
	if status != 200 || strings.Contains(body, "[DONE]") || !strings.Contains(body, `"content":"b"`) {
		t.Errorf("stream: %d %s", status, body)
	}

	// The provider's own routes still answer on the same address.
	e.call("POST", "/_control/models", `{"models": ["m", "s"]}`)
	if status, body := e.call("GET", "/v1/models", ""); status != 200 || !strings.Contains(body, `"id":"s"`) {
		t.Errorf("models: %d %s", status, body)
	}
}

func TestControlRequests(t *testing.T) {
	e := startControl(t)
	e.call("POST", "/v1/chat/completions", `{"model": "a", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}`)
	e.call("POST", "/v1/chat/completions", `{"model": "b", "messages": [{"role": "user", "content": "yo"}]}`)
	e.call("POST", "/v1/embeddings", `not json`)

	var reqs []struct {
		Method   string
		Path     string
		Model    string
		Header   http.Header
		Body     json.RawMessage
		Messages []struct{ Role, Content string }
		Received time.Time
	}
	status, body := e.call("GET", "/_control/requests?model=a", "")
	if err := json.Unmarshal([]byte(body), &reqs); status != 200 || err != nil || len(reqs) != 1 {
		t.Fatalf("requests for a: %d %s", status, body)
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || r.Model != "a" || r.Received.IsZero() ||
		len(r.Messages) != 2 || r.Messages[1].Role != "user" || r.Messages[1].Content != "hi" ||
		!strings.Contains(string(r.Body), `"be brief"`) || r.Header.Get("Content-Length") == "" {
		t.Errorf("recorded request %+v", r)
	}

	_, body = e.call("GET", "/_control/requests", "")
	if err := json.Unmarshal([]byte(body), &reqs); err != nil || len(reqs) != 3 || string(reqs[2].Body) != `"not json"` || reqs[2].Messages != nil {
		t.Errorf("all requests: %s", body)
	}

	if status, _ := e.call("POST", "/_control/reset", ""); status != 200 {
		t.Errorf("reset: %d", status)
	}
	if _, body = e.call("GET", "/_control/requests", ""); strings.TrimSpace(body) != "[]" {
		t.Errorf("after reset: %s", body)
	}
}

func TestControlMistakes(t *testing.T) {
	e := startControl(t)
	for _, c := range []struct {
		method, path, body, want string
	}{
		{"POST", "/_control/script", `{"model": "m", "replies": [{"contnt": "typo"}]}`, `unknown field \"contnt\"`},
		{"POST", "/_control/script", `{"model": "m", "replies": [{"delay": "soon"}]}`, "replies[0]: delay"},
		{"POST", "/_control/script", `{"model": "m", "replies": [{"chunk_delay": "-1s"}]}`, "chunk_delay is negative"},
		{"POST", "/_control/script", `[]`, "the control request's body"},
		{"GET", "/_control/nothing", ``, "no control route"},
		{"GET", "/_control/script", ``, "no control route"},
	} {
		status, body := e.call(c.method, c.path, c.body)
		if status/100 != 4 || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s, want a 4xx saying %q", c.method, c.path, c.body, status, body, c.want)
		}
	}
	// A failed script leaves the model answering as before.
	_, body := e.call("POST", "/v1/chat/completions", `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`)
	if !strings.Contains(body, "echo: hi") {
		t.Errorf("after failed scripts: %s", body)
	}
}

// The control API is served only by NewControlServer (and whoever mounts
// ControlHandler): a plain server, as --demo runs, does not answer it.
func TestControlNotOnPlainServer(t *testing.T) {
	s := upstreamtest.NewServer()
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post(strings.TrimSuffix(s.URL, "/v1")+"/_control/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("plain server answered the control API: %d %s", resp.StatusCode, line)
	}
}

// TestControlNewFields: echo_key and body_size script as EchoKey and
// BodySize do.
func TestControlNewFields(t *testing.T) {
	e := startControl(t)
	if status, body := e.call("POST", "/_control/script", `{"model": "k", "replies": [{"status": 401, "echo_key": true}]}`); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	req, _ := http.NewRequest("POST", e.s.URL+"/chat/completions", strings.NewReader(`{"model":"k","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-control")
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "Bearer sk-control") {
		t.Errorf("echo_key: %s", b)
	}
	if status, body := e.call("POST", "/_control/script", `{"model": "h", "replies": [{"body_size": 100000}]}`); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if _, body := e.call("POST", "/v1/chat/completions", `{"model":"h","messages":[{"role":"user","content":"hi"}]}`); len(body) < 100000 || !json.Valid([]byte(body)) {
		t.Errorf("body_size: %d bytes", len(body))
	}
}
