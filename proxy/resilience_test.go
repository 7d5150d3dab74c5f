package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// The fault tests of the proxy: retries, breakers, limits, fallbacks and
// cancellation, seen by a client through the real server in front of the
// fake provider.

// faultProviderYAML is defaultYAML with more provider settings.
func faultProviderYAML(settings ...string) string {
	yaml := defaultYAML
	for _, s := range settings {
		yaml += "    " + s + "\n"
	}
	return yaml
}

// retryAfterSecs reads a Retry-After header in seconds; -1 when it is missing
// or not an integer.
func retryAfterSecs(resp *http.Response) int {
	n, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil {
		return -1
	}
	return n
}

// TestPassthroughRetried runs in fake time, with the proxy's own backoff
// between the attempts.
func TestPassthroughRetried(t *testing.T) {
	inBubble(t, "", func(t *testing.T, e *memEnv) { // max_retries defaults to 2
		e.fake.Script("m1", upstreamtest.Reply{Status: 503, Error: "overloaded"}, upstreamtest.Reply{Content: "second time lucky"})
		began := time.Now()
		resp, got := e.post(chatBody)
		// Full jitter under the first ceiling, the default 250ms.
		if took := time.Since(began); took > 250*time.Millisecond {
			t.Errorf("one retry took %v, want at most 250ms", took)
		}
		if resp.StatusCode != 200 || !strings.Contains(string(got), "second time lucky") {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		if n := len(e.fake.Requests()); n != 2 {
			t.Errorf("the provider saw %d calls, want 2", n)
		}

		// A stream is retried too, since nothing had reached the client.
		e.fake.Reset()
		e.fake.Script("m1", upstreamtest.Reply{Drop: true}, upstreamtest.Reply{Status: 529}, upstreamtest.Reply{Content: "streamed at last"})
		began = time.Now()
		resp, got = e.post(streamChatBody)
		if took := time.Since(began); took > 750*time.Millisecond {
			t.Errorf("two retries took %v, want at most 250ms + 500ms", took)
		}
		if frames := readFrames(t, got); resp.StatusCode != 200 || text(frames) != "streamed at last" || streamError(frames) != nil {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		if n := len(e.fake.Requests()); n != 3 {
			t.Errorf("the provider saw %d calls, want 3", n)
		}
	}, func(o *app.Options) { o.Backoff = 0 })
}

// TestPassthroughBreaker runs under synctest: the Retry-After of an open
// breaker is its whole cooldown, to the second.
func TestPassthroughBreaker(t *testing.T) {
	inBubble(t, faultProviderYAML("max_retries: 0", "breaker: {failures: 2, cooldown: 1h}"), func(t *testing.T, e *memEnv) {
		e.fake.Script("m1", upstreamtest.Reply{Status: 500, Error: "boom"})
		for range 2 {
			if resp, got := e.post(chatBody); resp.StatusCode != 502 {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
		}
		for _, body := range []string{chatBody, streamChatBody} {
			resp, got := e.post(body)
			if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			ae := decodeError(t, got)
			if ae.Error.Type != "service_unavailable" || !strings.Contains(ae.Error.Message, "fake/m1") {
				t.Errorf("error %+v", ae.Error)
			}
			if ra := retryAfterSecs(resp); ra != 3600 {
				t.Errorf("Retry-After %q, want 3600", resp.Header.Get("Retry-After"))
			}
		}
		if n := len(e.fake.Requests()); n != 2 {
			t.Errorf("the provider saw %d calls, want 2: an open breaker must not call it", n)
		}
		// Another model of the same provider is not affected.
		if resp, got := e.post(strings.Replace(chatBody, "fake/m1", "fake/m2", 1)); resp.StatusCode != 200 {
			t.Errorf("fake/m2: status %d: %s", resp.StatusCode, got)
		}

		_, metrics := e.do("GET", "/metrics", "", "")
		if !strings.Contains(string(metrics), `consortium_breaker_state{model="m1",provider="fake"} 2`) {
			t.Errorf("/metrics lacks the open breaker of m1:\n%s", metricLines(string(metrics), "consortium_breaker_state"))
		}
		if strings.Contains(string(metrics), `consortium_breaker_state{model="m2"`) {
			t.Errorf("/metrics shows a breaker change for m2:\n%s", metricLines(string(metrics), "consortium_breaker_state"))
		}
	})
}

// TestBreakerRecovers checks the whole cycle through the proxy, in fake
// time: open, still open just before the cooldown ends, then a trial that
// closes the breaker, all in /metrics.
func TestBreakerRecovers(t *testing.T) {
	inBubble(t, faultProviderYAML("max_retries: 0", "breaker: {failures: 1, cooldown: 50ms}"), func(t *testing.T, e *memEnv) {
		const cooldown = 50 * time.Millisecond
		e.fake.Script("m1", upstreamtest.Reply{Status: 500}, upstreamtest.Reply{Content: "recovered"})
		e.post(chatBody)
		resp, _ := e.post(chatBody)
		if resp.StatusCode != 503 || retryAfterSecs(resp) != 1 {
			t.Fatalf("status %d, Retry-After %q; want 503 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		time.Sleep(cooldown - time.Millisecond)
		if resp, got := e.post(chatBody); resp.StatusCode != 503 {
			t.Fatalf("before the cooldown ended: status %d: %s", resp.StatusCode, got)
		}
		time.Sleep(2 * time.Millisecond)
		if resp, got := e.post(chatBody); resp.StatusCode != 200 {
			t.Fatalf("after the cooldown: status %d: %s", resp.StatusCode, got)
		}
		if n := len(e.fake.Requests()); n != 2 {
			t.Errorf("the provider saw %d calls, want 2", n)
		}
		_, metrics := e.do("GET", "/metrics", "", "")
		if !strings.Contains(string(metrics), `consortium_breaker_state{model="m1",provider="fake"} 0`) {
			t.Errorf("/metrics does not show the breaker closed again:\n%s", metricLines(string(metrics), "consortium_breaker_state"))
		}
	})
}

// TestStreamCutOpensBreaker checks that a stream cut midway counts against
// the model once it has ended: the client got an error event and [DONE],
// and the next call is refused by the open breaker.
func TestStreamCutOpensBreaker(t *testing.T) {
	e := start(t, faultProviderYAML("max_retries: 0", "breaker: {failures: 1, cooldown: 1h}"))
	e.fake.Script("m1", upstreamtest.Reply{Content: "one two three four", CutAfter: 2})
	resp, got := e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"type":"upstream_error"`) || !strings.HasSuffix(string(got), "data: [DONE]\n\n") {
		t.Fatalf("status %d:\n%s", resp.StatusCode, got)
	}
	// The error event names the upstream once and says what happened.
	if !strings.Contains(string(got), `"message":"upstream fake/m1: the stream broke off midway (the connection failed)"`) {
		t.Errorf("error event:\n%s", got)
	}
	resp, got = e.post("/v1/chat/completions", streamChatBody)
	if resp.StatusCode != 503 || decodeError(t, got).Error.Type != "service_unavailable" {
		t.Fatalf("after a cut stream: status %d: %s", resp.StatusCode, got)
	}
	if n := len(e.fake.Requests()); n != 1 {
		t.Errorf("the provider saw %d calls, want 1", n)
	}
}

func TestClientKeyRPM(t *testing.T) {
	inBubble(t, defaultYAML+`
auth:
  keys:
    - {name: alice, key: alice-key, rpm: 2}
    - {name: bob, key: bob-key}
`, func(t *testing.T, e *memEnv) {
		for i := range 2 {
			if resp, got := e.do("POST", "/v1/chat/completions", "alice-key", chatBody); resp.StatusCode != 200 {
				t.Fatalf("request %d: status %d: %s", i+1, resp.StatusCode, got)
			}
		}
		resp, got := e.do("POST", "/v1/chat/completions", "alice-key", chatBody)
		if resp.StatusCode != 429 {
			t.Fatalf("third request: status %d: %s", resp.StatusCode, got)
		}
		if ae := decodeError(t, got); ae.Error.Type != "rate_limit_error" || !strings.Contains(ae.Error.Message, "alice") {
			t.Errorf("error %+v", ae.Error)
		}
		// 2 a minute: the next one in 30s, to the second in fake time.
		if ra := retryAfterSecs(resp); ra != 30 {
			t.Errorf("Retry-After %q, want 30", resp.Header.Get("Retry-After"))
		}
		// Other keys have limits of their own; /models is limited as well.
		if resp, _ := e.do("POST", "/v1/chat/completions", "bob-key", chatBody); resp.StatusCode != 200 {
			t.Errorf("bob: status %d", resp.StatusCode)
		}
		if resp, _ := e.do("GET", "/v1/models", "alice-key", ""); resp.StatusCode != 429 {
			t.Errorf("alice's /v1/models: status %d", resp.StatusCode)
		}
		if n := len(e.fake.Requests()); n != 3 {
			t.Errorf("the provider saw %d calls, want 3", n)
		}
		// Once the 30s have passed, alice is served again.
		time.Sleep(30 * time.Second)
		if resp, got := e.do("POST", "/v1/chat/completions", "alice-key", chatBody); resp.StatusCode != 200 {
			t.Errorf("after 30s: status %d: %s", resp.StatusCode, got)
		}
	})
}

// TestProviderRPM: a provider's turn a minute away is refused at once
// (not after the call's 200ms in vain), which fake time shows exactly.
func TestProviderRPM(t *testing.T) {
	inBubble(t, strings.Replace(faultProviderYAML("rpm: 1"), "timeout: 2s", "timeout: 200ms", 1), func(t *testing.T, e *memEnv) {
		if resp, got := e.post(chatBody); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		start := time.Now()
		resp, got := e.post(chatBody)
		if resp.StatusCode != 429 || decodeError(t, got).Error.Type != "rate_limit_error" {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		if ra := retryAfterSecs(resp); ra != 60 {
			t.Errorf("Retry-After %q, want 60", resp.Header.Get("Retry-After"))
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("answered after %v, want at once", d)
		}
		if n := len(e.fake.Requests()); n != 1 {
			t.Errorf("the provider saw %d calls, want 1", n)
		}
	})
}

func TestProviderConcurrency(t *testing.T) {
	inBubble(t, strings.Replace(faultProviderYAML("max_concurrency: 1"), "timeout: 2s", "timeout: 300ms", 1), func(t *testing.T, e *memEnv) {
		// A stream holds the provider's one slot until it ends.
		e.fake.Script("m1", upstreamtest.Reply{Chunks: []string{"a", "b"}, ChunkDelay: time.Hour})
		e.fake.Script("m2", upstreamtest.Reply{Content: "quick"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sresp := e.open(ctx, streamChatBody)
		if _, done := newSSEReader(sresp.Body).nextFrame(t); done {
			t.Fatal("[DONE] before the stream's content")
		}

		// A call past the limit waits for a slot while its deadline
		// allows (the provider's 300ms timeout, in fake time), then is
		// refused.
		m2 := strings.Replace(chatBody, "fake/m1", "fake/m2", 1)
		began := time.Now()
		resp, got := e.post(m2)
		if resp.StatusCode != 429 || decodeError(t, got).Error.Type != "rate_limit_error" || retryAfterSecs(resp) < 1 {
			t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), got)
		}
		if took := time.Since(began); took != 300*time.Millisecond {
			t.Errorf("refused after %v, want the provider's timeout (300ms)", took)
		}
		if n := len(e.fake.RequestsFor("m2")); n != 0 {
			t.Errorf("a call past max_concurrency reached the provider")
		}

		// Once the stream is over, the slot is free again: the proxy has
		// closed the upstream body (and so freed the slot) when its
		// handler returns, which its log line marks.
		cancel()
		synctest.Wait()
		if !strings.Contains(e.logs.String(), "status=499") {
			t.Fatalf("no log line of the stream the client left:\n%s", e.logs.String())
		}
		if resp, got := e.post(m2); resp.StatusCode != 200 {
			t.Fatalf("after the stream: status %d: %s", resp.StatusCode, got)
		}
	})
}

// faultCouncilYAML is a consortium of two members, the first with a
// fallback, and an arbiter, all models of the fake.
const faultCouncilYAML = `
providers:
  fake:
    base_url: {{FAKE}}
    timeout: 2s
    idle_timeout: 2s
    max_retries: 1
    breaker: {failures: 2, cooldown: 1h}
consortia:
  council:
    members:
      - {model: fake/primary, fallbacks: [fake/second, fake/backup]}
      - {model: fake/other}
    arbiter: {model: fake/judge}
    max_iterations: 1
`

const faultCouncilBody = `{"model":"council","messages":[{"role":"user","content":"question"}]}`

// faultJudgeReply is the arbiter's answer in its tags.
var faultJudgeReply = upstreamtest.Reply{Content: "<confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>the synthesis</synthesis>"}

// faultMember is one member of a response's consortium object.
type faultMember struct {
	Model    string `json:"model"`
	Instance int    `json:"instance"`
	Status   string `json:"status"`
	Fallback string `json:"fallback"`
	Error    string `json:"error"`
}

// askFaultCouncil asks the consortium and returns its members' summaries.
func askFaultCouncil(t *testing.T, e *env) []faultMember {
	t.Helper()
	resp, got := e.post("/v1/chat/completions", faultCouncilBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Consortium struct {
			Members []faultMember `json:"members"`
		} `json:"consortium"`
	}
	if err := json.Unmarshal(got, &out); err != nil || len(out.Choices) != 1 || out.Choices[0].Message.Content != "the synthesis" {
		t.Fatalf("body %s (%v)", got, err)
	}
	if len(out.Consortium.Members) != 2 {
		t.Fatalf("members %+v", out.Consortium.Members)
	}
	return out.Consortium.Members
}

func TestConsortiumFallback(t *testing.T) {
	e := start(t, faultCouncilYAML)
	e.fake.Script("primary", upstreamtest.Reply{Status: 500, Error: "primary down"})
	e.fake.Script("second", upstreamtest.Reply{Status: 503})
	e.fake.Script("backup", upstreamtest.Reply{Content: "backup answer"})
	e.fake.Script("other", upstreamtest.Reply{Content: "other answer"})
	e.fake.Script("judge", faultJudgeReply)

	m := askFaultCouncil(t, e)
	if m[0].Model != "fake/primary" || m[0].Status != "ok" || m[0].Fallback != "fake/backup" {
		t.Errorf("member 0 %+v, want ok through fake/backup", m[0])
	}
	if m[1].Status != "ok" || m[1].Fallback != "" {
		t.Errorf("member 1 %+v", m[1])
	}
	// Each ref was tried with its retries, in order, before the next.
	for model, want := range map[string]int{"primary": 2, "second": 2, "backup": 1, "other": 1, "judge": 1} {
		if n := len(e.fake.RequestsFor(model)); n != want {
			t.Errorf("%s saw %d calls, want %d", model, n, want)
		}
	}
	// The arbiter judged the fallback's answer.
	if judge := e.fake.RequestsFor("judge"); len(judge) == 1 && !strings.Contains(string(judge[0].Body), "backup answer") {
		t.Errorf("the arbiter did not see the fallback's answer: %s", judge[0].Body)
	}
}

// TestConsortiumOpenBreakerFallback checks that a member whose breaker is
// open goes straight to its fallback, without calling the provider.
func TestConsortiumOpenBreakerFallback(t *testing.T) {
	e := start(t, faultCouncilYAML)
	e.fake.Script("primary", upstreamtest.Reply{Status: 500})
	e.fake.Script("second", upstreamtest.Reply{Content: "second answer"})
	e.fake.Script("other", upstreamtest.Reply{Content: "other answer"})
	e.fake.Script("judge", faultJudgeReply)

	// The first request opens primary's breaker (two failed attempts).
	if m := askFaultCouncil(t, e); m[0].Status != "ok" || m[0].Fallback != "fake/second" {
		t.Fatalf("member 0 %+v", m[0])
	}
	if n := len(e.fake.RequestsFor("primary")); n != 2 {
		t.Fatalf("primary saw %d calls, want 2", n)
	}
	for range 2 {
		if m := askFaultCouncil(t, e); m[0].Status != "ok" || m[0].Fallback != "fake/second" {
			t.Errorf("member 0 %+v", m[0])
		}
	}
	if n := len(e.fake.RequestsFor("primary")); n != 2 {
		t.Errorf("primary saw %d calls with its breaker open, want still 2", n)
	}
	if n := len(e.fake.RequestsFor("second")); n != 3 {
		t.Errorf("second saw %d calls, want 3", n)
	}
}

// TestClientDisconnectCancelsUpstreamQuickly checks that a client going
// away mid-answer cancels every upstream call it started: a passthrough
// stream, a passthrough call waiting for its first byte, and a
// consortium's member calls, streamed or not. The client closes its
// connection (in memory, over real HTTP); the design asks for the calls to
// end within 100ms, which fake time checks exactly.
func TestClientDisconnectCancelsUpstreamQuickly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		body    string
		stream  bool // wait for the answer's first line before leaving
		calls   int  // upstream calls under way when the client leaves
		scripts map[string]upstreamtest.Reply
	}{
		{name: "passthrough stream", body: streamChatBody, stream: true, calls: 1,
			scripts: map[string]upstreamtest.Reply{"m1": {Chunks: []string{"a", "b"}, ChunkDelay: time.Hour}}},
		{name: "passthrough waiting", body: chatBody, calls: 1,
			scripts: map[string]upstreamtest.Reply{"m1": {Hang: true}}},
		{name: "consortium", yaml: faultCouncilYAML, body: faultCouncilBody, calls: 2,
			scripts: map[string]upstreamtest.Reply{"primary": {Hang: true}, "other": {Hang: true}}},
		{name: "consortium stream", yaml: faultCouncilYAML, body: strings.Replace(faultCouncilBody, `"messages"`, `"stream":true,"messages"`, 1), stream: true, calls: 2,
			scripts: map[string]upstreamtest.Reply{"primary": {Hang: true}, "other": {Hang: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, tc.yaml, func(t *testing.T, e *memEnv) {
				for model, r := range tc.scripts {
					e.fake.Script(model, r)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan struct{})
				first := make(chan event, 1)
				go func() {
					defer close(done)
					resp, err := e.send(ctx, http.MethodPost, "/v1/chat/completions", "", tc.body)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					ev, _ := newSSEReader(resp.Body).next()
					first <- ev
					<-ctx.Done()
				}()
				// Everything is blocked: the calls have reached the
				// provider, and a stream's first line the client.
				synctest.Wait()
				if n := e.fake.InFlight(); n != tc.calls {
					t.Fatalf("%d upstream calls under way, want %d", n, tc.calls)
				}
				if tc.stream {
					select {
					case ev := <-first:
						if ev.data == "" {
							t.Fatalf("first event %+v, want a data frame", ev)
						}
					default:
						t.Fatal("no first line")
					}
				}
				cancel()
				bound, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer stop()
				if err := e.fake.WaitIdle(bound); err != nil {
					t.Fatalf("upstream calls still running 100ms after the client left: %v", err)
				}
				<-done
				for _, r := range e.fake.Requests() {
					if !r.Cancelled {
						t.Errorf("the call to %s was not cancelled", r.Model)
					}
				}
			})
		})
	}
}

// metricLines returns the lines of s that contain sub.
func metricLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
