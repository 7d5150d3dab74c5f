package openai

// DecodeChunk decodes the data of one stream event into a chunk, and
// reports whether the event may rather be an error event, for ParseError
// to read: no choices, and an "error" field or a non-empty string
// "message" (the bare form some compatible servers send). Keys are exact,
// as in every wire type here.
func DecodeChunk(data []byte) (c ChatCompletionChunk, errorEvent bool, err error) {
	var sawError, sawMessage bool
	err = decodeFields(data, &c, func(key, value []byte) {
		switch string(key) {
		case "error":
			sawError = true
		case "message":
			// Read loosely: a chunk is no less a chunk for an odd
			// "message".
			sawMessage = len(value) > 2 && value[0] == '"'
		}
	})
	if err != nil {
		return ChatCompletionChunk{}, false, err
	}
	return c, c.Choices == nil && (sawError || sawMessage), nil
}

// DecodeCompletion decodes a non-streamed chat completion.
func DecodeCompletion(data []byte) (*ChatCompletion, error) {
	cc := new(ChatCompletion)
	if err := decodeFields(data, cc, nil); err != nil {
		return nil, err
	}
	return cc, nil
}
