package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/app"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// POST /v1/messages seen from an Anthropic client: its requests, answers,
// event streams and errors, for a consortium and for provider/model.

// anthropicMessage is a Messages answer as a client reads it.
type anthropicMessage struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Model   string `json:"model"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StopReason *string `json:"stop_reason"`
	Usage      *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
	Consortium *summary `json:"consortium"`
}

// anthropicError is Anthropic's error shape.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// decodeAnthropicError checks that body is Anthropic's error shape with
// the status and type wanted, and returns its message.
func decodeAnthropicError(t *testing.T, resp *http.Response, body []byte, status int, typ string) string {
	t.Helper()
	var e anthropicError
	if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" || e.Error.Message == "" {
		t.Fatalf("not an Anthropic error: %s (%v)", body, err)
	}
	if resp.StatusCode != status || e.Error.Type != typ {
		t.Fatalf("status %d, type %s, want %d %s: %s", resp.StatusCode, e.Error.Type, status, typ, body)
	}
	return e.Error.Message
}

func decodeMessage(t *testing.T, resp *http.Response, body []byte) anthropicMessage {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var m anthropicMessage
	if err := json.Unmarshal(body, &m); err != nil || len(m.Content) != 1 || m.Usage == nil || m.StopReason == nil {
		t.Fatalf("not a Messages answer: %s (%v)", body, err)
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(body, &fields)
	if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Content[0].Type != "text" ||
		string(fields["stop_sequence"]) != "null" {
		t.Errorf("answer %s", body)
	}
	return m
}

// namedEvent is one event of an Anthropic stream.
type namedEvent struct {
	name string
	data map[string]any
}

// readNamedEvents reads an Anthropic event stream to its end. Lines of
// any length are read whole. Each event must be named, and its data's
// type must be its name.
func readNamedEvents(t *testing.T, r io.Reader) []namedEvent {
	t.Helper()
	var out []namedEvent
	br := bufio.NewReader(r)
	var ev namedEvent
	var data string
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			if ev.name != "" || data != "" {
				t.Fatalf("the stream ended inside an event")
			}
			return out
		}
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name == "" {
				t.Fatalf("an event without a name: data %q", data)
			}
			if err := json.Unmarshal([]byte(data), &ev.data); err != nil || ev.data["type"] != ev.name {
				t.Fatalf("event %s: data %s (%v)", ev.name, data, err)
			}
			out = append(out, ev)
			ev, data = namedEvent{}, ""
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, ":"):
			t.Errorf("an SSE comment in an Anthropic stream: %q", line)
		default:
			t.Fatalf("line %q", line)
		}
	}
}

// names lists the events' names, pings left out.
func names(events []namedEvent) []string {
	var out []string
	for _, e := range events {
		if e.name != "ping" {
			out = append(out, e.name)
		}
	}
	return out
}

// field returns the value at path in the event's data.
func (e namedEvent) field(path ...string) any {
	var v any = e.data
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// streamedText concatenates the text_deltas of events.
func streamedText(t *testing.T, events []namedEvent) string {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		if e.name == "content_block_delta" {
			if e.field("delta", "type") != "text_delta" || e.field("index") != float64(0) {
				t.Errorf("delta %v", e.data)
			}
			b.WriteString(e.field("delta", "text").(string))
		}
	}
	return b.String()
}

// wantOrder checks the event order of a complete stream with at least one
// content delta, pings left out.
func wantOrder(t *testing.T, events []namedEvent) {
	t.Helper()
	got := names(events)
	deltas := 0
	for _, n := range got {
		if n == "content_block_delta" {
			deltas++
		}
	}
	want := []string{"message_start", "content_block_start"}
	for range deltas {
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if deltas == 0 || !slices.Equal(got, want) {
		t.Fatalf("events %v", got)
	}
}

const messagesBody = `{"model":"council","max_tokens":300,"system":"be brief","messages":[{"role":"user","content":"hello"}]}`

func TestMessagesConsortium(t *testing.T) {
	e := startCouncil(t, councilYAML)
	usage := scriptCouncil(e.fake, "the council's answer")
	resp, body := e.post("/v1/messages", messagesBody, "anthropic-version", "2023-06-01")
	m := decodeMessage(t, resp, body)
	if m.Model != "council" || m.Content[0].Text != "the council's answer" || *m.StopReason != "end_turn" {
		t.Errorf("answer %s", body)
	}
	if m.Usage.InputTokens != usage.PromptTokens || m.Usage.OutputTokens != usage.CompletionTokens {
		t.Errorf("usage %+v, want the sum of every call %+v", *m.Usage, usage)
	}
	if m.Consortium == nil || m.Consortium.RunID == "" || resp.Header.Get("X-Consortium-Run-Id") != m.Consortium.RunID || len(m.Consortium.Members) != 3 {
		t.Errorf("consortium object %+v, run id header %q", m.Consortium, resp.Header.Get("X-Consortium-Run-Id"))
	}
	// The members got the translated request: the system prompt, the
	// user's text and max_tokens.
	alpha := e.fake.RequestsFor("alpha")
	if len(alpha) != 2 || alpha[0].Chat == nil {
		t.Fatalf("%d requests to alpha", len(alpha))
	}
	msgs := alpha[0].Chat.Messages
	if msgs[0].Role != "system" || !strings.Contains(msgs[0].Content.String(), "be brief") || alpha[0].LastUserText() != "hello" {
		t.Errorf("alpha got %s", alpha[0].Body)
	}
}

func TestMessagesConsortiumStream(t *testing.T) {
	e := startCouncil(t, councilYAML)
	usage := scriptCouncil(e.fake, "the streamed answer, word by word")
	resp, body := e.post("/v1/messages", streamBody(messagesBody))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Consortium-Run-Id") == "" {
		t.Fatalf("status %d, %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	events := readNamedEvents(t, strings.NewReader(string(body)))
	wantOrder(t, events)
	if got := streamedText(t, events); got != "the streamed answer, word by word" {
		t.Errorf("text %q", got)
	}
	start := events[0]
	if !strings.HasPrefix(start.field("message", "id").(string), "msg_") || start.field("message", "model") != "council" ||
		start.field("message", "usage", "input_tokens") != float64(0) || start.field("message", "usage", "output_tokens") != float64(0) {
		t.Errorf("message_start %v", start.data)
	}
	var delta namedEvent
	for _, ev := range events {
		if ev.name == "message_delta" {
			delta = ev
		}
	}
	if delta.field("delta", "stop_reason") != "end_turn" ||
		delta.field("usage", "input_tokens") != float64(usage.PromptTokens) || delta.field("usage", "output_tokens") != float64(usage.CompletionTokens) ||
		delta.field("consortium", "run_id") != resp.Header.Get("X-Consortium-Run-Id") {
		t.Errorf("message_delta %v, want usage %+v", delta.data, usage)
	}
}

func TestMessagesPassthrough(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "cut short", FinishReason: "length",
		Usage: &wire.Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9}})
	body := `{"model":"fake/m1","max_tokens":2,"stop_sequences":["END"],"temperature":0.5,"top_p":0.9,"metadata":{"user_id":"u1"},` +
		`"system":[{"type":"text","text":"one"},{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},` +
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},` +
		`{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}`
	resp, got := e.post("/v1/messages", body)
	m := decodeMessage(t, resp, got)
	if m.Model != "fake/m1" || m.Content[0].Text != "cut short" || *m.StopReason != "max_tokens" ||
		m.Usage.InputTokens != 7 || m.Usage.OutputTokens != 2 || m.Consortium != nil {
		t.Errorf("answer %s", got)
	}
	reqs := e.fake.RequestsFor("m1")
	if len(reqs) != 1 || reqs[0].Path != "/v1/chat/completions" || reqs[0].Chat == nil {
		t.Fatalf("upstream requests %+v", reqs)
	}
	var sent map[string]any
	json.Unmarshal(reqs[0].Body, &sent)
	if sent["max_tokens"] != float64(2) || sent["temperature"] != 0.5 || sent["top_p"] != 0.9 ||
		!slices.Equal(reqs[0].Chat.Stop, []string{"END"}) || sent["metadata"] != nil || sent["user"] != nil {
		t.Errorf("the provider got %s", reqs[0].Body)
	}
	msgs := reqs[0].Chat.Messages
	if len(msgs) != 2 || msgs[0].Role != "system" || msgs[0].Content.String() != "one\ntwo" {
		t.Fatalf("messages %s", reqs[0].Body)
	}
	parts := msgs[1].Content.Parts
	if len(parts) != 3 || parts[0].Text != "what is this?" || parts[1].ImageURL == nil || parts[1].ImageURL.URL != "data:image/png;base64,iVBORw0KGgo=" ||
		parts[2].ImageURL == nil || parts[2].ImageURL.URL != "https://example.com/a.png" {
		t.Errorf("user content %s", reqs[0].Body)
	}
}

func TestMessagesPassthroughStream(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "one two three", Usage: &wire.Usage{PromptTokens: 5, CompletionTokens: 3, TotalTokens: 8}})
	resp, body := e.post("/v1/messages", `{"model":"fake/m1","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"count"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	events := readNamedEvents(t, strings.NewReader(string(body)))
	wantOrder(t, events)
	if got := streamedText(t, events); got != "one two three" {
		t.Errorf("text %q", got)
	}
	last := events[len(events)-2]
	if last.field("delta", "stop_reason") != "end_turn" || last.field("usage", "input_tokens") != float64(5) || last.field("usage", "output_tokens") != float64(3) {
		t.Errorf("message_delta %v", last.data)
	}
	// Usage was asked for, so that message_delta could report it.
	if r := e.fake.RequestsFor("m1"); len(r) != 1 || !r[0].Stream || r[0].Chat.StreamOptions == nil || !r[0].Chat.StreamOptions.IncludeUsage {
		t.Errorf("the provider got %s", r[0].Body)
	}
}

// TestMessagesClaudePassthrough: an Anthropic client reaching a Claude
// model through the proxy: translated to chat completions at the edge, and
// by upstream to Anthropic's Messages API again.
func TestMessagesClaudePassthrough(t *testing.T) {
	e := start(t, claudeYAML)
	e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Content: "hello from claude"})
	resp, body := e.post("/v1/messages", `{"model":"claude/claude-haiku-4-5","max_tokens":64,"system":"sys","messages":[{"role":"user","content":"hi"}]}`)
	m := decodeMessage(t, resp, body)
	if m.Content[0].Text != "hello from claude" || *m.StopReason != "end_turn" || m.Usage.OutputTokens == 0 {
		t.Errorf("answer %s", body)
	}
	r, sent := lastAnthropic(t, e.fake, "claude-haiku-4-5")
	if r.Header.Get("X-Api-Key") != "ant-secret" || sent.MaxTokens != 64 || len(sent.System) != 1 || sent.System[0].Text != "sys" {
		t.Errorf("the provider got %s", r.Body)
	}
}

// TestMessagesConversation: an Anthropic client continues a consortium's
// conversation by sending its history again; the store finds the
// conversation by its transcript.
func TestMessagesConversation(t *testing.T) {
	e := startCouncil(t, councilYAML)
	scriptCouncil(e.fake, "first answer")
	resp, body := e.post("/v1/messages", messagesBody)
	first := decodeMessage(t, resp, body)
	conv := resp.Header.Get("X-Consortium-Conversation")
	if conv == "" {
		t.Fatalf("no conversation header: %s", body)
	}
	scriptCouncil(e.fake, "second answer")
	again := `{"model":"council","max_tokens":300,"system":"be brief","messages":[{"role":"user","content":"hello"},` +
		`{"role":"assistant","content":[{"type":"text","text":` + quote(first.Content[0].Text) + `}]},{"role":"user","content":"and then?"}]}`
	resp, body = e.post("/v1/messages", streamBody(again))
	if resp.StatusCode != 200 || resp.Header.Get("X-Consortium-Conversation") != conv {
		t.Fatalf("status %d, conversation %q, want %q: %s", resp.StatusCode, resp.Header.Get("X-Consortium-Conversation"), conv, body)
	}
	if got := streamedText(t, readNamedEvents(t, strings.NewReader(string(body)))); got != "second answer" {
		t.Errorf("text %q", got)
	}
	beta := e.fake.RequestsFor("beta")
	msgs := beta[len(beta)-1].Chat.Messages
	if len(msgs) != 4 || msgs[2].Role != "assistant" || msgs[2].Content.String() != "first answer" || msgs[3].Content.String() != "and then?" {
		t.Errorf("beta got %s", beta[len(beta)-1].Body)
	}
}

// TestMessagesTools: a provider/model's tool use, through an Anthropic
// client: tools and tool results go to the provider as chat tools and
// tool messages, and its calls come back as tool_use blocks, JSON and
// streamed.
func TestMessagesTools(t *testing.T) {
	e := start(t, "")
	call := upstreamtest.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris","days":[1,2]}`}
	e.fake.Script("m1", upstreamtest.Reply{ToolCalls: []upstreamtest.ToolCall{call}}, upstreamtest.Reply{Content: "Let me check.", ToolCalls: []upstreamtest.ToolCall{call}})
	const tools = `"tools":[{"name":"get_weather","description":"weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"tool_choice":{"type":"any"}`
	resp, body := e.post("/v1/messages", `{"model":"fake/m1","max_tokens":50,`+tools+`,"messages":[{"role":"user","content":"weather in Paris?"}]}`)
	var m struct {
		Content []struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		} `json:"content"`
		StopReason string `json:"stop_reason"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || len(m.Content) != 1 || m.StopReason != "tool_use" ||
		m.Content[0].Type != "tool_use" || m.Content[0].ID != "call_1" || m.Content[0].Name != "get_weather" || string(m.Content[0].Input) != call.Arguments {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	sent := e.fake.RequestsFor("m1")[0].Chat
	if len(sent.Tools) != 1 || !strings.Contains(string(sent.Tools[0].Function), `"parameters":{"type":"object"`) || string(sent.ToolChoice) != `"required"` {
		t.Errorf("the provider got %s", e.fake.RequestsFor("m1")[0].Body)
	}

	// The result goes back, and the stream carries the next call.
	next := `{"model":"fake/m1","max_tokens":50,"stream":true,` + tools + `,"messages":[{"role":"user","content":"weather in Paris?"},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"sunny"}]}]}`
	resp, body = e.post("/v1/messages", next)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	events := readNamedEvents(t, strings.NewReader(string(body)))
	want := []string{"message_start", "content_block_start"}
	for range 3 { // "Let me check.", word by word
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "content_block_start")
	got := names(events)
	if len(got) < len(want)+4 || !slices.Equal(got[:len(want)], want) || !slices.Equal(got[len(got)-3:], []string{"content_block_stop", "message_delta", "message_stop"}) {
		t.Fatalf("events %v", got)
	}
	if streamedText(t, events[:len(want)]) != "Let me check." {
		t.Errorf("text %q", streamedText(t, events[:len(want)]))
	}
	toolStart := events[len(want)-1]
	if toolStart.field("index") != float64(1) || toolStart.field("content_block", "type") != "tool_use" || toolStart.field("content_block", "id") != "call_1" {
		t.Errorf("tool block %v", toolStart.data)
	}
	var input strings.Builder
	for _, ev := range events[len(want) : len(events)-3] {
		if ev.name != "content_block_delta" || ev.field("delta", "type") != "input_json_delta" || ev.field("index") != float64(1) {
			t.Fatalf("event %v", ev.data)
		}
		input.WriteString(ev.field("delta", "partial_json").(string))
	}
	if input.String() != call.Arguments || events[len(events)-2].field("delta", "stop_reason") != "tool_use" {
		t.Errorf("input %q, message_delta %v", input.String(), events[len(events)-2].data)
	}
	msgs := e.fake.RequestsFor("m1")[1].Chat.Messages
	if len(msgs) != 3 || msgs[1].Role != "assistant" || !strings.Contains(string(msgs[1].ToolCalls), `"id":"call_1"`) ||
		msgs[2].Role != "tool" || msgs[2].ToolCallID != "call_1" || msgs[2].Content.String() != "sunny" {
		t.Errorf("the provider got %s", e.fake.RequestsFor("m1")[1].Body)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestMessagesAuth: a client key as x-api-key (Anthropic's SDKs) or as a
// bearer token; a wrong or missing key is Anthropic's 401 on
// /v1/messages, OpenAI's elsewhere.
func TestMessagesAuth(t *testing.T) {
	e := start(t, defaultYAML+`
auth:
  keys:
    - {name: alice, key: alice-key}
`)
	e.fake.Script("m1", upstreamtest.Reply{Content: "ok"}, upstreamtest.Reply{Content: "ok"}, upstreamtest.Reply{Content: "ok"})
	const body = `{"model":"fake/m1","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	resp, got := e.post("/v1/messages", body, "x-api-key", "alice-key")
	decodeMessage(t, resp, got)
	resp, got = e.post("/v1/messages", body, "Authorization", "Bearer alice-key")
	decodeMessage(t, resp, got)

	resp, got = e.post("/v1/messages", body, "x-api-key", "mallory")
	decodeAnthropicError(t, resp, got, 401, "authentication_error")
	resp, got = e.post("/v1/messages", body)
	if msg := decodeAnthropicError(t, resp, got, 401, "authentication_error"); !strings.Contains(msg, "x-api-key") {
		t.Errorf("message %q does not say how to send a key", msg)
	}
	// The bearer key is the one checked when both are sent.
	resp, got = e.post("/v1/messages", body, "x-api-key", "alice-key", "Authorization", "Bearer mallory")
	decodeAnthropicError(t, resp, got, 401, "authentication_error")

	// x-api-key is a client key on the other routes too, whose errors
	// stay OpenAI's.
	resp, got = e.post("/v1/chat/completions", chatBody, "x-api-key", "alice-key")
	if resp.StatusCode != 200 {
		t.Errorf("chat with x-api-key: %d %s", resp.StatusCode, got)
	}
	resp, got = e.post("/v1/chat/completions", chatBody, "x-api-key", "mallory")
	if resp.StatusCode != 401 || decodeError(t, got).Error.Type != "authentication_error" {
		t.Errorf("chat with a wrong x-api-key: %d %s", resp.StatusCode, got)
	}
	if n := len(e.fake.Requests()); n != 3 {
		t.Errorf("%d upstream requests, want 3", n)
	}
}

// TestMessagesBadRequests: what the proxy refuses, in Anthropic's shape,
// before any upstream call.
func TestMessagesBadRequests(t *testing.T) {
	e := startCouncil(t, councilYAML)
	for _, tc := range []struct {
		name, body string
		status     int
		typ, words string
	}{
		{"no max_tokens", `{"model":"council","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "max_tokens: field required"},
		{"max_tokens 0", `{"model":"council","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "max_tokens"},
		{"no messages", `{"model":"council","max_tokens":5,"messages":[]}`, 400, "invalid_request_error", "messages"},
		{"tools", `{"model":"council","max_tokens":5,"tools":[{"name":"f","input_schema":{}}],"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "tools: council is a consortium"},
		{"tool_result", `{"model":"council","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":"1"}]}]}`, 400, "invalid_request_error", "messages[0].content[0].type: council is a consortium"},
		{"unknown field", `{"model":"council","max_tokens":5,"n":2,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "n: "},
		{"bad content", `{"model":"council","max_tokens":5,"messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "a string or an array of content blocks"},
		{"bad role", `{"model":"council","max_tokens":5,"messages":[{"role":"system","content":"hi"}]}`, 400, "invalid_request_error", "messages[0].role"},
		{"not JSON", `{"model":`, 400, "invalid_request_error", "JSON"},
		{"unknown model", `{"model":"nobody","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, 404, "not_found_error", "nobody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := e.post("/v1/messages", tc.body)
			if msg := decodeAnthropicError(t, resp, got, tc.status, tc.typ); !strings.Contains(msg, tc.words) {
				t.Errorf("message %q, want it to say %q", msg, tc.words)
			}
		})
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("%d upstream requests", n)
	}
}

// TestMessagesErrors: a failure before the answer keeps its status in
// Anthropic's shape; one after the stream began is an error event.
func TestMessagesErrors(t *testing.T) {
	t.Run("provider rate limit", func(t *testing.T) {
		e := start(t, `
providers:
  fake:
    base_url: {{FAKE}}
    max_retries: 0
    models: [m1]
`)
		e.fake.Script("m1", upstreamtest.Reply{Status: 429, Error: "slow down", Header: http.Header{"Retry-After": {"7"}}})
		resp, got := e.post("/v1/messages", `{"model":"fake/m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		decodeAnthropicError(t, resp, got, 429, "rate_limit_error")
		if resp.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})
	t.Run("provider timeout", func(t *testing.T) {
		e := start(t, `
providers:
  fake:
    base_url: {{FAKE}}
    timeout: 50ms
    max_retries: 0
    models: [m1]
`)
		e.fake.Script("m1", upstreamtest.Reply{Hang: true})
		resp, got := e.post("/v1/messages", `{"model":"fake/m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		decodeAnthropicError(t, resp, got, 504, "timeout_error")
	})
	t.Run("consortium stream", func(t *testing.T) {
		e := startCouncil(t, councilYAML)
		e.fake.Script("alpha", upstreamtest.Reply{Status: 500, Error: "down"}, upstreamtest.Reply{Status: 500, Error: "down"})
		e.fake.Script("beta", upstreamtest.Reply{Status: 500, Error: "down"})
		resp, body := e.post("/v1/messages", streamBody(messagesBody))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		events := readNamedEvents(t, strings.NewReader(string(body)))
		if got := names(events); !slices.Equal(got, []string{"message_start", "content_block_start", "error"}) {
			t.Fatalf("events %v", got)
		}
		last := events[len(events)-1]
		if last.field("error", "type") != "api_error" || last.field("error", "message") == "" {
			t.Errorf("error event %v", last.data)
		}
	})
	t.Run("passthrough stream", func(t *testing.T) {
		e := start(t, "")
		e.fake.Script("m1", upstreamtest.Reply{Content: "partial answer", StreamError: "the model crashed"})
		resp, body := e.post("/v1/messages", `{"model":"fake/m1","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		events := readNamedEvents(t, strings.NewReader(string(body)))
		got := names(events)
		if resp.StatusCode != 200 || len(got) < 4 || got[len(got)-1] != "error" || slices.Contains(got, "message_stop") {
			t.Fatalf("status %d, events %v", resp.StatusCode, got)
		}
		if text := streamedText(t, events); text != "partial answer" {
			t.Errorf("text %q", text)
		}
		if msg, _ := events[len(events)-1].field("error", "message").(string); !strings.Contains(msg, "the model crashed") {
			t.Errorf("error event %v", events[len(events)-1].data)
		}
	})
}

// TestMessagesKeepAlive: while the members work, the stream gets
// Anthropic's ping events, not SSE comments, and is well formed around
// them.
func TestMessagesKeepAlive(t *testing.T) {
	keepAlive := func(o *app.Options) { o.KeepAlive = 5 * time.Millisecond }
	inBubble(t, councilConfig(councilYAML), func(t *testing.T, e *memEnv) {
		scriptCouncil(e.fake, "done")
		release := make(chan struct{})
		e.fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply {
			<-release
			return upstreamtest.Reply{Content: "beta's answer"}
		})
		e.fake.Script("beta")

		resp, err := e.send(context.Background(), http.MethodPost, "/v1/messages", "", streamBody(messagesBody))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		pings := 0
		for pings < 2 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before two pings: %v", err)
			}
			if line == "event: ping\n" {
				pings++
			}
		}
		close(release)
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatal(err)
		}
		events := readNamedEvents(t, strings.NewReader(strings.TrimPrefix(string(rest), "data: {\"type\":\"ping\"}\n\n")))
		if got := streamedText(t, events); got != "done" || names(events)[len(names(events))-1] != "message_stop" {
			t.Fatalf("after the pings: %v %q", names(events), got)
		}
	}, keepAlive)
}
