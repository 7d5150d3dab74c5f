package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/consortium-dev/consortium/openai"
)

// anthropicEvents reads Anthropic's event stream and yields the
// chat.completion.chunk values an OpenAI-compatible provider would have
// sent for the same answer:
//
//	message_start                           → a chunk with delta.role "assistant"
//	content_block_start (tool_use)          → a delta starting tool call n: id, name
//	content_block_delta (text_delta)        → a delta with the text
//	content_block_delta (input_json_delta)  → a delta adding to tool call n's arguments
//	content_block_stop (a call's, no input) → its arguments, "{}"
//	message_delta (stop_reason, usage)      → a chunk with finish_reason
//	message_stop                            → the usage chunk (choices: []) when
//	                                          includeUsage, then the end
//	ping                                    → a nil chunk: a keep-alive
//	error                                   → an *Error with its message and the
//	                                          status its type stands for
//
// Thinking blocks and unknown events are skipped, as Anthropic asks of its
// clients. A stream that ends before message_stop, or whose events are not
// JSON, ends with an error wrapping ErrMalformed; a read error of the body
// is yielded as it is.
func anthropicEvents(body io.Reader, model string, includeUsage bool) iter.Seq2[*chunk, error] {
	return func(yield func(*chunk, error) bool) {
		s := &anthropicStream{model: model, created: time.Now().Unix(), includeUsage: includeUsage, tools: map[int]*toolBlock{}, yield: yield}
		for ev, err := range sse.Read(body, readConfig) {
			if err != nil {
				yield(nil, err)
				return
			}
			if !s.step(ev) || s.ended {
				return
			}
		}
		yield(nil, malformed("the event stream ended before message_stop"))
	}
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// anthropicStream is the state of one translated stream.
type anthropicStream struct {
	yield        func(*chunk, error) bool
	model        string // the model as the answer names it
	created      int64
	includeUsage bool

	id       string
	started  bool               // the role chunk has been yielded
	tools    map[int]*toolBlock // by content block index
	nextTool int
	usage    anthropicUsage
	hasUsage bool
	finished bool // the finish_reason chunk has been yielded
	ended    bool // message_stop or an error event came
	stopped  bool // the consumer stopped
}

// toolBlock is a tool_use block being streamed as tool call n.
type toolBlock struct {
	n     int
	input json.RawMessage // as content_block_start gave it
	args  bool            // some of its arguments have been written
}

// anthropicEvent is the data of any Anthropic stream event.
type anthropicEvent struct {
	Type         string            `json:"type"`
	Message      *anthropicMessage `json:"message"`
	Index        int               `json:"index"`
	ContentBlock *anthropicBlock   `json:"content_block"`
	Delta        struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthropicUsage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// step translates one event; false when the consumer stopped or the
// stream failed.
func (s *anthropicStream) step(ev sse.Event) bool {
	data := strings.TrimSpace(ev.Data)
	if data == "" {
		return true
	}
	var e anthropicEvent
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		s.yield(nil, malformed("an event's data is not the JSON of an Anthropic event"))
		return false
	}
	typ := e.Type
	if typ == "" {
		typ = ev.Type
	}
	switch typ {
	case "message_start":
		if m := e.Message; m != nil {
			s.id = m.ID
			if m.Model != "" {
				s.model = m.Model
			}
			s.addUsage(m.Usage)
		}
		s.start()
	case "content_block_start":
		s.start()
		b := e.ContentBlock
		if b == nil {
			break
		}
		switch b.Type {
		case "text":
			s.text(b.Text)
		case "tool_use":
			n := s.nextTool
			s.nextTool++
			s.tools[e.Index] = &toolBlock{n: n, input: b.Input}
			s.toolCall(openai.ToolCall{Index: &n, ID: b.ID, Type: "function", Function: openai.FunctionCall{Name: b.Name}})
		}
	case "content_block_stop":
		// A call without parameters streams no input at all, but its
		// OpenAI arguments must still parse: "{}".
		if tb, ok := s.tools[e.Index]; ok && !tb.args {
			tb.args = true
			s.toolCall(openai.ToolCall{Index: &tb.n, Function: openai.FunctionCall{Arguments: toolArguments(tb.input)}})
		}
	case "content_block_delta":
		s.start()
		switch e.Delta.Type {
		case "text_delta":
			s.text(e.Delta.Text)
		case "input_json_delta":
			if tb, ok := s.tools[e.Index]; ok && e.Delta.PartialJSON != "" {
				tb.args = true
				s.toolCall(openai.ToolCall{Index: &tb.n, Function: openai.FunctionCall{Arguments: e.Delta.PartialJSON}})
			}
		}
	case "message_delta":
		s.addUsage(e.Usage)
		if e.Delta.StopReason != "" {
			s.finish(finishReason(e.Delta.StopReason))
		}
	case "message_stop":
		s.finish("stop")
		if s.includeUsage && s.hasUsage {
			s.emit(&chunk{ChatCompletionChunk: s.base([]openai.ChunkChoice{}), Usage: s.usage.openai()})
		}
		s.ended = true
	case "ping":
		s.emit(nil)
	case "error":
		typ, msg := "api_error", "the provider sent an error event"
		if e.Error != nil {
			if e.Error.Message != "" {
				msg = e.Error.Message
			}
			if e.Error.Type != "" {
				typ = e.Error.Type
			}
		}
		s.ended = true
		s.yield(nil, streamError(typ, msg))
		return false
	}
	return !s.stopped
}

func (s *anthropicStream) emit(c *chunk) {
	if !s.stopped && !s.yield(c, nil) {
		s.stopped = true
	}
}

func (s *anthropicStream) addUsage(u *anthropicUsage) {
	if u != nil {
		s.usage.merge(u)
		s.hasUsage = true
	}
}

// start yields the role chunk, once, before anything else.
func (s *anthropicStream) start() {
	if s.started {
		return
	}
	s.started = true
	empty := ""
	s.chunk(openai.Delta{Role: "assistant", Content: &empty}, nil)
}

func (s *anthropicStream) text(t string) {
	if t != "" {
		s.chunk(openai.Delta{Content: &t}, nil)
	}
}

// finish yields the chunk with finish_reason, once.
func (s *anthropicStream) finish(reason string) {
	if s.finished {
		return
	}
	s.start()
	s.finished = true
	s.chunk(openai.Delta{}, &reason)
}

// toolCall yields a delta with one tool call, or a piece of it.
func (s *anthropicStream) toolCall(c openai.ToolCall) {
	s.chunk(openai.Delta{ToolCalls: toolCallsJSON([]openai.ToolCall{c})}, nil)
}

func (s *anthropicStream) chunk(d openai.Delta, finish *string) {
	s.emit(&chunk{ChatCompletionChunk: s.base([]openai.ChunkChoice{{Delta: d, FinishReason: finish}})})
}

// base returns the stream's chunk with choices.
func (s *anthropicStream) base(choices []openai.ChunkChoice) openai.ChatCompletionChunk {
	return openai.ChatCompletionChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: choices}
}

// chunk is a chat.completion.chunk whose usage has the details, in place
// of ChatCompletionChunk's (see completion).
type chunk struct {
	openai.ChatCompletionChunk
	Usage *usage `json:"usage,omitempty"`
}

// sseBody serves a translated stream, for Do's callers, as the OpenAI
// event stream an OpenAI-compatible provider would have sent, written by
// openai.EventWriter: chunks as data events, pings as comments, an error
// event as OpenAI's data: {"error": ...} and [DONE]. Other failures are
// read errors. The breaker learns of every failure through body.fail.
type sseBody struct {
	body *idleBody
	next func() (*chunk, error, bool)
	stop func()
	out  bytes.Buffer
	w    *openai.EventWriter
	data bytes.Buffer // one event's JSON
	done bool         // the answer ended as it should, or with an error event
	err  error
}

func (b *sseBody) Read(p []byte) (int, error) {
	for b.out.Len() == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.done {
			return 0, io.EOF
		}
		b.step()
	}
	return b.out.Read(p)
}

func (b *sseBody) step() {
	c, err, ok := b.next()
	switch {
	case !ok:
		b.w.Done()
		b.done = true
	case err != nil:
		err = b.body.fail(err)
		if e, ok := err.(*Error); ok && e.Message != "" && e.Status != 0 {
			// The answer has begun, so this is no status: the client
			// gets OpenAI's error event, as its SDK expects mid-stream.
			b.event(openai.ErrorResponse{Error: openai.Error{Message: e.Message, Type: e.Type}})
			b.w.Done()
			b.done = true
			return
		}
		b.err = err
	case c == nil:
		b.w.Comment("ping")
	default:
		b.event(c)
	}
}

// event writes v as one data event, with <, > and & as they are (the
// arbiter's tags stay readable on the wire).
func (b *sseBody) event(v any) {
	b.data.Reset()
	encodeJSON(&b.data, v) // not failing: every field marshals
	b.w.Data(bytes.TrimSuffix(b.data.Bytes(), []byte("\n")))
}

// Close stops reading and ends the call.
func (b *sseBody) Close() error {
	b.stop()
	return b.body.Close()
}
