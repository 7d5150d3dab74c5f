package openai

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// The helpers below write JSON as encoding/json writes it, byte for byte,
// for the hand encoders of the wire types on hot paths:
// ChatCompletionChunk.AppendJSON and ChatRequest.AppendJSON.

// appendRaw appends raw JSON as encoding/json writes a json.RawMessage:
// compacted, with <, >, &, U+2028 and U+2029 escaped. It reports false
// when raw is not valid JSON, which encoding/json refuses.
func appendRaw(b []byte, raw []byte) ([]byte, bool) {
	start := len(b)
	w := bytes.NewBuffer(b)
	if err := json.Compact(w, raw); err != nil {
		return b, false
	}
	b = w.Bytes()
	if tail := b[start:]; needsHTMLEscape(tail) {
		b = appendHTMLEscape(b[:start], bytes.Clone(tail))
	}
	return b, true
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
