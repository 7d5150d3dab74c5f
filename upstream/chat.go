package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"

	sse "github.com/tmaxmax/go-sse"

	"github.com/consortium-dev/consortium/openai"
)

// maxEventSize bounds one SSE event read from a provider. go-sse's default
// is 64 KiB, less than one chunk of a long tool call or a big usage object
// can be.
const maxEventSize = 16 << 20

// Chat sends a non-streamed chat completion and decodes the answer. req's
// Model and Stream are set here.
func (p *Provider) Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	r := *req
	r.Model, r.Stream, r.StreamOptions = model, false, nil
	body, err := r.AppendJSON(nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: encoding the request: %w", p.name, model, err)
	}
	resp, err := p.Do(ctx, &Request{Model: model, Path: "/chat/completions", Body: body})
	if err != nil {
		return nil, err
	}
	if resp.Body != nil {
		resp.Body.Close()
		return nil, p.fail(&Request{Model: model}, 0, fmt.Errorf("%w: an event stream where JSON was asked for", ErrMalformed))
	}
	cc, err := openai.DecodeCompletion(resp.Data)
	if err != nil || len(cc.Choices) == 0 {
		return nil, p.fail(&Request{Model: model}, 0, fmt.Errorf("%w: a 200 answer without choices", ErrMalformed))
	}
	return cc, nil
}

// ErrMalformed is the cause of a 2xx answer that could not be used.
var ErrMalformed = errors.New("the provider's answer was malformed")

// Stream is a streamed chat completion being read.
type Stream struct {
	p     *Provider
	model string
	body  io.ReadCloser
	next  func() (sse.Event, error, bool)
	stop  func()
	err   error
	done  bool
}

// ChatStream sends a streamed chat completion, asking for usage, and
// yields its chunks as they arrive, until [DONE] or the end of the body.
// Nothing is sent until the sequence is ranged over. An error ends the
// sequence and is yielded with a nil chunk: the call failed before it began
// (every attempt, as Do reports it), a cut connection, an idle timeout, an
// error event from the provider, or a malformed chunk. Breaking out of the
// loop ends the call (an unfinished one is cancelled upstream).
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
// answer has begun. The Stream must be closed.
func (p *Provider) openStream(ctx context.Context, model string, req *openai.ChatRequest) (*Stream, error) {
	r := *req
	r.Model, r.Stream, r.StreamOptions = model, true, &openai.StreamOptions{IncludeUsage: true}
	body, err := r.AppendJSON(nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: encoding the request: %w", p.name, model, err)
	}
	resp, err := p.Do(ctx, &Request{Model: model, Path: "/chat/completions", Body: body, Stream: true})
	if err != nil {
		return nil, err
	}
	if resp.Body == nil {
		return nil, p.fail(&Request{Model: model}, 0, fmt.Errorf("%w: JSON where an event stream was asked for", ErrMalformed))
	}
	return newStream(p, model, resp.Body), nil
}

// newStream reads chat completion chunks from an SSE body.
func newStream(p *Provider, model string, body io.ReadCloser) *Stream {
	s := &Stream{p: p, model: model, body: body}
	events := sse.Read(body, &sse.ReadConfig{MaxEventSize: maxEventSize})
	s.next, s.stop = iter.Pull2(iter.Seq2[sse.Event, error](events))
	return s
}

// Chunks yields the stream's chunks until [DONE] or the end of the body.
// An error ends the iteration and is yielded with a nil chunk: a cut
// connection, an idle timeout, an error event from the provider, or a
// malformed chunk.
func (s *Stream) Chunks() iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) {
		for !s.done {
			ev, err, ok := s.next()
			if !ok {
				s.done = true
				return
			}
			if err != nil {
				s.done = true
				s.err = s.p.fail(&Request{Model: s.model}, 0, err)
				yield(nil, s.err)
				return
			}
			data := strings.TrimSpace(ev.Data)
			if data == "" {
				continue
			}
			if data == "[DONE]" {
				s.done = true
				return
			}
			chunk, errorEvent, err := openai.DecodeChunk([]byte(data))
			if err != nil {
				s.done = true
				s.err = s.p.fail(&Request{Model: s.model}, 0, fmt.Errorf("%w: a stream chunk is not JSON", ErrMalformed))
				yield(nil, s.err)
				return
			}
			if errorEvent {
				if pe, ok := openai.ParseError([]byte(data)); ok {
					s.done = true
					s.err = &Error{Provider: s.p.name, Model: s.model, Status: 0, Message: pe.Message,
						Err: fmt.Errorf("error event mid-stream: %s", pe.Message)}
					yield(nil, s.err)
					return
				}
			}
			if !yield(&chunk, nil) {
				return
			}
		}
	}
}

// Close stops reading and releases the call; an unfinished call is
// cancelled upstream. After [DONE], Close first reads the end of an HTTP/1
// response, waiting at most 50ms for it, so that its connection is kept.
func (s *Stream) Close() error {
	s.stop()
	if d, ok := s.body.(interface{ drain() }); ok && s.done && s.err == nil {
		d.drain() // the stream ended at [DONE]: keep its connection
	}
	return s.body.Close()
}
