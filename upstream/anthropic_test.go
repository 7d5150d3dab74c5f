package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/openai"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got, indented, with testdata/name, or rewrites the file
// with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, got, "", "  "); err != nil {
		t.Fatalf("not JSON: %s", got)
	}
	b.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("%s differs (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, b.Bytes(), want)
	}
}

// TestAnthropicRequest checks the translation of Chat Completions bodies
// into Messages bodies against testdata/anthropic/request/*.json.
func TestAnthropicRequest(t *testing.T) {
	const user = `{"role":"user","content":"What is 2+2?"}`
	for _, tc := range []struct {
		name  string
		body  string // the messages and fields inside the request object
		cache bool
	}{
		{"minimal", `"messages":[` + user + `]`, false},
		{"system and developer join the system prompt", `"messages":[
			{"role":"system","content":"Be brief."},
			{"role":"developer","content":[{"type":"text","text":"Answer in French."},{"type":"text","text":"No lists."}]},
			` + user + `,
			{"role":"system","content":"A late system turn joins it too."}]`, false},
		{"consecutive turns merge", `"messages":[
			{"role":"user","content":"first"},{"role":"user","content":"second"},
			{"role":"assistant","content":"one"},{"role":"assistant","content":"two"},
			{"role":"user","content":"third"}]`, false},
		{"empty and blank content is dropped", `"messages":[
			{"role":"system","content":"  "},{"role":"user","content":"hi"},
			{"role":"assistant","content":""},{"role":"assistant","content":null},
			{"role":"user","content":[{"type":"text","text":"\n"}]},{"role":"user","content":"there"}]`, false},
		{"max_tokens", `"max_tokens":100,"messages":[` + user + `]`, false},
		{"max_completion_tokens wins", `"max_tokens":100,"max_completion_tokens":200,"messages":[` + user + `]`, false},
		{"sampling", `"temperature":0.3,"top_p":0.9,"top_k":40,"stop":"END","seed":7,"presence_penalty":1,
			"frequency_penalty":1,"logprobs":true,"user":"u-1","messages":[` + user + `]`, false},
		{"temperature above 1 is clamped", `"temperature":1.7,"stop":["a","b"],"messages":[` + user + `]`, false},
		{"stream", `"stream":true,"stream_options":{"include_usage":true},"messages":[` + user + `]`, false},
		{"images", `"messages":[{"role":"user","content":[
			{"type":"text","text":"Compare these."},
			{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
			{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}},
			{"type":"image_url","image_url":{"url":"DATA:Image/JPEG;charset=x;BASE64,/9j/4AAQ"}}]}]`, false},
		{"tools", `"tools":[
			{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
			{"type":"function","function":{"name":"now"}}],
			"tool_choice":"auto","messages":[` + user + `]`, false},
		{"tool_choice required", `"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","messages":[` + user + `]`, false},
		{"tool_choice none", `"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none","parallel_tool_calls":false,"messages":[` + user + `]`, false},
		{"tool_choice function", `"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},"messages":[` + user + `]`, false},
		{"parallel_tool_calls false", `"tools":[{"type":"function","function":{"name":"f"}}],"parallel_tool_calls":false,"messages":[` + user + `]`, false},
		{"tool_choice without tools is dropped", `"tool_choice":"required","messages":[` + user + `]`, false},
		{"tool calls and results", `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[
			{"role":"user","content":"Weather in Paris and Rome?"},
			{"role":"assistant","content":null,"tool_calls":[
				{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
				{"id":"call.2/x","type":"function","function":{"name":"get_weather","arguments":""}}]},
			{"role":"tool","tool_call_id":"call_1","content":"18C, sunny"},
			{"role":"tool","tool_call_id":"call.2/x","content":[{"type":"text","text":"21C"}]},
			{"role":"user","content":"Which is warmer?"}]`, false},
		{"assistant text beside tool calls", `"messages":[
			{"role":"user","content":"hi"},
			{"role":"assistant","content":"Let me look.","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
			{"role":"tool","tool_call_id":"c1","content":""}]`, false},
		{"response_format json_object", `"response_format":{"type":"json_object"},"messages":[{"role":"system","content":"You list fruit."},` + user + `]`, false},
		{"response_format json_schema", `"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object","properties":{"n":{"type":"integer"}}}}},"messages":[` + user + `]`, false},
		{"response_format text", `"response_format":{"type":"text"},"messages":[` + user + `]`, false},
		{"prefill is trimmed", `"messages":[` + user + `,{"role":"assistant","content":"The answer is "}]`, false},
		{"prompt cache first turn", `"messages":[{"role":"system","content":"You are a member."},` + user + `]`, true},
		{"prompt cache later round", `"messages":[{"role":"system","content":"You are a member."},` + user + `,
			{"role":"assistant","content":"4"},{"role":"user","content":"Refine: show the working."}]`, true},
		{"prompt cache without system", `"messages":[` + user + `,{"role":"assistant","content":"4"},{"role":"user","content":"Sure?"}]`, true},
		{"prompt cache off", `"messages":[{"role":"system","content":"You are a member."},` + user + `,
			{"role":"assistant","content":"4"},{"role":"user","content":"Refine: show the working."}]`, false},
		{"prompt cache after a tool call", `"tools":[{"type":"function","function":{"name":"f"}}],"messages":[` + user + `,
			{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
			{"role":"tool","tool_call_id":"c1","content":"4"}]`, true},
		{"prompt cache with a prefill", `"messages":[` + user + `,{"role":"assistant","content":"4"},{"role":"user","content":"Sure?"},{"role":"assistant","content":"Yes,"}]`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"claude-x",` + tc.body + `}`
			got, err := translateChatRequest([]byte(body), "claude-haiku-4-5", tc.cache)
			if err != nil {
				t.Fatalf("translateChatRequest: %v\n%s", err, body)
			}
			golden(t, filepath.Join("anthropic", "request", strings.ReplaceAll(tc.name, " ", "_")+".json"), got)
		})
	}
}

func TestAnthropicRequestErrors(t *testing.T) {
	const user = `{"role":"user","content":"hi"}`
	for _, tc := range []struct {
		name, body, param, message string
	}{
		{"n above 1", `"n":2,"messages":[` + user + `]`, "n", "n must be 1"},
		{"only a system prompt", `"messages":[{"role":"system","content":"s"}]`, "messages", "at least one user or assistant message"},
		{"unknown role", `"messages":[{"role":"function","content":"x"}]`, "messages[0].role", `"function" cannot be sent`},
		{"audio part", `"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]`, "messages[0].content[0].type", `"input_audio"`},
		{"image without url", `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":""}}]}]`, "messages[0].content[0].image_url", "needs a url"},
		{"image data url not base64", `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/svg+xml,<svg/>"}}]}]`, "messages[0].content[0].image_url", "base64"},
		{"image ftp url", `"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]`, "messages[0].content[0].image_url", "data: URL or an http(s) URL"},
		{"tool message without id", `"messages":[` + user + `,{"role":"tool","content":"4"}]`, "messages[1].tool_call_id", "needs the id"},
		{"tool call arguments not an object", `"messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]`,
			"messages[1].tool_calls[0].function.arguments", "not a JSON object"},
		{"tool call arguments broken", `"messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]}]`,
			"messages[1].tool_calls[0].function.arguments", "not a JSON object"},
		{"tool call without a name", `"messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]}]`,
			"messages[1].tool_calls[0]", "needs an id and a function name"},
		{"tool calls not an array", `"messages":[` + user + `,{"role":"assistant","tool_calls":{"id":"c"}}]`, "messages[1].tool_calls", "must be an array"},
		{"custom tool", `"tools":[{"type":"custom","custom":{"name":"x"}}],"messages":[` + user + `]`, "tools[0].type", `"custom"`},
		{"tool without name", `"tools":[{"type":"function","function":{"description":"x"}}],"messages":[` + user + `]`, "tools[0].function", "with a name"},
		{"tool_choice unknown", `"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes","messages":[` + user + `]`, "tool_choice", `"sometimes"`},
		{"tool_choice object", `"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"allowed_tools"},"messages":[` + user + `]`, "tool_choice", "must be"},
		{"top_k a string", `"top_k":"40","messages":[` + user + `]`, "", "top_k"},
		{"not a chat request", `"messages":"hi"`, "messages", "expected an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := translateChatRequest([]byte(`{"model":"m",`+tc.body+`}`), "m", true)
			if err == nil {
				t.Fatal("no error")
			}
			var fe *openai.FieldError
			param := ""
			if errors.As(err, &fe) {
				param = fe.Param
			}
			if param != tc.param || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q (param %q), want param %q and %q in the message", err, param, tc.param, tc.message)
			}
		})
	}
}

// answerJSON translates an answer as Do does.
func answerJSON(data []byte, model string) ([]byte, error) {
	var buf bytes.Buffer
	_, err := (&anthropicDialect{}).passJSON(data, model, &buf)
	return buf.Bytes(), err
}

// translateChatRequest translates a Chat Completions body as Do does.
func translateChatRequest(body []byte, model string, cache bool) ([]byte, error) {
	wire, _, err := (&anthropicDialect{promptCache: cache}).passRequest(body, model)
	return wire, err
}

func TestAnthropicAnswer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		message string
		want    string // the chat.completion, without created
	}{
		{"text", `{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001",
			"content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],"stop_reason":"end_turn","stop_sequence":null,
			"usage":{"input_tokens":10,"output_tokens":3}}`,
			`{"id":"msg_1","object":"chat.completion","model":"claude-haiku-4-5-20251001","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","refusal":null},"logprobs":null,"finish_reason":"stop"}],` +
				`"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0,"cache_creation_tokens":0}}}`},
		{"cache tokens count as prompt tokens", `{"id":"msg_2","type":"message","model":"c","content":[{"type":"text","text":"ok"}],"stop_reason":"stop_sequence",
			"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":100}}}`,
			`{"id":"msg_2","object":"chat.completion","model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"ok","refusal":null},"logprobs":null,"finish_reason":"stop"}],` +
				`"usage":{"prompt_tokens":2105,"completion_tokens":7,"total_tokens":2112,"prompt_tokens_details":{"cached_tokens":2000,"cache_creation_tokens":100}}}`},
		{"tool use", `{"id":"msg_3","type":"message","model":"c","content":[{"type":"text","text":"Checking."},
			{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{ "city" : "Paris" }},{"type":"tool_use","id":"toolu_2","name":"now","input":{}}],"stop_reason":"tool_use"}`,
			`{"id":"msg_3","object":"chat.completion","model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","refusal":null,"tool_calls":[` +
				`{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
				`{"id":"toolu_2","type":"function","function":{"name":"now","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`},
		{"tool use alone has null content", `{"id":"m","type":"message","model":"c","content":[{"type":"tool_use","id":"t","name":"f"}],"stop_reason":"tool_use"}`,
			`{"id":"m","object":"chat.completion","model":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[` +
				`{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]}`},
		{"max_tokens and thinking", `{"id":"m","type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"cut"}],"stop_reason":"max_tokens"}`,
			`{"id":"m","object":"chat.completion","model":"claude-x","choices":[{"index":0,"message":{"role":"assistant","content":"cut","refusal":null},"logprobs":null,"finish_reason":"length"}]}`},
		{"refusal and empty content", `{"id":"m","type":"message","model":"c","content":[],"stop_reason":"refusal"}`,
			`{"id":"m","object":"chat.completion","model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":"content_filter"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := answerJSON([]byte(tc.message), "claude-x")
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(got, &fields); err != nil {
				t.Fatal(err)
			}
			if string(fields["created"]) == "0" || fields["created"] == nil {
				t.Errorf("created = %s", fields["created"])
			}
			delete(fields, "created")
			again, _ := json.Marshal(fields)
			var want map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			wantJSON, _ := json.Marshal(want)
			if !bytes.Equal(again, wantJSON) {
				t.Errorf("answer\n got %s\nwant %s", again, wantJSON)
			}
			// What the engine reads of it.
			var cc openai.ChatCompletion
			if err := json.Unmarshal(got, &cc); err != nil || len(cc.Choices) != 1 {
				t.Errorf("not a chat completion: %s (%v)", got, err)
			}
		})
	}

	for _, bad := range []string{
		`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
		`{"choices":[]}`,
		`[]`,
		`{"type":"message","content":"text"}`,
	} {
		_, err := answerJSON([]byte(bad), "m")
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("answer(%s) = %v, want ErrMalformed", bad, err)
		}
		if strings.Contains(bad, "Overloaded") && !strings.Contains(err.Error(), "Overloaded") {
			t.Errorf("the error %q does not carry the provider's message", err)
		}
	}
}

// TestAnthropicExtra: a member's params (ChatRequest.Extra) reach the
// Messages request over the typed fields, as they would reach an
// OpenAI-compatible provider, and the request is left as it was.
func TestAnthropicExtra(t *testing.T) {
	temp, maxTokens := 0.9, 10
	req := &openai.ChatRequest{
		Temperature: &temp, MaxTokens: &maxTokens,
		Messages: []openai.Message{{Role: "user", Content: openai.TextContent("hi")}},
		Extra:    map[string]any{"temperature": 0.2, "max_tokens": 50, "top_k": 5, "seed": 1, "parallel_tool_calls": false, "stop": []string{"END"}},
	}
	body, err := translateRequest(req, "c", req.Stream, false)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(body, &got)
	for k, want := range map[string]any{"temperature": 0.2, "max_tokens": 50.0, "top_k": 5.0} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v in %s", k, got[k], want, body)
		}
	}
	if s, _ := json.Marshal(got["stop_sequences"]); string(s) != `["END"]` || got["seed"] != nil {
		t.Errorf("stop_sequences %s, seed %v in %s", s, got["seed"], body)
	}
	if *req.Temperature != 0.9 || *req.MaxTokens != 10 {
		t.Errorf("the request changed: temperature %v, max_tokens %v", *req.Temperature, *req.MaxTokens)
	}
	req.Extra = map[string]any{"top_k": "many"}
	if _, err := translateRequest(req, "c", req.Stream, false); err == nil || !strings.Contains(err.Error(), "top_k") {
		t.Errorf("top_k of a string: %v", err)
	}
}
