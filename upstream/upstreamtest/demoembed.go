package upstreamtest

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"strings"
	"unicode"
)

// DemoEmbeddingDims is the size of the demo's embedding vectors.
const DemoEmbeddingDims = 256

// demoEmbeddings answers an embeddings request of the demo: one vector per
// input (see demoEmbedding), after the demo's first delay. An input the
// server will refuse gets no vectors; the server answers its error.
func demoEmbeddings(r *Request) Reply {
	reply := Reply{Delay: between(demoFirstMin, demoFirstMax, demoHash(r))}
	var body struct {
		Input json.RawMessage `json:"input"`
	}
	if json.Unmarshal(r.Body, &body) != nil {
		return reply
	}
	inputs, _, err := embeddingInputs(body.Input)
	if err != nil {
		return reply
	}
	reply.Embeddings = make([][]float64, len(inputs))
	for i, in := range inputs {
		reply.Embeddings[i] = demoEmbedding(in)
	}
	return reply
}

// demoEmbedding is a vector that reflects the text, as a real embedding
// model's does at a very small scale: the text is folded to lower case
// with its punctuation and runs of spaces made single spaces, and each of
// its character trigrams adds ±1 to one of DemoEmbeddingDims dimensions
// (both picked by a hash of the trigram). The sum is scaled to unit
// length. Texts that share most of their trigrams (near-duplicates: a
// changed word, case or punctuation) are near in cosine; unrelated texts
// are near zero. An empty text gets the first unit vector.
func demoEmbedding(text string) []float64 {
	vec := make([]float64, DemoEmbeddingDims)
	runes := []rune(" " + foldText(text) + " ")
	h := fnv.New64a()
	for i := 0; i+3 <= len(runes); i++ {
		h.Reset()
		h.Write([]byte(string(runes[i : i+3])))
		sum := h.Sum64()
		sign := 1.0
		if sum>>63 == 1 {
			sign = -1
		}
		vec[sum%DemoEmbeddingDims] += sign
	}
	var norm float64
	for _, x := range vec {
		norm += x * x
	}
	if norm == 0 {
		vec[0] = 1
		return vec
	}
	norm = math.Sqrt(norm)
	for i := range vec {
		vec[i] /= norm
	}
	return vec
}

// foldText lowers s's case and makes every run of spaces and punctuation
// one space.
func foldText(s string) string {
	var b strings.Builder
	space := true // no leading space
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
			space = false
			continue
		}
		if !space {
			b.WriteByte(' ')
			space = true
		}
	}
	return strings.TrimRight(b.String(), " ")
}
