package upstreamtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
)

// embeddingDims is the size of the vectors the fake makes up.
const embeddingDims = 8

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embedding     `json:"data"`
	Model  string          `json:"model"`
	Usage  *embeddingUsage `json:"usage,omitempty"`
}

type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float64, or a base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// serveEmbeddings answers POST /v1/embeddings. Scripts and handlers apply by
// model as for chat; of a reply's fields, Content, Chunks and the streaming
// ones mean nothing here.
func (s *Server) serveEmbeddings(w http.ResponseWriter, r *http.Request, rec *Request, f fields) {
	if !f.object {
		writeError(w, http.StatusBadRequest, nil, "invalid_request_error", "",
			"We could not parse the JSON body of your request: the body must be a JSON object")
		return
	}
	reply := s.replyFor(rec)
	if !s.answer(w, r, rec, reply) {
		return
	}
	inputs, tokens, err := embeddingInputs(f.raw["input"])
	if err != nil {
		writeError(w, http.StatusBadRequest, reply.Header, "invalid_request_error", "", err.Error())
		return
	}
	// openai-python asks for base64 unless told otherwise: little-endian
	// float32s, base64-encoded.
	var format string
	_ = json.Unmarshal(f.raw["encoding_format"], &format)

	if reply.Embeddings != nil && len(reply.Embeddings) != len(inputs) {
		writeError(w, http.StatusInternalServerError, reply.Header, "server_error", "",
			fmt.Sprintf("the fake's reply has %d embeddings for %d inputs", len(reply.Embeddings), len(inputs)))
		return
	}
	list := embeddingList{Object: "list", Data: make([]embedding, len(inputs)), Model: rec.Model}
	for i, in := range inputs {
		vec := reply.Embedding
		if reply.Embeddings != nil {
			vec = reply.Embeddings[i]
		}
		if vec == nil {
			vec = hashVector(in)
		}
		var v any = vec
		if format == "base64" {
			v = base64Floats(vec)
		}
		list.Data[i] = embedding{Object: "embedding", Index: i, Embedding: v}
	}
	switch {
	case reply.NoUsage:
	case reply.Usage != nil:
		list.Usage = &embeddingUsage{PromptTokens: reply.Usage.PromptTokens, TotalTokens: reply.Usage.TotalTokens}
	default:
		list.Usage = &embeddingUsage{PromptTokens: tokens, TotalTokens: tokens}
	}
	writeJSON(w, reply.status(http.StatusOK), reply.Header, list)
}

// embeddingInputs reads an embeddings input: a string, an array of strings,
// an array of token ids, or an array of token id arrays. It returns the text
// each vector is derived from (the raw JSON for token arrays) and the number
// of tokens (words, or ids).
func embeddingInputs(raw json.RawMessage) (inputs []string, tokens int, err error) {
	errInput := errors.New("input must be a string, an array of strings, an array of token ids or an array of token id arrays")
	if len(raw) == 0 || string(raw) == "null" {
		return nil, 0, errors.New("you must provide an input parameter")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, countWords(one), nil
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil || len(many) == 0 {
		return nil, 0, errInput
	}
	if ids, ok := tokenIDs(raw); ok {
		return []string{string(raw)}, len(ids), nil
	}
	for _, m := range many {
		if json.Unmarshal(m, &one) == nil {
			inputs, tokens = append(inputs, one), tokens+countWords(one)
			continue
		}
		ids, ok := tokenIDs(m)
		if !ok {
			return nil, 0, errInput
		}
		inputs, tokens = append(inputs, string(m)), tokens+len(ids)
	}
	return inputs, tokens, nil
}

func tokenIDs(raw json.RawMessage) ([]int64, bool) {
	var ids []int64
	return ids, json.Unmarshal(raw, &ids) == nil && len(ids) > 0
}

// hashVector derives a unit vector from a SHA-256 hash of text, so that equal
// inputs get equal vectors in every run.
func hashVector(text string) []float64 {
	sum := sha256.Sum256([]byte(text))
	vec := make([]float64, embeddingDims)
	var norm float64
	for i := range vec {
		u := binary.LittleEndian.Uint32(sum[4*i:])
		vec[i] = float64(u)/(1<<31) - 1
		norm += vec[i] * vec[i]
	}
	norm = math.Sqrt(norm)
	for i := range vec {
		vec[i] /= norm
	}
	return vec
}

// base64Floats encodes vec as OpenAI's base64 encoding_format does.
func base64Floats(vec []float64) string {
	b := make([]byte, 4*len(vec))
	for i, x := range vec {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
	}
	return base64.StdEncoding.EncodeToString(b)
}
