package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// The proxy's part of issue 14: a silent body is answered 408 and closed,
// a cut stream is not passed on as complete, keys never leak, and every
// upstream call and consortium run can be seen in /metrics and the log.

// TestBodyTimeout: a client that sends its headers and part of its body,
// then goes silent, gets 408 at the body deadline (a minute, in fake time)
// and its connection is closed; it is not left open, nor logged as a
// client that went away.
func TestBodyTimeout(t *testing.T) {
	inBubble(t, "", func(t *testing.T, e *memEnv) {
		conn := e.dial()
		defer conn.Close()
		partial := `{"model":"fake/m1","messages":[{"role":"user","con`
		began := time.Now()
		if _, err := io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"+
			"Content-Length: 200\r\n\r\n"+partial); err != nil {
			t.Fatal(err)
		}
		// A bound far above the deadline, so a connection left open fails
		// the test rather than hanging it.
		conn.SetReadDeadline(time.Now().Add(time.Hour))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer to a silent body: %v", err)
		}
		if took := time.Since(began); took != time.Minute {
			t.Errorf("408 after %v, want the body deadline (1m)", took)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Fatalf("status %d, Connection %q: %s", resp.StatusCode, resp.Header.Get("Connection"), body)
		}
		ae := decodeError(t, body)
		if ae.Error.Type != "invalid_request_error" || ae.Error.Code == nil || *ae.Error.Code != "request_timeout" {
			t.Errorf("error %s", body)
		}
		// The server closed its end: the next read sees the end of the
		// connection, not the hour's bound.
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after the 408: read %d bytes, %v; want the connection closed", n, err)
		}
		if n := len(e.fake.Requests()); n != 0 {
			t.Errorf("%d upstream calls for a body that never came", n)
		}
		if !strings.Contains(e.logs.String(), "status=408") || strings.Contains(e.logs.String(), "status=499") {
			t.Errorf("log:\n%s", e.logs.String())
		}
	})
}

// TestPassthroughStreamWithoutDone: a stream the provider ends without
// [DONE] gets an error event and [DONE], and is logged as an upstream
// failure.
func TestPassthroughStreamWithoutDone(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "one two three", NoDone: true})
	resp, got := e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	frames := readFrames(t, got)
	se := streamError(frames)
	if text(frames) != "one two three" || se == nil || se != &frames[len(frames)-1] || se.Error.Type != "upstream_error" ||
		!strings.Contains(se.Error.Message, "fake/m1") || !strings.Contains(se.Error.Message, "[DONE]") {
		t.Fatalf("frames:\n%s", got)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `level=WARN msg="upstream stream failed"`) || !strings.Contains(logs, "provider=fake model=m1") {
		t.Errorf("the cut stream is not logged as an upstream failure:\n%s", logs)
	}
}

// TestUnknownProvider: a provider/model whose provider is not configured
// is a 404 that says how to configure it.
func TestUnknownProvider(t *testing.T) {
	e := start(t, "")
	resp, got := e.post("/v1/chat/completions", `{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`)
	ae := decodeError(t, got)
	if resp.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "model_not_found" {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	for _, want := range []string{"openai/gpt-4o-mini", "OPENAI_API_KEY", "providers.openai"} {
		if !strings.Contains(ae.Error.Message, want) {
			t.Errorf("message %q does not mention %s", ae.Error.Message, want)
		}
	}
}

// TestRunNotFound: an unknown run id is run_not_found, not
// conversation_not_found.
func TestRunNotFound(t *testing.T) {
	e := start(t, "")
	resp, got := e.do(http.MethodGet, "/v1/consortium/runs/run_nothing", "", "")
	ae := decodeError(t, got)
	if resp.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "run_not_found" || !strings.Contains(ae.Error.Message, `"run_nothing"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
}

// leakYAML has a provider "leaky" whose key a test looks for everywhere,
// a consortium with a member of it, and a consortium where it is needed.
const leakYAML = `
providers:
  leaky:
    base_url: {{FAKE}}
    api_key: sk-operator-SECRET-0123456789
    max_retries: 0
    models: [m1]
consortia:
  degraded:
    members: [{model: leaky/bad}, {model: leaky/good}]
    arbiter: {model: leaky/judge}
    max_iterations: 1
  needed:
    members: [{model: leaky/bad}, {model: leaky/good}]
    arbiter: {model: leaky/judge}
    max_iterations: 1
    min_answers: 2
`

const leakedKey = "sk-operator-SECRET-0123456789"

// echoKey answers 401 with the key it received, as some providers do.
func echoKey(r *upstreamtest.Request) upstreamtest.Reply {
	return upstreamtest.Reply{Status: 401, Error: "Incorrect API key provided: " + r.Header.Get("Authorization")}
}

// TestProviderKeyNeverLeaks: a provider that echoes the key it received in
// its 401 body must not leak it through a passthrough answer (JSON or
// stream), a consortium's answer, 502, error event or member error, a run
// record, or the log.
func TestProviderKeyNeverLeaks(t *testing.T) {
	e := start(t, leakYAML)
	e.fake.Handle("m1", echoKey)
	e.fake.Handle("bad", echoKey)
	e.fake.Script("good", upstreamtest.Reply{Content: "a good answer"})
	e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "the synthesis")})

	check := func(what string, status int, body []byte) {
		t.Helper()
		if strings.Contains(string(body), leakedKey) {
			t.Errorf("%s (status %d) leaks the key: %s", what, status, body)
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"passthrough", `{"model":"leaky/m1","messages":[{"role":"user","content":"hi"}]}`},
		{"passthrough stream", `{"model":"leaky/m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"consortium 502", `{"model":"needed","messages":[{"role":"user","content":"hi"}]}`},
		{"consortium error event", `{"model":"needed","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		resp, got := e.post("/v1/chat/completions", tc.body)
		if resp.StatusCode != 502 && resp.StatusCode != 200 {
			t.Errorf("%s: status %d: %s", tc.name, resp.StatusCode, got)
		}
		if !strings.Contains(string(got), "refused the proxy's credentials") {
			t.Errorf("%s: the 401 does not read as the operator's problem: %s", tc.name, got)
		}
		check(tc.name, resp.StatusCode, got)
	}
	for _, stream := range []bool{false, true} {
		body := `{"model":"degraded","messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = streamBody(body)
		}
		resp, got := e.post("/v1/chat/completions", body)
		check("a degraded answer", resp.StatusCode, got)
		runID := resp.Header.Get("X-Consortium-Run-Id")
		if resp.StatusCode != 200 || runID == "" || !strings.Contains(string(got), `"status":"error"`) {
			t.Fatalf("degraded answer: status %d: %s", resp.StatusCode, got)
		}
		resp, got = e.do(http.MethodGet, "/v1/consortium/runs/"+runID, "", "")
		if resp.StatusCode != 200 || !strings.Contains(string(got), "refused the proxy's credentials") {
			t.Errorf("run record: status %d: %s", resp.StatusCode, got)
		}
		check("the run record", resp.StatusCode, got)
	}
	if logs := e.logs.String(); strings.Contains(logs, leakedKey) {
		t.Errorf("the key reached the log:\n%s", logs)
	}
	_, metrics := e.do(http.MethodGet, "/metrics", "", "")
	check("/metrics", 200, metrics)
}

// TestUpstreamCallsCounted: every upstream call is counted once, by
// provider, model, role and outcome: passthrough, members and arbiter.
func TestUpstreamCallsCounted(t *testing.T) {
	e := startCouncil(t, councilYAML)
	scriptCouncil(e.fake, "counted")
	if resp, got := e.post("/v1/chat/completions", councilBody); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	e.fake.Script("m1", upstreamtest.Reply{Status: 500, Error: "boom"})
	e.post("/v1/chat/completions", chatBody)
	_, metrics := e.do(http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`consortium_upstream_requests_total{model="alpha",outcome="ok",provider="fake",role="member"} 2`,
		`consortium_upstream_requests_total{model="beta",outcome="ok",provider="fake",role="member"} 1`,
		`consortium_upstream_requests_total{model="judge",outcome="ok",provider="fake",role="arbiter"} 1`,
		`consortium_upstream_requests_total{model="m1",outcome="error",provider="fake",role="passthrough"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metricLines(string(metrics), "consortium_upstream_requests_total"))
		}
	}
}

// TestConsortiumObservable: a run is one info line with its ids, rounds,
// confidence and each member's status and latency; a failed member is a
// warning with the run id; and the run is in /metrics.
func TestConsortiumObservable(t *testing.T) {
	e := startCouncil(t, "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
	e.fake.Script("alpha", upstreamtest.Reply{Content: "fine"})
	e.fake.Script("beta", upstreamtest.Reply{Status: 503, Error: "overloaded right now"})
	e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.75", "observed")})
	resp, got := e.post("/v1/chat/completions", streamBody(`{"model":"council","messages":[{"role":"user","content":"a private question"}]}`))
	frames := readFrames(t, got)
	if resp.StatusCode != 200 || text(frames) != "observed" {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	runID := resp.Header.Get("X-Consortium-Run-Id")
	conv := resp.Header.Get("X-Consortium-Conversation")

	var run, failed string
	for _, line := range strings.Split(e.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `msg="consortium run"`):
			run = line
		case strings.Contains(line, `msg="consortium member failed"`):
			failed = line
		}
	}
	for _, want := range []string{"level=INFO", "run_id=" + runID, "conversation_id=" + conv, "consortium=council", "rounds=1", "confidence=0.75",
		`members.fake/alpha#1="ok `, `members.fake/beta#1="error `} {
		if !strings.Contains(run, want) {
			t.Errorf("the run's log line lacks %s: %s", want, run)
		}
	}
	for _, want := range []string{"level=WARN", "run_id=" + runID, "model=fake/beta", "status=error", "overloaded right now"} {
		if !strings.Contains(failed, want) {
			t.Errorf("the member failure's log line lacks %s: %s", want, failed)
		}
	}
	if strings.Contains(e.logs.String(), "private question") {
		t.Errorf("prompt text in the log:\n%s", e.logs.String())
	}

	e.fake.Script("judge", upstreamtest.Reply{Status: 500, Error: "the judge fell over"})
	e.post("/v1/chat/completions", councilBody)
	_, metrics := e.do(http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`consortium_runs_total{consortium="council",outcome="ok"} 1`,
		`consortium_runs_total{consortium="council",outcome="upstream_error"} 1`,
		`consortium_rounds_bucket{consortium="council",le="1"} 1`,
		`consortium_confidence_bucket{consortium="council",le="0.7"} 0`,
		`consortium_confidence_bucket{consortium="council",le="0.8"} 1`,
		`consortium_member_answers_total{consortium="council",model="fake/alpha",status="ok"} 1`,
		`consortium_member_answers_total{consortium="council",model="fake/beta",status="error"} 1`,
		`consortium_first_synthesis_seconds_count{consortium="council"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metricLines(string(metrics), "consortium_"))
		}
	}
}

// TestProviderKeyNeverInEventsOrPages: the key a provider echoes reaches
// neither a member's progress event nor the run's page, record or list.
func TestProviderKeyNeverInEventsOrPages(t *testing.T) {
	e := start(t, leakYAML)
	e.fake.Handle("bad", echoKey)
	e.fake.Script("good", upstreamtest.Reply{Content: "a good answer"})
	e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "the synthesis")})
	req, _ := http.NewRequest("POST", e.URL+"/chat/completions", strings.NewReader(streamBody(`{"model":"degraded","messages":[{"role":"user","content":"hi"}]}`)))
	req.Header.Set("X-Consortium-Events", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	runID := resp.Header.Get("X-Consortium-Run-Id")
	if resp.StatusCode != 200 || !strings.Contains(string(got), "event: consortium.member") || !strings.Contains(string(got), "refused the proxy's credentials") {
		t.Fatalf("events stream: %d\n%s", resp.StatusCode, got)
	}
	if strings.Contains(string(got), leakedKey) {
		t.Errorf("the events stream leaks the key:\n%s", got)
	}
	for _, path := range []string{"/ui/", "/ui/runs/" + runID, "/ui/runs/" + runID + "/record.json"} {
		resp, err := http.Get(e.proxy.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(page), runID) || strings.Contains(string(page), leakedKey) {
			t.Errorf("%s: %d, leaks the key or lacks the run:\n%s", path, resp.StatusCode, page)
		}
	}
}
