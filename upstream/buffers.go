package upstream

import (
	"bytes"
	"sync"
)

// Buffers is a pool of byte buffers for request bodies and answers: this
// package's chat calls keep theirs in one, and the proxy its passthrough
// bodies, answers and stream copies in another (a Request's Buffer and
// Release hand them over). A buffer that grew past the pool's bound is
// left to the garbage collector rather than kept for good.
type Buffers struct {
	pool       sync.Pool
	start, max int
}

// NewBuffers returns a pool whose new buffers hold start bytes and which
// keeps none larger than max.
func NewBuffers(start, max int) *Buffers {
	return &Buffers{start: start, max: max}
}

// Get returns an empty buffer.
func (p *Buffers) Get() *bytes.Buffer {
	b, _ := p.pool.Get().(*bytes.Buffer)
	if b == nil {
		return bytes.NewBuffer(make([]byte, 0, p.start))
	}
	b.Reset()
	return b
}

// Put gives b back, unless it grew past the pool's bound.
func (p *Buffers) Put(b *bytes.Buffer) {
	if b.Cap() <= p.max {
		p.pool.Put(b)
	}
}
