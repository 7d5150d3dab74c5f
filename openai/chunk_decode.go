package openai

import (
	"encoding/json"
	"reflect"
)

// A consortium stream decodes every chunk of every member, and a profile
// of one under load (2 cores, 128 streams) found DecodeChunk at 11% of the
// proxy's CPU, nearly all of it decodeFields's reflection and the
// encoding/json calls it makes for each pointer field. decodeChunkFast
// decodes the chunks providers send with the same scanner and the same
// shapes, field by field without reflection, and hands anything it is not
// sure of back to decodeFields (errUnsure): a value of another type than
// the field's, a number that is not a small integer, a cost, and every
// error. FuzzDecodeChunkFast holds the two paths to the same answers.

// The shapes of a chunk's objects, whose keys and duplicate checks are
// decodeFields's, through scanner.fields.
var (
	chunkShape        = shapeOf(reflect.TypeFor[ChatCompletionChunk]())
	chunkChoiceShape  = shapeOf(reflect.TypeFor[ChunkChoice]())
	deltaShape        = shapeOf(reflect.TypeFor[Delta]())
	usageShape        = shapeOf(reflect.TypeFor[Usage]())
	promptTokensShape = shapeOf(reflect.TypeFor[PromptTokensDetails]())
)

// decodeChunkFast decodes data as decodeChunkFields does, or reports false
// when it leaves data to decodeChunkFields, which then decodes it or words
// its error: ok is true only for a chunk decodeChunkFields decodes to c and
// errorEvent without error.
//
// Keys are read by scanner.fields, as decodeFields reads them (exact,
// unescaped, each known field at most once); a key no field names is
// skipped as decodeFields skips it, after errorKeys has seen it at the top
// level. Values are read as decodeValue reads them: null leaves a field as
// it is, strings are read by scanner.text, integers by plainInt, and a
// json.RawMessage keeps a copy of its value's bytes.
//
// The id, object and model are the strings last holds when they are the
// same bytes, and are kept in last.
func decodeChunkFast(data []byte, last *ChunkDecoder) (c ChatCompletionChunk, errorEvent bool, ok bool) {
	d := chunkDecoder{scanner: scanner{b: data}}
	var keys errorKeys
	if d.peek() != '{' {
		return ChatCompletionChunk{}, false, false
	}
	err := d.fields(chunkShape, func(key []byte, f *field) error {
		if f == nil {
			start := d.i
			if err := d.value(); err != nil {
				return err
			}
			keys.see(key, d.b[start:d.i])
			return nil
		}
		switch f.name {
		case "id":
			return d.repeated(&c.ID, &last.id)
		case "object":
			return d.repeated(&c.Object, &last.object)
		case "created":
			return d.int64(&c.Created)
		case "model":
			return d.repeated(&c.Model, &last.model)
		case "choices":
			return d.choices(&c.Choices)
		case "usage":
			return d.usage(&c.Usage)
		case "system_fingerprint":
			return d.string(&c.SystemFingerprint)
		case "consortium":
			return d.raw(&c.Consortium)
		}
		return errUnsure // a field added since
	})
	if err != nil || !d.end() {
		return ChatCompletionChunk{}, false, false
	}
	return c, keys.errorEvent(&c), true
}

// chunkDecoder reads the values of a chunk, its scanner at each.
type chunkDecoder struct{ scanner }

// null reads a null, or reports false, having read nothing.
func (d *chunkDecoder) null() bool {
	return d.peek() == 'n' && d.literal() == nil
}

// members reads an object of shape sh, calling member for each field
// given; a key no field names is skipped, as decodeFields skips it.
func (d *chunkDecoder) members(sh *shape, member func(f *field) error) error {
	if d.peek() != '{' {
		return errUnsure
	}
	return d.fields(sh, func(_ []byte, f *field) error {
		if f == nil {
			return d.value()
		}
		return member(f)
	})
}

func (d *chunkDecoder) string(p *string) error {
	if d.null() {
		return nil
	}
	return d.text(p)
}

// repeated reads a string as string does, but gives *last when the
// string is the same bytes as it, and keeps what it read in *last when it
// had no escapes (decoded, it is those bytes).
func (d *chunkDecoder) repeated(p, last *string) error {
	if d.null() {
		return nil
	}
	if d.peek() != '"' {
		return errUnsure
	}
	start := d.i
	if _, err := d.str(); err != nil {
		return err
	}
	if inner := d.b[start+1 : d.i-1]; string(inner) == *last {
		*p = *last
		return nil
	}
	d.i = start
	if err := d.text(p); err != nil {
		return err
	}
	if string(d.b[start+1:d.i-1]) == *p {
		*last = *p
	}
	return nil
}

func (d *chunkDecoder) stringPointer(p **string) error {
	if d.null() {
		*p = nil
		return nil
	}
	s := new(string)
	if err := d.text(s); err != nil {
		return err
	}
	*p = s
	return nil
}

// int64 reads an integer plainInt reads; encoding/json reads those of 19
// digits and words the errors of the other numbers.
func (d *chunkDecoder) int64(p *int64) error {
	if d.null() {
		return nil
	}
	start := d.i
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return errUnsure
	}
	if isInt, err := d.number(); err != nil || !isInt {
		return errUnsure
	}
	n, ok := plainInt(d.b[start:d.i])
	if !ok {
		return errUnsure
	}
	*p = n
	return nil
}

func (d *chunkDecoder) int(p *int) error {
	n := int64(*p)
	if err := d.int64(&n); err != nil {
		return err
	}
	if int64(int(n)) != n {
		return errUnsure // encoding/json words the overflow
	}
	*p = int(n)
	return nil
}

// raw keeps a copy of any value, null included, as json.RawMessage's
// UnmarshalJSON does.
func (d *chunkDecoder) raw(p *json.RawMessage) error {
	start := d.i
	if err := d.value(); err != nil {
		return err
	}
	*p = append((*p)[:0], d.b[start:d.i]...)
	return nil
}

// choices reads null, as encoding/json reads it into a slice, or an array
// of choices, which is never nil, as decodeValue makes it.
func (d *chunkDecoder) choices(p *[]ChunkChoice) error {
	if d.null() {
		*p = nil
		return nil
	}
	if d.peek() != '[' {
		return errUnsure
	}
	choices := []ChunkChoice{}
	err := d.array(func() error {
		choices = append(choices, ChunkChoice{})
		return d.choice(&choices[len(choices)-1])
	})
	*p = choices
	return err
}

func (d *chunkDecoder) choice(ch *ChunkChoice) error {
	if d.null() {
		return nil
	}
	return d.members(chunkChoiceShape, func(f *field) error {
		switch f.name {
		case "index":
			return d.int(&ch.Index)
		case "delta":
			return d.delta(&ch.Delta)
		case "finish_reason":
			return d.stringPointer(&ch.FinishReason)
		}
		return errUnsure
	})
}

func (d *chunkDecoder) delta(delta *Delta) error {
	if d.null() {
		return nil
	}
	return d.members(deltaShape, func(f *field) error {
		switch f.name {
		case "role":
			return d.string(&delta.Role)
		case "content":
			return d.stringPointer(&delta.Content)
		case "tool_calls":
			return d.raw(&delta.ToolCalls)
		}
		return errUnsure
	})
}

func (d *chunkDecoder) usage(p **Usage) error {
	if d.null() {
		*p = nil
		return nil
	}
	u := new(Usage)
	*p = u
	return d.members(usageShape, func(f *field) error {
		switch f.name {
		case "prompt_tokens":
			return d.int(&u.PromptTokens)
		case "completion_tokens":
			return d.int(&u.CompletionTokens)
		case "total_tokens":
			return d.int(&u.TotalTokens)
		case "prompt_tokens_details":
			return d.promptTokens(&u.PromptTokensDetails)
		case "cost_usd":
			if d.null() {
				return nil
			}
			return errUnsure // a float, for encoding/json to read
		}
		return errUnsure
	})
}

func (d *chunkDecoder) promptTokens(p **PromptTokensDetails) error {
	if d.null() {
		*p = nil
		return nil
	}
	details := new(PromptTokensDetails)
	*p = details
	return d.members(promptTokensShape, func(f *field) error {
		if f.name == "cached_tokens" {
			return d.int(&details.CachedTokens)
		}
		return errUnsure
	})
}
