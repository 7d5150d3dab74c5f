package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeSeeds are chunks and completions as providers send them, and
// corners of exact keys and encoding/json's rules.
var decodeSeeds = []string{
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{"content":"line\nwith \"quotes\" and \u00e9"},"finish_reason":null}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
	`{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}`,
	`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\":"}}]}}]}`,
	`{"error":{"message":"overloaded","type":"server_error"}}`,
	`{"message":"bare error"}`,
	`{"error":null}`,
	`{"choices":null,"message":""}`,
	`{"ID":"folded","choices":[]}`,
	`{"id":"a","id":"duplicate","choices":[]}`,
	`{"created":1.5,"choices":[]}`,
	`{"created":12345678901234567890,"choices":[]}`,
	`{"choices":[{"index":-0,"delta":null,"finish_reason":null}]}`,
	`{"choices":[{"delta":{"content":null,"role":null}}],"consortium":null,"system_fingerprint":"fp"}`,
	"{\"choices\":[{\"delta\":{\"content\":\"\xff\xfe invalid utf-8\"}}]}",
	`{"choices":[{"delta":{"content":5}}]}`,
	`{"choices":"x"}`,
	` { "choices" : [ ] , "model" : "m" } `,
	`{"choices":[]} trailing`,
	`{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"An answer.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	`{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
	`{"choices":[{"message":null,"finish_reason":null}],"consortium":{"run_id":"run_1"}}`,
	`{"choicеs":[]}`,
	`{"choices":[{"index":0,"delta":{"content":"x"}}],"message":{"a":1}}`,
	`{"error":{"message":"overloaded"},"message":5}`,
	`{"Message":"folded bare error"}`,
	`{"ch\u006fices":[{"delta":{"c\u006fntent":"escaped keys"}}]}`,
	`{"choices":[{"delta":{"content":"a","content":"b"}}]}`,
	`[]`,
	`null`,
}

// FuzzDecodeChunk: DecodeChunk agrees with encoding/json wherever exact
// and folded keys agree, flags every event without choices that
// ParseError reads as an error, and only events without choices.
func FuzzDecodeChunk(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, errorEvent, err := DecodeChunk(data)
		checkPlain(t, data, &got, err)
		if err != nil {
			return
		}
		if _, ok := ParseError(data); ok && got.Choices == nil && !errorEvent {
			t.Fatalf("DecodeChunk(%q) missed an error event", data)
		}
		if errorEvent && got.Choices != nil {
			t.Fatalf("DecodeChunk(%q) flags a chunk with choices as an error event", data)
		}
	})
}

// FuzzDecodeCompletion: DecodeCompletion agrees with encoding/json
// wherever exact and folded keys agree.
func FuzzDecodeCompletion(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeCompletion(data)
		if got == nil {
			got = new(ChatCompletion)
		}
		checkPlain(t, data, got, err)
	})
}

// TestDecodeExactKeys: a provider's keys are read as OpenAI's API writes
// them; a key of another case is no field, and a field given twice is an
// error.
func TestDecodeExactKeys(t *testing.T) {
	content := func(s string) *string { return &s }
	for _, tc := range []struct {
		name, data string
		want       ChatCompletionChunk
		errorEvent bool
		err        bool
	}{
		{name: "exact", data: `{"id":"c","choices":[{"index":1,"delta":{"role":"assistant","content":"x"}}]}`,
			want: ChatCompletionChunk{ID: "c", Choices: []ChunkChoice{{Index: 1, Delta: Delta{Role: "assistant", Content: content("x")}}}}},
		{name: "escaped keys are the keys", data: `{"\u0069d":"c","choices":[{"delt\u0061":{"content":"x"}}]}`,
			want: ChatCompletionChunk{ID: "c", Choices: []ChunkChoice{{Delta: Delta{Content: content("x")}}}}},
		{name: "folded top-level keys", data: `{"ID":"c","Model":"m","choices":[],"USAGE":{"total_tokens":1}}`,
			want: ChatCompletionChunk{Choices: []ChunkChoice{}}},
		{name: "folded CHOICES", data: `{"CHOICES":[{"delta":{"content":"x"}}]}`},
		{name: "folded delta keys", data: `{"choices":[{"Delta":{"content":"x"},"delta":{"Content":"y","ROLE":"assistant"}}]}`,
			want: ChatCompletionChunk{Choices: []ChunkChoice{{}}}},
		{name: "folded usage keys", data: `{"choices":[],"usage":{"Prompt_Tokens":1,"total_tokens":2}}`,
			want: ChatCompletionChunk{Choices: []ChunkChoice{}, Usage: &Usage{TotalTokens: 2}}},
		{name: "folded error is no error event", data: `{"ERROR":{"message":"x"}}`},
		{name: "folded message is no error event", data: `{"Message":"x"}`},
		{name: "error event", data: `{"error":{"message":"x"}}`, errorEvent: true},
		{name: "duplicate id", data: `{"id":"a","id":"b","choices":[]}`, err: true},
		{name: "duplicate content", data: `{"choices":[{"delta":{"content":"a","content":"b"}}]}`, err: true},
		{name: "duplicate escaped", data: `{"choices":[],"ch\u006fices":[]}`, err: true},
		{name: "unknown keys may repeat", data: `{"x":1,"x":2,"choices":[]}`, want: ChatCompletionChunk{Choices: []ChunkChoice{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errorEvent, err := DecodeChunk([]byte(tc.data))
			if (err != nil) != tc.err {
				t.Fatalf("DecodeChunk(%s) error %v, want error %v", tc.data, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) || errorEvent != tc.errorEvent {
				t.Errorf("DecodeChunk(%s) = %+v, %v; want %+v, %v", tc.data, got, errorEvent, tc.want, tc.errorEvent)
			}
		})
	}

	for _, tc := range []struct{ data, want string }{
		{`{"choices":[{"message":{"role":"assistant","content":"yes","Content":"no"},"finish_reason":"stop"}]}`, "yes"},
		{`{"choices":[{"message":{"role":"assistant","CONTENT":"no"},"finish_reason":"stop"}]}`, ""},
	} {
		cc, err := DecodeCompletion([]byte(tc.data))
		if err != nil {
			t.Fatalf("DecodeCompletion(%s): %v", tc.data, err)
		}
		if got := cc.Choices[0].Message.Content; got == nil && tc.want != "" || got != nil && *got != tc.want {
			t.Errorf("DecodeCompletion(%s) content %v, want %q", tc.data, got, tc.want)
		}
	}
	if _, err := DecodeCompletion([]byte(`{"choices":[{"finish_reason":"stop","finish_reason":"length"}]}`)); err == nil {
		t.Error("DecodeCompletion took a finish_reason given twice")
	}

	var calls []ToolCall
	if err := json.Unmarshal([]byte(`[{"id":"1","Function":{"name":"no"},"function":{"name":"f","ARGUMENTS":"no"}}]`), &calls); err != nil ||
		len(calls) != 1 || calls[0].Function != (FunctionCall{Name: "f"}) {
		t.Errorf("tool calls = %+v, %v", calls, err)
	}
}

func BenchmarkDecodeChunk(b *testing.B) {
	data := []byte(decodeSeeds[1])
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := DecodeChunk(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkDecoder decodes a stream's chunk (its id, object and
// model repeated in every chunk) with DecodeChunk, and again and again
// with one ChunkDecoder, as a stream is read.
func BenchmarkChunkDecoder(b *testing.B) {
	data := []byte(decodeSeeds[0])
	b.Run("DecodeChunk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := DecodeChunk(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ChunkDecoder", func(b *testing.B) {
		b.ReportAllocs()
		var d ChunkDecoder
		for b.Loop() {
			if _, _, err := d.Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeCompletion(b *testing.B) {
	data := []byte(decodeSeeds[20])
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeCompletion(data); err != nil {
			b.Fatal(err)
		}
	}
}
