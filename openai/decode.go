package openai

// DecodeChunk decodes the data of one stream event into a chunk, and
// reports whether the event may rather be an error event, for ParseError
// to read: no choices, and an "error" field or a non-empty string
// "message" (the bare form some compatible servers send). Keys are exact,
// as in every wire type here.
func DecodeChunk(data []byte) (c ChatCompletionChunk, errorEvent bool, err error) {
	var d ChunkDecoder
	return d.Decode(data)
}

// ChunkDecoder decodes the chunks of one stream, as DecodeChunk does. A
// stream repeats its id, object and model in every chunk: the decoder
// keeps the last of each and gives the same string again, rather than a
// copy per chunk. It is not safe for concurrent use; the zero value is
// ready.
type ChunkDecoder struct {
	// Each holds only a value read from a string without escapes, so that
	// the same bytes read again are the same string.
	id, object, model string
}

// Decode decodes one chunk, as DecodeChunk does.
func (d *ChunkDecoder) Decode(data []byte) (c ChatCompletionChunk, errorEvent bool, err error) {
	if c, errorEvent, ok := decodeChunkFast(data, d); ok {
		return c, errorEvent, nil
	}
	return decodeChunkFields(data)
}

// decodeChunkFields is DecodeChunk through decodeFields, which decodes any
// chunk and words every error; decodeChunkFast answers as it does, or
// leaves the chunk to it.
func decodeChunkFields(data []byte) (c ChatCompletionChunk, errorEvent bool, err error) {
	var keys errorKeys
	if err := decodeFields(data, &c, keys.see); err != nil {
		return ChatCompletionChunk{}, false, err
	}
	return c, keys.errorEvent(&c), nil
}

// errorKeys notes the top-level keys of an event that, without choices,
// make it an error event.
type errorKeys struct{ sawError, sawMessage bool }

// see notes one top-level key that is no field of a chunk.
func (k *errorKeys) see(key, value []byte) {
	switch string(key) {
	case "error":
		k.sawError = true
	case "message":
		// Read loosely: a chunk is no less a chunk for an odd "message".
		k.sawMessage = len(value) > 2 && value[0] == '"'
	}
}

func (k *errorKeys) errorEvent(c *ChatCompletionChunk) bool {
	return c.Choices == nil && (k.sawError || k.sawMessage)
}

// DecodeCompletion decodes a non-streamed chat completion.
func DecodeCompletion(data []byte) (*ChatCompletion, error) {
	cc := new(ChatCompletion)
	if err := decodeFields(data, cc, nil); err != nil {
		return nil, err
	}
	return cc, nil
}
