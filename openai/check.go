package openai

import (
	"encoding/json"
	"errors"
	"strconv"
)

// ChatSummary is what a passthrough needs of a chat request.
type ChatSummary struct {
	Model  string
	Stream bool

	// modelAt is where the model's value lies in the body checked, when
	// the scan saw it (its only top-level "model" key): SetModel then
	// splices instead of scanning the body again.
	modelAt [2]int
}

// SetModel is openai.SetModel(dst, body, model) for body, the request
// this summary was checked from, with the same result byte for byte.
// When the check's scan saw where the model lies, the body is not
// scanned a second time, which a 100 KB prompt notices.
func (sum ChatSummary) SetModel(dst, body []byte, model string) ([]byte, error) {
	start, end := sum.modelAt[0], sum.modelAt[1]
	if end == 0 || end > len(body) {
		return SetModel(dst, body, model)
	}
	quoted, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	dst = append(dst[:0], body[:start]...)
	dst = append(dst, quoted...)
	return append(dst, body[end:]...), nil
}

// CheckChatRequest checks a chat request body exactly as ParseChatRequest
// does, and returns the model and stream flag, without decoding it: one
// scan validates the JSON and the types of the fields the proxy knows
// (their names and shapes come from ChatRequest's struct tags), so a 100
// KB prompt costs a scan, not an allocation. A body the scan does not
// accept as it stands (an error to word, a number to look at closer) goes
// to ParseChatRequest, so the two always agree.
func CheckChatRequest(body []byte) (ChatSummary, error) {
	if sum, ok := fastCheck(body); ok {
		return sum, nil
	}
	req, err := ParseChatRequest(body)
	if err != nil {
		return ChatSummary{}, err
	}
	return ChatSummary{Model: req.Model, Stream: req.Stream}, nil
}

// errUnsure ends a fast path: the general one decides (ParseChatRequest
// after fastCheck, decodeFields after decodeChunkFast).
var errUnsure = errors.New("unsure")

// fastCheck is the scan. ok is true only when ParseChatRequest would
// accept body with the same summary.
func fastCheck(body []byte) (sum ChatSummary, ok bool) {
	s := scanner{b: body}
	messages := false
	err := s.fields(chatShape, func(_ []byte, f *field) error {
		if f == nil {
			return s.value()
		}
		switch f.name {
		case "model":
			start := s.i
			if err := s.text(&sum.Model); err != nil {
				return err
			}
			sum.modelAt = [2]int{start, s.i}
			return nil
		case "messages":
			messages = true
			return s.messages(f.shape.elem)
		case "stream":
			sum.Stream = s.peek() == 't'

		case "n":
			if c := s.peek(); c == '-' || c == '0' {
				return errUnsure // n < 1 is an error ParseChatRequest words
			}
		}
		return s.conforms(f.shape)
	})
	if err != nil || !s.end() || sum.Model == "" || !messages {
		return ChatSummary{}, false
	}
	return sum, true
}

// text reads a string into dst as decodeValue reads one into a string
// field: plainString, or encoding/json for escapes and invalid UTF-8.
func (s *scanner) text(dst *string) error {
	if s.peek() != '"' {
		return errUnsure
	}
	start := s.i
	if _, err := s.str(); err != nil {
		return err
	}
	raw := s.b[start:s.i]
	str, ok := plainString(raw)
	if !ok {
		var err error
		if str, err = unquote(raw); err != nil {
			return err
		}
	}
	*dst = str
	return nil
}

// unquote reads a JSON string with encoding/json. It stands apart so that
// only the strings it reads pay for the heap: dst of text does not escape.
func unquote(raw []byte) (string, error) {
	var str string
	err := json.Unmarshal(raw, &str)
	return str, err
}

// messages reads the messages array: at least one message, each an object
// with a non-empty role.
func (s *scanner) messages(msg *shape) error {
	n := 0
	err := s.array(func() error {
		n++
		role := false
		err := s.fields(msg, func(_ []byte, f *field) error {
			switch {
			case f == nil:
				return s.value()
			case f.name == "role":
				if s.peek() != '"' {
					return errUnsure
				}
				start := s.i
				_, err := s.str()
				role = s.i-start > 2 // "" is no role
				return err
			}
			return s.conforms(f.shape)
		})
		if err == nil && !role {
			return errUnsure
		}
		return err
	})
	if err == nil && n == 0 {
		return errUnsure
	}
	return err
}

// conforms reads a value of shape sh. It fails where encoding/json would
// refuse to decode the value, and where it might.
func (s *scanner) conforms(sh *shape) error {
	c := s.peek()
	if c == 'n' {
		return s.literal()
	}
	switch sh.kind {
	case kindAny:
		return s.value()
	case kindString:
		if c == '"' {
			_, err := s.str()
			return err
		}
	case kindBool:
		if c == 't' || c == 'f' {
			return s.literal()
		}
	case kindNumber, kindInteger:
		if c == '-' || c >= '0' && c <= '9' {
			return s.numeric(sh.kind == kindInteger)
		}
	case kindObject:
		if c == '{' {
			return s.fields(sh, func(_ []byte, f *field) error {
				if f == nil {
					return s.value()
				}
				return s.conforms(f.shape)
			})
		}
	case kindRawObject:
		if c == '{' {
			return s.value()
		}
	case kindText:
		if c == '"' {
			_, err := s.str()
			return err
		}
		if c == '[' {
			return s.array(func() error { return s.conforms(sh.elem) })
		}
	case kindArray:
		if c == '[' {
			return s.array(func() error { return s.conforms(sh.elem) })
		}
	}
	return errUnsure
}

// numeric reads a number that a float64 holds, or, for an integer, one of
// at most 18 digits (so that it fits an int64) without fraction or
// exponent.
func (s *scanner) numeric(integer bool) error {
	start := s.i
	isInt, err := s.number()
	switch {
	case err != nil:
		return err
	case integer:
		if !isInt || s.i-start > 18 {
			return errUnsure
		}
	case !isInt || s.i-start > 300:
		// An exponent (or 309 digits) can take a number past float64,
		// which encoding/json refuses.
		if _, err := strconv.ParseFloat(string(s.b[start:s.i]), 64); err != nil {
			return errUnsure
		}
	}
	return nil
}
