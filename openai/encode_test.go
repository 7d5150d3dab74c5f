package openai

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// appender is a wire type with a hand-written AppendJSON, held to
// json.Marshal: *ChatRequest and *ChatCompletionChunk.
type appender interface {
	AppendJSON(dst []byte) ([]byte, error)
}

// checkAppendJSON fails t unless AppendJSON and json.Marshal encode r
// alike, or fail alike. It returns the encoding.
func checkAppendJSON(t *testing.T, r appender) []byte {
	t.Helper()
	got, err := r.AppendJSON(nil)
	marshaled, merr := json.Marshal(r)
	if (err != nil) != (merr != nil) || !bytes.Equal(got, marshaled) {
		t.Fatalf("AppendJSON(%+v) = %s, %v; json.Marshal: %s, %v", r, got, err, marshaled, merr)
	}
	if err != nil {
		if got != nil {
			t.Fatalf("AppendJSON(nil) = %q with error %v, want nil", got, err)
		}
		return nil
	}
	prefixed, err := r.AppendJSON([]byte("prefix"))
	if err != nil || string(prefixed) != "prefix"+string(got) {
		t.Fatalf("AppendJSON(prefix) = %q, %v; want prefix%s", prefixed, err, got)
	}
	return got
}

func TestAppendJSON(t *testing.T) {
	float := func(f float64) *float64 { return &f }
	integer := func(n int) *int { return &n }
	seed := int64(math.MinInt64)
	tests := []struct {
		name string
		req  ChatRequest
		want string // empty when AppendJSON must fail
	}{
		{
			name: "zero",
			want: `{"model":"","messages":null}`,
		},
		{
			name: "empty messages",
			req:  ChatRequest{Model: "m", Messages: []Message{}},
			want: `{"model":"m","messages":[]}`,
		},
		{
			name: "member",
			req: ChatRequest{
				Model:       "gpt-4o-mini",
				Temperature: float(0.7),
				Messages: []Message{
					{Role: "system", Content: TextContent("Be precise.")},
					{Role: "user", Content: TextContent(`Say "hi"`)},
				},
			},
			want: `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be precise."},` +
				`{"role":"user","content":"Say \"hi\""}],"temperature":0.7}`,
		},
		{
			name: "escapes",
			req: ChatRequest{
				Model:    "a<b>&c",
				Messages: []Message{{Role: "user", Content: TextContent("\\ \n\r\t\b\f\x00\x1f\x7f \u2028\u2029 é ☃ 😀 \xff\xc3(")}},
				User:     "</script>",
			},
			want: `{"model":"a\u003cb\u003e\u0026c","messages":[{"role":"user","content":` +
				`"\\ \n\r\t\b\f\u0000\u001f` + "\x7f" + ` \u2028\u2029 é ☃ 😀 \ufffd\ufffd("}],"user":"\u003c/script\u003e"}`,
		},
		{
			name: "all fields",
			req: ChatRequest{
				Model: "m",
				Messages: []Message{
					{Role: "user", Content: Content{Parts: []Part{
						{Type: "text", Text: "look"},
						{Type: "image_url", ImageURL: &ImageURL{URL: "https://x/a.png", Detail: "low"}},
						{Type: "image_url", ImageURL: &ImageURL{}},
						{Type: "input_audio"},
					}}},
					{Role: "assistant", Content: Content{Null: true}, ToolCalls: json.RawMessage(` [ {"id" : "c1"} ] `)},
					{Role: "tool", Content: TextContent("42"), Name: "calc", ToolCallID: "c1"},
					{Role: "user", Content: Content{Parts: []Part{}}},
				},
				Stream:              true,
				StreamOptions:       &StreamOptions{IncludeUsage: true},
				Temperature:         float(0),
				TopP:                float(1),
				MaxTokens:           integer(math.MaxInt64),
				MaxCompletionTokens: integer(0),
				PresencePenalty:     float(-2),
				FrequencyPenalty:    float(1.5),
				Stop:                Stop{"\n\n", "END"},
				Seed:                &seed,
				N:                   integer(2),
				Tools: []Tool{
					{Type: "function", Function: RawObject(`{"name": "f", "description": "a<b"}`)},
					{Type: "web_search"},
				},
				ToolChoice:     json.RawMessage(`"auto"`),
				ResponseFormat: &ResponseFormat{Type: "json_schema", JSONSchema: RawObject("{\"name\":\"s\u2028\"}")},
				User:           "u",
			},
			want: `{"model":"m","messages":[` +
				`{"role":"user","content":[{"type":"text","text":"look"},` +
				`{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"low"}},` +
				`{"type":"image_url","image_url":{"url":""}},{"type":"input_audio"}]},` +
				`{"role":"assistant","content":null,"tool_calls":[{"id":"c1"}]},` +
				`{"role":"tool","content":"42","name":"calc","tool_call_id":"c1"},` +
				`{"role":"user","content":[]}],` +
				`"stream":true,"stream_options":{"include_usage":true},"temperature":0,"top_p":1,` +
				`"max_tokens":9223372036854775807,"max_completion_tokens":0,"presence_penalty":-2,"frequency_penalty":1.5,` +
				`"stop":["\n\n","END"],"seed":-9223372036854775808,"n":2,` +
				`"tools":[{"type":"function","function":{"name":"f","description":"a\u003cb"}},{"type":"web_search"}],` +
				`"tool_choice":"auto","response_format":{"type":"json_schema","json_schema":{"name":"s\u2028"}},"user":"u"}`,
		},
		{
			name: "omitted",
			req: ChatRequest{
				Model:          "m",
				Messages:       []Message{{Role: "user"}},
				StreamOptions:  &StreamOptions{},
				Stop:           Stop{},
				Tools:          []Tool{},
				ToolChoice:     json.RawMessage{},
				ResponseFormat: &ResponseFormat{Type: "text"},
			},
			want: `{"model":"m","messages":[{"role":"user","content":""}],"stream_options":{"include_usage":false},` +
				`"response_format":{"type":"text"}}`,
		},
		{
			name: "floats",
			req: ChatRequest{
				Temperature:      float(1e21),
				TopP:             float(1e-7),
				PresencePenalty:  float(math.Copysign(0, -1)),
				FrequencyPenalty: float(123456789.125),
			},
			want: `{"model":"","messages":null,"temperature":1e+21,"top_p":1e-7,"presence_penalty":-0,"frequency_penalty":123456789.125}`,
		},
		{
			name: "extra",
			req: ChatRequest{
				Model:       "m",
				Messages:    []Message{{Role: "user", Content: TextContent("hi")}},
				Temperature: float(0.7),
				Extra:       map[string]any{"temperature": 0.2, "reasoning_effort": "high", "Model": "<x>"},
			},
			want: `{"Model":"\u003cx\u003e","messages":[{"role":"user","content":"hi"}],"model":"m","reasoning_effort":"high","temperature":0.2}`,
		},
		{name: "NaN", req: ChatRequest{Temperature: float(math.NaN())}},
		{name: "infinity", req: ChatRequest{TopP: float(math.Inf(-1))}},
		{name: "invalid tool_choice", req: ChatRequest{ToolChoice: json.RawMessage(`{"type":`)}},
		{name: "blank tool_calls", req: ChatRequest{Messages: []Message{{Role: "assistant", ToolCalls: json.RawMessage(" ")}}}},
		{name: "invalid json_schema", req: ChatRequest{ResponseFormat: &ResponseFormat{JSONSchema: RawObject(`{} {}`)}}},
		{name: "unencodable extra", req: ChatRequest{Extra: map[string]any{"f": func() {}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkAppendJSON(t, &tt.req)
			if string(got) != tt.want {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// BenchmarkAppendJSON encodes a member's request: a system prompt, a short
// conversation and a temperature, as upstream's Chat sends it.
func BenchmarkAppendJSON(b *testing.B) {
	temp := 0.7
	req := &ChatRequest{
		Model:       "gpt-4o-mini",
		Temperature: &temp,
		Messages: []Message{
			{Role: "system", Content: TextContent("You are one of several experts. Be precise.")},
			{Role: "user", Content: TextContent("What are the trade-offs of write-ahead logging?")},
			{Role: "assistant", Content: TextContent(strings.Repeat("An earlier answer, \"quoted\". ", 20))},
			{Role: "user", Content: TextContent("And on power loss?")},
		},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := req.AppendJSON(nil); err != nil {
			b.Fatal(err)
		}
	}
}
