package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// SetModel returns body with the value of its top-level "model" key replaced
// by model, leaving every other byte as the client sent it. body must be a
// valid JSON object (as ParseChatRequest has checked); every top-level
// "model" key is rewritten, so a duplicate cannot smuggle another model past
// the proxy. The result is appended to dst[:0].
func SetModel(dst, body []byte, model string) ([]byte, error) {
	quoted, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	s := scanner{data: body}
	s.space()
	if !s.consume('{') {
		return nil, errNotObject
	}
	dst = dst[:0]
	last := 0
	found := false
	for {
		s.space()
		if s.consume('}') {
			break
		}
		keyStart := s.pos
		if !s.skipString() {
			return nil, errNotObject
		}
		key := body[keyStart:s.pos]
		s.space()
		if !s.consume(':') {
			return nil, errNotObject
		}
		s.space()
		valStart := s.pos
		if !s.skipValue() {
			return nil, errNotObject
		}
		if isModelKey(key) {
			dst = append(dst, body[last:valStart]...)
			dst = append(dst, quoted...)
			last = s.pos
			found = true
		}
		s.space()
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			break
		}
		return nil, errNotObject
	}
	if !found {
		return nil, errors.New("the request has no model")
	}
	return append(dst, body[last:]...), nil
}

var errNotObject = errors.New("the request body is not a JSON object")

// isModelKey reports whether a quoted JSON key decodes to "model", escapes
// included. Case is ignored as encoding/json ignores it, so that every key
// ParseChatRequest may have read the model from ("Model", "MODEL") is
// rewritten too.
func isModelKey(key []byte) bool {
	if string(key) == `"model"` {
		return true
	}
	if len(key) < 7 || len(key) > 64 {
		return false
	}
	k, err := strconv.Unquote(string(key))
	return err == nil && strings.EqualFold(k, "model")
}

// scanner skips over JSON values without decoding them. It assumes the input
// is valid JSON and only guards against running off the end.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) skipString() bool {
	if !s.consume('"') {
		return false
	}
	// Jump from quote to quote (IndexByte is vectorized); a quote ends the
	// string unless an odd number of backslashes escapes it.
	for {
		k := bytes.IndexByte(s.data[s.pos:], '"')
		if k < 0 {
			s.pos = len(s.data)
			return false
		}
		end := s.pos + k
		slashes := 0
		for b := end - 1; b >= s.pos && s.data[b] == '\\'; b-- {
			slashes++
		}
		s.pos = end + 1
		if slashes%2 == 0 {
			return true
		}
	}
}

// skipValue skips one value, counting brackets and skipping strings so that
// brackets inside them do not count.
func (s *scanner) skipValue() bool {
	depth := 0
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '"':
			if !s.skipString() {
				return false
			}
		case '{', '[':
			depth++
			s.pos++
			continue
		case '}', ']':
			if depth == 0 {
				return true // the end of the enclosing object: a scalar just ended
			}
			depth--
			s.pos++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return true
			}
			s.pos++
			continue
		default:
			s.pos++
			continue
		}
		if depth == 0 {
			return true // a string, object or array closed at the top
		}
	}
	return depth == 0
}
