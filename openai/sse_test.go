package openai

import (
	"bytes"
	"testing"
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
