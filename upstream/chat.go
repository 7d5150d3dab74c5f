package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/consortium-dev/consortium/openai"
)

// maxEventSize bounds one SSE event read from a provider. go-sse's default
// is 64 KiB, less than one chunk of a long tool call or a big usage object
// can be.
const maxEventSize = 16 << 20

// ErrMalformed is the cause of a 2xx answer that could not be used.
var ErrMalformed = errors.New("the provider's answer was malformed")

// Chat sends a non-streamed chat completion, encoded in the provider's
// dialect, and decodes the answer, retrying as Do does. req's Model and
// Stream are set here; req is not changed.
func (p *Provider) Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	c := p.newCall(ctx, model)
	cc, err := p.chat(ctx, c, model, req)
	c.end(err)
	return cc, err
}

func (p *Provider) chat(ctx context.Context, c *call, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	if err := p.encode(c, req, model, false); err != nil {
		return nil, err
	}
	defer c.dropBody()
	// The answer is read into a pooled buffer too: the decoders keep
	// none of it.
	c.buf = buffers.Get()
	defer buffers.Put(c.buf)
	var cc *openai.ChatCompletion
	c.check = func(data []byte, _ *bytes.Buffer) (err error) {
		cc, err = p.dialect.decode(data, model)
		return err
	}
	// A call that does not ask to stream reads any answer as JSON: an
	// event stream fails check, as malformed.
	if _, err := p.send(ctx, c); err != nil {
		return nil, err
	}
	return cc, nil
}

// encode sets c's path and body for a chat request, asking for a
// streamed answer or not (req's Stream is not read), or says why the
// dialect cannot carry it. The body is pooled: encode takes the caller's
// hold on it (call.hold), which the caller drops once send has returned.
func (p *Provider) encode(c *call, req *openai.ChatRequest, model string, stream bool) error {
	path, refused := p.dialect.endpoint("/chat/completions")
	if refused != nil {
		refused.Provider, refused.Model = p.name, model
		return refused
	}
	buf := buffers.Get()
	body, err := p.dialect.encode(buf.AvailableBuffer(), req, model, stream)
	if err != nil {
		buffers.Put(buf)
		return p.refusal(model, err)
	}
	*buf = *bytes.NewBuffer(body) // keeps what encode grew
	c.path, c.body, c.stream = path, body, stream
	c.hold(func() { buffers.Put(buf) })
	return nil
}

// buffers hold the bodies of chat requests, reused once no attempt will
// read them again (call.hold), and the JSON answers Chat decodes. An
// arbiter's request is a few KB; one past 256 KiB is not kept.
var buffers = NewBuffers(0, 256<<10)

// ChatStream sends a streamed chat completion, asking for usage, and
// yields its chunks as they arrive, until the end of the answer. Nothing
// is sent until the sequence is ranged over. An error ends the sequence
// and is yielded with a nil chunk: the call failed before it began (every
// attempt, as Do reports it), a cut connection, an idle timeout, an answer
// past MaxResponse, an error event from the provider, or a malformed
// chunk; each is an *Error. Breaking out of the loop ends the call (an
// unfinished one is cancelled upstream).
func (p *Provider) ChatStream(ctx context.Context, model string, req *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {
		s, err := p.openStream(ctx, model, req)
		if err != nil {
			yield(nil, err)
			return
		}
		defer s.Close()
		for chunk, err := range s.Chunks() {
			if !yield(chunk, err) {
				return
			}
		}
	}
}

// openStream starts a streamed chat completion and returns once the
// answer has begun. The stream must be closed; OnCall hears of the call
// then.
func (p *Provider) openStream(ctx context.Context, model string, req *openai.ChatRequest) (*chunkStream, error) {
	c := p.newCall(ctx, model)
	// An answer that is not an event stream is read as JSON, and is of
	// no use: malformed.
	c.check = func([]byte, *bytes.Buffer) error {
		return fmt.Errorf("%w: JSON where an event stream was asked for", ErrMalformed)
	}
	err := p.encode(c, req, model, true)
	var resp *Response
	if err == nil {
		resp, err = p.send(ctx, c)
		c.dropBody()
	}
	if err != nil {
		c.end(err)
		return nil, err
	}
	return newChunkStream(p.dialect, resp.Body.(*idleBody), model), nil
}

// chunkStream is the open answer of a typed stream: its dialect's chunks,
// read from an idleBody that ends the call when closed.
type chunkStream struct {
	body   *idleBody
	chunks iter.Seq2[*openai.ChatCompletionChunk, error] // nil once ranged over
	done   bool                                          // the answer ended as it should
	err    error
}

func newChunkStream(d dialect, body *idleBody, model string) *chunkStream {
	return &chunkStream{body: body, chunks: d.chunks(body, model)}
}

// Chunks yields the stream's chunks until its end. An error ends the
// iteration and is yielded with a nil chunk; it is also how the breaker
// and OnCall learn that the stream failed. The stream is read once, in
// the calling goroutine: a loop that breaks out stops the reading, and a
// second range yields nothing.
func (s *chunkStream) Chunks() iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {
		chunks := s.chunks
		if chunks == nil {
			return
		}
		s.chunks = nil
		for c, err := range chunks {
			if err != nil {
				s.err = s.body.fail(err)
				yield(nil, s.err)
				return
			}
			if !yield(c, nil) {
				return
			}
		}
		s.done = true
	}
}

// Close stops reading and ends the call; an unfinished call is cancelled
// upstream. After the end of the answer, Close first reads the end of an
// HTTP/1 response, waiting at most 50ms for it, so that its connection is
// kept.
func (s *chunkStream) Close() error {
	if s.done && s.err == nil {
		s.body.drain()
	}
	return s.body.Close()
}
