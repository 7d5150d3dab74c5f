package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// referenceJSON is how ChatRequest.MarshalJSON encoded a request before
// AppendJSON: encoding/json on the fields, then Extra's fields merged over
// them through a map. AppendJSON must give the same bytes and errors.
func referenceJSON(r *ChatRequest) ([]byte, error) {
	type plain ChatRequest
	b, err := json.Marshal((*plain)(r))
	if err != nil || len(r.Extra) == 0 {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("param %s: %w", k, err)
		}
		fields[k] = raw
	}
	return json.Marshal(fields)
}

// checkAppendJSON fails t unless AppendJSON and json.Marshal encode r as
// referenceJSON does, with the same error if any. It returns the encoding.
func checkAppendJSON(t *testing.T, r *ChatRequest) []byte {
	t.Helper()
	want, wantErr := referenceJSON(r)
	got, err := r.AppendJSON(nil)
	if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("AppendJSON(%+v) error %v, want %v", r, err, wantErr)
	}
	if wantErr != nil {
		if got != nil {
			t.Fatalf("AppendJSON(nil) = %q with error %v, want nil", got, err)
		}
		if _, err := json.Marshal(r); err == nil {
			t.Fatalf("json.Marshal(%+v) succeeded, want an error", r)
		}
		return nil
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON(%+v)\n got %s\nwant %s", r, got, want)
	}
	prefixed, err := r.AppendJSON([]byte("prefix"))
	if err != nil || string(prefixed) != "prefix"+string(want) {
		t.Fatalf("AppendJSON(prefix) = %q, %v; want prefix%s", prefixed, err, want)
	}
	marshaled, err := json.Marshal(r)
	if err != nil || !bytes.Equal(marshaled, want) {
		t.Fatalf("json.Marshal(%+v) = %s, %v; want %s", r, marshaled, err, want)
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
					{Type: "function", Function: json.RawMessage(`{"name": "f", "description": "a<b"}`)},
					{Type: "web_search"},
				},
				ToolChoice:     json.RawMessage(`"auto"`),
				ResponseFormat: &ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage("{\"name\":\"s\u2028\"}")},
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
		{name: "invalid json_schema", req: ChatRequest{ResponseFormat: &ResponseFormat{JSONSchema: json.RawMessage(`{} {}`)}}},
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

// FuzzAppendJSON: AppendJSON encodes any request as json.Marshal did before
// it, with the same error if any. The request is body decoded, with text
// (which need not be UTF-8) in an added message, raw (which need not be
// JSON) as tool_choice, and extra decoded into Extra.
func FuzzAppendJSON(f *testing.F) {
	seeds := []struct{ body, text, raw, extra string }{
		{body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0.7}`},
		{body: `{"model":"m","messages":[{"role":"user","content":"\"\\\/\b\f\n\r\t\u0001\u001f\u007f"}]}`},
		{body: `{"model":"<m>","messages":[{"role":"user","content":"a<b>&c \u2028\u2029 </script>"}],"user":"&amp;"}`},
		{body: `{"model":"m","messages":[{"role":"user","content":"\ud800 \udfff \xff"}]}`, text: "bad \xff\xfe utf-8 \xe2\x80 \xed\xa0\x80 \u2028"},
		{body: `{"model":"m","messages":[],"temperature":1e21,"top_p":1e-7,"presence_penalty":0.1,"frequency_penalty":-0}`},
		{body: `{"model":"m","messages":[],"temperature":9.999999999999999e20,"top_p":0.000001,"presence_penalty":1e-320,"frequency_penalty":1.7976931348623157e308}`},
		{body: `{"model":"m","messages":[],"max_tokens":9223372036854775807,"max_completion_tokens":-1,"seed":-9223372036854775808,"n":0}`},
		{body: `{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[ {"id": "c1", "type":"function"} ]},{"role":"assistant"}]}`},
		{body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"u","detail":"high"}},{"type":"image_url","image_url":null}]},{"role":"user","content":[]}]}`},
		{body: `{"model":"m","messages":[{"role":"tool","content":"4","name":"calc","tool_call_id":"c1"}],"tools":[{"type":"function","function":{ "name" : "f", "parameters": {"a": "<&>"} }},{"type":"x"}],"tool_choice":{"type":"function","function":{"name":"f"}}}`},
		{body: `{"model":"m","messages":[],"stop":"END"}`},
		{body: `{"model":"m","messages":[],"stop":["a","\n"],"stream":true,"stream_options":{"include_usage":true}}`},
		{body: `{"model":"m","messages":[],"stop":[],"stream":false,"stream_options":{}}`},
		{body: `{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}}`},
		{body: `{"model":"m","messages":[],"response_format":{"type":"json_object"}}`},
		{body: `{"model":"m","messages":[],"temperature":0.7}`, extra: `{"temperature":0.2,"reasoning_effort":"high"}`},
		{body: `{"model":"m","messages":[]}`, extra: `{"model":"<other>","messages":null,"x":{"b":[1,2.5e30]}}`},
		{body: `{"model":"m","messages":[]}`, raw: ` { "type" : "auto" } `},
		{body: `{"model":"m","messages":[]}`, raw: `{"a":`},
		{body: `{"model":"m","messages":[]}`, raw: "\"\u2028<\xff>\""},
		{body: `{"model":"m","messages":[{"role":1}]}`},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.text, []byte(s.raw), []byte(s.extra))
	}
	f.Fuzz(func(t *testing.T, body []byte, text string, raw, extra []byte) {
		var r ChatRequest
		// A type error still leaves the other fields decoded: a request
		// all the same.
		_ = json.Unmarshal(body, &r)
		if text != "" {
			r.Messages = append(r.Messages, Message{Role: text, Content: TextContent(text), Name: text})
		}
		if len(raw) > 0 {
			r.ToolChoice = raw
		}
		var params map[string]any
		if json.Unmarshal(extra, &params) == nil && len(params) > 0 {
			r.Extra = params
		}
		checkAppendJSON(t, &r)
	})
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
