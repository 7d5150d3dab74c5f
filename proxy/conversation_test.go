package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// convYAML is a one-round consortium "council" of one member, alpha,
// judged by judge, with two client keys; store is the store section.
func convYAML(store string) string {
	return `
providers:
  fake:
    base_url: {{FAKE}}
    max_retries: 0
auth:
  keys:
    - {name: alice, key: alice-key, rpm: 0}
    - {name: bob, key: bob-key}
consortia:
  council:
    members: [{model: fake/alpha}]
    arbiter: {model: fake/judge}
    max_iterations: 1
` + store
}

// scriptSynthesis makes the arbiter of e write synthesis.
func scriptSynthesis(e *env, synthesis string) {
	e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.95", synthesis)})
}

// chatResult is what a consortium turn returned.
type chatResult struct {
	status       int
	conversation string // the X-Consortium-Conversation header
	warning      string // the X-Consortium-Warning header
	body         struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Consortium struct {
			RunID          string `json:"run_id"`
			ConversationID string `json:"conversation_id"`
		} `json:"consortium"`
	}
	raw []byte
}

// turn sends one consortium request as key with messages (a JSON array)
// and, when conv is set, the conversation header.
func (e *env) turn(t *testing.T, key, messages, conv string) chatResult {
	t.Helper()
	var headers []string
	if conv != "" {
		headers = []string{"X-Consortium-Conversation", conv}
	}
	resp, raw := e.do(http.MethodPost, "/v1/chat/completions", key, `{"model":"council","messages":`+messages+`}`, headers...)
	r := chatResult{status: resp.StatusCode, conversation: resp.Header.Get("X-Consortium-Conversation"), warning: resp.Header.Get("X-Consortium-Warning"), raw: raw}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("body %s: %v", raw, err)
		}
	}
	return r
}

// lastMemberMessages returns the messages the member alpha got last, as
// "role: text" lines.
func lastMemberMessages(t *testing.T, e *env) []string {
	t.Helper()
	reqs := e.fake.RequestsFor("alpha")
	if len(reqs) == 0 {
		t.Fatal("alpha was not called")
	}
	var out []string
	for _, m := range reqs[len(reqs)-1].Chat.Messages {
		out = append(out, m.Role+": "+m.Content.String())
	}
	return out
}

func sameLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("messages\n got %q\nwant %q", got, want)
	}
}

func TestConversationByHeader(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "first synthesis")
	first := e.turn(t, "alice-key", `[{"role":"system","content":"be kind"},{"role":"user","content":"q1"}]`, "")
	if first.status != 200 || !strings.HasPrefix(first.conversation, "conv_") || first.body.Consortium.ConversationID != first.conversation {
		t.Fatalf("first turn: %d %q %s", first.status, first.conversation, first.raw)
	}

	scriptSynthesis(e, "second synthesis")
	second := e.turn(t, "alice-key", `[{"role":"system","content":"be brief"},{"role":"user","content":"q2"}]`, first.conversation)
	if second.status != 200 || second.conversation != first.conversation {
		t.Fatalf("second turn: %d %q %s", second.status, second.conversation, second.raw)
	}
	// The request's own system message, the stored transcript (the user's
	// turn and the synthesis the user saw), then the new message.
	sameLines(t, lastMemberMessages(t, e), "system: be brief", "user: q1", "assistant: first synthesis", "user: q2")
	judge := e.fake.RequestsFor("judge")
	if prompt := judge[len(judge)-1].LastUserText(); !strings.Contains(prompt, "first synthesis") || !strings.Contains(prompt, "q1") {
		t.Errorf("the arbiter did not see the conversation:\n%s", prompt)
	}

	// A client that resends the transcript with the header does not get it
	// twice.
	scriptSynthesis(e, "third synthesis")
	third := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"first synthesis"},`+
		`{"role":"user","content":"q2"},{"role":"assistant","content":"second synthesis"},{"role":"user","content":"q3"}]`, first.conversation)
	if third.status != 200 {
		t.Fatalf("third turn: %d %s", third.status, third.raw)
	}
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: first synthesis", "user: q2", "assistant: second synthesis", "user: q3")

	// Resending the transcript with nothing new is not a turn.
	again := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"first synthesis"},`+
		`{"role":"user","content":"q2"},{"role":"assistant","content":"second synthesis"},{"role":"user","content":"q3"},{"role":"assistant","content":"third synthesis"}]`, first.conversation)
	if again.status != 400 || !strings.Contains(string(again.raw), "new user message") {
		t.Fatalf("a continuation without a new message: %d %s", again.status, again.raw)
	}

	unknown := e.turn(t, "alice-key", `[{"role":"user","content":"q"}]`, "conv_doesnotexist")
	if unknown.status != 404 || !strings.Contains(string(unknown.raw), "conversation_not_found") {
		t.Fatalf("unknown conversation: %d %s", unknown.status, unknown.raw)
	}
}

func TestConversationByTranscript(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	first := e.turn(t, "alice-key", `[{"role":"user","content":"q1"}]`, "")

	scriptSynthesis(e, "S2")
	second := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"S1"},{"role":"user","content":"q2"}]`, "")
	if second.conversation != first.conversation {
		t.Fatalf("a resent transcript did not continue its conversation: %q then %q", first.conversation, second.conversation)
	}
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2")

	// A transcript the proxy did not write starts a new conversation, and
	// nothing stored is injected into it.
	scriptSynthesis(e, "S3")
	other := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"not S1"},{"role":"user","content":"q2"}]`, "")
	if other.conversation == first.conversation || other.conversation == "" {
		t.Fatalf("an unknown transcript matched: %q", other.conversation)
	}
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: not S1", "user: q2")

	// A match on an earlier turn forks: the same conversation, the new
	// turn on its own branch; the header then follows the latest turn.
	scriptSynthesis(e, "S2-fork")
	fork := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"S1"},{"role":"user","content":"q2-fork"}]`, "")
	if fork.conversation != first.conversation {
		t.Fatalf("the fork left its conversation: %q", fork.conversation)
	}
	scriptSynthesis(e, "S3")
	e.turn(t, "alice-key", `[{"role":"user","content":"q3"}]`, first.conversation)
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2-fork", "assistant: S2-fork", "user: q3")
	// The other branch is untouched: continuing it by transcript works.
	scriptSynthesis(e, "S3-main")
	main := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"S1"},{"role":"user","content":"q2"},{"role":"assistant","content":"S2"},{"role":"user","content":"q3"}]`, "")
	if main.conversation != first.conversation {
		t.Fatalf("the main branch was lost: %q", main.conversation)
	}
}

func TestConversationTenants(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "alice's answer")
	a := e.turn(t, "alice-key", `[{"role":"user","content":"secret question"}]`, "")

	// Bob can neither continue alice's conversation by id ...
	b := e.turn(t, "bob-key", `[{"role":"user","content":"more"}]`, a.conversation)
	if b.status != 404 || !strings.Contains(string(b.raw), "conversation_not_found") {
		t.Fatalf("bob continued alice's conversation: %d %s", b.status, b.raw)
	}
	// ... nor by transcript ...
	b = e.turn(t, "bob-key", `[{"role":"user","content":"secret question"},{"role":"assistant","content":"alice's answer"},{"role":"user","content":"more"}]`, "")
	if b.status != 200 || b.conversation == a.conversation {
		t.Fatalf("bob's transcript matched alice's conversation: %q", b.conversation)
	}
	// ... nor read her run.
	resp, raw := e.do("GET", "/v1/consortium/runs/"+a.body.Consortium.RunID, "bob-key", "")
	if resp.StatusCode != 404 || !strings.Contains(string(raw), `"code":"run_not_found"`) {
		t.Fatalf("bob read alice's run: %d %s", resp.StatusCode, raw)
	}
}

func TestRunRecord(t *testing.T) {
	e := start(t, convYAML(""))
	e.fake.Script("alpha", upstreamtest.Reply{Content: "alpha says 42"})
	scriptSynthesis(e, "it is 42")
	r := e.turn(t, "alice-key", `[{"role":"user","content":"answer?"}]`, "")
	resp, raw := e.do("GET", "/v1/consortium/runs/"+r.body.Consortium.RunID, "alice-key", "")
	if resp.StatusCode != 200 {
		t.Fatalf("run: %d %s", resp.StatusCode, raw)
	}
	var run struct {
		RunID          string `json:"run_id"`
		ConversationID string `json:"conversation_id"`
		Rounds         []struct {
			Members []struct{ Model, Status, Content string }
			Arbiter struct{ Model, Reply string }
		}
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal(raw, &run); err != nil {
		t.Fatal(err)
	}
	if run.RunID != r.body.Consortium.RunID || run.ConversationID != r.conversation || len(run.Rounds) != 1 ||
		run.Rounds[0].Members[0].Content != "alpha says 42" || run.Rounds[0].Members[0].Model != "fake/alpha" ||
		!strings.Contains(run.Rounds[0].Arbiter.Reply, "<synthesis>it is 42</synthesis>") || run.Usage.TotalTokens == 0 {
		t.Fatalf("run record %s", raw)
	}
	resp, raw = e.do("GET", "/v1/consortium/runs/run_nothing", "alice-key", "")
	if resp.StatusCode != 404 || !strings.Contains(string(raw), `"code":"run_not_found"`) || !strings.Contains(string(raw), `No run \"run_nothing\"`) {
		t.Fatalf("unknown run: %d %s", resp.StatusCode, raw)
	}
}

// TestRedisSharedAcrossReplicasAndRestarts runs two proxies on one Redis:
// a conversation begun on one continues on the other, and on a proxy
// started afresh.
func TestRedisSharedAcrossReplicasAndRestarts(t *testing.T) {
	redis := redistest.Start(t)
	store := "store: {backend: redis, url: '" + redis.URL() + "'}\n"
	a := start(t, convYAML(store))
	b := start(t, convYAML(store))

	scriptSynthesis(a, "from A")
	first := a.turn(t, "alice-key", `[{"role":"user","content":"q1"}]`, "")
	scriptSynthesis(b, "from B")
	second := b.turn(t, "alice-key", `[{"role":"user","content":"q2"}]`, first.conversation)
	if second.status != 200 || second.conversation != first.conversation {
		t.Fatalf("replica B: %d %s", second.status, second.raw)
	}
	sameLines(t, lastMemberMessages(t, b), "user: q1", "assistant: from A", "user: q2")

	// A proxy started after both (a restart) finds the conversation too,
	// by header and by transcript, and the run.
	c := start(t, convYAML(store))
	scriptSynthesis(c, "from C")
	third := c.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"from A"},{"role":"user","content":"q2"},{"role":"assistant","content":"from B"},{"role":"user","content":"q3"}]`, "")
	if third.conversation != first.conversation {
		t.Fatalf("restarted proxy: %q", third.conversation)
	}
	if resp, raw := c.do("GET", "/v1/consortium/runs/"+first.body.Consortium.RunID, "alice-key", ""); resp.StatusCode != 200 {
		t.Fatalf("run after restart: %d %s", resp.StatusCode, raw)
	}
}

// TestRedisDown kills Redis under a running proxy: requests that need
// stored state get 503 at once, requests carrying their whole history are
// served, /readyz says why, and all recovers when Redis is back. Redis is
// a real process on a TCP port, so this test runs on the real clock (no
// synctest bubble can hold a socket), and it polls /readyz for the
// reconnection, which nothing signals.
func TestRedisDown(t *testing.T) {
	redis := redistest.Start(t)
	e := start(t, convYAML("store: {backend: redis, url: '"+redis.URL()+"'}\n"))
	scriptSynthesis(e, "S1")
	first := e.turn(t, "alice-key", `[{"role":"user","content":"q1"}]`, "")
	if first.status != 200 {
		t.Fatalf("with Redis up: %d %s", first.status, first.raw)
	}

	redis.Stop()
	began := time.Now()
	cont := e.turn(t, "alice-key", `[{"role":"user","content":"q2"}]`, first.conversation)
	if cont.status != 503 || !strings.Contains(string(cont.raw), "store_unavailable") {
		t.Fatalf("header continuation with Redis down: %d %s", cont.status, cont.raw)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a request waited %v on a dead Redis", took)
	}
	whole := e.turn(t, "alice-key", `[{"role":"user","content":"q1"},{"role":"assistant","content":"S1"},{"role":"user","content":"q2"}]`, "")
	if whole.status != 200 || whole.conversation != "" || whole.warning == "" || whole.body.Consortium.ConversationID != "" {
		t.Fatalf("full-history request with Redis down: %d %q %s", whole.status, whole.conversation, whole.raw)
	}
	// A new conversation is not announced either, JSON or streamed: it
	// was not saved, so continuing it would be 404. The warning says why.
	fresh := e.turn(t, "alice-key", `[{"role":"user","content":"a new question"}]`, "")
	if fresh.status != 200 || fresh.conversation != "" || !strings.Contains(fresh.warning, "not saved") || fresh.body.Consortium.ConversationID != "" {
		t.Fatalf("new conversation with Redis down: %d %q %q %s", fresh.status, fresh.conversation, fresh.warning, fresh.raw)
	}
	resp, raw := e.do(http.MethodPost, "/v1/chat/completions", "alice-key", `{"model":"council","stream":true,"messages":[{"role":"user","content":"a new question"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Consortium-Conversation") != "" || resp.Header.Get("X-Consortium-Warning") == "" ||
		strings.Contains(string(raw), "conv_") || !strings.Contains(string(raw), "[DONE]") {
		t.Fatalf("new streamed conversation with Redis down: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	resp, raw = e.do("GET", "/readyz", "", "")
	if resp.StatusCode != 503 || !strings.Contains(string(raw), "unavailable") {
		t.Fatalf("readyz with Redis down: %d %s", resp.StatusCode, raw)
	}
	_, metrics := e.do("GET", "/metrics", "", "")
	if !strings.Contains(string(metrics), "consortium_store_errors_total") {
		t.Error("no store error metric")
	}
	if !strings.Contains(e.logs.String(), "conversation store unavailable") {
		t.Error("no warning in the log")
	}

	redis.Restart() // empty: what it held is gone
	deadline := time.Now().Add(5 * time.Second)
	for {
		if resp, _ := e.do("GET", "/readyz", "", ""); resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz did not recover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	scriptSynthesis(e, "S-new")
	again := e.turn(t, "alice-key", `[{"role":"user","content":"new"}]`, "")
	if again.status != 200 || again.conversation == "" || again.warning != "" || again.body.Consortium.ConversationID != again.conversation {
		t.Fatalf("after recovery: %d %s", again.status, again.raw)
	}
	if next := e.turn(t, "alice-key", `[{"role":"user","content":"next"}]`, again.conversation); next.status != 200 {
		t.Fatalf("continuation after recovery: %d %s", next.status, next.raw)
	}
}

// TestSharedClientLimits checks that a key's rpm holds across two proxies
// that share a Redis.
func TestSharedClientLimits(t *testing.T) {
	redis := redistest.Start(t)
	yaml := strings.Replace(convYAML("store: {backend: redis, url: '"+redis.URL()+"'}\n"), "rpm: 0", "rpm: 2", 1)
	a := start(t, yaml)
	b := start(t, yaml)
	for i, e := range []*env{a, b} {
		if resp, raw := e.do("GET", "/v1/models", "alice-key", ""); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, raw)
		}
	}
	resp, raw := a.do("GET", "/v1/models", "alice-key", "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(raw), "rate_limit_error") {
		t.Fatalf("third request across replicas: %d %s", resp.StatusCode, raw)
	}
	// Bob has no limit.
	if resp, _ := a.do("GET", "/v1/models", "bob-key", ""); resp.StatusCode != 200 {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
}
