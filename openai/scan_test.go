package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// FuzzScan holds the scanner to encoding/json: it accepts exactly the text
// json.Valid accepts, and reads an object's keys as encoding/json decodes
// them (but for invalid UTF-8, which it leaves as sent).
func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
		`{"k\u00e9y":"\ud83d\ude00","\"":"\\","x":-0.5e+10}`,
		`["\u12", 01, 1., .5, -, 1e, "` + "\x01" + `"]`,
		`{"a":1,}`, `{"a" 1}`, `[1 2]`, `{"a":tru}`, `nul`, ` `, ``,
		"\"a\xffb\"", `"0123456789abcdef\"0123456789abcdef\\"`,
		strings.Repeat(`[{"a":`, 50) + "0" + strings.Repeat("}]", 50),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := scanner{b: data}
		ok := s.value() == nil && s.end()
		if ok != json.Valid(data) {
			t.Fatalf("scanner says %v, json.Valid %v: %q", ok, !ok, data)
		}
		if !ok {
			return
		}
		var keys []string
		s = scanner{b: data}
		if s.peek() != '{' {
			return
		}
		if err := s.object(func(key []byte) error { keys = append(keys, string([]rune(string(key)))); return s.value() }); err != nil {
			t.Fatalf("object(%q): %v", data, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.Token()
		for i := 0; dec.More(); i++ {
			tok, _ := dec.Token()
			if i >= len(keys) || tok != keys[i] {
				t.Fatalf("key %d of %q: scanner %q, encoding/json %q", i, data, keys, tok)
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
	})
}

// TestScanDepth: the scanner bounds nesting where encoding/json does.
func TestScanDepth(t *testing.T) {
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, open := range []string{"[", `{"a":`} {
			close := map[string]string{"[": "]", `{"a":`: "}"}[open]
			data := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth))
			s := scanner{b: data}
			if ok := s.value() == nil && s.end(); ok != json.Valid(data) || ok != (depth <= maxDepth) {
				t.Errorf("depth %d of %s: scanner %v, json.Valid %v", depth, open, ok, json.Valid(data))
			}
		}
	}
}

// TestStr: a control character, a quote or a backslash anywhere in a
// string, whatever comes after it, in runs short and long (the word loop,
// the 32-byte loop and the tail), is read as encoding/json reads it.
func TestStr(t *testing.T) {
	for _, n := range []int{8, 40, 77} {
		for pos := range n {
			for _, c := range []byte{'"', '\\', 0, 0x1f, '\n', 0x7f, 0xff} {
				for _, after := range []byte{'a', 0, 0x01, '"', 0xff} {
					w := bytes.Repeat([]byte("abcdefgh"), n/8+1)[:n]
					w[pos] = c
					for i := pos + 1; i < n; i++ {
						w[i] = after
					}
					s := scanner{b: append(append([]byte(`"`), w...), `"`...)}
					_, err := s.str()
					if ok := err == nil && s.end(); ok != json.Valid(s.b) {
						t.Errorf("str(%q) = %v, json.Valid %v", s.b, err, !ok)
					}
				}
			}
		}
	}
	for _, w := range []string{"abcdefgh", "\x20\x7f\x80\xff~!#[", "é😀ab", strings.Repeat("\x20\x7f\x80\xff", 20)} {
		if hasControl([]byte(w)) {
			t.Errorf("hasControl(%q) = true", w)
		}
	}
}
