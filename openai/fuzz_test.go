package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/; a crasher the fuzzer
// finds is kept there as a seed.

// FuzzParseChatRequest: no body panics the parser, every rejection is a
// FieldError, it decodes as encoding/json does where exact and folded keys
// agree, and every body it accepts is valid JSON, encodes to JSON that
// parses back to the same request, and can have its model rewritten for
// passthrough, giving JSON that parses again with the new model.
func FuzzParseChatRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var decoded ChatRequest
		checkPlain(t, body, &decoded, json.Unmarshal(body, &decoded))

		req, err := ParseChatRequest(body)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseChatRequest(%q) error %T %v, want a FieldError", body, err, err)
			}
			if req != nil {
				t.Fatalf("ParseChatRequest(%q) returned a request with its error", body)
			}
			return
		}
		if req.Model == "" || len(req.Messages) == 0 || !json.Valid(body) {
			t.Fatalf("ParseChatRequest(%q) accepted %+v", body, req)
		}
		encoded, err := req.AppendJSON(nil)
		if err != nil {
			t.Fatalf("AppendJSON(ParseChatRequest(%q)): %v", body, err)
		}
		back, err := ParseChatRequest(encoded)
		if err != nil {
			t.Fatalf("ParseChatRequest(%q), encoded from %q: %v", encoded, body, err)
		}
		if again, err := back.AppendJSON(nil); err != nil || !bytes.Equal(again, encoded) {
			t.Fatalf("%q encodes to %q, which encodes to %q (%v)", body, encoded, again, err)
		}
		const model = "fuzz/model"
		out, err := SetModel(nil, body, model)
		if err != nil {
			t.Fatalf("ParseChatRequest(%q) accepted model %q, but SetModel: %v", body, req.Model, err)
		}
		checkSetModel(t, body, out, model)
		again, err := ParseChatRequest(out)
		if err != nil {
			t.Fatalf("ParseChatRequest(SetModel(%q)) = %v", body, err)
		}
		if again.Model != model || len(again.Messages) != len(req.Messages) || again.Stream != req.Stream {
			t.Fatalf("after SetModel: model %q, %d messages, stream %v; before: %d messages, stream %v",
				again.Model, len(again.Messages), again.Stream, len(req.Messages), req.Stream)
		}
	})
}

// FuzzSetModel: no input panics SetModel; on a JSON object it succeeds
// exactly when the object has a top-level model key, and then changes
// nothing but the model values.
func FuzzSetModel(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		out, err := SetModel(nil, body, model)
		if !json.Valid(body) {
			return // SetModel's contract starts at valid JSON; it only must not panic
		}
		members, terr := topLevel(body)
		if terr != nil { // valid JSON but not an object
			if err == nil {
				t.Fatalf("SetModel(%q) = %q on a body that is not an object", body, out)
			}
			return
		}
		hasModel := false
		for _, m := range members {
			hasModel = hasModel || isModel(m.key)
		}
		if !hasModel {
			if err == nil {
				t.Fatalf("SetModel(%q) = %q on a body without a model", body, out)
			}
			return
		}
		if err != nil {
			t.Fatalf("SetModel(%q): %v", body, err)
		}
		checkSetModel(t, body, out, model)
	})
}
