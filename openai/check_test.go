package openai

import (
	"bytes"
	"strings"
	"testing"
)

// TestCheckTakesTheFastPath checks that ordinary requests never need the
// slow pass, and that the fast pass agrees with ParseChatRequest on them.
func TestCheckTakesTheFastPath(t *testing.T) {
	for _, body := range []string{
		`{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]}],"temperature":0.2,"top_p":1,"max_tokens":100,"seed":-3,"n":1,"stop":["x","y"]}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto"}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}},"reasoning_effort":"low","x_vendor":{"a":[1,2,{"b":null}]},"user":"u"}`,
		` { "model" : "m" , "messages" : [ { "role" : "user" , "content" : "with \"escapes\" \u00e9 \n" } ] } `,
		`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("long prompt ", 10000) + `"}]}`,
		`{"mod\u0065l":"m","messages":[{"r\u006fle":"user","content":"q"}]}`,
		`{"model":"m","Model":"x","STREAM":true,"Messages":5,"messages":[{"role":"user","ROLE":1,"content":"q"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"x":1,"x":2,"stop":["a",null],"temperature":1e-3}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":null}],"response_format":{"type":"json_schema","json_schema":null}}`,
	} {
		sum, ok := fastCheck([]byte(body))
		if !ok {
			t.Errorf("slow pass needed for %.120s", body)
			continue
		}
		req, err := ParseChatRequest([]byte(body))
		if err != nil || req.Model != sum.Model || req.Stream != sum.Stream {
			t.Errorf("fast %+v, slow %v %v for %.120s", sum, req, err, body)
		}
	}
}

// TestCheckDefersWhenUnsure checks bodies the fast pass must hand to the
// slow one: CheckChatRequest then gives exactly ParseChatRequest's answer.
func TestCheckDefersWhenUnsure(t *testing.T) {
	for _, body := range []string{
		`{"Model":"m","messages":[{"role":"user","content":"q"}]}`,
		`{"model":"a","mod\u0065l":"b","messages":[{"role":"user","content":"q"}]}`,
		`{"model":"a","model":"b","messages":[{"role":"user","content":"q"}]}`,
		`{"model":"m","stream":true,"stream":false,"messages":[{"role":"user","content":"q"}]}`,
		`{"model":"m","messages":[{"role":"user","role":"system","content":"q"}]}`,
		`{"model":"m","messages":[{"ROLE":"user","content":"q"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":5}}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":"f"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"temperature":1e400}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"n":0}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"max_tokens":1.5}`,
		`{"model":"m","messages":[{"role":"","content":"q"}]}`,
		`{"model":"m","messages":[]}`,
		`{"model":"m","messages":[{"role":"user","content":5}]}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}]} trailing`,
		`{"model":"","messages":[{"role":"user","content":"q"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"stream":"yes"}`,
		`{"model":"m","messages":[{"role":"user","content":"q"}],"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	} {
		if _, ok := fastCheck([]byte(body)); ok {
			t.Errorf("the fast pass accepted %.100s", body)
		}
		sum, err := CheckChatRequest([]byte(body))
		req, perr := ParseChatRequest([]byte(body))
		if (err == nil) != (perr == nil) || (err != nil && err.Error() != perr.Error()) || (perr == nil && req.Model != sum.Model) {
			t.Errorf("CheckChatRequest %+v %v, ParseChatRequest %v for %.100s", sum, err, perr, body)
		}
	}
}

// FuzzCheckChatRequest holds the fast pass to ParseChatRequest: whatever
// it accepts, ParseChatRequest accepts with the same model and stream; and
// the passthrough's splice from its summary is SetModel byte for byte.
func FuzzCheckChatRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":"x","n":2}`,
		`{"model":"m","messages":[{"role":"user","content":null}],"tools":[{"type":"function"}],"response_format":{"type":"json_object"}}`,
		`{"model":"m","messages":[{"role":"user","content":"\ud83d\ude00"}],"seed":123456789012345678}`,
		`{"MODEL":"m","messages":[{"role":"user","content":"q"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sum, ok := fastCheck(body)
		if !ok {
			return
		}
		req, err := ParseChatRequest(body)
		if err != nil {
			t.Fatalf("fast pass accepted what ParseChatRequest refuses (%v): %q", err, body)
		}
		if req.Model != sum.Model || req.Stream != sum.Stream {
			t.Fatalf("fast %+v, slow model %q stream %v: %q", sum, req.Model, req.Stream, body)
		}
		const model = "fuzz/\"model\""
		want, err := SetModel(nil, body, model)
		if err != nil {
			t.Fatalf("SetModel(%q): %v", body, err)
		}
		if got, err := sum.SetModel(nil, body, model); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ChatSummary.SetModel(%q) = %q, %v; SetModel: %q", body, got, err, want)
		}
	})
}

func BenchmarkCheckChatRequest(b *testing.B) {
	body := []byte(`{"model":"openai/gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 100<<10/12) + `"}]}`)
	b.Run("check", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := CheckChatRequest(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("passthrough", func(b *testing.B) {
		// The hot path: the check, then the model rewritten.
		dst := make([]byte, 0, len(body)+64)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			sum, err := CheckChatRequest(body)
			if err != nil {
				b.Fatal(err)
			}
			if dst, err = sum.SetModel(dst, body, sum.Model); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check escaped", func(b *testing.B) {
		// A prompt of short lines: an escape every 12 bytes.
		body := []byte(`{"model":"openai/gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat(`lorem ips\n `, 100<<10/12) + `"}]}`)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := CheckChatRequest(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseChatRequest(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestChatShape: the scan checks every field of a chat request, with the
// JSON names of the struct tags. A field of a type the scanner does not
// know fails here until it learns it.
func TestChatShape(t *testing.T) {
	var walk func(path string, sh *shape)
	walk = func(path string, sh *shape) {
		switch sh.kind {
		case kindOther:
			t.Errorf("%s has no shape the scan checks", path)
		case kindObject:
			for _, f := range sh.fields {
				walk(path+"."+f.name, f.shape)
			}
		case kindArray, kindText:
			walk(path+"[]", sh.elem)
		}
	}
	walk("request", chatShape)

	for path, want := range map[string]kind{
		"model": kindString, "messages": kindArray, "stream": kindBool, "n": kindInteger, "temperature": kindNumber,
		"stop": kindText, "tool_choice": kindAny, "response_format": kindObject, "response_format.json_schema": kindRawObject,
		"tools": kindArray, "messages.content": kindText, "messages.role": kindString,
	} {
		sh := chatShape
		for name := range strings.SplitSeq(path, ".") {
			if sh.kind == kindArray {
				sh = sh.elem
			}
			k, ok := sh.index[name]
			if !ok {
				t.Fatalf("%s: no field %q", path, name)
			}
			sh = sh.fields[k].shape
		}
		if sh.kind != want {
			t.Errorf("%s is kind %d, want %d", path, sh.kind, want)
		}
	}
	if _, ok := chatShape.index["Model"]; ok {
		t.Error(`"Model" names a field`)
	}
	if _, ok := chatShape.index["Extra"]; ok {
		t.Error(`Extra, tagged "-", names a field`)
	}
}
