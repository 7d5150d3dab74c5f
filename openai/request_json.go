package openai

import (
	"encoding/json"
	"math"
	"strconv"
)

// plainChatRequest is a ChatRequest without its methods: what json.Marshal
// encodes when the typed fields alone are wanted, without MarshalJSON
// calling itself.
type plainChatRequest ChatRequest

// appendFields appends the JSON encoding of r's typed fields to dst, the
// bytes json.Marshal((*plainChatRequest)(r)) writes, and returns the
// extended buffer; on error dst is returned unchanged. Extra is not
// written.
//
// A consortium run encodes a request for every member and one for the
// arbiter, whose prompt holds every answer; through json.Marshal each
// message's text was scanned three times (Content's own json.Marshal, then
// encoding/json's validation and compaction of its output), and encoding
// was 7% of the proxy's CPU under load. So the fields are written by hand,
// as ChatCompletionChunk.AppendJSON writes a chunk. A value encoding/json
// refuses (a float that is not finite, raw JSON that is not valid) is left
// to json.Marshal, so that its error stays encoding/json's.
// FuzzChatRequestAppendJSON holds the two together, and
// TestChatRequestAppendJSONFields fails when one of the types gains a
// field this encoder does not write.
func (r *ChatRequest) appendFields(dst []byte) ([]byte, error) {
	buf := dst
	if n := r.sizeHint(); cap(buf)-len(buf) < n {
		buf = append(make([]byte, 0, len(buf)+n), buf...)
	}
	if b, ok := r.appendJSON(buf); ok {
		return b, nil
	}
	b, err := json.Marshal((*plainChatRequest)(r))
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// sizeHint guesses the length of r's encoding, so that it is written into
// one allocation: the texts, with room for some escapes, and the keys.
func (r *ChatRequest) sizeHint() int {
	n := 256 + len(r.Model) + len(r.User) + len(r.ToolChoice)
	for i := range r.Messages {
		m := &r.Messages[i]
		n += 64 + len(m.Role) + len(m.Content.Text) + len(m.Name) + len(m.ToolCalls) + len(m.ToolCallID)
		for j := range m.Content.Parts {
			p := &m.Content.Parts[j]
			n += 48 + len(p.Type) + len(p.Text)
			if p.ImageURL != nil {
				n += 32 + len(p.ImageURL.URL) + len(p.ImageURL.Detail)
			}
		}
	}
	for _, s := range r.Stop {
		n += 3 + len(s)
	}
	for i := range r.Tools {
		n += 32 + len(r.Tools[i].Type) + len(r.Tools[i].Function)
	}
	if r.ResponseFormat != nil {
		n += 48 + len(r.ResponseFormat.Type) + len(r.ResponseFormat.JSONSchema)
	}
	return n + n/16
}

// appendJSON writes r's typed fields as appendFields does, or reports
// false on a value json.Marshal would refuse; b is then incomplete.
func (r *ChatRequest) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"model":`...)
	b = appendString(b, r.Model)
	b = append(b, `,"messages":`...)
	if r.Messages == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = r.Messages[i].appendJSON(b); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	if r.Stream {
		b = append(b, `,"stream":true`...)
	}
	if o := r.StreamOptions; o != nil {
		b = append(b, `,"stream_options":{"include_usage":`...)
		b = strconv.AppendBool(b, o.IncludeUsage)
		b = append(b, '}')
	}
	var ok bool
	if b, ok = appendFloatField(b, `,"temperature":`, r.Temperature); !ok {
		return b, false
	}
	if b, ok = appendFloatField(b, `,"top_p":`, r.TopP); !ok {
		return b, false
	}
	b = appendIntField(b, `,"max_tokens":`, r.MaxTokens)
	b = appendIntField(b, `,"max_completion_tokens":`, r.MaxCompletionTokens)
	if b, ok = appendFloatField(b, `,"presence_penalty":`, r.PresencePenalty); !ok {
		return b, false
	}
	if b, ok = appendFloatField(b, `,"frequency_penalty":`, r.FrequencyPenalty); !ok {
		return b, false
	}
	if len(r.Stop) > 0 {
		b = append(b, `,"stop":[`...)
		for i, s := range r.Stop {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	if r.Seed != nil {
		b = append(b, `,"seed":`...)
		b = strconv.AppendInt(b, *r.Seed, 10)
	}
	b = appendIntField(b, `,"n":`, r.N)
	if len(r.Tools) > 0 {
		b = append(b, `,"tools":[`...)
		for i := range r.Tools {
			if i > 0 {
				b = append(b, ',')
			}
			t := &r.Tools[i]
			b = append(b, `{"type":`...)
			b = appendString(b, t.Type)
			if len(t.Function) > 0 {
				b = append(b, `,"function":`...)
				if b, ok = appendRaw(b, t.Function); !ok {
					return b, false
				}
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(r.ToolChoice) > 0 {
		b = append(b, `,"tool_choice":`...)
		if b, ok = appendRaw(b, r.ToolChoice); !ok {
			return b, false
		}
	}
	if f := r.ResponseFormat; f != nil {
		b = append(b, `,"response_format":{"type":`...)
		b = appendString(b, f.Type)
		if len(f.JSONSchema) > 0 {
			b = append(b, `,"json_schema":`...)
			if b, ok = appendRaw(b, f.JSONSchema); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if r.User != "" {
		b = append(b, `,"user":`...)
		b = appendString(b, r.User)
	}
	return append(b, '}'), true
}

// appendFloatField appends key and *f unless f is nil (omitempty), or
// reports false when *f is not finite, which encoding/json refuses.
func appendFloatField(b []byte, key string, f *float64) ([]byte, bool) {
	if f == nil {
		return b, true
	}
	if math.IsInf(*f, 0) || math.IsNaN(*f) {
		return b, false
	}
	b = append(b, key...)
	return appendFloat(b, *f), true
}

// appendIntField appends key and *n unless n is nil (omitempty).
func appendIntField(b []byte, key string, n *int) []byte {
	if n == nil {
		return b
	}
	b = append(b, key...)
	return strconv.AppendInt(b, int64(*n), 10)
}

func (m *Message) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"role":`...)
	b = appendString(b, m.Role)
	b = append(b, `,"content":`...)
	b = m.Content.appendJSON(b)
	if m.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, m.Name)
	}
	if len(m.ToolCalls) > 0 {
		b = append(b, `,"tool_calls":`...)
		var ok bool
		if b, ok = appendRaw(b, m.ToolCalls); !ok {
			return b, false
		}
	}
	if m.ToolCallID != "" {
		b = append(b, `,"tool_call_id":`...)
		b = appendString(b, m.ToolCallID)
	}
	return append(b, '}'), true
}

// appendJSON appends what MarshalJSON returns. encoding/json compacts and
// HTML-escapes a Marshaler's output, which leaves these bytes as they are:
// they are compact and escaped already.
func (c *Content) appendJSON(b []byte) []byte {
	switch {
	case c.Parts != nil:
		b = append(b, '[')
		for i := range c.Parts {
			if i > 0 {
				b = append(b, ',')
			}
			b = c.Parts[i].appendJSON(b)
		}
		return append(b, ']')
	case c.Null:
		return append(b, "null"...)
	}
	return appendString(b, c.Text)
}

func (p *Part) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, p.Type)
	if p.Text != "" {
		b = append(b, `,"text":`...)
		b = appendString(b, p.Text)
	}
	if u := p.ImageURL; u != nil {
		b = append(b, `,"image_url":{"url":`...)
		b = appendString(b, u.URL)
		if u.Detail != "" {
			b = append(b, `,"detail":`...)
			b = appendString(b, u.Detail)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}
