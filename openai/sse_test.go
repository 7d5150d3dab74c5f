package openai

import (
	"bytes"
	"net/http/httptest"
	"slices"
	"testing"

	sse "github.com/tmaxmax/go-sse"
)

func TestEventWriter(t *testing.T) {
	var b bytes.Buffer
	e := NewEventWriter(&b)
	e.JSON(map[string]string{"a": "x\ny"})
	e.Event("consortium.member", []byte("{}\n{}"))
	e.Comment("keep-alive")
	e.Done()
	want := "data: {\"a\":\"x\\ny\"}\n\n" +
		"event: consortium.member\ndata: {}\ndata: {}\n\n" +
		": keep-alive\n\n" +
		"data: [DONE]\n\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// TestEventFramesAsGoSSE: Event frames one line of data by hand, and
// anything else through go-sse's Message; both are the bytes Message
// writes.
func TestEventFramesAsGoSSE(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"consortium.member", `{"round":1,"content":"a \u2028 b"}`},
		{"", `{"a":1}`},
		{"response.output_text.delta", " leading and trailing spaces "},
		{"x", ""},
		{"x", "two\nlines"},
		{"x", "a\rb"},
		{"x", "ends\n"},
		{"", ":colon first"},
	} {
		var got bytes.Buffer
		NewEventWriter(&got).Event(tc.name, []byte(tc.data))
		var m sse.Message
		if tc.name != "" {
			m.Type = sse.Type(tc.name)
		}
		m.AppendData(tc.data)
		var want bytes.Buffer
		m.WriteTo(&want)
		if got.String() != want.String() {
			t.Errorf("Event(%q, %q) = %q, want %q", tc.name, tc.data, got.String(), want.String())
		}
	}
}

// flushRecorder is a ResponseWriter that records what had been written at
// each flush.
type flushRecorder struct {
	*httptest.ResponseRecorder
	flushed []string
}

func (f *flushRecorder) Flush() { f.flushed = append(f.flushed, f.Body.String()) }

func TestEventWriterHoldsUntilFlushed(t *testing.T) {
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	ew := NewEventWriter(rec)
	text := "a"
	chunk := &ChatCompletionChunk{ID: "c", Object: "chat.completion.chunk", Choices: []ChunkChoice{{Delta: Delta{Content: &text}}}}
	ew.Hold(chunk)
	ew.Hold(chunk)
	if len(rec.flushed) != 0 {
		t.Fatalf("Hold flushed: %q", rec.flushed)
	}
	ew.FlushHeld()
	ew.FlushHeld() // nothing held: no flush
	ew.Hold(chunk)
	ew.Done() // flushes what was held with it
	frame := `data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}` + "\n\n"
	want := []string{frame + frame, frame + frame + frame + "data: [DONE]\n\n"}
	if !slices.Equal(rec.flushed, want) {
		t.Errorf("flushes:\n%q\nwant\n%q", rec.flushed, want)
	}
}

// TestEventWriterHoldEvent: a held named event leaves with the next
// flush, framed as Event frames it.
func TestEventWriterHoldEvent(t *testing.T) {
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	ew := NewEventWriter(rec)
	ew.HoldEvent("consortium.member", []byte(`{"a":1}`))
	if len(rec.flushed) != 0 {
		t.Fatalf("HoldEvent flushed: %q", rec.flushed)
	}
	ew.Event("consortium.member", []byte(`{"a":2}`))
	want := []string{"event: consortium.member\ndata: {\"a\":1}\n\nevent: consortium.member\ndata: {\"a\":2}\n\n"}
	if !slices.Equal(rec.flushed, want) {
		t.Errorf("flushes %q, want %q", rec.flushed, want)
	}
}

// TestEventWriterEndLeavesTheFlush: End writes [DONE] after what is held
// and flushes none of it, for the server to send with the body's end.
func TestEventWriterEndLeavesTheFlush(t *testing.T) {
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	ew := NewEventWriter(rec)
	ew.Data([]byte("1"))
	ew.Hold(map[string]int{"a": 2})
	ew.End()
	if want := []string{"data: 1\n\n"}; !slices.Equal(rec.flushed, want) {
		t.Errorf("flushes %q, want %q", rec.flushed, want)
	}
	if got, want := rec.Body.String(), "data: 1\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}
