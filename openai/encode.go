package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of r to dst and returns the extended
// buffer. The bytes are those json.Marshal(r) writes: the fields in the
// order of the struct, with encoding/json's omitempty rules, number format
// and string escaping (HTML characters included), raw JSON compacted.
//
// The fields are written by hand, without reflection, because a request is
// encoded for every member of every round. A request with Extra set, or
// with a value encoding/json refuses (a float that is not finite, raw JSON
// that is not valid), is left to encoding/json, so that its output and its
// errors stay encoding/json's. On error dst is returned unchanged.
func (r *ChatRequest) AppendJSON(dst []byte) ([]byte, error) {
	if len(r.Extra) == 0 {
		e := requestEncoder{buf: slices.Grow(dst, r.sizeHint())}
		e.request(r)
		if !e.failed {
			return e.buf, nil
		}
	}
	b, err := r.marshalReflect()
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// marshalReflect encodes r with encoding/json and then sets Extra's fields
// over the typed ones. With Extra set, the result is an object whose keys
// are sorted, as it goes through a map.
func (r *ChatRequest) marshalReflect() ([]byte, error) {
	type plain ChatRequest
	b, err := json.Marshal((*plain)(r))
	if err != nil || len(r.Extra) == 0 {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("param %s: %w", k, err)
		}
		fields[k] = raw
	}
	return json.Marshal(fields)
}

// sizeHint estimates the length of r's encoding, so that the buffer is
// allocated once in the common case.
func (r *ChatRequest) sizeHint() int {
	n := 256 + len(r.Model) + len(r.User) + len(r.ToolChoice)
	for i := range r.Messages {
		m := &r.Messages[i]
		n += 48 + len(m.Role) + len(m.Content.Text) + len(m.Name) + len(m.ToolCalls) + len(m.ToolCallID)
		for _, p := range m.Content.Parts {
			n += 32 + len(p.Type) + len(p.Text)
			if p.ImageURL != nil {
				n += 32 + len(p.ImageURL.URL)
			}
		}
	}
	for _, t := range r.Tools {
		n += 32 + len(t.Type) + len(t.Function)
	}
	if r.ResponseFormat != nil {
		n += 48 + len(r.ResponseFormat.JSONSchema)
	}
	// Room for some escapes, such as the quotes of quoted text.
	return n + n/16
}

// requestEncoder appends a ChatRequest's JSON to buf. It sets failed on
// a value json.Marshal would return an error for; buf is then incomplete.
type requestEncoder struct {
	buf    []byte
	failed bool
}

// request writes r's fields, Extra aside. Every object written here starts
// with a field that omitempty never leaves out, so each later field is
// written with its leading comma.
func (e *requestEncoder) request(r *ChatRequest) {
	e.buf = append(e.buf, `{"model":`...)
	e.buf = appendString(e.buf, r.Model)
	e.buf = append(e.buf, `,"messages":`...)
	if r.Messages == nil {
		e.buf = append(e.buf, "null"...)
	} else {
		e.buf = append(e.buf, '[')
		for i := range r.Messages {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.message(&r.Messages[i])
		}
		e.buf = append(e.buf, ']')
	}
	if r.Stream {
		e.buf = append(e.buf, `,"stream":true`...)
	}
	if r.StreamOptions != nil {
		e.buf = append(e.buf, `,"stream_options":{"include_usage":`...)
		e.buf = strconv.AppendBool(e.buf, r.StreamOptions.IncludeUsage)
		e.buf = append(e.buf, '}')
	}
	e.floatField(`,"temperature":`, r.Temperature)
	e.floatField(`,"top_p":`, r.TopP)
	e.intField(`,"max_tokens":`, r.MaxTokens)
	e.intField(`,"max_completion_tokens":`, r.MaxCompletionTokens)
	e.floatField(`,"presence_penalty":`, r.PresencePenalty)
	e.floatField(`,"frequency_penalty":`, r.FrequencyPenalty)
	if len(r.Stop) > 0 {
		e.buf = append(e.buf, `,"stop":[`...)
		for i, s := range r.Stop {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = appendString(e.buf, s)
		}
		e.buf = append(e.buf, ']')
	}
	if r.Seed != nil {
		e.buf = append(e.buf, `,"seed":`...)
		e.buf = strconv.AppendInt(e.buf, *r.Seed, 10)
	}
	e.intField(`,"n":`, r.N)
	if len(r.Tools) > 0 {
		e.buf = append(e.buf, `,"tools":[`...)
		for i, t := range r.Tools {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = append(e.buf, `{"type":`...)
			e.buf = appendString(e.buf, t.Type)
			e.rawField(`,"function":`, t.Function)
			e.buf = append(e.buf, '}')
		}
		e.buf = append(e.buf, ']')
	}
	e.rawField(`,"tool_choice":`, r.ToolChoice)
	if f := r.ResponseFormat; f != nil {
		e.buf = append(e.buf, `,"response_format":{"type":`...)
		e.buf = appendString(e.buf, f.Type)
		e.rawField(`,"json_schema":`, f.JSONSchema)
		e.buf = append(e.buf, '}')
	}
	e.stringField(`,"user":`, r.User)
	e.buf = append(e.buf, '}')
}

// message writes one message, its content as Content.MarshalJSON does.
func (e *requestEncoder) message(m *Message) {
	e.buf = append(e.buf, `{"role":`...)
	e.buf = appendString(e.buf, m.Role)
	e.buf = append(e.buf, `,"content":`...)
	switch c := &m.Content; {
	case c.Parts != nil:
		e.buf = append(e.buf, '[')
		for i := range c.Parts {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.part(&c.Parts[i])
		}
		e.buf = append(e.buf, ']')
	case c.Null:
		e.buf = append(e.buf, "null"...)
	default:
		e.buf = appendString(e.buf, c.Text)
	}
	e.stringField(`,"name":`, m.Name)
	e.rawField(`,"tool_calls":`, m.ToolCalls)
	e.stringField(`,"tool_call_id":`, m.ToolCallID)
	e.buf = append(e.buf, '}')
}

// part writes one content part.
func (e *requestEncoder) part(p *Part) {
	e.buf = append(e.buf, `{"type":`...)
	e.buf = appendString(e.buf, p.Type)
	e.stringField(`,"text":`, p.Text)
	if u := p.ImageURL; u != nil {
		e.buf = append(e.buf, `,"image_url":{"url":`...)
		e.buf = appendString(e.buf, u.URL)
		e.stringField(`,"detail":`, u.Detail)
		e.buf = append(e.buf, '}')
	}
	e.buf = append(e.buf, '}')
}

// floatField writes key and *f unless f is nil. key holds the leading
// comma, the quoted name and the colon.
func (e *requestEncoder) floatField(key string, f *float64) {
	if f == nil {
		return
	}
	if math.IsInf(*f, 0) || math.IsNaN(*f) {
		e.failed = true
		return
	}
	e.buf = append(e.buf, key...)
	e.buf = appendFloat(e.buf, *f)
}

// stringField writes key and s unless s is empty, as omitempty does.
func (e *requestEncoder) stringField(key, s string) {
	if s == "" {
		return
	}
	e.buf = append(e.buf, key...)
	e.buf = appendString(e.buf, s)
}

// intField writes key and *n unless n is nil.
func (e *requestEncoder) intField(key string, n *int) {
	if n == nil {
		return
	}
	e.buf = append(e.buf, key...)
	e.buf = strconv.AppendInt(e.buf, int64(*n), 10)
}

// rawField writes key and raw unless raw is empty, as omitempty does.
// encoding/json writes a json.RawMessage compacted and with <, >, &,
// U+2028 and U+2029 escaped, and refuses one that is not valid JSON.
func (e *requestEncoder) rawField(key string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	e.buf = append(e.buf, key...)
	start := len(e.buf)
	w := bytes.NewBuffer(e.buf)
	if err := json.Compact(w, raw); err != nil {
		e.failed = true
		return
	}
	e.buf = w.Bytes()
	if tail := e.buf[start:]; needsHTMLEscape(tail) {
		e.buf = appendHTMLEscape(e.buf[:start], bytes.Clone(tail))
	}
}

// appendFloat appends f as encoding/json writes a float64: like
// ECMAScript's number to string conversion, with exponents for very small
// and very large magnitudes. f must be finite. It follows encoding/json's
// floatEncoder.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// htmlSafe reports which ASCII bytes appendString writes as they are: all
// but the control characters, the quote, the backslash, <, > and &.
var htmlSafe = func() (safe [utf8.RuneSelf]bool) {
	for b := ' '; b < utf8.RuneSelf; b++ {
		safe[b] = true
	}
	for _, b := range "\"\\<>&" {
		safe[b] = false
	}
	return safe
}()

// appendString appends s as a JSON string, escaped as encoding/json escapes
// it with HTML escaping on: <, > and & as \u003c, \u003e and \u0026,
// U+2028 and U+2029 escaped, and invalid UTF-8 replaced by U+FFFD. It
// follows encoding/json's appendString.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if htmlSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				// The other control characters, and <, > and &, which
				// could close or open markup when JSON is embedded in
				// HTML.
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid in JSON strings but end a line in
		// JavaScript, so JSONP would break on them.
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// needsHTMLEscape reports whether JSON text holds a character
// appendHTMLEscape escapes.
func needsHTMLEscape(src []byte) bool {
	for i, c := range src {
		if c == '<' || c == '>' || c == '&' || isLineSeparator(src, i) {
			return true
		}
	}
	return false
}

// appendHTMLEscape appends JSON text with <, >, &, U+2028 and U+2029
// escaped, as encoding/json does to what a json.Marshaler returns. In valid
// JSON they can only occur inside strings. It follows encoding/json's
// appendHTMLEscape.
func appendHTMLEscape(dst, src []byte) []byte {
	start := 0
	for i, c := range src {
		if c == '<' || c == '>' || c == '&' {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		}
		if isLineSeparator(src, i) {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[src[i+2]&0xF])
			start = i + len("\u2028")
		}
	}
	return append(dst, src[start:]...)
}

// isLineSeparator reports whether U+2028 or U+2029 (E2 80 A8 or E2 80 A9)
// begins at src[i].
func isLineSeparator(src []byte, i int) bool {
	return src[i] == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8
}
