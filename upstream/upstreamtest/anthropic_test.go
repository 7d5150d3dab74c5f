package upstreamtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/consortium-dev/consortium/openai"
)

// messagesBody is a Messages request with a system prompt and one user
// turn.
func messagesBody(model, user string, stream bool) string {
	req := map[string]any{
		"model": model, "max_tokens": 100, "system": "be brief",
		"messages": []map[string]any{{"role": "user", "content": user}},
	}
	if stream {
		req["stream"] = true
	}
	b, _ := json.Marshal(req)
	return string(b)
}

// message decodes a Messages answer.
type message struct {
	ID         string  `json:"id"`
	Type       string  `json:"type"`
	Role       string  `json:"role"`
	Model      string  `json:"model"`
	StopReason *string `json:"stop_reason"`
	Content    []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
	Usage *anthropicUsage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestAnthropicJSON(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	for _, tc := range []struct {
		name  string
		reply Reply
		check func(t *testing.T, m message)
	}{
		{"text and computed usage", Reply{Content: "one two three"}, func(t *testing.T, m message) {
			if m.Type != "message" || m.Role != "assistant" || m.Model != "claude" || !strings.HasPrefix(m.ID, "msg_") ||
				len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text != "one two three" || *m.StopReason != "end_turn" {
				t.Errorf("message %+v", m)
			}
			// be brief (2 words) + hello there (2 words)
			if *m.Usage != (anthropicUsage{InputTokens: 4, OutputTokens: 3}) {
				t.Errorf("usage %+v", *m.Usage)
			}
		}},
		{"scripted usage with cache tokens", Reply{Content: "x", Usage: &openai.Usage{PromptTokens: 7, CompletionTokens: 9}, CacheReadTokens: 500, CacheCreationTokens: 40},
			func(t *testing.T, m message) {
				if *m.Usage != (anthropicUsage{InputTokens: 7, OutputTokens: 9, CacheReadInputTokens: 500, CacheCreationInputTokens: 40}) {
					t.Errorf("usage %+v", *m.Usage)
				}
			}},
		{"no usage", Reply{Content: "x", NoUsage: true}, func(t *testing.T, m message) {
			if m.Usage != nil {
				t.Errorf("usage %+v", m.Usage)
			}
		}},
		{"finish reasons map", Reply{Content: "x", FinishReason: "length"}, func(t *testing.T, m message) {
			if *m.StopReason != "max_tokens" {
				t.Errorf("stop_reason %q", *m.StopReason)
			}
		}},
		{"other stop reasons pass", Reply{Content: "x", FinishReason: "pause_turn"}, func(t *testing.T, m message) {
			if *m.StopReason != "pause_turn" {
				t.Errorf("stop_reason %q", *m.StopReason)
			}
		}},
		{"tool use", Reply{ToolCalls: []ToolCall{{Name: "f", Arguments: `{"a":1}`}, {ID: "toolu_x", Name: "g"}}}, func(t *testing.T, m message) {
			if len(m.Content) != 2 || m.Content[0].Type != "tool_use" || !strings.HasPrefix(m.Content[0].ID, "toolu_") ||
				string(m.Content[0].Input) != `{"a":1}` || m.Content[1].ID != "toolu_x" || string(m.Content[1].Input) != `{}` || *m.StopReason != "tool_use" {
				t.Errorf("message %+v", m)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Script("claude", tc.reply)
			resp, body := c.call("POST", "/messages", messagesBody("claude", "hello there", false))
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			var m message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}

func TestAnthropicErrors(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	for _, tc := range []struct {
		name          string
		reply         Reply
		status        int
		typ, message  string
		header, value string
	}{
		{"overloaded", Reply{Status: 529, Error: "Overloaded"}, 529, "overloaded_error", "Overloaded", "", ""},
		{"rate limited", Reply{Status: 429, Header: http.Header{"Retry-After": {"3"}}}, 429, "rate_limit_error", "upstreamtest: scripted status 429 Too Many Requests", "Retry-After", "3"},
		{"not found", Reply{Status: 404, Error: "model: claude"}, 404, "not_found_error", "model: claude", "", ""},
		{"server error", Reply{Status: 500}, 500, "api_error", "upstreamtest: scripted status 500 Internal Server Error", "", ""},
		{"error type", Reply{Status: 400, Error: "bad", ErrorType: "invalid_request_error"}, 400, "invalid_request_error", "bad", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Script("claude", tc.reply)
			resp, body := c.call("POST", "/messages", messagesBody("claude", "hi", true))
			var m message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || m.Type != "error" || m.Error == nil || m.Error.Type != tc.typ || m.Error.Message != tc.message {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			if tc.header != "" && resp.Header.Get(tc.header) != tc.value {
				t.Errorf("%s: %q", tc.header, resp.Header.Get(tc.header))
			}
		})
	}
}

// anthropicEvent is one event of an Anthropic stream.
type anthropicEvent struct {
	name string
	data map[string]any
}

// readEvents reads an Anthropic event stream: each event an event line, a
// data line and a blank line. It returns the events and the error that
// ended the stream (nil at a clean end).
func readEvents(t *testing.T, r io.Reader) ([]anthropicEvent, error) {
	t.Helper()
	br := bufio.NewReader(r)
	var events []anthropicEvent
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		name, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "event: ")
		if !ok {
			t.Fatalf("line %q is not an event line", line)
		}
		data, err := br.ReadString('\n')
		if err != nil {
			return events, err
		}
		if blank, err := br.ReadString('\n'); blank != "\n" || err != nil {
			return events, errors.Join(err, errors.New("no blank line"))
		}
		ev := anthropicEvent{name: name}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &ev.data); err != nil {
			t.Fatalf("event %s data %q: %v", name, data, err)
		}
		if ev.data["type"] != name {
			t.Errorf("event %s has data of type %v", name, ev.data["type"])
		}
		events = append(events, ev)
	}
}

func (e anthropicEvent) field(path ...string) any {
	var v any = e.data
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// streamed sums up an Anthropic stream.
type streamed struct {
	names      []string
	text       string
	inputs     []string
	stop       any
	startUsage any
	endUsage   any
}

func summarize(events []anthropicEvent) streamed {
	var s streamed
	for _, e := range events {
		s.names = append(s.names, e.name)
		switch e.name {
		case "message_start":
			s.startUsage = e.field("message", "usage")
		case "content_block_start":
			if e.field("content_block", "type") == "tool_use" {
				s.inputs = append(s.inputs, "")
			}
		case "content_block_delta":
			switch e.field("delta", "type") {
			case "text_delta":
				s.text += e.field("delta", "text").(string)
			case "input_json_delta":
				s.inputs[len(s.inputs)-1] += e.field("delta", "partial_json").(string)
			}
		case "message_delta":
			s.stop = e.field("delta", "stop_reason")
			s.endUsage = e.field("usage")
		}
	}
	return s
}

func TestAnthropicStream(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	text := []string{"content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_stop"}
	full := append(append([]string{"message_start"}, text...), "message_delta", "message_stop")
	for _, tc := range []struct {
		name  string
		reply Reply
		check func(t *testing.T, st streamed, err error)
	}{
		{"text", Reply{Chunks: []string{"Hel", "lo"}, Usage: &openai.Usage{PromptTokens: 5, CompletionTokens: 2}, CacheReadTokens: 9}, func(t *testing.T, st streamed, err error) {
			if err != nil || !slices.Equal(st.names, full) || st.text != "Hello" || st.stop != "end_turn" {
				t.Errorf("%+v, %v", st, err)
			}
			start, _ := json.Marshal(st.startUsage)
			end, _ := json.Marshal(st.endUsage)
			if string(start) != `{"cache_creation_input_tokens":0,"cache_read_input_tokens":9,"input_tokens":5,"output_tokens":1}` || string(end) != `{"output_tokens":2}` {
				t.Errorf("usage %s then %s", start, end)
			}
		}},
		{"no usage", Reply{Chunks: []string{"a", "b"}, NoUsage: true}, func(t *testing.T, st streamed, err error) {
			if err != nil || st.startUsage != nil || st.endUsage != nil {
				t.Errorf("%+v, %v", st, err)
			}
		}},
		{"tool calls after text", Reply{Chunks: []string{"a", "b"}, ToolCalls: []ToolCall{{Name: "f", Arguments: `{"city":"Zürich, CH"}`}, {Name: "g"}}},
			func(t *testing.T, st streamed, err error) {
				if err != nil || !slices.Equal(st.inputs, []string{`{"city":"Zürich, CH"}`, "{}"}) || st.stop != "tool_use" || st.text != "ab" {
					t.Errorf("%+v, %v", st, err)
				}
			}},
		{"no message_stop", Reply{Chunks: []string{"a", "b"}, NoDone: true}, func(t *testing.T, st streamed, err error) {
			if err != nil || !slices.Equal(st.names, full[:len(full)-1]) {
				t.Errorf("%+v, %v", st, err)
			}
		}},
		{"error event", Reply{Chunks: []string{"a", "b"}, StreamError: "Overloaded"}, func(t *testing.T, st streamed, err error) {
			want := append(append([]string{"message_start"}, text[:4]...), "error")
			if err != nil || !slices.Equal(st.names, want) {
				t.Errorf("%+v, %v", st, err)
			}
		}},
		{"cut", Reply{Chunks: []string{"a", "b", "c"}, CutAfter: 2}, func(t *testing.T, st streamed, err error) {
			if err == nil || st.text != "ab" {
				t.Errorf("%+v, %v", st, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Script("claude", tc.reply)
			resp, err := c.do(t.Context(), "POST", "/messages", messagesBody("claude", "hi", true), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
				t.Fatalf("%d %s", resp.StatusCode, resp.Header)
			}
			events, err := readEvents(t, resp.Body)
			tc.check(t, summarize(events), err)
		})
	}
}

// TestAnthropicChecks: the fake refuses what Anthropic refuses of the
// requests a translation could get wrong, in Anthropic's words.
func TestAnthropicChecks(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.Script("claude", Reply{Content: "ok"})
	const user = `{"role":"user","content":"hi"}`
	for _, tc := range []struct{ name, body, message string }{
		{"valid", `{"model":"claude","max_tokens":10,"messages":[` + user + `]}`, ""},
		{"valid blocks", `{"model":"claude","max_tokens":10,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{}}]},{"role":"assistant","content":"b"}]}`, ""},
		{"not an object", `[1]`, "the request body must be a JSON object"},
		{"no max_tokens", `{"model":"claude","messages":[` + user + `]}`, "max_tokens: Field required"},
		{"zero max_tokens", `{"model":"claude","max_tokens":0,"messages":[` + user + `]}`, "max_tokens: Input should be greater than or equal to 1"},
		{"no messages", `{"model":"claude","max_tokens":10,"messages":[]}`, "at least one message"},
		{"system role", `{"model":"claude","max_tokens":10,"messages":[{"role":"system","content":"s"},` + user + `]}`, "messages.0.role: Input should be 'user' or 'assistant'"},
		{"roles repeat", `{"model":"claude","max_tokens":10,"messages":[` + user + `,` + user + `]}`, `roles must alternate between "user" and "assistant", but found multiple "user" roles in a row`},
		{"empty content", `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":""}]}`, "messages.0.content: messages must have non-empty content"},
		{"no blocks", `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":[]}]}`, "messages.0.content: messages must have non-empty content"},
		{"blank text block", `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":" \n"}]}]}`, "messages.0.content.0.text: text content blocks must contain non-whitespace text"},
		{"blank system block", `{"model":"claude","max_tokens":10,"system":[{"type":"text","text":""}],"messages":[` + user + `]}`, "system.0.text: text content blocks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.call("POST", "/messages", tc.body)
			var m message
			json.Unmarshal(body, &m)
			if tc.message == "" {
				if resp.StatusCode != 200 {
					t.Errorf("%d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 400 || m.Error == nil || m.Error.Type != "invalid_request_error" || !strings.Contains(m.Error.Message, tc.message) {
				t.Errorf("%d %s, want %q", resp.StatusCode, body, tc.message)
			}
		})
	}
}

func TestAnthropicRecording(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.SetDefault(Echo())
	body := `{"model":"claude","max_tokens":10,"stream":false,"system":[{"type":"text","text":"one"},{"type":"text","text":"two"}],"messages":[` +
		`{"role":"user","content":[{"type":"text","text":"first"}]},{"role":"assistant","content":"a"},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"42"},{"type":"text","text":"and"},{"type":"text","text":"then?"}]}]}`
	resp, out := c.call("POST", "/messages", body)
	var m message
	json.Unmarshal(out, &m)
	if resp.StatusCode != 200 || len(m.Content) != 1 || m.Content[0].Text != "echo: and\nthen?" {
		t.Errorf("%d %s", resp.StatusCode, out)
	}
	reqs := s.RequestsFor("claude")
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/v1/messages" || r.Stream || r.Chat != nil || r.Anthropic == nil || string(r.Body) != body {
		t.Errorf("recorded %+v", r)
	}
	if r.Anthropic.SystemText() != "one\ntwo" || len(r.Anthropic.Messages) != 3 || r.Anthropic.Messages[0].Text() != "first" || *r.Anthropic.MaxTokens != 10 {
		t.Errorf("parsed %+v", r.Anthropic)
	}
}

// TestToolCallsAndStreamErrors covers the OpenAI side of two Reply fields
// the Anthropic mode brought: ToolCalls and StreamError.
func TestToolCallsAndStreamErrors(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)

	s.Script("m", Reply{ToolCalls: []ToolCall{{ID: "call_1", Name: "f", Arguments: `{"a":"b"}`}, {Name: "g"}}})
	_, body := c.call("POST", "/chat/completions", chatBody("m", "hi", false, false))
	var cc struct {
		Choices []struct {
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					ID, Type string
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &cc); err != nil {
		t.Fatal(err)
	}
	ch := cc.Choices[0]
	if ch.Message.Content != nil || ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 2 ||
		ch.Message.ToolCalls[0].ID != "call_1" || ch.Message.ToolCalls[0].Function.Arguments != `{"a":"b"}` ||
		!strings.HasPrefix(ch.Message.ToolCalls[1].ID, "call_") || ch.Message.ToolCalls[1].Function.Arguments != "{}" {
		t.Errorf("answer %s", body)
	}

	s.Script("m", Reply{Content: "x", ToolCalls: []ToolCall{{ID: "call_1", Name: "f", Arguments: `{"a":"bcdefghij"}`}}})
	resp, err := c.do(t.Context(), "POST", "/chat/completions", chatBody("m", "hi", true, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var args strings.Builder
	pieces := 0
	for _, line := range strings.Split(string(raw), "\n") {
		var f struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index    int
						ID       string
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &f) != nil || len(f.Choices) == 0 {
			continue
		}
		for _, tc := range f.Choices[0].Delta.ToolCalls {
			args.WriteString(tc.Function.Arguments)
			pieces++
		}
	}
	if args.String() != `{"a":"bcdefghij"}` || pieces < 3 || !strings.HasSuffix(string(raw), "data: [DONE]\n\n") || !strings.Contains(string(raw), `"finish_reason":"tool_calls"`) {
		t.Errorf("stream in %d pieces:\n%s", pieces, raw)
	}

	s.Script("m", Reply{Chunks: []string{"a"}, StreamError: "boom"})
	resp, err = c.do(t.Context(), "POST", "/chat/completions", chatBody("m", "hi", true, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := readSSE(t, resp.Body)
	resp.Body.Close()
	last := frames[len(frames)-1]
	if err != nil || last.raw != `{"error":{"message":"boom","type":"server_error","param":null,"code":null}}` || len(frames) != 3 {
		t.Errorf("frames %+v, %v", frames, err)
	}
}

func TestArgumentPieces(t *testing.T) {
	for _, args := range []string{"", "{}", `{"a":"ünïcödé 😀 text"}`, `{"long":"` + strings.Repeat("x", 50) + `"}`} {
		call := ToolCall{Arguments: args}
		pieces := call.argumentPieces()
		if strings.Join(pieces, "") != call.arguments() {
			t.Errorf("pieces %q of %q", pieces, args)
		}
		for _, p := range pieces {
			if !utf8.ValidString(p) {
				t.Errorf("piece %q splits a character", p)
			}
		}
	}
}
