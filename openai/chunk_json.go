package openai

import (
	"encoding/json"
	"math"
	"strconv"
)

// AppendJSON appends c's JSON encoding to dst and returns the extended
// buffer. The bytes are those json.Marshal(c) writes: the fields in struct
// order, encoding/json's omitempty rules, number format and string
// escaping (<, >, &, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD),
// raw JSON compacted. On error dst is returned unchanged.
//
// A consortium's stream encodes a chunk for every delta, and json.Marshal
// was the largest item of its CPU after decoding, so the fields are written
// by hand, without reflection. A value encoding/json refuses (a cost that
// is not finite, raw JSON that is not valid) is left to json.Marshal, so
// that its error stays encoding/json's. FuzzChunkAppendJSON holds the two
// together, and TestChunkAppendJSONFields fails when one of the types
// gains a field this encoder does not write.
func (c *ChatCompletionChunk) AppendJSON(dst []byte) ([]byte, error) {
	if b, ok := c.appendJSON(dst); ok {
		return b, nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// appendJSON writes c as AppendJSON does, or reports false on a value
// json.Marshal would refuse; b is then incomplete.
func (c *ChatCompletionChunk) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = appendString(b, c.ID)
	b = append(b, `,"object":`...)
	b = appendString(b, c.Object)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, c.Created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, c.Model)
	b = append(b, `,"choices":`...)
	if c.Choices == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range c.Choices {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = c.Choices[i].appendJSON(b); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	if c.Usage != nil {
		b = append(b, `,"usage":`...)
		var ok bool
		if b, ok = c.Usage.appendJSON(b); !ok {
			return b, false
		}
	}
	if c.SystemFingerprint != "" {
		b = append(b, `,"system_fingerprint":`...)
		b = appendString(b, c.SystemFingerprint)
	}
	if len(c.Consortium) > 0 {
		b = append(b, `,"consortium":`...)
		var ok bool
		if b, ok = appendRaw(b, c.Consortium); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func (ch *ChunkChoice) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(ch.Index), 10)
	b = append(b, `,"delta":{`...)
	// Every field of a delta may be left out, so each but the first
	// written takes a comma.
	open := len(b)
	if ch.Delta.Role != "" {
		b = append(b, `"role":`...)
		b = appendString(b, ch.Delta.Role)
	}
	if ch.Delta.Content != nil {
		if len(b) > open {
			b = append(b, ',')
		}
		b = append(b, `"content":`...)
		b = appendString(b, *ch.Delta.Content)
	}
	if len(ch.Delta.ToolCalls) > 0 {
		if len(b) > open {
			b = append(b, ',')
		}
		b = append(b, `"tool_calls":`...)
		var ok bool
		if b, ok = appendRaw(b, ch.Delta.ToolCalls); !ok {
			return b, false
		}
	}
	b = append(b, `},"finish_reason":`...)
	if ch.FinishReason == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *ch.FinishReason)
	}
	return append(b, '}'), true
}

func (u *Usage) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	if d := u.PromptTokensDetails; d != nil {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(d.CachedTokens), 10)
		b = append(b, '}')
	}
	if u.CostUSD != nil {
		f := *u.CostUSD
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return b, false
		}
		b = append(b, `,"cost_usd":`...)
		b = appendFloat(b, f)
	}
	return append(b, '}'), true
}
