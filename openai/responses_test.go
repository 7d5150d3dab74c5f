package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseResponseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		param      string // the error's param; "-" for success
		messages   []string
	}{
		{"string input", `{"model":"m","input":"hi"}`, "-", []string{"user: hi"}},
		{"message items", `{"model":"m","input":[{"role":"developer","content":"be brief"},{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]}]}`,
			"-", []string{"developer: be brief", "user: a\nb"}},
		{"earlier output item", `{"model":"m","input":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"said","annotations":[]}]},{"role":"user","content":"next"}]}`,
			"-", []string{"assistant: said", "user: next"}},
		{"item references", `{"model":"m","input":[{"role":"user","content":"q1"},{"type":"item_reference","id":"msg_1"},{"role":"user","content":"q2"},{"id":"msg_2"}]}`,
			"-", []string{"user: q1", "assistant: msg_1 at input[1]", "user: q2", "assistant: msg_2 at input[3]"}},
		{"item reference without id", `{"model":"m","input":[{"type":"item_reference"}]}`, "input[0].id", nil},
		{"item reference of a wrong type", `{"model":"m","input":[{"type":"item_reference","id":7}]}`, "input.id", nil},
		{"image", `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png","detail":"low"}]}]}`, "-", []string{"user: "}},
		{"ignored fields", `{"model":"m","input":"hi","truncation":"auto","include":[],"reasoning":{"effort":"low"},"tools":[],"tool_choice":"auto","background":false,"store":false}`, "-", []string{"user: hi"}},
		{"keys are exact", `{"model":"m","input":"hi","TOOLS":[{"type":"function"}]}`, "-", []string{"user: hi"}},
		{"no model", `{"input":"hi"}`, "model", nil},
		{"no input", `{"model":"m"}`, "input", nil},
		{"null input", `{"model":"m","input":null}`, "input", nil},
		{"empty input", `{"model":"m","input":[]}`, "input", nil},
		{"input of a wrong type", `{"model":"m","input":{}}`, "input", nil},
		{"content of a wrong type", `{"model":"m","input":[{"role":"user","content":7}]}`, "input.content", nil},
		{"no role", `{"model":"m","input":[{"content":"x"}]}`, "input[0].role", nil},
		{"unknown role", `{"model":"m","input":[{"role":"tool","content":"x"}]}`, "input[0].role", nil},
		{"tool output item", `{"model":"m","input":[{"role":"user","content":"x"},{"type":"function_call_output","call_id":"c","output":"o"}]}`, "input[1].type", nil},
		{"reasoning item", `{"model":"m","input":[{"type":"reasoning","summary":[]}]}`, "input[0].type", nil},
		{"audio part", `{"model":"m","input":[{"role":"user","content":[{"type":"input_audio"}]}]}`, "input[0].content[0].type", nil},
		{"tools", `{"model":"m","input":"hi","tools":[{"type":"file_search"}]}`, "tools", nil},
		{"tool_choice", `{"model":"m","input":"hi","tool_choice":{"type":"function","name":"f"}}`, "tool_choice", nil},
		{"background", `{"model":"m","input":"hi","background":true}`, "background", nil},
		{"n", `{"model":"m","input":"hi","n":1}`, "n", nil},
		{"prompt", `{"model":"m","input":"hi","prompt":{"id":"p"}}`, "prompt", nil},
		{"max_output_tokens", `{"model":"m","input":"hi","max_output_tokens":0}`, "max_output_tokens", nil},
		{"stream of a wrong type", `{"model":"m","input":"hi","stream":"yes"}`, "stream", nil},
		{"metadata of a wrong type", `{"model":"m","input":"hi","metadata":{"k":1}}`, "metadata", nil},
		{"format type", `{"model":"m","input":"hi","text":{"format":{"type":"xml"}}}`, "text.format.type", nil},
		{"format without schema", `{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"n"}}}`, "text.format.schema", nil},
		{"given twice", `{"model":"m","input":"hi","model":"n"}`, "model", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseResponseRequest([]byte(tc.body))
			if tc.param != "-" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Param != tc.param {
					t.Fatalf("error %v (param %q), want param %q", err, fieldParam(err), tc.param)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := req.Messages(refersTo)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range msgs {
				got = append(got, m.Role+": "+m.Content.String())
			}
			if strings.Join(got, "|") != strings.Join(tc.messages, "|") {
				t.Errorf("messages %q, want %q", got, tc.messages)
			}
		})
	}
}

// refersTo resolves an item reference to an assistant message naming it.
func refersTo(param, id string) (Message, error) {
	return Message{Role: "assistant", Content: TextContent(id + " at " + param)}, nil
}

func TestItemReferenceResolution(t *testing.T) {
	req, err := ParseResponseRequest([]byte(`{"model":"m","input":[{"role":"user","content":"q"},{"type":"item_reference","id":"msg_gone"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Without a resolver, a reference is refused, never dropped.
	if _, err := req.Messages(nil); fieldParam(err) != "input[1]" {
		t.Errorf("no resolver: %v", err)
	}
	// The resolver's error comes back as it is.
	gone := errors.New("gone")
	var params, ids []string
	_, err = req.Messages(func(param, id string) (Message, error) {
		params, ids = append(params, param), append(ids, id)
		return Message{}, gone
	})
	if err != gone || strings.Join(params, ",") != "input[1]" || strings.Join(ids, ",") != "msg_gone" {
		t.Errorf("error %v for %q %q", err, params, ids)
	}
}

func fieldParam(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Param
	}
	return ""
}

func TestResponseInputImage(t *testing.T) {
	req, err := ParseResponseRequest([]byte(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"what?"},{"type":"input_image","image_url":"data:image/png;base64,AA","detail":"high"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := req.Messages(nil)
	b, err := json.Marshal(msgs[0])
	want := `{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA","detail":"high"}}]}`
	if err != nil || string(b) != want {
		t.Errorf("message %s, want %s (%v)", b, want, err)
	}
}

func TestTextFormat(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{`{"type":"text"}`, `null`},
		{`{"type":"json_object"}`, `{"type":"json_object"}`},
		{`{"type":"json_schema","name":"a","schema":{"type":"object"},"strict":true,"description":"d"}`,
			`{"type":"json_schema","json_schema":{"name":"a","description":"d","schema":{"type":"object"},"strict":true}}`},
	} {
		var f TextFormat
		if err := json.Unmarshal([]byte(tc.format), &f); err != nil {
			t.Fatal(err)
		}
		rf, err := f.ResponseFormat()
		b, _ := json.Marshal(rf)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s became %s (%v), want %s", tc.format, b, err, tc.want)
		}
	}
}

func TestResponseStored(t *testing.T) {
	for body, want := range map[string]bool{
		`{"model":"m","input":"x"}`:               true,
		`{"model":"m","input":"x","store":true}`:  true,
		`{"model":"m","input":"x","store":null}`:  true,
		`{"model":"m","input":"x","store":false}`: false,
	} {
		req, err := ParseResponseRequest([]byte(body))
		if err != nil || req.Stored() != want {
			t.Errorf("%s: stored %v, %v", body, req.Stored(), err)
		}
	}
}

// FuzzParseResponseRequest: no body panics the parser, every rejection is
// a FieldError, and an accepted request has a model and translates into
// non-empty messages with roles.
func FuzzParseResponseRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","input":"hi","instructions":"i","text":{"format":{"type":"json_schema","name":"a","schema":{}}}}`))
	f.Add([]byte(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"u"}]}]}`))
	f.Add([]byte(`{"model":"m","input":[{"type":"function_call","call_id":"c"}],"tools":[{}]}`))
	f.Add([]byte(`{"model":"m","input":[{"type":"item_reference","id":"msg_1"},{"id":"msg_2"},{"role":"user","content":"x"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseResponseRequest(body)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || req != nil {
				t.Fatalf("ParseResponseRequest(%q) = %v, %T %v; want a FieldError", body, req, err, err)
			}
			return
		}
		msgs, err := req.Messages(refersTo)
		if err != nil || req.Model == "" || len(msgs) == 0 || !json.Valid(body) {
			t.Fatalf("ParseResponseRequest(%q) accepted %+v: %d messages, %v", body, req, len(msgs), err)
		}
		for _, m := range msgs {
			if m.Role == "" {
				t.Fatalf("ParseResponseRequest(%q): a message without a role", body)
			}
		}
	})
}
