package openai

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// OpenAI's API matches JSON keys exactly, while encoding/json also takes
// "Model" or "STREAM" for "model" and "stream" and lets the last of two
// equal keys win. A proxy that read a body so would route or stream on a
// key the provider ignores, so the wire types here decode objects through
// decodeFields: a key names a field only when it equals the field's JSON
// name, a field given twice is an error, and encoding/json decodes each
// field's value. The JSON names come from the struct tags, through shapes,
// which CheckChatRequest's scanner reads too, so the two cannot drift.

// kind is what a shape accepts besides null, which every field accepts as
// encoding/json does.
type kind uint8

const (
	kindOther     kind = iota // a type the scanner does not check: ParseChatRequest decides
	kindAny                   // any value, kept raw (json.RawMessage)
	kindString                // a string
	kindBool                  // true or false
	kindNumber                // a number
	kindInteger               // a number that is an integer
	kindObject                // an object: a struct's fields
	kindRawObject             // an object, kept raw (RawObject)
	kindArray                 // an array of elem
	kindText                  // a string, or an array of elem (Content, Stop)
)

// shape is the JSON a Go type decodes from, derived from the type and its
// struct tags.
type shape struct {
	kind   kind
	elem   *shape         // kindArray, kindText
	fields []field        // kindObject, in struct order
	index  map[string]int // kindObject: JSON name -> position in fields
}

// field is one field of an object shape.
type field struct {
	name  string // the JSON name, from the tag
	num   int    // the struct field's index
	shape *shape
}

// shapes caches shapeOf.
var shapes sync.Map // reflect.Type -> *shape

// shapeOf returns the shape of t, building it on first use. t must not
// hold itself (no wire type does).
func shapeOf(t reflect.Type) *shape {
	if sh, ok := shapes.Load(t); ok {
		return sh.(*shape)
	}
	sh, _ := shapes.LoadOrStore(t, newShape(t))
	return sh.(*shape)
}

var stringShape = &shape{kind: kindString}

func newShape(t reflect.Type) *shape {
	switch t {
	case reflect.TypeFor[json.RawMessage]():
		return &shape{kind: kindAny}
	case reflect.TypeFor[RawObject]():
		return &shape{kind: kindRawObject}
	case reflect.TypeFor[Content]():
		return &shape{kind: kindText, elem: shapeOf(reflect.TypeFor[Part]())}
	case reflect.TypeFor[Stop]():
		return &shape{kind: kindText, elem: stringShape}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return shapeOf(t.Elem())
	case reflect.String:
		return stringShape
	case reflect.Bool:
		return &shape{kind: kindBool}
	case reflect.Float64:
		return &shape{kind: kindNumber}
	case reflect.Int, reflect.Int64:
		return &shape{kind: kindInteger}
	case reflect.Slice:
		return &shape{kind: kindArray, elem: shapeOf(t.Elem())}
	case reflect.Struct:
		return objectShape(t)
	}
	return &shape{kind: kindOther}
}

// objectShape reads a struct's JSON names from its tags.
func objectShape(t reflect.Type) *shape {
	sh := &shape{kind: kindObject, index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		sh.index[name] = len(sh.fields)
		sh.fields = append(sh.fields, field{name: name, num: i, shape: shapeOf(f.Type)})
	}
	if len(sh.fields) > 64 {
		panic("openai: " + t.String() + " has more fields than a duplicate check can track")
	}
	return sh
}

// chatShape is a chat request's shape, for CheckChatRequest.
var chatShape = shapeOf(reflect.TypeFor[ChatRequest]())

// duplicateError is a known field given more than once. Field is its path.
type duplicateError struct{ Field string }

func (e *duplicateError) Error() string { return fmt.Sprintf("%q is given more than once", e.Field) }

// decodeFields decodes the JSON object data into the struct v points to,
// with OpenAI's rules for keys (see above): each key that is a field's JSON
// name is decoded into that field by encoding/json, and every other key
// and its raw value go to unknown, when it is not nil. null leaves v as it
// is, as encoding/json leaves a struct. Errors name the field's path as
// encoding/json does: a *json.UnmarshalTypeError with its Field, or a
// *duplicateError.
func decodeFields(data []byte, v any, unknown func(key, value []byte)) error {
	rv := reflect.ValueOf(v).Elem()
	s := scanner{b: data}
	switch s.peek() {
	case '{':
	case 'n':
		if s.literal() == nil && s.end() {
			return nil
		}
		return jsonError(data)
	default:
		if s.value() == nil && s.end() {
			return &json.UnmarshalTypeError{Value: jsonKind(data), Type: rv.Type()}
		}
		return jsonError(data)
	}
	err := s.fields(shapeOf(rv.Type()), func(key []byte, f *field) error {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		raw := s.b[start:s.i]
		if f == nil {
			if unknown != nil {
				unknown(key, raw)
			}
			return nil
		}
		if err := decodeValue(raw, rv.Field(f.num)); err != nil {
			return inField(f.name, err)
		}
		return nil
	})
	switch {
	case err == errSyntax || err == nil && !s.end():
		return jsonError(data)
	case err != nil:
		return err
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeValue decodes raw, one value the scanner has read, into v as
// json.Unmarshal would. An Unmarshaler (a wire type, Content, Stop), or a
// slice of them, is handed its bytes as encoding/json would hand them
// over, but without validating them again on the way: a prompt's text is
// most of a request, and is scanned once rather than at every level.
func decodeValue(raw []byte, v reflect.Value) error {
	if u, ok := v.Addr().Interface().(json.Unmarshaler); ok {
		return u.UnmarshalJSON(raw)
	}
	if decodeLeaf(raw, v) {
		return nil
	}
	t := v.Type()
	if t.Kind() != reflect.Slice || raw[0] != '[' || !reflect.PointerTo(t.Elem()).Implements(unmarshalerType) {
		return json.Unmarshal(raw, v.Addr().Interface())
	}
	v.Set(reflect.MakeSlice(t, 0, 0))
	s := scanner{b: raw}
	return s.array(func() error {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		v.Set(reflect.Append(v, reflect.Zero(t.Elem())))
		return decodeValue(raw[start:s.i], v.Index(v.Len()-1))
	})
}

// decodeLeaf decodes the leaves every answer and chunk is made of (a
// string without escapes, an integer, a bool, null or a value behind a
// pointer) into v as json.Unmarshal would, without it: a profile of a
// consortium stream under load found encoding/json's reflection, called
// for each id, model and index of every chunk, at a seventh of the
// proxy's CPU. It reports false, having changed nothing, for anything
// else, which encoding/json then decodes: escapes, fractions and
// exponents, a number too large for its field (encoding/json words the
// error), null into a non-pointer, a TextUnmarshaler.
func decodeLeaf(raw []byte, v reflect.Value) bool {
	if _, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return false
	}
	switch v.Kind() {
	case reflect.String:
		if str, ok := plainString(raw); ok {
			v.SetString(str)
			return true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, ok := plainInt(raw); ok && !v.OverflowInt(n) {
			v.SetInt(n)
			return true
		}
	case reflect.Bool:
		switch string(raw) {
		case "true":
			v.SetBool(true)
			return true
		case "false":
			v.SetBool(false)
			return true
		}
	case reflect.Pointer:
		if string(raw) == "null" {
			v.SetZero()
			return true
		}
		if _, ok := v.Interface().(json.Unmarshaler); ok {
			return false // a nil pointer's own method would see no value
		}
		elem := v
		if v.IsNil() {
			elem = reflect.New(v.Type().Elem())
		} else {
			elem = v.Elem().Addr()
		}
		if decodeLeaf(raw, elem.Elem()) {
			v.Set(elem)
			return true
		}
	}
	return false
}

// plainInt reads a JSON integer of at most 18 digits (which int64 always
// holds): what a JSON number without fraction or exponent looks like,
// the scanner having checked it is one.
func plainInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(raw) > len(digits) {
		n = -n
	}
	return n, true
}

// inField puts name before the path of a field error from within the
// field's value.
func inField(name string, err error) error {
	switch e := err.(type) {
	case *json.UnmarshalTypeError:
		e.Field = joinPath(name, e.Field)
	case *duplicateError:
		e.Field = joinPath(name, e.Field)
	}
	return err
}

func joinPath(name, path string) string {
	if path == "" {
		return name
	}
	return name + "." + path
}

// jsonError returns encoding/json's word on data that the scanner found
// not to be valid JSON.
func jsonError(data []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	return errSyntax
}

// The wire types decode with exact keys, wherever they are decoded from
// (json.Unmarshal in another package included).

// UnmarshalJSON decodes a request: exact keys, each known field at most
// once. The fields ChatRequest does not name go to Extra, each as its
// json.RawMessage.
func (r *ChatRequest) UnmarshalJSON(data []byte) error {
	return decodeFields(data, r, func(key, value []byte) {
		if r.Extra == nil {
			r.Extra = map[string]any{}
		}
		r.Extra[string(key)] = json.RawMessage(append([]byte(nil), value...))
	})
}

// UnmarshalJSON decodes a message with exact keys, as ChatRequest's.
func (m *Message) UnmarshalJSON(data []byte) error { return decodeFields(data, m, nil) }

// UnmarshalJSON decodes a content part with exact keys, as ChatRequest's.
func (p *Part) UnmarshalJSON(data []byte) error { return decodeFields(data, p, nil) }

// UnmarshalJSON decodes an image_url with exact keys, as ChatRequest's.
func (u *ImageURL) UnmarshalJSON(data []byte) error { return decodeFields(data, u, nil) }

// UnmarshalJSON decodes stream_options with exact keys, as ChatRequest's.
func (o *StreamOptions) UnmarshalJSON(data []byte) error { return decodeFields(data, o, nil) }

// UnmarshalJSON decodes a response_format with exact keys, as
// ChatRequest's.
func (f *ResponseFormat) UnmarshalJSON(data []byte) error { return decodeFields(data, f, nil) }

// UnmarshalJSON decodes a tool with exact keys, as ChatRequest's.
func (t *Tool) UnmarshalJSON(data []byte) error { return decodeFields(data, t, nil) }

// UnmarshalJSON decodes an embeddings request with exact keys, as
// ChatRequest's; fields it does not name are left out.
func (r *EmbeddingRequest) UnmarshalJSON(data []byte) error { return decodeFields(data, r, nil) }

// UnmarshalJSON decodes a completion with exact keys, as ChatRequest's.
func (c *ChatCompletion) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes a choice with exact keys, as ChatRequest's.
func (c *Choice) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes a message with exact keys, as ChatRequest's.
func (m *ResponseMessage) UnmarshalJSON(data []byte) error { return decodeFields(data, m, nil) }

// UnmarshalJSON decodes a tool call with exact keys, as ChatRequest's.
func (c *ToolCall) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes a function call with exact keys, as ChatRequest's.
func (f *FunctionCall) UnmarshalJSON(data []byte) error { return decodeFields(data, f, nil) }

// UnmarshalJSON decodes a chunk with exact keys, as ChatRequest's.
func (c *ChatCompletionChunk) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes a chunk's choice with exact keys, as ChatRequest's.
func (c *ChunkChoice) UnmarshalJSON(data []byte) error { return decodeFields(data, c, nil) }

// UnmarshalJSON decodes a delta with exact keys, as ChatRequest's.
func (d *Delta) UnmarshalJSON(data []byte) error { return decodeFields(data, d, nil) }

// UnmarshalJSON decodes usage with exact keys, as ChatRequest's.
func (u *Usage) UnmarshalJSON(data []byte) error { return decodeFields(data, u, nil) }

// UnmarshalJSON decodes prompt_tokens_details with exact keys, as
// ChatRequest's; the keys it does not name (audio_tokens) are left out.
func (d *PromptTokensDetails) UnmarshalJSON(data []byte) error { return decodeFields(data, d, nil) }
