package openai

import (
	"bytes"
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// memberRequest is a consortium member's call: a system prompt and the
// user's question, about 1 KB, with a temperature.
func memberRequest() *ChatRequest {
	temp := 0.7
	return &ChatRequest{
		Model:       "gpt-4o-mini",
		Temperature: &temp,
		Messages: []Message{
			{Role: "system", Content: TextContent("You are one of several experts answering the same question. " +
				"Be precise, say what you are unsure of, and keep to the point.")},
			{Role: "user", Content: TextContent(strings.Repeat("What are the trade-offs of write-ahead logging "+
				"against shadow paging for a small embedded database?\nConsider \"power loss\" & fsync cost. ", 7))},
		},
	}
}

// arbiterRequest is a consortium's arbiter call: one user message of about
// 8 KB that holds every member's answer.
func arbiterRequest() *ChatRequest {
	var prompt strings.Builder
	prompt.WriteString("Several experts answered the question below. Write the best single answer.\n\n")
	answer := strings.Repeat("Write-ahead logging appends each change to a log and syncs it before the page is "+
		"written, so a crash <mid-write> replays the log; shadow paging writes new pages and swaps a root "+
		"pointer, which costs more copying & fragments the file.\n", 10)
	for i, model := range []string{"openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "google/gemini-2.5-flash"} {
		prompt.WriteString("<answer id=\"" + string(rune('A'+i)) + "\" model=\"" + model + "\">\n")
		prompt.WriteString(answer)
		prompt.WriteString("</answer>\n\n")
	}
	temp := 0.2
	return &ChatRequest{
		Model:       "gpt-4o",
		Temperature: &temp,
		Messages:    []Message{{Role: "user", Content: TextContent(prompt.String())}},
	}
}

// BenchmarkRequestJSON encodes the requests of a consortium run, as
// upstream's openai dialect does for each call.
func BenchmarkRequestJSON(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  *ChatRequest
	}{{"member", memberRequest()}, {"arbiter", arbiterRequest()}} {
		b.Run(bc.name, func(b *testing.B) {
			body, err := bc.req.AppendJSON(nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.req.AppendJSON(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// requestFields are the fields of a request's types that appendFields
// writes, with their types and tags. Content is written as its MarshalJSON
// writes it.
var requestFields = map[reflect.Type][]string{
	reflect.TypeFor[ChatRequest](): {`Model string json:"model"`, `Messages []openai.Message json:"messages"`,
		`Stream bool json:"stream,omitempty"`, `StreamOptions *openai.StreamOptions json:"stream_options,omitempty"`,
		`Temperature *float64 json:"temperature,omitempty"`, `TopP *float64 json:"top_p,omitempty"`,
		`MaxTokens *int json:"max_tokens,omitempty"`, `MaxCompletionTokens *int json:"max_completion_tokens,omitempty"`,
		`PresencePenalty *float64 json:"presence_penalty,omitempty"`, `FrequencyPenalty *float64 json:"frequency_penalty,omitempty"`,
		`Stop openai.Stop json:"stop,omitempty"`, `Seed *int64 json:"seed,omitempty"`, `N *int json:"n,omitempty"`,
		`Tools []openai.Tool json:"tools,omitempty"`, `ToolChoice json.RawMessage json:"tool_choice,omitempty"`,
		`ResponseFormat *openai.ResponseFormat json:"response_format,omitempty"`, `User string json:"user,omitempty"`,
		`Extra map[string]interface {} json:"-"`},
	reflect.TypeFor[Message](): {`Role string json:"role"`, `Content openai.Content json:"content"`, `Name string json:"name,omitempty"`,
		`ToolCalls json.RawMessage json:"tool_calls,omitempty"`, `ToolCallID string json:"tool_call_id,omitempty"`},
	reflect.TypeFor[Content]():        {`Text string `, `Parts []openai.Part `, `Null bool `},
	reflect.TypeFor[Part]():           {`Type string json:"type"`, `Text string json:"text,omitempty"`, `ImageURL *openai.ImageURL json:"image_url,omitempty"`},
	reflect.TypeFor[ImageURL]():       {`URL string json:"url"`, `Detail string json:"detail,omitempty"`},
	reflect.TypeFor[StreamOptions]():  {`IncludeUsage bool json:"include_usage"`},
	reflect.TypeFor[Tool]():           {`Type string json:"type"`, `Function openai.RawObject json:"function,omitempty"`},
	reflect.TypeFor[ResponseFormat](): {`Type string json:"type"`, `JSONSchema openai.RawObject json:"json_schema,omitempty"`},
	reflect.TypeFor[Stop]():           nil,
}

// TestChatRequestAppendJSONFields fails when a request's types gain, lose,
// retype or retag a field, or gain a marshaling method: appendFields writes
// each field by hand and would leave a new one out, which the fuzzer,
// building requests from the fields it knows, would not see.
func TestChatRequestAppendJSONFields(t *testing.T) {
	for typ, want := range requestFields {
		var got []string
		if typ.Kind() == reflect.Struct {
			for f := range typ.Fields() {
				got = append(got, f.Name+" "+f.Type.String()+" "+string(f.Tag))
			}
		} else if typ.Kind() != reflect.Slice || typ.Elem().Kind() != reflect.String {
			t.Errorf("%v is a %v, not a []string; teach ChatRequest.appendFields", typ, typ.Kind())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v's fields changed; teach ChatRequest.appendFields and this test\n got %q\nwant %q", typ, got, want)
		}
		// encoding/json would call such a method, appendFields does not;
		// it writes Content as Content.MarshalJSON does, and ChatRequest's
		// is the one that calls appendFields.
		p := reflect.PointerTo(typ)
		marshals := p.Implements(reflect.TypeFor[json.Marshaler]()) || p.Implements(reflect.TypeFor[encoding.TextMarshaler]())
		if want := typ == reflect.TypeFor[ChatRequest]() || typ == reflect.TypeFor[Content](); marshals != want {
			t.Errorf("%v: has a marshaling method %v, want %v; teach ChatRequest.appendFields", typ, marshals, want)
		}
	}
}

// checkRequestJSON fails t unless ChatRequest.AppendJSON and MarshalJSON
// encode r as encoding/json encodes its typed fields (r has no Extra), and
// each message's Content as json.Marshal encodes its text or parts, or
// fail alike. It returns the encoding.
func checkRequestJSON(t *testing.T, r *ChatRequest) []byte {
	t.Helper()
	for i := range r.Messages {
		c := r.Messages[i].Content
		got, _ := c.MarshalJSON()
		var want []byte
		switch {
		case c.Parts != nil:
			want, _ = json.Marshal(c.Parts)
		case c.Null:
			want = []byte("null")
		default:
			want, _ = json.Marshal(c.Text)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Content%+v.MarshalJSON() = %s, want %s", c, got, want)
		}
	}
	want, werr := json.Marshal((*plainChatRequest)(r))
	got, err := r.AppendJSON(nil)
	if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON(%+v) = %s, %v; json.Marshal: %s, %v", r, got, err, want, werr)
	}
	if err != nil {
		if got != nil {
			t.Fatalf("AppendJSON(nil) = %q with error %v, want nil", got, err)
		}
		if b, err := r.MarshalJSON(); err == nil || b != nil {
			t.Fatalf("MarshalJSON() = %q, %v; want an error", b, err)
		}
		return nil
	}
	// The fallback to json.Marshal is for the values it refuses only, so
	// that the bytes compared above are the hand encoder's.
	if _, ok := r.appendJSON(nil); !ok {
		t.Fatalf("appendJSON(%+v) fell back, but json.Marshal encodes it: %s", r, want)
	}
	if b, err := r.MarshalJSON(); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("MarshalJSON() = %s, %v; want %s", b, err, want)
	}
	prefix := make([]byte, 6, 8) // too short: AppendJSON grows it
	copy(prefix, "prefix")
	if prefixed, err := r.AppendJSON(prefix); err != nil || string(prefixed) != "prefix"+string(want) {
		t.Fatalf("AppendJSON(prefix) = %q, %v; want prefix%s", prefixed, err, want)
	}
	return got
}

// Bits of FuzzChatRequestAppendJSON's set: which optional parts the
// request has.
const (
	reqMessages = 1 << iota
	reqNullContent
	reqParts
	reqImage
	reqStream
	reqStreamOptions
	reqTemperature
	reqTopP
	reqMaxTokens
	reqMaxCompletionTokens
	reqPenalties
	reqStop
	reqSeed
	reqN
	reqTools
	reqToolChoice
	reqResponseFormat
	reqEmptySlices
)

// FuzzChatRequestAppendJSON: ChatRequest.AppendJSON, without Extra,
// writes what json.Marshal writes of the typed fields, byte for byte, and
// fails where it fails. The request is built from the arguments, so that
// every field, raw bytes and floats included, takes any value.
func FuzzChatRequestAppendJSON(f *testing.F) {
	type seed struct {
		model, role, text, name, toolCallID, user, stop, detail string
		toolCalls, toolChoice, function, schema                 []byte
		temperature, topP, penalty                              float64
		maxTokens                                               int
		seed                                                    int64
		set                                                     uint32
	}
	const all = 1<<18 - 1&^reqEmptySlices
	fn := []byte(`{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}`)
	for _, s := range []seed{
		{model: "gpt-4o-mini", role: "user", text: "hi", set: reqMessages},
		{model: "gpt-4o-mini", role: "system", text: "Be precise.", temperature: 0.7, set: reqMessages | reqTemperature},
		{model: "m", role: "tool", text: "42", name: "calc", toolCallID: "call_1", user: "u-1", set: reqMessages},
		{model: "m", role: "assistant", toolCalls: []byte(`[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]`), set: reqMessages | reqNullContent},
		{model: "m", role: "user", text: "look", detail: "low", set: reqMessages | reqParts | reqImage},
		{model: "m", role: "user", set: reqMessages | reqParts},
		{model: "m", role: "user", text: "x", stop: "\n\n", detail: "high", temperature: 1, topP: 0.9, penalty: -2, maxTokens: 100, seed: 42,
			toolCalls: []byte(`[]`), toolChoice: []byte(`"auto"`), function: fn, schema: []byte(`{"name":"s","schema":{"type":"object"}}`), set: all},
		{set: all | reqEmptySlices},
		{set: reqEmptySlices},
		{set: 0},
		{model: "a<b>&c", role: "user", text: "<script>alert(1)</script> & more", name: "<n>", user: "</script>", stop: "a&b", detail: ">", set: reqMessages | reqStop | reqParts | reqImage},
		{text: "line\u2028sep\u2029para", model: "m\u2028", toolChoice: []byte("\"\u2028<&>\u2029\""), set: reqMessages | reqToolChoice},
		{text: "\xff\xfe invalid \xe2\x80 utf-8 \xed\xa0\x80", role: "\x80", user: "\xc3(", stop: "\xff", set: reqMessages | reqStop},
		{text: "\x00\x01\b\f\n\r\t\x1f\x7f \"quoted\" \\ back/slash é 日本 😀", toolCallID: "\t", set: reqMessages},
		{toolCalls: []byte(" [ {\"index\" : 0,\n\t\"x\":\"<&>\u2028\"} ] "), function: []byte(" { \"a\" : [1, 2.50, true, null] } "), set: reqMessages | reqTools},
		{toolCalls: []byte(`[{"a":"\xff"}]`), schema: []byte(`{"s":"\xfe<"}`), set: reqMessages | reqResponseFormat},
		{toolCalls: []byte(`nope`), set: reqMessages},
		{toolCalls: []byte(" "), set: reqMessages},
		{toolChoice: []byte(`{"type":`), set: reqToolChoice},
		{function: []byte(`{} {}`), set: reqTools},
		{schema: []byte(`[1]`), function: []byte(`"f"`), toolChoice: []byte(`null`), set: reqResponseFormat | reqTools | reqToolChoice},
		{temperature: math.NaN(), set: reqTemperature},
		{topP: math.Inf(1), set: reqTopP},
		{penalty: math.Inf(-1), set: reqPenalties},
		{temperature: 1e21, topP: 1e-7, penalty: math.Copysign(0, -1), set: reqTemperature | reqTopP | reqPenalties},
		{temperature: 123456789.125, topP: 5e-324, penalty: math.MaxFloat64, set: reqTemperature | reqTopP | reqPenalties},
		{temperature: 1e20, topP: 1e-6, penalty: 0.000001234, set: reqTemperature | reqTopP | reqPenalties},
		{maxTokens: math.MinInt, seed: math.MinInt64, set: reqMaxTokens | reqMaxCompletionTokens | reqSeed | reqN},
		{maxTokens: math.MaxInt, seed: math.MaxInt64, set: reqMaxTokens | reqSeed | reqN | reqStream | reqStreamOptions},
		{maxTokens: 0, seed: 0, set: reqMaxTokens | reqSeed | reqN | reqStreamOptions},
	} {
		f.Add(s.model, s.role, s.text, s.name, s.toolCallID, s.user, s.stop, s.detail, s.toolCalls, s.toolChoice, s.function, s.schema,
			s.temperature, s.topP, s.penalty, s.maxTokens, s.seed, s.set)
	}
	f.Fuzz(func(t *testing.T, model, role, text, name, toolCallID, user, stop, detail string, toolCalls, toolChoice, function, schema []byte,
		temperature, topP, penalty float64, maxTokens int, seed int64, set uint32) {
		r := &ChatRequest{Model: model, User: user, Stream: set&reqStream != 0}
		empty := set&reqEmptySlices != 0
		if set&reqMessages != 0 {
			m := Message{Role: role, Name: name, ToolCalls: toolCalls, ToolCallID: toolCallID, Content: TextContent(text)}
			switch {
			case set&reqParts != 0:
				m.Content = Content{Parts: []Part{{Type: "text", Text: text}}}
				if set&reqImage != 0 {
					m.Content.Parts = append(m.Content.Parts, Part{Type: name, ImageURL: &ImageURL{URL: text, Detail: detail}}, Part{Type: "image_url", ImageURL: &ImageURL{}})
				}
				if empty {
					m.Content.Parts = m.Content.Parts[:0]
				}
			case set&reqNullContent != 0:
				m.Content = Content{Null: true, Text: text}
			}
			// A second message, so that messages are separated.
			r.Messages = []Message{m, {Role: role, Content: TextContent(detail)}}
		} else if empty {
			r.Messages = []Message{}
		}
		if set&reqStreamOptions != 0 {
			r.StreamOptions = &StreamOptions{IncludeUsage: set&reqStream != 0}
		}
		if set&reqTemperature != 0 {
			r.Temperature = &temperature
		}
		if set&reqTopP != 0 {
			r.TopP = &topP
		}
		if set&reqMaxTokens != 0 {
			r.MaxTokens = &maxTokens
		}
		if set&reqMaxCompletionTokens != 0 {
			n := maxTokens / 2
			r.MaxCompletionTokens = &n
		}
		if set&reqPenalties != 0 {
			other := -penalty
			r.PresencePenalty, r.FrequencyPenalty = &penalty, &other
		}
		if set&reqStop != 0 {
			r.Stop = Stop{stop, detail}
		} else if empty {
			r.Stop = Stop{}
		}
		if set&reqSeed != 0 {
			r.Seed = &seed
		}
		if set&reqN != 0 {
			n := int(seed % 8)
			r.N = &n
		}
		if set&reqTools != 0 {
			r.Tools = []Tool{{Type: "function", Function: function}, {Type: detail}}
		} else if empty {
			r.Tools = []Tool{}
		}
		if set&reqToolChoice != 0 {
			r.ToolChoice = toolChoice
		} else if empty {
			r.ToolChoice = json.RawMessage{}
		}
		if set&reqResponseFormat != 0 {
			r.ResponseFormat = &ResponseFormat{Type: detail, JSONSchema: schema}
		}
		checkRequestJSON(t, r)
	})
}
