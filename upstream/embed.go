package upstream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/consortium-dev/consortium/openai"
)

// Embed returns the embeddings of inputs from the provider's embeddings
// endpoint (POST /embeddings), one vector per input in order, and the
// usage when the provider reports it. It retries and is bounded as Do is,
// under the model's breaker and the provider's limits. A provider without
// embeddings (type anthropic) refuses it with an *Error of status 404
// before any call.
func (p *Provider) Embed(ctx context.Context, model string, inputs []string) ([][]float32, *openai.Usage, error) {
	body, err := json.Marshal(struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}{model, inputs})
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.Do(ctx, &Request{Model: model, Path: "/embeddings", Body: body})
	if err != nil {
		return nil, nil, err
	}
	vecs, usage, err := decodeEmbeddings(resp.Data, len(inputs))
	if err != nil {
		return nil, nil, &Error{Provider: p.name, Model: model, Status: resp.Status, Message: err.Error(), Err: ErrMalformed}
	}
	return vecs, usage, nil
}

// decodeEmbeddings reads an embeddings list: each item's vector at its
// index, as numbers or as base64 little-endian float32s.
func decodeEmbeddings(data []byte, n int) ([][]float32, *openai.Usage, error) {
	var list struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage *openai.Usage `json:"usage"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, nil, fmt.Errorf("embeddings answer: %w", err)
	}
	if len(list.Data) != n {
		return nil, nil, fmt.Errorf("embeddings answer has %d vectors for %d inputs", len(list.Data), n)
	}
	out := make([][]float32, n)
	for _, d := range list.Data {
		if d.Index < 0 || d.Index >= n || out[d.Index] != nil {
			return nil, nil, fmt.Errorf("embeddings answer: index %d out of range or repeated", d.Index)
		}
		var vec []float32
		var b64 string
		switch {
		case json.Unmarshal(d.Embedding, &vec) == nil:
		case json.Unmarshal(d.Embedding, &b64) == nil:
			raw, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || len(raw)%4 != 0 {
				return nil, nil, fmt.Errorf("embeddings answer: index %d: bad base64 vector", d.Index)
			}
			vec = make([]float32, len(raw)/4)
			for i := range vec {
				vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		default:
			return nil, nil, fmt.Errorf("embeddings answer: index %d: the vector is neither numbers nor base64", d.Index)
		}
		if len(vec) == 0 {
			return nil, nil, fmt.Errorf("embeddings answer: index %d: empty vector", d.Index)
		}
		out[d.Index] = vec
	}
	return out, list.Usage, nil
}
