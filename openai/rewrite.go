package openai

import (
	"encoding/json"
	"errors"
)

// SetModel returns body with the value of its top-level "model" key replaced
// by model, leaving every other byte as the client sent it. body must be a
// JSON object. The key is matched exactly, escapes decoded, as OpenAI's
// API matches it ("Model" is another field, which the provider ignores as
// ParseChatRequest does); every top-level "model" key is rewritten, so a
// duplicate cannot smuggle another model past the proxy. The result is
// appended to dst[:0].
func SetModel(dst, body []byte, model string) ([]byte, error) {
	quoted, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	dst = dst[:0]
	last, found := 0, false
	s := scanner{b: body}
	err = s.object(func(key []byte) error {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		if string(key) == "model" {
			dst = append(dst, body[last:start]...)
			dst = append(dst, quoted...)
			last, found = s.i, true
		}
		return nil
	})
	if err != nil || !s.end() {
		return nil, errNotObject
	}
	if !found {
		return nil, errors.New("the request has no model")
	}
	return append(dst, body[last:]...), nil
}

var errNotObject = errors.New("the request body is not a JSON object")
