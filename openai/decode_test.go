package openai

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeSeeds are chunks and completions as providers send them, and the
// corners where a fast decoder could part from encoding/json.
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
	`[]`,
	`null`,
}

// FuzzDecodeChunk: DecodeChunk agrees with json.Unmarshal into a chunk on
// every input, and flags every event without choices that ParseError
// reads as an error, and only events without choices.
func FuzzDecodeChunk(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want ChatCompletionChunk
		wantErr := json.Unmarshal(data, &want)
		got, errorEvent, err := DecodeChunk(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("DecodeChunk(%q) error = %v, json.Unmarshal's = %v", data, err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeChunk(%q) = %#v\njson.Unmarshal: %#v", data, got, want)
		}
		if _, ok := ParseError(data); ok && want.Choices == nil && !errorEvent {
			t.Fatalf("DecodeChunk(%q) missed an error event", data)
		}
		if errorEvent && want.Choices != nil {
			t.Fatalf("DecodeChunk(%q) flags a chunk with choices as an error event", data)
		}
	})
}

// FuzzDecodeCompletion: DecodeCompletion agrees with json.Unmarshal on
// every input.
func FuzzDecodeCompletion(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want ChatCompletion
		wantErr := json.Unmarshal(data, &want)
		got, err := DecodeCompletion(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("DecodeCompletion(%q) error = %v, json.Unmarshal's = %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(*got, want) {
			t.Fatalf("DecodeCompletion(%q) = %#v\njson.Unmarshal: %#v", data, *got, want)
		}
	})
}

// TestDecodeFastPath: the usual chunk and completion take the fast pass.
func TestDecodeFastPath(t *testing.T) {
	for _, s := range decodeSeeds[:5] {
		if _, _, ok := fastChunk([]byte(s)); !ok {
			t.Errorf("fastChunk(%s) is unsure", s)
		}
	}
	for _, s := range decodeSeeds[20:23] {
		if _, ok := fastCompletion([]byte(s)); !ok {
			t.Errorf("fastCompletion(%s) is unsure", s)
		}
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
