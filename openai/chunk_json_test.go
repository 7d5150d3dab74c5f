package openai

import (
	"bytes"
	"encoding"
	"encoding/json"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// streamedAnswer is a consortium's streamed answer as proxy's
// consortiumStream writes it: the role chunk, 20 deltas of the synthesis,
// the finish chunk with the consortium object, and the usage chunk.
func streamedAnswer() []*ChatCompletionChunk {
	chunk := func(choices ...ChunkChoice) *ChatCompletionChunk {
		if choices == nil {
			choices = []ChunkChoice{}
		}
		return &ChatCompletionChunk{ID: "chatcmpl-run_5f2c9a1e7b3d4c68", Object: "chat.completion.chunk", Created: 1796000000, Model: "council", Choices: choices}
	}
	empty, stop := "", "stop"
	chunks := []*ChatCompletionChunk{chunk(ChunkChoice{Delta: Delta{Role: "assistant", Content: &empty}})}
	words := strings.Fields("Write-ahead logging trades a second write of every change for durability: the log is appended " +
		"and synced before the page, so a crash <mid-write> loses nothing & replays.")
	for i := range 20 {
		delta := " " + words[i%len(words)]
		chunks = append(chunks, chunk(ChunkChoice{Delta: Delta{Content: &delta}}))
	}
	finish := chunk(ChunkChoice{FinishReason: &stop})
	finish.Consortium = json.RawMessage(`{"run_id":"run_5f2c9a1e7b3d4c68","consortium":"council","strategy":"synthesize","iterations":1,` +
		`"members":[{"model":"openai/gpt-4o-mini","status":"ok","latency_ms":812},{"model":"anthropic/claude-haiku-4-5","status":"ok","latency_ms":954},` +
		`{"model":"google/gemini-2.5-flash","status":"ok","latency_ms":701}],"arbiter":"openai/gpt-4o"}`)
	cost := 0.0012345
	usage := chunk()
	usage.Usage = &Usage{PromptTokens: 1234, CompletionTokens: 456, TotalTokens: 1690, PromptTokensDetails: &PromptTokensDetails{CachedTokens: 1024}, CostUSD: &cost}
	return append(chunks, finish, usage)
}

// BenchmarkChunkStream writes a consortium's 23-chunk streamed answer
// through a new EventWriter, as one stream does.
func BenchmarkChunkStream(b *testing.B) {
	chunks := streamedAnswer()
	b.ReportAllocs()
	for b.Loop() {
		ew := NewEventWriter(io.Discard)
		for _, c := range chunks {
			if err := ew.JSON(c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// chunkFields are the fields of a chunk's types that AppendJSON writes,
// with their tags.
var chunkFields = map[reflect.Type][]string{
	reflect.TypeFor[ChatCompletionChunk](): {`ID json:"id"`, `Object json:"object"`, `Created json:"created"`, `Model json:"model"`,
		`Choices json:"choices"`, `Usage json:"usage,omitempty"`, `SystemFingerprint json:"system_fingerprint,omitempty"`,
		`Consortium json:"consortium,omitempty"`},
	reflect.TypeFor[ChunkChoice]():         {`Index json:"index"`, `Delta json:"delta"`, `FinishReason json:"finish_reason"`},
	reflect.TypeFor[Delta]():               {`Role json:"role,omitempty"`, `Content json:"content,omitempty"`, `ToolCalls json:"tool_calls,omitempty"`},
	reflect.TypeFor[Usage]():               {`PromptTokens json:"prompt_tokens"`, `CompletionTokens json:"completion_tokens"`, `TotalTokens json:"total_tokens"`, `PromptTokensDetails json:"prompt_tokens_details,omitempty"`, `CostUSD json:"cost_usd,omitempty"`},
	reflect.TypeFor[PromptTokensDetails](): {`CachedTokens json:"cached_tokens"`},
}

// TestChunkAppendJSONFields fails when a chunk's types gain, lose or
// retag a field: AppendJSON writes each by hand and would leave a new one
// out, which the fuzzer, building chunks from the fields it knows, would
// not see.
func TestChunkAppendJSONFields(t *testing.T) {
	for typ, want := range chunkFields {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Name+" "+string(f.Tag))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v's fields changed; teach ChatCompletionChunk.AppendJSON and this test\n got %q\nwant %q", typ, got, want)
		}
		// encoding/json would call such a method, AppendJSON does not.
		p := reflect.PointerTo(typ)
		if p.Implements(reflect.TypeFor[json.Marshaler]()) || p.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
			t.Errorf("%v has a marshaling method; teach ChatCompletionChunk.AppendJSON", typ)
		}
	}
}

// Bits of FuzzChunkAppendJSON's set: which optional parts the chunk has.
const (
	setChoices = 1 << iota
	setSecondChoice
	setContent
	setFinish
	setUsage
	setDetails
	setCost
)

// FuzzChunkAppendJSON: ChatCompletionChunk.AppendJSON writes what
// json.Marshal writes, byte for byte, and fails where it fails. The chunk
// is built from the arguments, so that every field, raw bytes included,
// takes any value.
func FuzzChunkAppendJSON(f *testing.F) {
	const all = setChoices | setSecondChoice | setContent | setFinish | setUsage | setDetails | setCost
	type seed struct {
		id, object, model, fingerprint, role, content, finish string
		created                                               int64
		index, prompt, completion, total, cached              int
		cost                                                  float64
		toolCalls, consortium                                 []byte
		set                                                   uint8
	}
	for _, s := range []seed{
		{id: "chatcmpl-run_1", object: "chat.completion.chunk", model: "council", role: "assistant", created: 1796000000, set: setChoices | setContent},
		{id: "chatcmpl-run_1", object: "chat.completion.chunk", model: "council", content: " and then", set: setChoices | setContent},
		{id: "c", finish: "stop", consortium: []byte(`{"run_id":"run_1","members":[{"model":"a/b","ok":true}]}`), set: setChoices | setFinish},
		{id: "c", prompt: 1234, completion: 456, total: 1690, cached: 1024, cost: 0.0012345, set: setUsage | setDetails | setCost},
		{id: "c", set: setUsage},
		{id: "c", cost: 0, set: setUsage | setCost},
		{id: "c", cost: math.Copysign(0, -1), set: setUsage | setCost},
		{id: "c", cost: 1e-7, set: setUsage | setCost},
		{id: "c", cost: 1e21, set: setUsage | setCost},
		{id: "c", cost: 123456789.125, set: setUsage | setCost},
		{id: "c", cost: math.NaN(), set: setUsage | setCost},
		{id: "c", cost: math.Inf(-1), set: setUsage | setCost},
		{id: "c", prompt: -1, completion: math.MaxInt, total: math.MinInt, cached: -7, set: setUsage | setDetails},
		{id: "html <b>&amp;</b>", model: "m<>&", content: "<script>alert(1)</script> & more", finish: "a&b", set: setChoices | setContent | setFinish},
		{content: "line\u2028sep\u2029para", fingerprint: "fp\u2028", set: setChoices | setContent},
		{content: "\xff\xfe invalid \xe2\x80 utf-8 \xed\xa0\x80", role: "\x80", set: setChoices | setContent},
		{content: "\x00\x01\b\f\n\r\t\x1f\x7f \"quoted\" \\ back/slash é 日本 😀", set: setChoices | setContent},
		{content: "", role: "", finish: "", set: setChoices | setContent | setFinish},
		{fingerprint: "fp_abc123", created: math.MinInt64, index: -3, set: setChoices | setSecondChoice},
		{created: math.MaxInt64, index: math.MaxInt, set: all},
		{toolCalls: []byte(`[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]`), set: setChoices},
		{toolCalls: []byte(" [ {\"index\" : 0,\n\t\"x\":\"<&>\u2028\"} ] "), role: "assistant", set: setChoices | setContent},
		{toolCalls: []byte(`[{"a":"\xff"}]`), set: setChoices},
		{consortium: []byte(`{"a": [1, 2.50, true, null, "x y"], "b": {}}`), set: 0},
		{consortium: []byte(`{"a":`), set: setChoices},
		{toolCalls: []byte(`nope`), set: setChoices},
		{consortium: []byte(`null`), toolCalls: []byte(`"\u2028"`), set: setChoices},
		{object: "chat.completion.chunk", set: 0},
	} {
		f.Add(s.id, s.object, s.model, s.fingerprint, s.role, s.content, s.finish, s.created, s.index, s.prompt, s.completion, s.total, s.cached, s.cost, s.toolCalls, s.consortium, s.set)
	}
	f.Fuzz(func(t *testing.T, id, object, model, fingerprint, role, content, finish string, created int64,
		index, prompt, completion, total, cached int, cost float64, toolCalls, consortium []byte, set uint8) {
		c := &ChatCompletionChunk{ID: id, Object: object, Created: created, Model: model, SystemFingerprint: fingerprint, Consortium: consortium}
		if set&setChoices != 0 {
			ch := ChunkChoice{Index: index, Delta: Delta{Role: role, ToolCalls: toolCalls}}
			if set&setContent != 0 {
				ch.Delta.Content = &content
			}
			if set&setFinish != 0 {
				ch.FinishReason = &finish
			}
			c.Choices = []ChunkChoice{ch}
			if set&setSecondChoice != 0 {
				c.Choices = append(c.Choices, ChunkChoice{Index: index + 1, Delta: Delta{Content: &model}, FinishReason: &id})
			}
		} else if set&setSecondChoice != 0 {
			c.Choices = []ChunkChoice{}
		}
		if set&setUsage != 0 {
			c.Usage = &Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: total}
			if set&setDetails != 0 {
				c.Usage.PromptTokensDetails = &PromptTokensDetails{CachedTokens: cached}
			}
			if set&setCost != 0 {
				c.Usage.CostUSD = &cost
			}
		}
		checkAppendJSON(t, c)
	})
}

// TestChunkAppendJSON pins a few encodings, so that a change to both
// AppendJSON and encoding/json's rules (a new Go) shows.
func TestChunkAppendJSON(t *testing.T) {
	empty, stop, text := "", "stop", "a <b> & \u2028 \xff"
	cost := 1e-7
	for _, tc := range []struct {
		name  string
		chunk ChatCompletionChunk
		want  string
	}{
		{"role", ChatCompletionChunk{ID: "c", Object: "chat.completion.chunk", Created: 1, Model: "m", Choices: []ChunkChoice{{Delta: Delta{Role: "assistant", Content: &empty}}}},
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`},
		{"escapes", ChatCompletionChunk{Choices: []ChunkChoice{{Index: 1, Delta: Delta{Content: &text}, FinishReason: &stop}}},
			`{"id":"","object":"","created":0,"model":"","choices":[{"index":1,"delta":{"content":"a \u003cb\u003e \u0026 \u2028 \ufffd"},"finish_reason":"stop"}]}`},
		{"usage", ChatCompletionChunk{Choices: []ChunkChoice{}, Usage: &Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5, PromptTokensDetails: &PromptTokensDetails{}, CostUSD: &cost}, SystemFingerprint: "fp"},
			`{"id":"","object":"","created":0,"model":"","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0},"cost_usd":1e-7},"system_fingerprint":"fp"}`},
		{"raw", ChatCompletionChunk{Choices: []ChunkChoice{{Delta: Delta{ToolCalls: json.RawMessage("[ {\"a\" : \"<\"} ]")}}}, Consortium: json.RawMessage(`{ "run_id" : "r" }`)},
			`{"id":"","object":"","created":0,"model":"","choices":[{"index":0,"delta":{"tool_calls":[{"a":"\u003c"}]},"finish_reason":null}],"consortium":{"run_id":"r"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkAppendJSON(t, &tc.chunk); string(got) != tc.want {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestEventWriterChunk: a chunk sent with JSON reaches the wire as the
// same bytes as before JSON framed chunks itself, when it was
// json.Marshal's output through go-sse's Message (which Data still uses).
func TestEventWriterChunk(t *testing.T) {
	var got, want bytes.Buffer
	ew, old := NewEventWriter(&got), NewEventWriter(&want)
	chunks := append(streamedAnswer(), &ChatCompletionChunk{ID: "x\ny\r\u2028", Choices: []ChunkChoice{{Delta: Delta{ToolCalls: json.RawMessage("[\n1\r\n]")}}}})
	for _, c := range chunks {
		if err := ew.JSON(c); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		old.Data(data)
		ew.Comment("keep-alive")
		old.Comment("keep-alive")
	}
	ew.Done()
	old.Done()
	if got.String() != want.String() {
		t.Fatalf("got\n%q\nwant\n%q", got.String(), want.String())
	}
	first := "data: " + `{"id":"chatcmpl-run_5f2c9a1e7b3d4c68","object":"chat.completion.chunk","created":1796000000,"model":"council",` +
		`"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n: keep-alive\n\n"
	if !strings.HasPrefix(got.String(), first) {
		t.Fatalf("first event\n got %q\nwant %q", got.String()[:min(len(first), got.Len())], first)
	}

	// A chunk encoding/json refuses sends nothing and returns its error.
	got.Reset()
	if err := ew.JSON(&ChatCompletionChunk{Consortium: json.RawMessage("{")}); err == nil || got.Len() != 0 {
		t.Fatalf("JSON(invalid consortium) = %v, wrote %q", err, got.String())
	}
	if err := ew.JSON(&ChatCompletionChunk{}); err != nil || !strings.HasPrefix(got.String(), `data: {"id":"",`) {
		t.Fatalf("JSON after a failure = %v, wrote %q", err, got.String())
	}
}
