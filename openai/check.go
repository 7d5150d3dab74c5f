package openai

import (
	"encoding/json"
	"errors"
	"slices"
)

// ChatSummary is what a passthrough needs of a chat request.
type ChatSummary struct {
	Model  string
	Stream bool
}

// CheckChatRequest checks a chat request body exactly as ParseChatRequest
// does, and returns the model and stream flag, without decoding it: one
// pass validates the JSON and the types of the fields the proxy knows,
// skipping over strings instead of copying them, so a 100 KB prompt costs a
// scan, not an allocation. Whenever the fast pass is not sure (escaped or
// case-folded keys, duplicate keys, an error to report), it defers to
// ParseChatRequest, so the two always agree.
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

// errUnsure ends the fast pass: ParseChatRequest decides.
var errUnsure = errors.New("unsure")

// fastCheck is the fast pass. ok is true only when ParseChatRequest would
// accept body with the same summary.
func fastCheck(body []byte) (sum ChatSummary, ok bool) {
	v := validator{b: body}
	err := v.object(func(key []byte) error {
		switch string(key) {
		case "model":
			raw, err := v.stringValue()
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &sum.Model); err != nil || sum.Model == "" {
				return errUnsure
			}
			return nil
		case "messages":
			return v.messages()
		case "stream":
			switch v.peek() {
			case 't':
				sum.Stream = true
			case 'f':
				sum.Stream = false
			case 'n':
			default:
				return errUnsure
			}
			return v.literal()
		case "stream_options":
			return v.objectOrNull(func(key []byte) error {
				if string(key) == "include_usage" {
					return v.boolOrNull()
				}
				return v.value()
			}, "include_usage")
		case "temperature", "top_p", "presence_penalty", "frequency_penalty":
			return v.numberOrNull(false)
		case "max_tokens", "max_completion_tokens", "seed":
			return v.numberOrNull(true)
		case "n":
			if v.peek() == '-' || v.peek() == '0' {
				return errUnsure // n < 1 is an error ParseChatRequest words
			}
			return v.numberOrNull(true)
		case "stop":
			switch v.peek() {
			case '"':
				_, err := v.stringValue()
				return err
			case '[':
				return v.array(func() error { _, err := v.stringValue(); return err })
			}
			return v.null()
		case "tools":
			if v.peek() == 'n' {
				return v.null()
			}
			return v.array(func() error { return v.object(v.typedField, "type", "function") })
		case "response_format":
			return v.objectOrNull(v.typedField, "type", "json_schema")
		case "user":
			return v.stringOrNull()
		}
		return v.value()
	}, "model", "messages", "stream", "stream_options", "temperature", "top_p", "presence_penalty", "frequency_penalty",
		"max_tokens", "max_completion_tokens", "seed", "n", "stop", "tools", "tool_choice", "response_format", "user")
	if err != nil || sum.Model == "" {
		return ChatSummary{}, false
	}
	v.ws()
	if v.i != len(v.b) {
		return ChatSummary{}, false
	}
	return sum, v.sawMessages
}

// validator validates JSON in one pass while checking the shapes of known
// fields. Every method returns errUnsure rather than an error message: the
// slow path words the errors.
type validator struct {
	b           []byte
	i           int
	depth       int
	sawMessages bool
}

// maxDepth bounds nesting in the fast pass; deeper bodies go to the slow
// pass, whose decoder has its own bound.
const maxDepth = 1000

func (v *validator) enter() error {
	v.depth++
	if v.depth > maxDepth {
		return errUnsure
	}
	return nil
}

func (v *validator) ws() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *validator) peek() byte {
	v.ws()
	if v.i < len(v.b) {
		return v.b[v.i]
	}
	return 0
}

// object validates an object, calling field for each key with the reader
// at its value. known are the keys the struct decodes: a key that is one
// of them only by case folding, or that is escaped, or that repeats, makes
// the pass unsure, since encoding/json's matching rules then apply.
func (v *validator) object(field func(key []byte) error, known ...string) error {
	if v.peek() != '{' {
		return errUnsure
	}
	if err := v.enter(); err != nil {
		return err
	}
	defer func() { v.depth-- }()
	v.i++
	var seen uint32 // bit k: known[k] was seen
	if v.peek() == '}' {
		v.i++
		return nil
	}
	for {
		if v.peek() != '"' {
			return errUnsure
		}
		start := v.i + 1
		escaped, err := v.str()
		if err != nil {
			return err
		}
		key := v.b[start : v.i-1]
		if escaped {
			return errUnsure
		}
		if k := slices.Index(known, string(key)); k >= 0 {
			// encoding/json prefers an exact match over a folded one.
			if seen&(1<<k) != 0 {
				return errUnsure
			}
			seen |= 1 << k
		} else if slices.ContainsFunc(known, func(name string) bool { return foldsTo(key, name) }) {
			return errUnsure
		}
		if v.peek() != ':' {
			return errUnsure
		}
		v.i++
		v.ws()
		if err := field(key); err != nil {
			return err
		}
		switch v.peek() {
		case ',':
			v.i++
		case '}':
			v.i++
			return nil
		default:
			return errUnsure
		}
	}
}

// foldsTo reports whether key might match name under encoding/json's case
// folding without being equal to it: same length and equal ignoring ASCII
// case, or holding non-ASCII bytes (which Unicode folding could map).
func foldsTo(key []byte, name string) bool {
	for _, c := range key {
		if c >= 0x80 {
			return true
		}
	}
	if len(key) != len(name) {
		return false
	}
	for j := range key {
		a, b := key[j]|0x20, name[j]|0x20
		if a != b {
			return false
		}
	}
	return true
}

func (v *validator) objectOrNull(field func(key []byte) error, known ...string) error {
	if v.peek() == 'n' {
		return v.null()
	}
	return v.object(field, known...)
}

func (v *validator) array(elem func() error) error {
	if v.peek() != '[' {
		return errUnsure
	}
	if err := v.enter(); err != nil {
		return err
	}
	defer func() { v.depth-- }()
	v.i++
	if v.peek() == ']' {
		v.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch v.peek() {
		case ',':
			v.i++
		case ']':
			v.i++
			return nil
		default:
			return errUnsure
		}
	}
}

// messages checks the messages array: at least one message, each with a
// non-empty role and a content that is a string, parts, or null.
func (v *validator) messages() error {
	n := 0
	err := v.array(func() error {
		n++
		role := false
		err := v.object(func(key []byte) error {
			switch string(key) {
			case "role":
				raw, err := v.stringValue()
				if err != nil || len(raw) <= 2 {
					return errUnsure
				}
				role = true
				return nil
			case "content":
				switch v.peek() {
				case '"':
					_, err := v.stringValue()
					return err
				case '[':
					return v.array(v.part)
				}
				return v.null()
			case "name", "tool_call_id":
				return v.stringOrNull()
			}
			return v.value()
		}, "role", "content", "name", "tool_calls", "tool_call_id")
		if err == nil && !role {
			return errUnsure
		}
		return err
	})
	if err != nil || n == 0 {
		return errUnsure
	}
	v.sawMessages = true
	return nil
}

// typedField checks a field of an object whose "type" is a string and
// whose other fields are kept raw (a tool, a response_format).
func (v *validator) typedField(key []byte) error {
	if string(key) == "type" {
		return v.stringOrNull()
	}
	return v.value()
}

// part checks one content part.
func (v *validator) part() error {
	return v.object(func(key []byte) error {
		switch string(key) {
		case "type", "text":
			return v.stringOrNull()
		case "image_url":
			return v.objectOrNull(func(key []byte) error {
				if string(key) == "url" || string(key) == "detail" {
					return v.stringOrNull()
				}
				return v.value()
			}, "url", "detail")
		}
		return v.value()
	}, "type", "text", "image_url")
}

// stringValue reads a string and returns it raw, quotes included.
func (v *validator) stringValue() ([]byte, error) {
	if v.peek() != '"' {
		return nil, errUnsure
	}
	start := v.i
	if _, err := v.str(); err != nil {
		return nil, err
	}
	return v.b[start:v.i], nil
}

func (v *validator) stringOrNull() error {
	if v.peek() == 'n' {
		return v.null()
	}
	_, err := v.stringValue()
	return err
}

func (v *validator) boolOrNull() error {
	switch v.peek() {
	case 't', 'f', 'n':
		return v.literal()
	}
	return errUnsure
}

func (v *validator) null() error {
	if v.peek() != 'n' {
		return errUnsure
	}
	return v.literal()
}

// literal reads true, false or null.
func (v *validator) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if len(v.b)-v.i >= len(lit) && string(v.b[v.i:v.i+len(lit)]) == lit {
			v.i += len(lit)
			return nil
		}
	}
	return errUnsure
}

// numberOrNull reads a number (an integer that fits an int when integer
// is set) or null.
func (v *validator) numberOrNull(integer bool) error {
	if v.peek() == 'n' {
		return v.null()
	}
	start := v.i
	isInt, err := v.number()
	if err != nil {
		return err
	}
	if integer && (!isInt || v.i-start > 18) {
		return errUnsure
	}
	return nil
}

// number reads a JSON number; isInt when it has no fraction or exponent.
func (v *validator) number() (isInt bool, err error) {
	b, i := v.b, v.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false, errUnsure
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false, errUnsure
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false, errUnsure
		}
	}
	v.i = i
	return isInt, nil
}

// str reads a string, the reader at its opening quote, validating its
// escapes and that it holds no control characters.
func (v *validator) str() (escaped bool, err error) {
	b, i := v.b, v.i+1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			v.i = i + 1
			return escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return false, errUnsure
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false, errUnsure
				}
				i += 6
			default:
				return false, errUnsure
			}
		case c < 0x20:
			return false, errUnsure
		default:
			i++
		}
	}
	return false, errUnsure
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// value validates any value.
func (v *validator) value() error {
	switch c := v.peek(); {
	case c == '{':
		return v.object(func([]byte) error { return v.value() })
	case c == '[':
		return v.array(v.value)
	case c == '"':
		_, err := v.str()
		return err
	case c == 't' || c == 'f' || c == 'n':
		return v.literal()
	case c == '-' || c >= '0' && c <= '9':
		_, err := v.number()
		return err
	}
	return errUnsure
}
