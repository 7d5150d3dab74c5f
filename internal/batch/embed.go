package batch

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
)

// The embedding cache beside a dataset select's --out (<out>.embeddings)
// holds every vector embedded for it, so that a rerun embeds nothing
// again. It is a sequence of records, each a key (SHA-256 of the
// embeddings model's ref and the text: a changed prompt, or another
// model, is another key), the vector's length as a little-endian uint32,
// and the vector as little-endian float32s, as the provider returned it.
// Records are appended a batch per write; a torn last record left by a
// crash is cut when the cache is next read.

// CachePath is where dataset select caches the embeddings for out.
func CachePath(out string) string { return out + ".embeddings" }

type cacheKey [sha256.Size]byte

func embedKey(ref, text string) cacheKey {
	h := sha256.New()
	h.Write([]byte(ref))
	h.Write([]byte{0})
	h.Write([]byte(text))
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// maxDims bounds a cached vector's length, so a corrupt length cannot
// make a huge allocation.
const maxDims = 1 << 16

// readCache calls found(row, vec) for every cached record whose key is in
// need (key to row). vec is reused between calls. A torn last record is
// cut from the file; a missing file has no records.
func readCache(path string, need map[cacheKey]int, found func(row int, vec []float32)) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var (
		head [sha256.Size + 4]byte
		raw  []byte
		vec  []float32
		good int64 // the end of the last whole record
	)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			break // torn
		}
		dims := binary.LittleEndian.Uint32(head[sha256.Size:])
		if dims == 0 || dims > maxDims {
			return fmt.Errorf("%s: not an embedding cache, or corrupt at byte %d: move it away to embed again", path, good)
		}
		if cap(raw) < 4*int(dims) {
			raw = make([]byte, 4*dims)
		}
		raw = raw[:4*dims]
		if _, err := io.ReadFull(r, raw); err != nil {
			break // torn
		}
		good += int64(len(head) + len(raw))
		row, ok := need[cacheKey(head[:sha256.Size])]
		if !ok {
			continue
		}
		vec = vec[:0]
		for i := range int(dims) {
			vec = append(vec, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		}
		found(row, vec)
	}
	return f.Truncate(good)
}

// appendRecords encodes cache records for keys and their vectors.
func appendRecords(b []byte, keys []cacheKey, vecs [][]float32) []byte {
	for i, k := range keys {
		b = append(b, k[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(vecs[i])))
		for _, x := range vecs[i] {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}
