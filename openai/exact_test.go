package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

// The wire types decode with exact keys (decodeFields), encoding/json with
// folded ones. On JSON whose keys are distinct and all lowercase ASCII,
// where folding changes nothing, the two must agree: checkPlain holds
// decodeFields to encoding/json's own struct decoding there.

// plainType returns t with every struct type in it rebuilt by
// reflect.StructOf: the same fields and tags, none of the methods, so that
// encoding/json decodes it with its own rules.
func plainType(t reflect.Type) reflect.Type {
	switch t {
	case reflect.TypeFor[Content](), reflect.TypeFor[Stop](), reflect.TypeFor[RawObject](), reflect.TypeFor[json.RawMessage]():
		return t // their own decoding, not decodeFields
	}
	switch t.Kind() {
	case reflect.Pointer:
		return reflect.PointerTo(plainType(t.Elem()))
	case reflect.Slice:
		return reflect.SliceOf(plainType(t.Elem()))
	case reflect.Struct:
		fields := make([]reflect.StructField, t.NumField())
		for i := range fields {
			f := t.Field(i)
			fields[i] = reflect.StructField{Name: f.Name, Type: plainType(f.Type), Tag: f.Tag}
		}
		return reflect.StructOf(fields)
	}
	return t
}

// plainKeys reports whether every object in data has distinct keys made
// of lowercase ASCII letters, digits and underscores. Text that is not
// JSON counts as plain: both decoders must refuse it.
func plainKeys(data []byte) bool {
	type frame struct{ keys map[string]bool } // keys is nil in an array
	var stack []*frame
	wantKey := false
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return true
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			wantKey = len(stack) > 0 && stack[len(stack)-1].keys != nil
			continue
		}
		if wantKey {
			key := tok.(string)
			top := stack[len(stack)-1]
			if top.keys[key] {
				return false
			}
			top.keys[key] = true
			for _, c := range []byte(key) {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
					return false
				}
			}
			wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}})
			wantKey = true
		case json.Delim('['):
			stack = append(stack, &frame{})
		default:
			wantKey = len(stack) > 0 && stack[len(stack)-1].keys != nil
		}
	}
}

// checkPlain fails t unless got and gotErr, data decoded with exact keys,
// are what encoding/json makes of data in plainType(T), when data has
// plain keys: both fail or neither, and then both encode alike.
func checkPlain[T any](t *testing.T, data []byte, got *T, gotErr error) {
	t.Helper()
	if !plainKeys(data) {
		return
	}
	want := reflect.New(plainType(reflect.TypeFor[T]()))
	wantErr := json.Unmarshal(data, want.Interface())
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%T from %q: error %v, encoding/json's %v", *got, data, gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	// Values, not pointers, so that ChatRequest's MarshalJSON (which adds
	// Extra) stays out: encoding/json knows nothing of Extra.
	a, errA := json.Marshal(*got)
	b, errB := json.Marshal(want.Elem().Interface())
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("%T from %q:\n got %s (%v)\nwant %s (%v)", *got, data, a, errA, b, errB)
	}
}

func TestPlainKeys(t *testing.T) {
	for _, tc := range []struct {
		data string
		want bool
	}{
		{`{"a":1,"b_2":[{"c":{}},{"c":null}],"d":{"a":1}}`, true},
		{`[{"a":1},{"a":2}]`, true},
		{`{"a":1,"a":2}`, false},
		{`{"a":{"b":1,"b":2}}`, false},
		{`{"A":1}`, false},
		{`{"a":[{"x-y":1}]}`, false},
		{`{"\u0061":1,"a":2}`, false},
		{`{"a":`, true},
	} {
		if got := plainKeys([]byte(tc.data)); got != tc.want {
			t.Errorf("plainKeys(%s) = %v, want %v", tc.data, got, tc.want)
		}
	}
}
