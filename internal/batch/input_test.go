package batch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, in string
		text     bool
		ids      []string
		problems []string // substrings, one per problem
	}{
		{name: "prompts", in: `{"id":"a","prompt":"hi"}` + "\n" + `{"prompt":"there"}` + "\n", ids: []string{"a", "2"}},
		{name: "numeric id and reference", in: `{"id":7,"prompt":"2+2?","reference":4}`, ids: []string{"7"}},
		{name: "messages", in: `{"id":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`, ids: []string{"m"}},
		{name: "blank lines skipped", in: "\n" + `{"prompt":"x"}` + "\r\n\n", ids: []string{"2"}},
		{name: "text", in: "one\n\nthree\n", text: true, ids: []string{"1", "3"}},
		{name: "malformed refuses the file", in: `{"prompt":"ok"}` + "\n" + `{"prompt":` + "\n" + `{"prompt":""}` + "\n",
			problems: []string{"line 2: malformed JSON", "line 3: empty prompt"}},
		{name: "neither", in: `{"id":"x"}`, problems: []string{`line 1: neither "prompt" nor "messages"`}},
		{name: "both", in: `{"prompt":"a","messages":[{"role":"user","content":"b"}]}`, problems: []string{"line 1: both"}},
		{name: "no user text", in: `{"messages":[{"role":"system","content":"b"}]}`, problems: []string{"line 1: messages have no user message"}},
		{name: "a line repeated verbatim is one item", in: `{"id":"a","prompt":"x"}` + "\n" + `{"id":"b","prompt":"y"}` + "\n" + `{"id":"a","prompt":"x"}` + "\r\n", ids: []string{"a", "b"}},
		{name: "a byte order mark is skipped", in: "\ufeff" + `{"id":"a","prompt":"hi"}` + "\n", ids: []string{"a"}},
		{name: "duplicate id", in: `{"id":"a","prompt":"x"}` + "\n" + `{"id":"a","prompt":"y"}`, problems: []string{`line 2: id "a" is also on line 1`}},
		{name: "bad id", in: `{"id":{},"prompt":"x"}`, problems: []string{"line 1: id must be"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := Read(strings.NewReader(tt.in), "in.jsonl", tt.text)
			if len(tt.problems) > 0 {
				var ie *InputError
				if !errors.As(err, &ie) || len(ie.Problems) != len(tt.problems) {
					t.Fatalf("err %v; want %d problems", err, len(tt.problems))
				}
				for i, p := range tt.problems {
					if !strings.Contains(ie.Problems[i], p) {
						t.Errorf("problem %d %q; want %q", i, ie.Problems[i], p)
					}
				}
				if !strings.Contains(err.Error(), "nothing was done") {
					t.Errorf("error %q does not say the file was refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, it := range items {
				ids = append(ids, it.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.ids, ",") {
				t.Errorf("ids %v; want %v", ids, tt.ids)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	if _, err := ReadFile(empty); err == nil || !strings.Contains(err.Error(), "no items") {
		t.Errorf("empty file: %v", err)
	}
	items, err := Read(strings.NewReader("\ufeffone\ntwo\n"), "x.txt", true)
	if err != nil || items[0].Text() != "one" {
		t.Errorf("a byte order mark before a .txt file's first prompt: %+v, %v", items, err)
	}
	items, err = Read(strings.NewReader(`{"id":"r","prompt":"2+2","reference":"4"}`), "x", false)
	if err != nil || *items[0].Reference != "4" || items[0].Text() != "2+2" {
		t.Errorf("%+v, %v", items, err)
	}
}

// FuzzRead: any input file is read or refused with an *InputError (or
// "no items"), never a panic, and every item read has an id and a user
// message.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"id":"a","prompt":"hi","reference":"4"}`+"\n"+`{"messages":[{"role":"user","content":"x"}]}`), false)
	f.Add([]byte("one\n\ntwo\r\n"), true)
	f.Add([]byte(`{"id":7,"prompt":""}`+"\n"+`{"prompt":`), false)
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`), false)
	f.Fuzz(func(t *testing.T, data []byte, text bool) {
		items, err := Read(strings.NewReader(string(data)), "fuzz", text)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) && !strings.Contains(err.Error(), "no items") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			if it.ID == "" || seen[it.ID] || len(it.Messages) == 0 || it.Line < 1 {
				t.Fatalf("item %+v", it)
			}
			seen[it.ID] = true
		}
	})
}
