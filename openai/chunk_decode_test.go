package openai

import (
	"reflect"
	"testing"
)

// Chunks as OpenAI-compatible providers stream them: a content delta and
// the final usage-only frame.
const (
	contentChunk = `{"id":"chatcmpl-AbC123xyz","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0123456789","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"usage":null}`
	usageChunk   = `{"id":"chatcmpl-AbC123xyz","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0123456789","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`
)

// fastChunks are chunks decodeChunkFast decodes itself.
var fastChunks = []string{
	contentChunk,
	usageChunk,
	`{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`,
	`{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	`{"id":"c","choices":[{"index":0,"delta":{"content":"line\nwith \"quotes\" and \u00e9"},"finish_reason":null}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}`,
	`{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-0.1,"bytes":[120],"top_logprobs":[]}]},"finish_reason":null}]}`,
	`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":null,"cost_usd":null},"consortium":{"run_id":"r"}}`,
	`{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"native_finish_reason":null,"finish_reason":null}],"provider":"p","service_tier":"default","obfuscation":"abc"}`,
	`{"error":{"message":"overloaded","type":"server_error"}}`,
	`{"message":"bare error"}`,
	" {\n\t\"id\" : \"c\" ,\r\n \"choices\" : [ { \"delta\" : { \"content\" : \"é\" } } ] } \n",
}

// chunkSeeds are corners of the fast path: each field, nulls, escapes,
// duplicates, folded keys, numbers, whitespace and trailing text.
var chunkSeeds = []string{
	`{"id":null,"object":null,"created":null,"model":null,"choices":null,"usage":null,"system_fingerprint":null,"consortium":null}`,
	`{"choices":[null,{"index":null,"delta":null,"finish_reason":null}]}`,
	`{"choices":[{"delta":{"role":null,"content":null,"tool_calls":null}}]}`,
	`{"choices":[],"usage":{"prompt_tokens":null,"completion_tokens":null,"total_tokens":null,"prompt_tokens_details":{"cached_tokens":null}}}`,
	`{"choices":[],"usage":{"prompt_tokens_details":{}},"consortium":[1,"x",{"a":null}]}`,
	`{"choices":[],"usage":{"cost_usd":0.0012}}`,
	`{"choices":[],"usage":{"cost_usd":1e400}}`,
	`{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":2}}`,
	`{"choices":[],"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":1}}}`,
	`{"choices":[{"index":0,"index":1}]}`,
	`{"choices":[{"finish_reason":"stop","finish_reason":null}]}`,
	`{"choices":[{"delta":{"role":"assistant","role":"assistant"}}]}`,
	`{"choices":[{"delta":{"tool_calls":[],"tool_calls":[]}}]}`,
	`{"choices":[],"usage":null,"usage":null}`,
	`{"consortium":1,"consortium":2,"choices":[]}`,
	`{"choices":[{"Delta":{"content":"x"},"delta":{"Content":"y","ROLE":"assistant"},"Index":3,"FINISH_REASON":"stop"}]}`,
	`{"Choices":[],"Usage":{"total_tokens":1},"usage":{"Total_Tokens":2,"PROMPT_TOKENS_DETAILS":{"cached_tokens":1}}}`,
	`{"Error":{"message":"x"}}`,
	`{"error":null,"choices":[]}`,
	`{"message":"","error":false}`,
	`{"message":"a","message":5}`,
	`{"message":5,"message":"a"}`,
	`{"\u0069d":"c","choices":[{"delt\u0061":{"c\u006fntent":"x"}}]}`,
	`{"id":"a","\u0069d":"b","choices":[]}`,
	`{"choices":[{"delta":{"content":"\ud83d\ude00 \ud800 \u0000 \/ \b\f\r\t"}}]}`,
	"{\"choices\":[{\"delta\":{\"content\":\"\xff\xfe bad\"}}],\"id\":\"\xc3\"}",
	"{\"\xff\":1,\"choices\":[]}",
	`{"model":"模型 🚀","choices":[{"delta":{"content":"日本語"}}]}`,
	`{"created":-1,"choices":[{"index":-0}]}`,
	`{"created":1e3,"choices":[]}`,
	`{"created":1.0,"choices":[]}`,
	`{"created":-1E-2,"choices":[]}`,
	`{"created":123456789012345678,"choices":[]}`,
	`{"created":1234567890123456789,"choices":[]}`,
	`{"created":-9223372036854775808,"choices":[]}`,
	`{"created":9223372036854775808,"choices":[]}`,
	`{"created":99999999999999999999999,"choices":[]}`,
	`{"choices":[{"index":9223372036854775807}]}`,
	`{"created":"1","choices":[]}`,
	`{"id":1,"choices":[]}`,
	`{"id":true,"choices":[]}`,
	`{"choices":{}}`,
	`{"choices":[1]}`,
	`{"choices":[{"delta":[]}]}`,
	`{"choices":[{"delta":{"content":{}}}]}`,
	`{"choices":[{"finish_reason":1}]}`,
	`{"choices":[],"usage":[]}`,
	`{"choices":[],"usage":{"prompt_tokens_details":"x"}}`,
	`{"choices":[],"usage":{"prompt_tokens":1.5}}`,
	`{"choices":[],"usage":true}`,
	`{"choices":[]}x`,
	`{"choices":[]}{}`,
	`{"choices":[]`,
	`{"choices":[],}`,
	`{"choices":[,]}`,
	`{"choices":nul}`,
	`{"choices":[{"delta":{"content":"a\x"}}]}`,
	`{"choices":[{"delta":{"content":"tab	inside"}}]}`,
	`{"id":"c","choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}`,
	`{"choices":[{"logprobs":[[[[[[[[[[]]]]]]]]]]}]}`,
	`{}`,
	`null`,
	` null `,
	`[]`,
	`"x"`,
	``,
}

// FuzzDecodeChunkFast: whatever decodeChunkFast decodes, decodeChunkFields
// decodes to the same chunk and error event, without error; and
// DecodeChunk answers as decodeChunkFields does.
func FuzzDecodeChunkFast(f *testing.F) {
	for _, s := range fastChunks {
		f.Add([]byte(s))
	}
	for _, s := range chunkSeeds {
		f.Add([]byte(s))
	}
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantEvent, wantErr := decodeChunkFields(data)
		if got, event, ok := decodeChunkFast(data, new(ChunkDecoder)); ok {
			if wantErr != nil {
				t.Fatalf("decodeChunkFast(%q) decoded what decodeFields refuses: %v", data, wantErr)
			}
			if !reflect.DeepEqual(got, want) || event != wantEvent {
				t.Fatalf("decodeChunkFast(%q) = %s, %v; decodeFields: %s, %v", data, dump(got), event, dump(want), wantEvent)
			}
		}
		got, event, err := DecodeChunk(data)
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) || event != wantEvent {
			t.Fatalf("DecodeChunk(%q) = %s, %v, %v; decodeFields: %s, %v, %v", data, dump(got), event, err, dump(want), wantEvent, wantErr)
		}
	})
}

// dump shows a chunk with its pointers followed.
func dump(c ChatCompletionChunk) string {
	b, err := c.AppendJSON(nil)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestDecodeChunkFastTaken: the chunks providers send take the fast path,
// so that BenchmarkDecodeChunk measures it.
func TestDecodeChunkFastTaken(t *testing.T) {
	for _, data := range fastChunks {
		got, event, ok := decodeChunkFast([]byte(data), new(ChunkDecoder))
		if !ok {
			t.Errorf("decodeChunkFast(%s) left it to decodeFields", data)
			continue
		}
		want, wantEvent, err := decodeChunkFields([]byte(data))
		if err != nil || !reflect.DeepEqual(got, want) || event != wantEvent {
			t.Errorf("decodeChunkFast(%s) = %s, %v; decodeFields: %s, %v, %v", data, dump(got), event, dump(want), wantEvent, err)
		}
	}
}

func BenchmarkDecodeChunkShapes(b *testing.B) {
	for _, bc := range []struct{ name, data string }{
		{"content", contentChunk},
		{"usage", usageChunk},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.data)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := DecodeChunk(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestChunkDecoderEqualsDecodeChunk: a ChunkDecoder reading chunks one
// after another decodes each as DecodeChunk does, whatever came before:
// the same values, escaped or not, and the same errors.
func TestChunkDecoderEqualsDecodeChunk(t *testing.T) {
	chunks := []string{
		`{"id":"a\\nb","object":"chat.completion.chunk","model":"m","choices":[]}`,
		`{"id":"a\nb","object":"chat.completion.chunk","model":"m","choices":[]}`,
		`{"id":"a\\\\nb","object":"chat.completion.chunk","model":"m\u00e9","choices":[]}`,
		`{"id":"a\\nb","object":"chat.completion.chunk","model":"mé","choices":[]}`,
		"{\"id\":\"\xff\",\"model\":\"\xff\",\"choices\":[]}",
		"{\"id\":\"\xff\",\"model\":\"\ufffd\",\"choices\":[]}",
		`{"id":"x","object":null,"model":7,"choices":[]}`,
		`{"id":"x","object":"chat.completion.chunk","model":"","choices":[]}`,
	}
	chunks = append(chunks, decodeSeeds...)
	var d ChunkDecoder
	for range 2 {
		for _, data := range chunks {
			got, gotEvent, gotErr := d.Decode([]byte(data))
			want, wantEvent, wantErr := DecodeChunk([]byte(data))
			if !reflect.DeepEqual(got, want) || gotEvent != wantEvent || (gotErr == nil) != (wantErr == nil) ||
				(gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Errorf("Decode(%q) = %+v, %v, %v; DecodeChunk: %+v, %v, %v", data, got, gotEvent, gotErr, want, wantEvent, wantErr)
			}
		}
	}
}

// FuzzChunkDecoder: one ChunkDecoder reading two chunks, and the first
// again, as a stream reads them, decodes each as DecodeChunk does: what it
// kept of one chunk never changes what it makes of the next.
func FuzzChunkDecoder(f *testing.F) {
	seeds := append(append([]string{}, decodeSeeds...), fastChunks...)
	for i, s := range seeds {
		f.Add([]byte(s), []byte(seeds[(i+1)%len(seeds)]))
		f.Add([]byte(s), []byte(s))
	}
	f.Add([]byte(`{"id":"a","object":"o","model":"m","choices":[]}`), []byte(`{"id":"a\u0062","object":"o\\","model":"m\ufffd","choices":[]}`))
	f.Add([]byte("{\"id\":\"\xff\",\"model\":\"\xef\xbf\xbd\",\"choices\":[]}"), []byte("{\"id\":\"\xef\xbf\xbd\",\"model\":\"\xff\",\"choices\":[]}"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var d ChunkDecoder
		for _, data := range [][]byte{a, b, a} {
			got, gotEvent, gotErr := d.Decode(data)
			want, wantEvent, wantErr := DecodeChunk(data)
			if !reflect.DeepEqual(got, want) || gotEvent != wantEvent || (gotErr == nil) != (wantErr == nil) ||
				(gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Fatalf("Decode(%q) after %q = %s, %v, %v; DecodeChunk: %s, %v, %v", data, a, dump(got), gotEvent, gotErr, dump(want), wantEvent, wantErr)
			}
		}
	})
}
