package openai

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// scanner reads JSON text in one pass without decoding it: it validates
// as encoding/json validates and hands out the bytes of keys and values.
// It is the passthrough hot path's (CheckChatRequest checks a body with
// it, SetModel finds the model with it) and splits objects for
// decodeFields. It skips over strings rather than copying them, so a
// 100 KB prompt costs a scan, not an allocation.
type scanner struct {
	b     []byte
	i     int
	depth int
}

// errSyntax is text that is not valid JSON; jsonError words it.
var errSyntax = errors.New("not valid JSON")

// maxDepth is encoding/json's bound on nesting, so that the scanner
// accepts exactly what encoding/json accepts.
const maxDepth = 10000

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte past whitespace, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > maxDepth {
		return errSyntax
	}
	return nil
}

// object reads an object, calling member for each key (unescaped) with
// the scanner at its value, which member must read.
func (s *scanner) object(member func(key []byte) error) error {
	if s.peek() != '{' {
		return errSyntax
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		if s.peek() != '"' {
			return errSyntax
		}
		start := s.i
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.b[start+1 : s.i-1]
		// A key with escapes or invalid UTF-8 is read as encoding/json
		// reads it (U+FFFD for each bad byte), so that an unknown field's
		// name encodes the same way every time it goes round.
		if escaped || !utf8.Valid(key) {
			var k string
			if err := json.Unmarshal(s.b[start:s.i], &k); err != nil {
				return errSyntax
			}
			key = []byte(k)
		}
		if s.peek() != ':' {
			return errSyntax
		}
		s.i++
		s.ws()
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// fields reads an object of shape sh, calling visit for each key with its
// field (nil for a key sh does not name) and the scanner at its value,
// which visit must read. A field given twice is a *duplicateError.
func (s *scanner) fields(sh *shape, visit func(key []byte, f *field) error) error {
	var seen uint64 // bit k: sh.fields[k] was given
	return s.object(func(key []byte) error {
		k, ok := sh.index[string(key)]
		if !ok {
			return visit(key, nil)
		}
		if seen&(1<<k) != 0 {
			return &duplicateError{Field: sh.fields[k].name}
		}
		seen |= 1 << k
		return visit(key, &sh.fields[k])
	})
}

// array reads an array, calling elem with the scanner at each element
// (past whitespace, as object's member is at its value).
func (s *scanner) array(elem func() error) error {
	if s.peek() != '[' {
		return errSyntax
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.i++
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// value reads any value.
func (s *scanner) value() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.value() })
	case c == '[':
		return s.array(s.value)
	case c == '"':
		_, err := s.str()
		return err
	case c == 't' || c == 'f' || c == 'n':
		return s.literal()
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.number()
		return err
	}
	return errSyntax
}

// literal reads true, false or null.
func (s *scanner) literal() error {
	s.ws()
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return nil
		}
	}
	return errSyntax
}

// number reads a number; isInt when it has no fraction or exponent.
func (s *scanner) number() (isInt bool, err error) {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return false, errSyntax
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		isInt = false
		if i = digits(b, i+1); b[i-1] == '.' {
			return false, errSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		if i = digits(b, i); i == d {
			return false, errSyntax
		}
	}
	s.i = i
	return isInt, nil
}

// digits returns the index past the decimal digits that begin at b[i].
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// str reads a string, the scanner at its opening quote, checking its
// escapes and that it holds no control characters; escaped reports a
// backslash.
func (s *scanner) str() (escaped bool, err error) {
	b, i := s.b, s.i+1
	// A long prompt is most of a request, and most of it needs no look:
	// the next quote and the next backslash are found with bytes.IndexByte
	// (vector instructions), and the run before them is only checked for
	// control characters, a word at a time. quote is kept until an escape
	// steps past it, so that a string of many escapes is still one pass.
	quote := -1
	for {
		if quote < i {
			k := bytes.IndexByte(b[i:], '"')
			if k < 0 {
				return false, errSyntax
			}
			quote = i + k
		}
		run := b[i:quote]
		if k := bytes.IndexByte(run, '\\'); k >= 0 {
			run = run[:k]
		}
		if hasControl(run) {
			return false, errSyntax
		}
		i += len(run)
		if b[i] == '"' {
			s.i = i + 1
			return escaped, nil
		}
		// b[i] is a backslash, and the quote lies beyond it.
		escaped = true
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
				return false, errSyntax
			}
			i += 6
		default:
			return false, errSyntax
		}
	}
}

// hasControl reports whether p holds a byte below 0x20, which a JSON
// string may not. (w-ones*0x20)&^w&highs marks a byte of w below 0x20;
// a borrow from it may mark bytes above it too, but never a word without
// one.
func hasControl(p []byte) bool {
	var m uint64
	for len(p) >= 32 {
		w0 := binary.LittleEndian.Uint64(p)
		w1 := binary.LittleEndian.Uint64(p[8:])
		w2 := binary.LittleEndian.Uint64(p[16:])
		w3 := binary.LittleEndian.Uint64(p[24:])
		m |= (w0-ones*0x20)&^w0 | (w1-ones*0x20)&^w1 | (w2-ones*0x20)&^w2 | (w3-ones*0x20)&^w3
		if m&highs != 0 {
			return true
		}
		p = p[32:]
	}
	for len(p) >= 8 {
		w := binary.LittleEndian.Uint64(p)
		m |= (w - ones*0x20) &^ w
		p = p[8:]
	}
	if m&highs != 0 {
		return true
	}
	for _, c := range p {
		if c < 0x20 {
			return true
		}
	}
	return false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
