package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr[T any](v T) *T { return &v }

// chat wraps extra top-level members in a request that is otherwise valid.
func chat(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]` + extra + `}`
}

// chatMessage is a request with one message written as given.
func chatMessage(msg string) string {
	return `{"model":"m","messages":[` + msg + `]}`
}

func TestParseChatRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want ChatRequest
	}{
		{
			name: "minimal",
			body: chat(""),
			want: ChatRequest{Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}}},
		},
		{
			name: "whitespace everywhere",
			body: " \n\t{ \"model\" : \"m\" ,\r\n \"messages\" : [ { \"role\" : \"user\" , \"content\" :  \"hi\" } ] } \n",
			want: ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: TextContent("hi")}}},
		},
		{
			name: "content parts",
			body: chatMessage(`{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"https://x/i.png","detail":"low"}},{"type":"input_audio","input_audio":{}}]}`),
			want: ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: Content{Parts: []Part{
				{Type: "text", Text: "a"},
				{Type: "image_url", ImageURL: &ImageURL{URL: "https://x/i.png", Detail: "low"}},
				{Type: "input_audio"},
			}}}}},
		},
		{
			name: "empty parts",
			body: chatMessage(`{"role":"user","content":[]}`),
			want: ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: Content{Parts: []Part{}}}}},
		},
		{
			name: "null content with tool calls",
			body: chatMessage(`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}`),
			want: ChatRequest{Model: "m", Messages: []Message{
				{Role: "assistant", Content: Content{Null: true}, ToolCalls: json.RawMessage(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`)},
				{Role: "tool", Content: TextContent("42"), ToolCallID: "c1"},
			}},
		},
		{
			name: "every role and a name",
			body: chatMessage(`{"role":"system","content":"s"},{"role":"developer","content":"d"},{"role":"user","name":"bob","content":"u"},{"role":"assistant","content":"a"}`),
			want: ChatRequest{Model: "m", Messages: []Message{
				{Role: "system", Content: TextContent("s")},
				{Role: "developer", Content: TextContent("d")},
				{Role: "user", Name: "bob", Content: TextContent("u")},
				{Role: "assistant", Content: TextContent("a")},
			}},
		},
		{
			name: "every field the proxy reads",
			body: chat(`"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"top_p":1,"max_tokens":100,` +
				`"max_completion_tokens":200,"presence_penalty":-1.5,"frequency_penalty":0,"stop":["a","b"],"seed":-7,"n":1,` +
				`"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto",` +
				`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}},"user":"u1"`),
			want: ChatRequest{
				Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}},
				Stream: true, StreamOptions: &StreamOptions{IncludeUsage: true},
				Temperature: ptr(0.5), TopP: ptr(1.0), MaxTokens: ptr(100), MaxCompletionTokens: ptr(200),
				PresencePenalty: ptr(-1.5), FrequencyPenalty: ptr(0.0), Stop: Stop{"a", "b"}, Seed: ptr(int64(-7)), N: ptr(1),
				Tools:          []Tool{{Type: "function", Function: RawObject(`{"name":"f","parameters":{}}`)}},
				ToolChoice:     json.RawMessage(`"auto"`),
				ResponseFormat: &ResponseFormat{Type: "json_schema", JSONSchema: RawObject(`{"name":"x","schema":{}}`)},
				User:           "u1",
			},
		},
		{
			name: "stop as a string",
			body: chat(`"stop":"END"`),
			want: ChatRequest{Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}}, Stop: Stop{"END"}},
		},
		{
			name: "nulls for optional fields",
			body: chat(`"stop":null,"temperature":null,"n":null,"tools":null,"stream":null,"stream_options":null,"response_format":null`),
			want: ChatRequest{Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}}},
		},
		{
			name: "fields the proxy does not know are kept raw in Extra",
			body: chat(`"reasoning_effort":"high","logprobs":true,"metadata":{"model":"x"},"x-vendor":[1, {"a":null}]`),
			want: ChatRequest{Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}}, Extra: map[string]any{
				"reasoning_effort": json.RawMessage(`"high"`), "logprobs": json.RawMessage(`true`),
				"metadata": json.RawMessage(`{"model":"x"}`), "x-vendor": json.RawMessage(`[1, {"a":null}]`),
			}},
		},
		{
			name: "null tool function and json_schema",
			body: chat(`"tools":[{"type":"function","function":null}],"response_format":{"type":"json_object","json_schema":null}`),
			want: ChatRequest{Model: "openai/gpt-4o-mini", Messages: []Message{{Role: "user", Content: TextContent("hi")}},
				Tools: []Tool{{Type: "function", Function: RawObject("null")}}, ResponseFormat: &ResponseFormat{Type: "json_object", JSONSchema: RawObject("null")}},
		},
		{
			name: "unicode and escapes",
			body: `{"model":"m\u00e9","messages":[{"role":"user","content":"h\u00e9 \"q\" ☃ 😀 \ud83d\ude00"}]}`,
			want: ChatRequest{Model: "mé", Messages: []Message{{Role: "user", Content: TextContent("hé \"q\" ☃ 😀 😀")}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, tc.body, tc.want) })
	}
}

// checkParse fails t unless ParseChatRequest reads body as want, and the
// scan of CheckChatRequest agrees without deferring to it.
func checkParse(t *testing.T, body string, want ChatRequest) {
	t.Helper()
	got, err := ParseChatRequest([]byte(body))
	if err != nil {
		t.Fatalf("ParseChatRequest(%s): %v", body, err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("ParseChatRequest(%s)\n got %+v\nwant %+v", body, *got, want)
	}
	sum, ok := fastCheck([]byte(body))
	if !ok || sum.Model != want.Model || sum.Stream != want.Stream {
		t.Errorf("fastCheck(%s) = %+v, %v; want %q, %v", body, sum, ok, want.Model, want.Stream)
	}
}

func TestParseChatRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, param string
		message           string // a part of the message
	}{
		{"model missing", `{"messages":[{"role":"user","content":"hi"}]}`, "model", "you must provide a model parameter"},
		{"model null", `{"model":null,"messages":[{"role":"user","content":"hi"}]}`, "model", "you must provide a model parameter"},
		{"model empty", `{"model":"","messages":[{"role":"user","content":"hi"}]}`, "model", "you must provide a model parameter"},
		{"model a number", `{"model":4,"messages":[]}`, "model", `invalid type for "model": expected a string, got number`},
		{"model an object", `{"model":{"id":"x"},"messages":[]}`, "model", `expected a string, got object`},
		{"model an array", `{"model":["x"],"messages":[]}`, "model", `expected a string, got array`},
		{"messages missing", `{"model":"m"}`, "messages", "messages must be a non-empty array"},
		{"messages empty", `{"model":"m","messages":[]}`, "messages", "messages must be a non-empty array"},
		{"messages null", `{"model":"m","messages":null}`, "messages", "messages must be a non-empty array"},
		{"messages a string", `{"model":"m","messages":"hi"}`, "messages", `invalid type for "messages": expected an array, got string`},
		{"messages an object", `{"model":"m","messages":{"role":"user"}}`, "messages", `expected an array, got object`},
		{"message a string", `{"model":"m","messages":["hi"]}`, "messages", `expected an object, got string`},
		{"message null", `{"model":"m","messages":[null]}`, "messages[0].role", "each message needs a role"},
		{"role missing", chatMessage(`{"content":"hi"}`), "messages[0].role", "each message needs a role"},
		{"role missing in the second", chatMessage(`{"role":"user","content":"a"},{"content":"b"}`), "messages[1].role", "each message needs a role"},
		{"role a number", chatMessage(`{"role":1,"content":"hi"}`), "messages.role", `invalid type for "messages.role": expected a string, got number`},
		{"content a number", chatMessage(`{"role":"user","content":1}`), "messages.content", `expected a string, an array of content parts, or null, got number`},
		{"content an object", chatMessage(`{"role":"user","content":{"text":"hi"}}`), "messages.content", `got object`},
		{"content a bool", chatMessage(`{"role":"user","content":true}`), "messages.content", `got bool`},
		{"content part a string", chatMessage(`{"role":"user","content":["hi"]}`), "messages.content", `expected an object, got string`},
		{"content part type a number", chatMessage(`{"role":"user","content":[{"type":1}]}`), "messages.content.type", `expected a string, got number`},
		{"content part text an object", chatMessage(`{"role":"user","content":[{"type":"text","text":{}}]}`), "messages.content.text", `expected a string, got object`},
		{"image url a string", chatMessage(`{"role":"user","content":[{"type":"image_url","image_url":"https://x"}]}`), "messages.content.image_url", `expected an object, got string`},
		{"name a number", chatMessage(`{"role":"user","content":"a","name":1}`), "messages.name", `expected a string, got number`},
		{"stream a string", chat(`"stream":"true"`), "stream", `invalid type for "stream": expected a boolean, got string`},
		{"stream a number", chat(`"stream":1`), "stream", `expected a boolean, got number`},
		{"stream_options a bool", chat(`"stream_options":true`), "stream_options", `expected an object, got bool`},
		{"include_usage a string", chat(`"stream_options":{"include_usage":"yes"}`), "stream_options.include_usage", `expected a boolean, got string`},
		{"temperature a string", chat(`"temperature":"0.5"`), "temperature", `invalid type for "temperature": expected a number, got string`},
		{"top_p a bool", chat(`"top_p":true`), "top_p", `expected a number, got bool`},
		{"max_tokens a string", chat(`"max_tokens":"10"`), "max_tokens", `expected an integer, got string`},
		{"max_tokens a fraction", chat(`"max_tokens":10.5`), "max_tokens", `expected an integer, got number 10.5`},
		{"max_completion_tokens an array", chat(`"max_completion_tokens":[1]`), "max_completion_tokens", `expected an integer, got array`},
		{"presence_penalty a string", chat(`"presence_penalty":"x"`), "presence_penalty", `expected a number`},
		{"frequency_penalty an object", chat(`"frequency_penalty":{}`), "frequency_penalty", `expected a number`},
		{"seed a string", chat(`"seed":"7"`), "seed", `expected an integer, got string`},
		{"stop a number", chat(`"stop":5`), "stop", `invalid type for "stop": expected a string or an array of strings, got number`},
		{"stop an object", chat(`"stop":{"a":1}`), "stop", `expected a string or an array of strings, got object`},
		{"stop a list of numbers", chat(`"stop":["a",1]`), "stop", `expected a string, got number`},
		{"n a string", chat(`"n":"2"`), "n", `invalid type for "n": expected an integer, got string`},
		{"n a fraction", chat(`"n":1.5`), "n", `expected an integer`},
		{"n zero", chat(`"n":0`), "n", "n must be at least 1"},
		{"n negative", chat(`"n":-1`), "n", "n must be at least 1"},
		{"tools an object", chat(`"tools":{"type":"function"}`), "tools", `invalid type for "tools": expected an array, got object`},
		{"tools a string", chat(`"tools":"f"`), "tools", `expected an array, got string`},
		{"tool a number", chat(`"tools":[1]`), "tools", `expected an object, got number`},
		{"tool type a number", chat(`"tools":[{"type":1}]`), "tools.type", `expected a string, got number`},
		{"response_format a string", chat(`"response_format":"json"`), "response_format", `expected an object, got string`},
		{"json_schema a number", chat(`"response_format":{"type":"json_schema","json_schema":5}`), "response_format.json_schema",
			`invalid type for "response_format.json_schema": expected an object, got number`},
		{"json_schema a string", chat(`"response_format":{"type":"json_schema","json_schema":"s"}`), "response_format.json_schema", `expected an object, got string`},
		{"json_schema an array", chat(`"response_format":{"type":"json_schema","json_schema":[{}]}`), "response_format.json_schema", `expected an object, got array`},
		{"response_format type a number", chat(`"response_format":{"type":1}`), "response_format.type", `expected a string, got number`},
		{"tool function a string", chat(`"tools":[{"type":"function","function":"f"}]`), "tools.function", `invalid type for "tools.function": expected an object, got string`},
		{"tool function a bool", chat(`"tools":[{"type":"function","function":true}]`), "tools.function", `expected an object, got bool`},
		{"tool function an array", chat(`"tools":[{"type":"function","function":[]}]`), "tools.function", `expected an object, got array`},
		{"user a number", chat(`"user":1`), "user", `expected a string, got number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseChatRequest([]byte(tc.body))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseChatRequest(%s) = %+v, %v; want a FieldError", tc.body, req, err)
			}
			if req != nil {
				t.Errorf("a request came back with the error")
			}
			if fe.Param != tc.param {
				t.Errorf("Param = %q, want %q (message %q)", fe.Param, tc.param, fe.Message)
			}
			if !strings.Contains(fe.Message, tc.message) {
				t.Errorf("Message = %q, want it to hold %q", fe.Message, tc.message)
			}
			if fe.Error() != fe.Message {
				t.Errorf("Error() = %q, Message = %q", fe.Error(), fe.Message)
			}
		})
	}
}

// bodyErrors are bodies at fault as a whole: the FieldError has no Param.
var bodyErrors = []struct{ name, body, message string }{
	{"empty", ``, "the request body is not valid JSON"},
	{"whitespace", " \n", "the request body is not valid JSON"},
	{"text", `model=gpt-4o`, "the request body is not valid JSON"},
	{"truncated", `{"model":"m","messages":[`, "the request body is not valid JSON"},
	{"trailing comma", `{"model":"m",}`, "the request body is not valid JSON"},
	{"single quotes", `{'model':'m'}`, "the request body is not valid JSON"},
	{"two objects", `{"model":"m"}{"model":"n"}`, "the request body is not valid JSON"},
	{"trailing garbage", `{"model":"m","messages":[{"role":"user"}]} x`, "the request body is not valid JSON"},
	{"array", `[{"model":"m","messages":[{"role":"user"}]}]`, "the request body must be a JSON object"},
	{"empty array", `[]`, "the request body must be a JSON object"},
	{"string", `"hi"`, "the request body must be a JSON object"},
	{"number", ` 42 `, "the request body must be a JSON object"},
	{"null", `null`, "the request body must be a JSON object"},
	{"bool", `true`, "the request body must be a JSON object"},
}

func TestParseChatRequestBody(t *testing.T) {
	for _, tc := range bodyErrors {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseChatRequest([]byte(tc.body))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Param != "" || !strings.HasPrefix(fe.Message, tc.message) {
				t.Errorf("ParseChatRequest(%q) error = %#v, want a FieldError without Param saying %q", tc.body, err, tc.message)
			}
		})
	}
}

func TestParseEmbeddingRequest(t *testing.T) {
	for _, tc := range []struct{ body, input string }{
		{`{"model":"openai/text-embedding-3-small","input":"hello"}`, `"hello"`},
		{`{"model":"m","input":["a","b"],"dimensions":256,"encoding_format":"float"}`, `["a","b"]`},
		{`{"model":"m","input":[[1,2,3]]}`, `[[1,2,3]]`},
		{`{"model":"m","input":""}`, `""`},
	} {
		req, err := ParseEmbeddingRequest([]byte(tc.body))
		if err != nil {
			t.Errorf("ParseEmbeddingRequest(%s): %v", tc.body, err)
			continue
		}
		if req.Model == "" || string(req.Input) != tc.input {
			t.Errorf("ParseEmbeddingRequest(%s) = %+v, want input %s", tc.body, req, tc.input)
		}
	}

	for _, tc := range []struct{ body, param, message string }{
		{`{"input":"a"}`, "model", "you must provide a model parameter"},
		{`{"model":"","input":"a"}`, "model", "you must provide a model parameter"},
		{`{"model":1,"input":"a"}`, "model", `invalid type for "model": expected a string, got number`},
		{`{"model":"m"}`, "input", "you must provide an input parameter"},
		{`{"model":"m","input":null}`, "input", "you must provide an input parameter"},
		{`["m"]`, "", "the request body must be a JSON object"},
		{`{"model":`, "", "the request body is not valid JSON"},
		{``, "", "the request body is not valid JSON"},
	} {
		_, err := ParseEmbeddingRequest([]byte(tc.body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Param != tc.param || !strings.Contains(fe.Message, tc.message) {
			t.Errorf("ParseEmbeddingRequest(%s) error = %#v; want param %q, message %q", tc.body, err, tc.param, tc.message)
		}
	}
}

func TestContentJSON(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content Content
		json    string
		text    string
	}{
		{"text", TextContent("a \"b\""), `"a \"b\""`, `a "b"`},
		{"empty text", Content{}, `""`, ``},
		{"null", Content{Null: true}, `null`, ``},
		{"parts", Content{Parts: []Part{{Type: "text", Text: "a"}, {Type: "image_url", ImageURL: &ImageURL{URL: "u"}}, {Type: "text", Text: "b"}}},
			`[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"}]`, "a\nb"},
		{"no parts", Content{Parts: []Part{}}, `[]`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.content)
			if err != nil || string(b) != tc.json {
				t.Errorf("Marshal = %s, %v; want %s", b, err, tc.json)
			}
			var back Content
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, tc.content) {
				t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", b, back, err, tc.content)
			}
			if got := tc.content.String(); got != tc.text {
				t.Errorf("String() = %q, want %q", got, tc.text)
			}
		})
	}

	t.Run("text reads as encoding/json reads a string", func(t *testing.T) {
		for _, in := range []string{`"plain"`, `"é ü 😀"`, `"a\nb"`, `"\u00e9"`, `"\ud800"`, "\"\xff\xfe\"", "\"a\xc3\"", `"\\"`, `"</script>"`} {
			var want string
			wantErr := json.Unmarshal([]byte(in), &want)
			var c Content
			err := json.Unmarshal([]byte(in), &c)
			if (err != nil) != (wantErr != nil) || c.Text != want {
				t.Errorf("Unmarshal(%q) = %q, %v; want %q, %v", in, c.Text, err, want, wantErr)
			}
		}
		// Called directly, not through a decoder that has checked and
		// trimmed the value first.
		for _, in := range []string{`"`, `"a`, ` "a"`, `"a"b"`, "\"a\x01\"", `"ok"`} {
			var want string
			wantErr := json.Unmarshal([]byte(in), &want)
			var c Content
			err := c.UnmarshalJSON([]byte(in))
			if (err != nil) != (wantErr != nil) || c.Text != want {
				t.Errorf("UnmarshalJSON(%q) = %q, %v; want %q, %v", in, c.Text, err, want, wantErr)
			}
		}
	})

	t.Run("a message round trip keeps null content", func(t *testing.T) {
		in := `{"role":"assistant","content":null,"tool_calls":[{"id":"1"}]}`
		var m Message
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatal(err)
		}
		if out, _ := json.Marshal(m); string(out) != in {
			t.Errorf("round trip = %s, want %s", out, in)
		}
	})

	for _, bad := range []string{`1`, `true`, `{}`, `[1]`, `"\x"`} {
		var c Content
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("Unmarshal(%s) into Content = %+v, want an error", bad, c)
		}
	}
}

func TestStopJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Stop
	}{
		{`"x"`, Stop{"x"}},
		{`""`, Stop{""}},
		{`["a","b"]`, Stop{"a", "b"}},
		{`[]`, Stop{}},
		{`null`, nil},
	} {
		s := Stop{"old"}
		if err := json.Unmarshal([]byte(tc.in), &s); err != nil || !reflect.DeepEqual(s, tc.want) {
			t.Errorf("Unmarshal(%s) = %#v, %v; want %#v", tc.in, s, err, tc.want)
		}
	}
	for _, bad := range []string{`1`, `true`, `{}`, `[1]`, `[null, 1]`} {
		var s Stop
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("Unmarshal(%s) into Stop = %#v, want an error", bad, s)
		}
	}
	if b, _ := json.Marshal(ChatRequest{Stop: Stop{"a"}}); !bytes.Contains(b, []byte(`"stop":["a"]`)) {
		t.Errorf("Marshal = %s", b)
	}
}

func TestUsageAdd(t *testing.T) {
	u := Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
	u.Add(Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30})
	if u != (Usage{PromptTokens: 11, CompletionTokens: 22, TotalTokens: 33}) {
		t.Errorf("Add = %+v", u)
	}
}

func TestParseError(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Error
		ok   bool
	}{
		{"openai envelope", `{"error":{"message":"The model x does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}`,
			Error{Message: "The model x does not exist", Type: "invalid_request_error", Code: ptr("model_not_found")}, true},
		{"null code and param", `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`,
			Error{Message: "bad", Type: "invalid_request_error"}, true},
		{"numeric code", `{"error":{"message":"quota","type":"insufficient_quota","code":429}}`,
			Error{Message: "quota", Type: "insufficient_quota"}, true},
		{"numeric type", `{"error":{"message":"m","type":400,"code":"c"}}`,
			Error{Message: "m", Code: ptr("c")}, true},
		{"empty code", `{"error":{"message":"m","code":""}}`, Error{Message: "m"}, true},
		{"anthropic", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			Error{Message: "Overloaded", Type: "overloaded_error"}, true},
		{"string error", `{"error":"model not found"}`, Error{Message: "model not found"}, true},
		{"bare message", `{"message":"upstream busy"}`, Error{Message: "upstream busy"}, true},
		{"bare message beside an empty error", `{"error":{},"message":"m"}`, Error{Message: "m"}, true},
		{"envelope without a message", `{"error":{"type":"x","code":"y"}}`, Error{}, false},
		{"empty string error", `{"error":""}`, Error{}, false},
		{"null error", `{"error":null}`, Error{}, false},
		{"error a number", `{"error":500}`, Error{}, false},
		{"empty object", `{}`, Error{}, false},
		{"array", `[{"error":{"message":"m"}}]`, Error{}, false},
		{"string", `"oops"`, Error{}, false},
		{"html", `<html><body>502 Bad Gateway</body></html>`, Error{}, false},
		{"empty", ``, Error{}, false},
		{"truncated", `{"error":{"message":"m"`, Error{}, false},
		{"message not a string", `{"message":{"text":"m"}}`, Error{}, false},
		{"folded keys are other fields", `{"ERROR":{"message":"m"},"Message":"x"}`, Error{}, false},
		{"a folded message in the envelope", `{"error":{"MESSAGE":"m","message":"n"}}`, Error{Message: "n"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseError([]byte(tc.body))
			if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseError(%s) = %+v, %v; want %+v, %v", tc.body, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// member is one top-level member of a JSON object, with the offsets of its
// value in the object's text.
type member struct {
	key        string
	value      json.RawMessage
	start, end int
}

// topLevel lists the top-level members of a JSON object in order,
// duplicates included, with encoding/json as the independent judge.
func topLevel(body []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		ms = append(ms, member{key: tok.(string), value: v, start: end - len(v), end: end})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return ms, nil
}

// isModel reports whether a key is the model field: exactly "model", as in
// OpenAI's API.
func isModel(key string) bool { return key == "model" }

// checkSetModel checks out = SetModel(body, model): valid JSON, every
// top-level model key holds model, and every other byte is as in body.
func checkSetModel(t testing.TB, body, out []byte, model string) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("SetModel(%q) = %q: not valid JSON", body, out)
	}
	before, err := topLevel(body)
	if err != nil {
		t.Fatalf("topLevel(%q): %v", body, err)
	}
	after, err := topLevel(out)
	if err != nil {
		t.Fatalf("topLevel(%q): %v", out, err)
	}
	if len(before) != len(after) {
		t.Fatalf("SetModel(%q) = %q: %d members, want %d", body, out, len(after), len(before))
	}
	// The model as JSON carries it: invalid UTF-8 becomes U+FFFD.
	var want string
	quoted, _ := json.Marshal(model)
	_ = json.Unmarshal(quoted, &want)

	var cutBefore, cutAfter []byte
	lastB, lastA := 0, 0
	for i := range before {
		b, a := before[i], after[i]
		if b.key != a.key {
			t.Fatalf("SetModel(%q) = %q: key %d is %q, want %q", body, out, i, a.key, b.key)
		}
		if !isModel(b.key) {
			if !bytes.Equal(a.value, b.value) {
				t.Errorf("SetModel(%q) = %q: %q changed from %s to %s", body, out, b.key, b.value, a.value)
			}
			continue
		}
		var got string
		if err := json.Unmarshal(a.value, &got); err != nil || got != want {
			t.Errorf("SetModel(%q) = %q: %q is %s, want %q", body, out, a.key, a.value, want)
		}
		cutBefore = append(cutBefore, body[lastB:b.start]...)
		cutAfter = append(cutAfter, out[lastA:a.start]...)
		lastB, lastA = b.end, a.end
	}
	cutBefore = append(cutBefore, body[lastB:]...)
	cutAfter = append(cutAfter, out[lastA:]...)
	if !bytes.Equal(cutBefore, cutAfter) {
		t.Errorf("SetModel(%q) = %q: bytes outside the model values changed", body, out)
	}
}

func TestSetModel(t *testing.T) {
	for _, tc := range []struct {
		name, body, model, want string
	}{
		{"first", `{"model":"a","messages":[]}`, "b", `{"model":"b","messages":[]}`},
		{"middle", `{"x":1,"model":"a","y":2}`, "b", `{"x":1,"model":"b","y":2}`},
		{"last", `{"messages":[],"model":"a"}`, "b", `{"messages":[],"model":"b"}`},
		{"only", `{"model":"a"}`, "gpt-4o-mini", `{"model":"gpt-4o-mini"}`},
		{"whitespace kept", " \n{ \"model\" :\t\"a\" ,\n  \"x\" : [ 1 , 2 ] }\n\n", "b", " \n{ \"model\" :\t\"b\" ,\n  \"x\" : [ 1 , 2 ] }\n\n"},
		{"nested model keys untouched",
			`{"messages":[{"role":"user","model":"a","content":"{\"model\":\"x\"}"}],"metadata":{"model":"keep"},"model":"a","tools":[{"model":[{"model":1}]}]}`, "b",
			`{"messages":[{"role":"user","model":"a","content":"{\"model\":\"x\"}"}],"metadata":{"model":"keep"},"model":"b","tools":[{"model":[{"model":1}]}]}`},
		{"escaped key", `{"mod\u0065l":"a","x":"model"}`, "b", `{"mod\u0065l":"b","x":"model"}`},
		{"all escaped key", `{"\u006D\u006f\u0064\u0065\u006C":"a"}`, "b", `{"\u006D\u006f\u0064\u0065\u006C":"b"}`},
		{"duplicate keys", `{"model":"a","x":1,"model":"c"}`, "b", `{"model":"b","x":1,"model":"b"}`},
		{"only the exact key", `{"Model":"a","MODEL":"c","model":"x","mOdEl":"d"}`, "b", `{"Model":"a","MODEL":"c","model":"b","mOdEl":"d"}`},
		{"keys that are not model", `{"models":"a","model ":"a","_model":"a","mode":"a","model":"a","modél":"a"}`, "b", `{"models":"a","model ":"a","_model":"a","mode":"a","model":"b","modél":"a"}`},
		{"braces and escaped quotes in strings",
			`{"a":"}{\"model\":\"x\"","model":"m\"}","b":"\\","c":"\\\"model\\\":","d":"]"}`, "b",
			`{"a":"}{\"model\":\"x\"","model":"b","b":"\\","c":"\\\"model\\\":","d":"]"}`},
		{"a value with escapes", `{"model":"a\\b\"c\u0041\/","x":0}`, "b", `{"model":"b","x":0}`},
		{"scalars around it", `{"t":true,"model":"a","f":false,"n":null,"x":-1.5e+3,"z":0}`, "b", `{"t":true,"model":"b","f":false,"n":null,"x":-1.5e+3,"z":0}`},
		{"numbers next to it", `{"x":1,"model":"a","y":2}`, "b", `{"x":1,"model":"b","y":2}`},
		{"a model that is not a string", `{"model":null,"a":1}`, "b", `{"model":"b","a":1}`},
		{"a numeric model", `{"a":1,"model":12.5e3}`, "b", `{"a":1,"model":"b"}`},
		{"an object model", `{"model":{"id":"x","y":["}"]},"a":1}`, "b", `{"model":"b","a":1}`},
		{"an array model", `{"model":[["a"],{}],"a":1}`, "b", `{"model":"b","a":1}`},
		{"unicode around", `{"content":"héllo ☃ 😀","model":"модель","z":"\ud83d\ude00"}`, "mod/ü☃", `{"content":"héllo ☃ 😀","model":"mod/ü☃","z":"\ud83d\ude00"}`},
		{"a model that needs escaping", `{"model":"a"}`, "a\"b\\c\n<d>&", `{"model":"a\"b\\c\n\u003cd\u003e\u0026"}`},
		{"an empty model", `{"model":"a"}`, "", `{"model":""}`},
		{"deep nesting", `{"a":[[[[{"b":[{"c":"]]]}}}"}]}]]]],"model":"a"}`, "b", `{"a":[[[[{"b":[{"c":"]]]}}}"}]}]]]],"model":"b"}`},
		{"an empty key and empty values", `{"":"","model":"a","e":{},"f":[]}`, "b", `{"":"","model":"b","e":{},"f":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := SetModel(nil, []byte(tc.body), tc.model)
			if err != nil {
				t.Fatalf("SetModel(%s): %v", tc.body, err)
			}
			if string(out) != tc.want {
				t.Errorf("SetModel(%s)\n got %s\nwant %s", tc.body, out, tc.want)
			}
			checkSetModel(t, []byte(tc.body), out, tc.model)
		})
	}

	t.Run("errors", func(t *testing.T) {
		for _, body := range []string{
			``, ` `, `[]`, `[{"model":"a"}]`, `"model"`, `null`, `1`,
			`{}`, `{"x":{"model":"a"}}`, `{"models":"a"}`, `{"Model":"a"}`, `{"MODEL":"a","mod\u0045l":"b"}`,
			`{"model":"a"} x`, `{"model":"a","x":[}`, `{"model":"a","x":"\q"}`, "{\"model\":\"a\x01\"}",
			`{"model":"a"`, `{"model":"a",`, `{"model"`, `{"model":`, `{"model" "a"}`, `{model:"a"}`, `{"model":"a`, `{"model":"a\`,
		} {
			if out, err := SetModel(nil, []byte(body), "b"); err == nil {
				t.Errorf("SetModel(%q) = %q, want an error", body, out)
			}
		}
	})

	t.Run("dst is reused", func(t *testing.T) {
		dst := make([]byte, 0, 256)
		dst = append(dst, "leftover"...)
		out, err := SetModel(dst, []byte(`{"model":"a"}`), "b")
		if err != nil || string(out) != `{"model":"b"}` {
			t.Fatalf("SetModel = %q, %v", out, err)
		}
		if &out[0] != &dst[:1][0] {
			t.Error("the result does not reuse dst")
		}
	})

	t.Run("the body is not modified", func(t *testing.T) {
		body := []byte(`{"model":"a","x":1}`)
		orig := bytes.Clone(body)
		if _, err := SetModel(nil, body, "a much longer model name"); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, orig) {
			t.Errorf("body changed to %q", body)
		}
	})
}

// TestSetModelAfterParse is the passthrough path: every request that
// ParseChatRequest accepts can have its model rewritten, and the model the
// proxy routed on is the one rewritten; keys of another case are left to
// the provider, which ignores them as the proxy did.
func TestSetModelAfterParse(t *testing.T) {
	for _, body := range []string{
		chat(""),
		`{"Model":"openai/x","model":"openai/y","messages":[{"role":"user"}]}`,
		`{"model":"openai/x","MODEL":"other/z","messages":[{"role":"user"}]}`,
		`{"messages":[{"role":"user","model":"m"}],"mod\u0065l":"openai/x","stream":true}`,
	} {
		req, err := ParseChatRequest([]byte(body))
		if err != nil {
			t.Fatalf("ParseChatRequest(%s): %v", body, err)
		}
		out, err := SetModel(nil, []byte(body), "gpt-4o")
		if err != nil {
			t.Fatalf("SetModel(%s) after ParseChatRequest read model %q: %v", body, req.Model, err)
		}
		checkSetModel(t, []byte(body), out, "gpt-4o")
	}
}

func BenchmarkParseChatRequest(b *testing.B) {
	body := []byte(chat(`"stream":true,"temperature":0.2,"max_tokens":512,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseChatRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetModel(b *testing.B) {
	long := strings.Repeat(`{"role":"user","content":"a fairly ordinary message with \"quotes\" and {braces}"},`, 200)
	body := []byte(`{"messages":[` + long + `{"role":"user","content":"last"}],"stream":true,"model":"openai/gpt-4o-mini"}`)
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = SetModel(dst, body, "gpt-4o-mini"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeysAreExact: keys are matched as OpenAI's API matches them. A key
// that differs from a known one only in case is another field: it never
// sets the known one, lands in Extra at the top level, and is passed on
// untouched (see TestSetModelAfterParse). CheckChatRequest agrees.
func TestKeysAreExact(t *testing.T) {
	hi := []Message{{Role: "user", Content: TextContent("hi")}}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name, body string
		want       ChatRequest
	}{
		{"STREAM does not stream", chat(`"STREAM":true`),
			ChatRequest{Model: "openai/gpt-4o-mini", Messages: hi, Extra: map[string]any{"STREAM": raw(`true`)}}},
		{"Stream beside stream", chat(`"Stream":true,"stream":false`),
			ChatRequest{Model: "openai/gpt-4o-mini", Messages: hi, Extra: map[string]any{"Stream": raw(`true`)}}},
		{"Model does not route", `{"Model":"other/x","model":"m","messages":[{"role":"user","content":"hi"}]}`,
			ChatRequest{Model: "m", Messages: hi, Extra: map[string]any{"Model": raw(`"other/x"`)}}},
		{"escaped keys are the keys", `{"mod\u0065l":"m","m\u0065ssages":[{"r\u006fle":"user","c\u006Fntent":"hi"}],"str\u0065am":true}`,
			ChatRequest{Model: "m", Messages: hi, Stream: true}},
		{"sampling params", chat(`"Temperature":2,"MAX_TOKENS":5,"N":3,"Stop":"x","temperature":0.5`),
			ChatRequest{Model: "openai/gpt-4o-mini", Messages: hi, Temperature: ptr(0.5),
				Extra: map[string]any{"Temperature": raw(`2`), "MAX_TOKENS": raw(`5`), "N": raw(`3`), "Stop": raw(`"x"`)}}},
		{"message keys", chatMessage(`{"role":"user","Role":"system","CONTENT":"no","content":"hi","Name":"x"}`),
			ChatRequest{Model: "m", Messages: hi}},
		{"content part keys", chatMessage(`{"role":"user","content":[{"type":"text","Text":"no","TEXT":"no"},{"TYPE":"x","type":"image_url","image_url":{"URL":"no","url":"u"},"Image_URL":{}}]}`),
			ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: Content{Parts: []Part{{Type: "text"}, {Type: "image_url", ImageURL: &ImageURL{URL: "u"}}}}}}}},
		{"stream_options keys", chat(`"stream":true,"stream_options":{"Include_Usage":true}`),
			ChatRequest{Model: "openai/gpt-4o-mini", Messages: hi, Stream: true, StreamOptions: &StreamOptions{}}},
		{"tool and response_format keys", chat(`"tools":[{"Type":"x","type":"function","FUNCTION":5}],"response_format":{"TYPE":1,"type":"json_object","JSON_SCHEMA":5}`),
			ChatRequest{Model: "openai/gpt-4o-mini", Messages: hi, Tools: []Tool{{Type: "function"}}, ResponseFormat: &ResponseFormat{Type: "json_object"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, tc.body, tc.want) })
	}

	// Folded keys do not supply a required field.
	for _, tc := range []struct{ body, param string }{
		{`{"Model":"m","messages":[{"role":"user","content":"hi"}]}`, "model"},
		{`{"model":"m","MESSAGES":[{"role":"user","content":"hi"}]}`, "messages"},
		{chatMessage(`{"ROLE":"user","content":"hi"}`), "messages[0].role"},
	} {
		_, err := CheckChatRequest([]byte(tc.body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Param != tc.param {
			t.Errorf("CheckChatRequest(%s) = %v; want a FieldError on %s", tc.body, err, tc.param)
		}
	}
}

// TestFieldsGivenTwice: a known field given more than once is a 400 that
// names it, wherever it is; an unknown one is the provider's to judge.
func TestFieldsGivenTwice(t *testing.T) {
	for _, tc := range []struct{ name, body, param string }{
		{"model", `{"model":"a","messages":[{"role":"user"}],"model":"b"}`, "model"},
		{"model escaped", `{"model":"a","messages":[{"role":"user"}],"m\u006fdel":"a"}`, "model"},
		{"stream", chat(`"stream":false,"stream":true`), "stream"},
		{"messages", chat(`"messages":[{"role":"user"}]`), "messages"},
		{"temperature", chat(`"temperature":null,"temperature":1`), "temperature"},
		{"role", chatMessage(`{"role":"user","content":"a","role":"system"}`), "messages.role"},
		{"content", chatMessage(`{"role":"user","content":"a","content":"b"}`), "messages.content"},
		{"part text", chatMessage(`{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}`), "messages.content.text"},
		{"image url", chatMessage(`{"role":"user","content":[{"type":"image_url","image_url":{"url":"a","url":"b"}}]}`), "messages.content.image_url.url"},
		{"include_usage", chat(`"stream_options":{"include_usage":true,"include_usage":false}`), "stream_options.include_usage"},
		{"tool type", chat(`"tools":[{"type":"function","type":"x"}]`), "tools.type"},
		{"json_schema", chat(`"response_format":{"type":"json_schema","json_schema":{},"json_schema":{}}`), "response_format.json_schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, check := range map[string]func([]byte) error{
				"ParseChatRequest": func(b []byte) error { _, err := ParseChatRequest(b); return err },
				"CheckChatRequest": func(b []byte) error { _, err := CheckChatRequest(b); return err },
			} {
				err := check([]byte(tc.body))
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Param != tc.param || fe.Message != `"`+tc.param+`" is given more than once; a field may appear once` {
					t.Errorf("%s(%s) = %#v; want a FieldError on %s", name, tc.body, err, tc.param)
				}
			}
		})
	}

	for _, body := range []string{
		chat(`"x_vendor":1,"x_vendor":2`),
		chat(`"metadata":{"model":"a","model":"b"}`),
		chatMessage(`{"role":"user","content":"a","cache":1,"cache":2}`),
		chat(`"Stream":true,"STREAM":false,"stream":true`),
	} {
		if _, err := ParseChatRequest([]byte(body)); err != nil {
			t.Errorf("ParseChatRequest(%s): %v", body, err)
		}
		if _, ok := fastCheck([]byte(body)); !ok {
			t.Errorf("fastCheck(%s) is unsure", body)
		}
	}
}

// TestEmbeddingKeysAreExact: an embeddings request reads its model as a
// chat request does.
func TestEmbeddingKeysAreExact(t *testing.T) {
	req, err := ParseEmbeddingRequest([]byte(`{"Model":"other/x","model":"m","INPUT":"no","input":"a"}`))
	if err != nil || req.Model != "m" || string(req.Input) != `"a"` {
		t.Errorf("ParseEmbeddingRequest = %+v, %v", req, err)
	}
	var fe *FieldError
	if _, err := ParseEmbeddingRequest([]byte(`{"model":"m","input":"a","model":"n"}`)); !errors.As(err, &fe) || fe.Param != "model" {
		t.Errorf("a model given twice: %v", err)
	}
	if _, err := ParseEmbeddingRequest([]byte(`{"MODEL":"m","input":"a"}`)); !errors.As(err, &fe) || fe.Param != "model" {
		t.Errorf("MODEL alone: %v", err)
	}
}
