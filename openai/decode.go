package openai

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
)

// DecodeChunk decodes the data of one stream event into a chunk, exactly as
// json.Unmarshal would, and reports whether the event may rather be an
// error event, for ParseError to read: no choices, and an "error" field or
// a non-empty string "message" (the bare form some compatible servers
// send).
//
// The arbiter's reply arrives as dozens of these per request, so a fast
// pass decodes the usual chunk in one scan without reflection; whenever it
// is not sure (escaped or case-folded keys, duplicate keys, an unexpected
// type), json.Unmarshal decides, so the two always agree.
func DecodeChunk(data []byte) (c ChatCompletionChunk, errorEvent bool, err error) {
	if c, errorEvent, ok := fastChunk(data); ok {
		return c, errorEvent, nil
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return ChatCompletionChunk{}, false, err
	}
	// Read loosely: a chunk is no less a chunk for an odd "message".
	var ev struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	json.Unmarshal(data, &ev)
	return c, c.Choices == nil && (ev.Error != nil || isNonEmptyString(ev.Message)), nil
}

// isNonEmptyString reports whether raw is a JSON string that is not "".
func isNonEmptyString(raw json.RawMessage) bool {
	return len(raw) > 2 && raw[0] == '"'
}

// DecodeCompletion decodes a non-streamed chat completion exactly as
// json.Unmarshal would, with the same fast pass as DecodeChunk.
func DecodeCompletion(data []byte) (*ChatCompletion, error) {
	if cc, ok := fastCompletion(data); ok {
		return cc, nil
	}
	var cc ChatCompletion
	if err := json.Unmarshal(data, &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

func fastChunk(data []byte) (c ChatCompletionChunk, errorEvent bool, ok bool) {
	v := validator{b: data}
	h := header{&c.ID, &c.Object, &c.Created, &c.Model, &c.Usage, &c.SystemFingerprint, &c.Consortium}
	var sawError bool
	var message string
	err := v.object(func(key []byte) error {
		if ok, err := v.header(key, h); ok {
			return err
		}
		switch string(key) {
		case "choices":
			return readSlice(&v, &c.Choices, v.chunkChoice)
		case "error":
			sawError = true
			return v.value()
		case "message":
			if v.peek() == '"' {
				return v.stringInto(&message)
			}
			return v.value()
		}
		return v.value()
	}, chunkKeys...)
	if err != nil || !v.end() {
		return ChatCompletionChunk{}, false, false
	}
	return c, c.Choices == nil && (sawError || message != ""), true
}

// header points at the fields a completion and a chunk share.
type header struct {
	id, object  *string
	created     *int64
	model       *string
	usage       **Usage
	fingerprint *string
	consortium  *json.RawMessage
}

// headerKeys are the JSON names of header's fields; chunkKeys and
// completionKeys every key the two decode.
var (
	headerKeys     = []string{"id", "object", "created", "model", "usage", "system_fingerprint", "consortium"}
	chunkKeys      = append(slices.Clip(headerKeys), "choices", "error", "message")
	completionKeys = append(slices.Clip(headerKeys), "choices")
)

// header reads key's value into h when key is one of headerKeys, and
// reports whether it was.
func (v *validator) header(key []byte, h header) (bool, error) {
	switch string(key) {
	case "id":
		return true, v.stringInto(h.id)
	case "object":
		return true, v.stringInto(h.object)
	case "created":
		return true, v.int64Into(h.created)
	case "model":
		return true, v.stringInto(h.model)
	case "usage":
		return true, v.usage(h.usage)
	case "system_fingerprint":
		return true, v.stringInto(h.fingerprint)
	case "consortium":
		return true, v.rawInto(h.consortium)
	}
	return false, nil
}

// readSlice reads an array into *s, each element with elem, or null,
// which sets *s nil, as json.Unmarshal does.
func readSlice[T any](v *validator, s *[]T, elem func(*T) error) error {
	if v.peek() == 'n' {
		*s = nil
		return v.null()
	}
	*s = []T{}
	return v.array(func() error {
		*s = append(*s, *new(T))
		return elem(&(*s)[len(*s)-1])
	})
}

func (v *validator) chunkChoice(ch *ChunkChoice) error {
	return v.object(func(key []byte) error {
		switch string(key) {
		case "index":
			return v.intInto(&ch.Index)
		case "delta":
			return v.objectOrNull(func(key []byte) error {
				switch string(key) {
				case "role":
					return v.stringInto(&ch.Delta.Role)
				case "content":
					return v.stringPtr(&ch.Delta.Content)
				case "tool_calls":
					return v.rawInto(&ch.Delta.ToolCalls)
				}
				return v.value()
			}, "role", "content", "tool_calls")
		case "finish_reason":
			return v.stringPtr(&ch.FinishReason)
		}
		return v.value()
	}, "index", "delta", "finish_reason")
}

func fastCompletion(data []byte) (*ChatCompletion, bool) {
	v := validator{b: data}
	cc := new(ChatCompletion)
	h := header{&cc.ID, &cc.Object, &cc.Created, &cc.Model, &cc.Usage, &cc.SystemFingerprint, &cc.Consortium}
	err := v.object(func(key []byte) error {
		if ok, err := v.header(key, h); ok {
			return err
		}
		if string(key) == "choices" {
			return readSlice(&v, &cc.Choices, v.choice)
		}
		return v.value()
	}, completionKeys...)
	if err != nil || !v.end() {
		return nil, false
	}
	return cc, true
}

func (v *validator) choice(ch *Choice) error {
	return v.object(func(key []byte) error {
		switch string(key) {
		case "index":
			return v.intInto(&ch.Index)
		case "message":
			m := &ch.Message
			return v.objectOrNull(func(key []byte) error {
				switch string(key) {
				case "role":
					return v.stringInto(&m.Role)
				case "content":
					return v.stringPtr(&m.Content)
				case "refusal":
					return v.rawInto(&m.Refusal)
				case "tool_calls":
					return v.rawInto(&m.ToolCalls)
				}
				return v.value()
			}, "role", "content", "refusal", "tool_calls")
		case "logprobs":
			return v.rawInto(&ch.Logprobs)
		case "finish_reason":
			return v.stringInto(&ch.FinishReason)
		}
		return v.value()
	}, "index", "message", "logprobs", "finish_reason")
}

// usage reads a usage object into *u, allocating it, or null, which
// leaves *u nil.
func (v *validator) usage(u **Usage) error {
	if v.peek() == 'n' {
		*u = nil
		return v.null()
	}
	if *u == nil {
		*u = new(Usage)
	}
	us := *u
	return v.object(func(key []byte) error {
		switch string(key) {
		case "prompt_tokens":
			return v.intInto(&us.PromptTokens)
		case "completion_tokens":
			return v.intInto(&us.CompletionTokens)
		case "total_tokens":
			return v.intInto(&us.TotalTokens)
		}
		return v.value()
	}, "prompt_tokens", "completion_tokens", "total_tokens")
}

// end reports whether only whitespace is left.
func (v *validator) end() bool {
	v.ws()
	return v.i == len(v.b)
}

// stringInto reads a string into *dst; null leaves *dst as it is, as
// json.Unmarshal does.
func (v *validator) stringInto(dst *string) error {
	if v.peek() == 'n' {
		return v.null()
	}
	s, err := v.text()
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

// stringPtr reads a string into a new *dst, or null, which sets it nil.
func (v *validator) stringPtr(dst **string) error {
	if v.peek() == 'n' {
		*dst = nil
		return v.null()
	}
	s, err := v.text()
	if err != nil {
		return err
	}
	*dst = &s
	return nil
}

// text reads a string value and returns its text: its bytes when nothing
// needs unescaping or replacing, and otherwise what json.Unmarshal makes
// of it.
func (v *validator) text() (string, error) {
	if v.peek() != '"' {
		return "", errUnsure
	}
	start := v.i
	if _, err := v.str(); err != nil {
		return "", err
	}
	raw := v.b[start:v.i]
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errUnsure
	}
	return s, nil
}

// intInto reads an integer that surely fits an int into *dst; null leaves
// *dst as it is.
func (v *validator) intInto(dst *int) error {
	n := int64(*dst)
	if err := v.int64Into(&n); err != nil {
		return err
	}
	if int64(int(n)) != n {
		return errUnsure // past a 32-bit int: json.Unmarshal's error
	}
	*dst = int(n)
	return nil
}

// int64Into reads an integer of at most 18 digits (so that it fits) into
// *dst; null leaves *dst as it is. Anything else (a fraction, an exponent)
// is for json.Unmarshal to refuse.
func (v *validator) int64Into(dst *int64) error {
	if v.peek() == 'n' {
		return v.null()
	}
	start := v.i
	isInt, err := v.number()
	if err != nil {
		return err
	}
	if !isInt || v.i-start > 18 {
		return errUnsure
	}
	n, err := strconv.ParseInt(string(v.b[start:v.i]), 10, 64)
	if err != nil {
		return errUnsure
	}
	*dst = n
	return nil
}

// rawInto reads any value into *dst as its raw bytes, null included, as
// json.RawMessage does.
func (v *validator) rawInto(dst *json.RawMessage) error {
	v.ws()
	start := v.i
	if err := v.value(); err != nil {
		return err
	}
	*dst = bytes.Clone(v.b[start:v.i])
	return nil
}
