package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOutputResumes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	// A crash left a torn last line.
	os.WriteFile(out, []byte(`{"id":"a","x":1}`+"\n"+`{"id":"b","x`), 0o644)
	o, err := OpenOutput(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Done("a") || o.Done("b") {
		t.Errorf("done a %v, b %v; want a only", o.Done("a"), o.Done("b"))
	}
	if err := o.Write("b", map[string]string{"id": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if string(data) != `{"id":"a","x":1}`+"\n"+`{"id":"b"}`+"\n" {
		t.Errorf("file %q", data)
	}
	if _, err := os.Stat(ErrorsPath(out)); !os.IsNotExist(err) {
		t.Errorf("errors file without failures: %v", err)
	}
}

func TestOutputRefusesForeignFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	os.WriteFile(out, []byte("not json\n"), 0o644)
	if _, err := OpenOutput(out, false); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("err %v", err)
	}
}

// TestOutputProgress: an output without ids keeps them aside; a crash
// between the id and its line leaves one id too many, which is dropped.
func TestOutputProgress(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	os.WriteFile(out, []byte(`{"messages":[]}`+"\n"), 0o644)
	os.WriteFile(ProgressPath(out), []byte("\"a\"\nb\n"), 0o644) // an id, or one as first written
	o, err := OpenOutput(out, true)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Done("a") || o.Done("b") {
		t.Errorf("done a %v, b %v; want a only", o.Done("a"), o.Done("b"))
	}
	o.Write("c", map[string]any{"messages": []any{}})
	o.Fail(Failure{ID: "d", Line: 4, Error: "boom"})
	o.Close()
	if p, _ := os.ReadFile(ProgressPath(out)); string(p) != "\"a\"\n\"c\"\n" {
		t.Errorf("progress %q", p)
	}
	if e, _ := os.ReadFile(ErrorsPath(out)); !strings.Contains(string(e), `"id":"d","line":4,"error":"boom"`) {
		t.Errorf("errors %q", e)
	}
	// More lines than ids: not this command's file.
	os.WriteFile(ProgressPath(out), nil, 0o644)
	if _, err := OpenOutput(out, true); err == nil {
		t.Error("lines without ids: no error")
	}
}

// TestOutputProgressOddIDs: ids with line breaks or quotes survive the
// progress file, so a resumed openai-format run skips them.
func TestOutputProgressOddIDs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	ids := []string{"a\nb", "c\r", `"q"`, " s "}
	o, err := OpenOutput(out, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		o.Write(id, map[string]any{"messages": []any{}})
	}
	o.Close()
	o, err = OpenOutput(out, true)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, id := range ids {
		if !o.Done(id) {
			t.Errorf("id %q not done after a rerun", id)
		}
	}
}
