package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestMessagesRequestTranslation: a Messages request becomes the chat
// request every model is served from.
func TestMessagesRequestTranslation(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       *ChatRequest
	}{
		{
			"plain",
			`{"model":"council","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`,
			&ChatRequest{Model: "council", MaxTokens: ptr(100), Messages: []Message{{Role: "user", Content: TextContent("hi")}}},
		},
		{
			"stream asks for usage, options carry over, metadata stays",
			`{"model":"fake/m1","max_tokens":5,"stream":true,"temperature":0.2,"top_p":0.5,"stop_sequences":["X","Y"],` +
				`"metadata":{"user_id":"u"},"system":"sys","messages":[{"role":"user","content":"a"}]}`,
			&ChatRequest{Model: "fake/m1", MaxTokens: ptr(5), Stream: true, StreamOptions: &StreamOptions{IncludeUsage: true},
				Temperature: ptr(0.2), TopP: ptr(0.5), Stop: Stop{"X", "Y"},
				Messages: []Message{{Role: "system", Content: TextContent("sys")}, {Role: "user", Content: TextContent("a")}}},
		},
		{
			"system blocks join; one text block is plain text; assistant blocks join",
			`{"model":"m","max_tokens":1,"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b"}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"q"}]},` +
				`{"role":"assistant","content":[{"type":"text","text":"one "},{"type":"text","text":"two"}]},` +
				`{"role":"user","content":"more"}]}`,
			&ChatRequest{Model: "m", MaxTokens: ptr(1), Messages: []Message{
				{Role: "system", Content: TextContent("a\nb")},
				{Role: "user", Content: TextContent("q")},
				{Role: "assistant", Content: TextContent("one two")},
				{Role: "user", Content: TextContent("more")},
			}},
		},
		{
			"images",
			`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"look"},` +
				`{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"AAAA"}},` +
				`{"type":"image","source":{"type":"url","url":"https://x.test/i.png"}}]}]}`,
			&ChatRequest{Model: "m", MaxTokens: ptr(1), Messages: []Message{{Role: "user", Content: Content{Parts: []Part{
				{Type: "text", Text: "look"},
				{Type: "image_url", ImageURL: &ImageURL{URL: "data:image/jpeg;base64,AAAA"}},
				{Type: "image_url", ImageURL: &ImageURL{URL: "https://x.test/i.png"}},
			}}}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mr, err := ParseMessagesRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := mr.ChatRequest()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Errorf("got  %s\nwant %s", g, w)
			}
			// The chat request's JSON is what serveChat gets: it must
			// parse back to the same request.
			body, err := got.AppendJSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseChatRequest(body)
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("%s parses back as %+v (%v)", body, back, err)
			}
		})
	}
}

// TestMessagesRequestRefused: what cannot be served is a FieldError naming
// the field, never ignored.
func TestMessagesRequestRefused(t *testing.T) {
	for _, tc := range []struct {
		body, param, words string
	}{
		{`{"model":"m","messages":[{"role":"user","content":"a"}]}`, "max_tokens", "required"},
		{`{"max_tokens":1,"messages":[{"role":"user","content":"a"}]}`, "model", "required"},
		{`{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"a"}]}`, "max_tokens", "at least 1"},
		{`{"model":"m","max_tokens":1}`, "messages", "at least one"},
		{`{"model":"m","max_tokens":1,"Model":"x","messages":[{"role":"user","content":"a"}]}`, "Model", "not part of"},
		{`{"model":"m","model":"x","max_tokens":1,"messages":[{"role":"user","content":"a"}]}`, "model", "more than once"},
		{`{"model":"m","max_tokens":"1","messages":[{"role":"user","content":"a"}]}`, "max_tokens", "integer"},
		{`{"model":"m","max_tokens":1,"system":7,"messages":[{"role":"user","content":"a"}]}`, "system", "a string or an array of content blocks"},
		{`{"model":"m","max_tokens":1,"top_k":5,"messages":[{"role":"user","content":"a"}]}`, "top_k", "no top_k"},
		{`{"model":"m","max_tokens":1,"tools":[{"name":"f"}],"messages":[{"role":"user","content":"a"}]}`, "tools[0].input_schema", "required"},
		{`{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"a"}]}`, "tools[0].type", "server tools"},
		{`{"model":"m","max_tokens":1,"tool_choice":{"type":"some"},"messages":[{"role":"user","content":"a"}]}`, "tool_choice.type", "auto, any, tool or none"},
		{`{"model":"m","max_tokens":1,"tool_choice":{"type":"tool"},"messages":[{"role":"user","content":"a"}]}`, "tool_choice.name", "required"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"f","input":{}}]}]}`, "messages[0].content[0].type", "assistant messages"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","tool_use_id":"a"}]}]}`, "messages[0].content[1]", "before"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"image"}]}]}]}`, "messages[0].content[0].content[0]", "text"},
		{`{"model":"m","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"a"}]}`, "thinking", "not supported"},
		{`{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"a"}]}`, "system[0].type", "text blocks"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"a"}]}`, "messages[0].role", "user or assistant"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text", "required"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}]}`, "messages[0].content[0]", "id and a name"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document"}]}]}`, "messages[0].content[0].type", "document"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, "messages[0].content[0].source", ""},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AA"}}]}]}`, "messages[0].content[0].source", "media_type"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"image","source":{"type":"url","url":"https://x"}}]}]}`, "messages[0].content[0].type", "user messages"},
	} {
		mr, err := ParseMessagesRequest([]byte(tc.body))
		if err == nil {
			_, err = mr.ChatRequest()
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Param != tc.param || !strings.Contains(fe.Message, tc.words) {
			t.Errorf("%s: %#v, want param %s saying %q", tc.body, err, tc.param, tc.words)
		}
	}
}

func TestMessagesResponseFrom(t *testing.T) {
	content := "the answer"
	cc := &ChatCompletion{ID: "chatcmpl-1", Model: "x", Choices: []Choice{{Message: ResponseMessage{Role: "assistant", Content: &content}, FinishReason: "length"}},
		Usage: &Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, Consortium: json.RawMessage(`{"run_id":"run_1"}`)}
	answer, err := MessagesResponseFrom(cc, "msg_1", "council")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(answer)
	want := `{"id":"msg_1","type":"message","role":"assistant","model":"council","content":[{"type":"text","text":"the answer"}],` +
		`"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":4},"consortium":{"run_id":"run_1"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	// A null content and no usage: an empty text block, zero counts.
	answer, _ = MessagesResponseFrom(&ChatCompletion{Choices: []Choice{{FinishReason: "stop"}}}, "msg_2", "m")
	b, _ = json.Marshal(answer)
	if !bytes.Contains(b, []byte(`"content":[{"type":"text","text":""}],"stop_reason":"end_turn"`)) || !bytes.Contains(b, []byte(`"usage":{"input_tokens":0,"output_tokens":0}`)) {
		t.Errorf("got %s", b)
	}
	// Tool calls: tool_use blocks after the text, none when there is no
	// text; arguments that are no object are {}.
	answer, err = MessagesResponseFrom(&ChatCompletion{Choices: []Choice{{FinishReason: "tool_calls", Message: ResponseMessage{
		ToolCalls: json.RawMessage(`[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_2","type":"function","function":{"name":"now","arguments":""}}]`)}}}}, "msg_3", "fake/m1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(answer)
	if !bytes.Contains(b, []byte(`"content":[{"type":"tool_use","id":"call_1","name":"get","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"now","input":{}}],"stop_reason":"tool_use"`)) {
		t.Errorf("got %s", b)
	}
}

// TestMessagesToolsTranslation: tools, tool_choice, tool_use and
// tool_result become chat tools, tool_choice, tool_calls and tool
// messages.
func TestMessagesToolsTranslation(t *testing.T) {
	body := `{"model":"fake/m1","max_tokens":9,"tools":[{"name":"get","description":"gets","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],` +
		`"tool_choice":{"type":"tool","name":"get","disable_parallel_tool_use":true},"messages":[` +
		`{"role":"user","content":"weather?"},` +
		`{"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"get","input":{"city":"Paris"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"}]},{"type":"text","text":"thanks"}]},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_2","name":"get","input":{}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_2","content":"rain","is_error":false}]}]}`
	mr, err := ParseMessagesRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, err := mr.ChatRequest()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := req.AppendJSON(nil)
	want := `{"max_tokens":9,"messages":[{"role":"user","content":"weather?"},` +
		`{"role":"assistant","content":"Let me look.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}}]},` +
		`{"role":"tool","content":"sunny","tool_call_id":"toolu_1"},{"role":"user","content":"thanks"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_2","type":"function","function":{"name":"get","arguments":"{}"}}]},` +
		`{"role":"tool","content":"rain","tool_call_id":"toolu_2"}],"model":"fake/m1","parallel_tool_calls":false,` +
		`"tool_choice":{"function":{"name":"get"},"type":"function"},` +
		`"tools":[{"type":"function","function":{"name":"get","description":"gets","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, uses := mr.UsesTools(); !uses {
		t.Error("UsesTools is false")
	}
}

func TestStopReason(t *testing.T) {
	for finish, want := range map[string]string{"stop": "end_turn", "": "end_turn", "length": "max_tokens", "content_filter": "refusal", "tool_calls": "tool_use"} {
		if got := StopReason(finish); got != want {
			t.Errorf("StopReason(%q) = %q, want %q", finish, got, want)
		}
	}
}

// TestMessagesStream: the exact event stream of an answer.
func TestMessagesStream(t *testing.T) {
	var out bytes.Buffer
	ew := NewEventWriter(&out)
	s := &MessagesStream{ID: "msg_1", Model: "council"}
	s.Start(ew)
	empty, hi, there, stop := "", "Hi", " there", "stop"
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{Role: "assistant", Content: &empty}}}})
	s.Ping(ew)
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{Content: &hi}}}})
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{Content: &there}}}})
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{FinishReason: &stop}}, Consortium: json.RawMessage(`{"run_id":"run_1"}`)})
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{}, Usage: &Usage{PromptTokens: 10, CompletionTokens: 2, TotalTokens: 12}})
	s.End(ew)
	want := `event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"council","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"output_tokens":2},"consortium":{"run_id":"run_1"}}

event: message_stop
data: {"type":"message_stop"}

`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}

	// A tool call, streamed in pieces, after some text: the text block
	// closes and a tool_use block takes the next index.
	out.Reset()
	s = &MessagesStream{ID: "msg_2", Model: "fake/m1"}
	s.Start(ew)
	calls := func(raw string) *ChatCompletionChunk {
		return &ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{ToolCalls: json.RawMessage(raw)}}}}
	}
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{Content: &hi}}}})
	s.Chunk(ew, calls(`[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]`))
	s.Chunk(ew, calls(`[{"index":0,"function":{"arguments":"{\"ci"}}]`))
	s.Chunk(ew, calls(`[{"index":0,"id":"call_1","function":{"arguments":"ty\":1}"}}]`))
	s.Chunk(ew, calls(`[{"index":1,"id":"call_2","type":"function","function":{"name":"now","arguments":"{}"}}]`))
	finish := "tool_calls"
	s.Chunk(ew, &ChatCompletionChunk{Choices: []ChunkChoice{{FinishReason: &finish}}})
	s.End(ew)
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "data: ") {
			lines = append(lines, strings.TrimPrefix(l, "data: "))
		}
	}
	wantLines := []string{
		`{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"fake/m1","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_1","name":"get","input":{}}}`,
		`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"ci"}}`,
		`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ty\":1}"}}`,
		`{"type":"content_block_stop","index":1}`,
		`{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_2","name":"now","input":{}}}`,
		`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}`,
		`{"type":"content_block_stop","index":2}`,
		`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":0,"output_tokens":0}}`,
		`{"type":"message_stop"}`,
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}

	out.Reset()
	s.Error(ew, &MessagesError{Type: "error", Error: MessagesErrorBody{Type: "overloaded_error", Message: "busy"}})
	if got := out.String(); got != "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n" {
		t.Errorf("error event %q", got)
	}
}

// FuzzParseMessagesRequest: no body panics the parser or its translation,
// every rejection is a FieldError, and every request it accepts
// translates into a chat request that ParseChatRequest accepts as it is.
func FuzzParseMessagesRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","max_tokens":1,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{"type":"url","url":"https://x"}}]}]}`,
		`{"model":"m","max_tokens":1,"stream":true,"messages":[{"role":"assistant","content":[{"type":"text","text":"a"}]}]}`,
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}`,
		`{"model":"m","max_tokens":1,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},` +
			`"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":"<b>"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}]}`,
		`{"model":"m"}`, `[]`, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		mr, err := ParseMessagesRequest(body)
		if err == nil {
			var req *ChatRequest
			if req, err = mr.ChatRequest(); err == nil {
				b, err := req.AppendJSON(nil)
				if err != nil {
					t.Fatalf("%q: %v", body, err)
				}
				back, err := ParseChatRequest(b)
				if err != nil || !reflect.DeepEqual(back, req) {
					t.Fatalf("%q translates to %s, which parses as %+v (%v)", body, b, back, err)
				}
				return
			}
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("%q: error %T %v, want a FieldError", body, err, err)
		}
	})
}
