package openai

import "encoding/json"

// Model is one entry of GET /v1/models.
type Model struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	Description string `json:"description,omitempty"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// EmbeddingRequest is the part of an embeddings request the proxy reads.
// Input is checked for presence only: its shapes (string, strings, tokens)
// are the provider's to judge.
type EmbeddingRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

// ParseEmbeddingRequest decodes and checks an embeddings request body.
func ParseEmbeddingRequest(body []byte) (*EmbeddingRequest, error) {
	var req EmbeddingRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, &FieldError{Param: "model", Message: "you must provide a model parameter"}
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return nil, &FieldError{Param: "input", Message: "you must provide an input parameter"}
	}
	return &req, nil
}

// ErrorResponse is OpenAI's error envelope:
// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error is the body of an ErrorResponse.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// ParseError reads the message, type and code of an error body that a
// provider sent. It understands OpenAI's envelope, the bare
// {"message": ...} some compatible servers send, and a string error field;
// ok is false when the body is none of them.
func ParseError(body []byte) (e Error, ok bool) {
	var env struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	// Exact keys, as DecodeChunk's, which says when to call this.
	if decodeFields(body, &env, nil) != nil {
		return Error{}, false
	}
	if len(env.Error) > 0 {
		// Providers disagree on the types of type and code (numbers, null),
		// so they are read loosely and only strings are kept.
		var inner struct {
			Message string          `json:"message"`
			Type    json.RawMessage `json:"type"`
			Code    json.RawMessage `json:"code"`
		}
		if decodeFields(env.Error, &inner, nil) == nil && inner.Message != "" {
			e.Message = inner.Message
			_ = json.Unmarshal(inner.Type, &e.Type)
			var code string
			if json.Unmarshal(inner.Code, &code) == nil && code != "" {
				e.Code = &code
			}
			return e, true
		}
		var s string
		if json.Unmarshal(env.Error, &s) == nil && s != "" {
			return Error{Message: s}, true
		}
	}
	if env.Message != "" {
		return Error{Message: env.Message}, true
	}
	return Error{}, false
}
