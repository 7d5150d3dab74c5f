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

// anthropicStream reads Anthropic's event stream and serves, through Read,
// the chat.completion.chunk stream an OpenAI-compatible provider would have
// sent for the same answer:
//
//	message_start                           → a chunk with delta.role "assistant"
//	content_block_start (tool_use)          → a delta starting tool call n: id, name
//	content_block_delta (text_delta)        → a delta with the text
//	content_block_delta (input_json_delta)  → a delta adding to tool call n's arguments
//	content_block_stop (a call's, no input) → its arguments, "{}"
//	message_delta (stop_reason, usage)      → a chunk with finish_reason
//	message_stop                            → the usage chunk (choices: []) when
//	                                          include_usage asked for it, then [DONE]
//	ping                                    → an SSE comment, so idle proxies keep the line
//	error                                   → data: {"error": {...}}, then [DONE]
//
// Thinking blocks and unknown events are skipped, as Anthropic asks of its
// clients. A stream that ends before message_stop, or whose events are not
// JSON, is a read error wrapping ErrMalformed; a read error of the body is
// returned as it is.
type anthropicStream struct {
	body         io.ReadCloser
	report       func(error) // told how the stream failed when its reads did not fail; may be nil
	next         func() (sse.Event, error, bool)
	stop         func()
	provider     string
	ref          string // the model as the caller named it, for errors
	model        string // the model as the answer names it
	created      int64
	includeUsage bool

	out      bytes.Buffer // translated bytes not yet read
	id       string
	started  bool               // the role chunk has been written
	tools    map[int]*toolBlock // by content block index
	nextTool int
	usage    anthropicUsage
	hasUsage bool
	finished bool // the finish_reason chunk has been written
	done     bool // [DONE] has been written
	err      error
}

// stream returns the translation of an Anthropic event stream. report, if
// not nil, learns of failures the stream carries in its events (an error
// event, a malformed event, an end before message_stop), so that they
// count against the model's breaker as a failed read would.
func (c *anthropicCall) stream(provider string, body io.ReadCloser, report func(error)) *anthropicStream {
	s := &anthropicStream{
		body: body, report: report, provider: provider, ref: c.model, model: c.model,
		created: time.Now().Unix(), includeUsage: c.includeUsage, tools: map[int]*toolBlock{},
	}
	events := sse.Read(body, &sse.ReadConfig{MaxEventSize: maxEventSize})
	s.next, s.stop = iter.Pull2(iter.Seq2[sse.Event, error](events))
	return s
}

func (s *anthropicStream) Read(p []byte) (int, error) {
	for s.out.Len() == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.done {
			return 0, io.EOF
		}
		s.step()
	}
	return s.out.Read(p)
}

// Close stops reading and closes the body, which ends the call.
func (s *anthropicStream) Close() error {
	s.stop()
	return s.body.Close()
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

// step reads one event and writes its translation, if it has one.
func (s *anthropicStream) step() {
	ev, err, ok := s.next()
	if !ok {
		s.fail(s.malformed("the event stream ended before message_stop"))
		return
	}
	if err != nil {
		s.fail(err)
		return
	}
	data := strings.TrimSpace(ev.Data)
	if data == "" {
		return
	}
	var e anthropicEvent
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		s.fail(s.malformed("an event's data is not the JSON of an Anthropic event"))
		return
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
			return
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
			s.write(chunk{ChatCompletionChunk: s.base([]openai.ChunkChoice{}), Usage: s.usage.openai()})
		}
		s.out.WriteString("data: [DONE]\n\n")
		s.done = true
	case "ping":
		s.out.WriteString(": ping\n\n")
	case "error":
		// The answer has begun, so this is no status: the client gets
		// OpenAI's error event, as its SDK expects mid-stream.
		oe := openai.Error{Message: "the provider sent an error event", Type: "api_error"}
		if e.Error != nil {
			if e.Error.Message != "" {
				oe.Message = e.Error.Message
			}
			if e.Error.Type != "" {
				oe.Type = e.Error.Type
			}
		}
		s.out.WriteString("data: ")
		encodeJSON(&s.out, openai.ErrorResponse{Error: oe})
		s.out.WriteString("\ndata: [DONE]\n\n")
		s.done = true
		if s.report != nil {
			s.report(&Error{Provider: s.provider, Model: s.ref, Status: anthropicStatus(oe.Type), Message: oe.Message, Type: oe.Type,
				Err: fmt.Errorf("error event mid-stream: %s", oe.Message)})
		}
	}
}

func (s *anthropicStream) malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// fail ends the stream with err.
func (s *anthropicStream) fail(err error) {
	s.err = err
	if s.report != nil {
		s.report(err)
	}
}

func (s *anthropicStream) addUsage(u *anthropicUsage) {
	if u != nil {
		s.usage.merge(u)
		s.hasUsage = true
	}
}

// start writes the role chunk, once, before anything else.
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

// finish writes the chunk with finish_reason, once.
func (s *anthropicStream) finish(reason string) {
	if s.finished {
		return
	}
	s.start()
	s.finished = true
	s.chunk(openai.Delta{}, &reason)
}

// toolCall writes a delta with one tool call, or a piece of it.
func (s *anthropicStream) toolCall(c openai.ToolCall) {
	s.chunk(openai.Delta{ToolCalls: toolCallsJSON([]openai.ToolCall{c})}, nil)
}

func (s *anthropicStream) chunk(d openai.Delta, finish *string) {
	s.write(chunk{ChatCompletionChunk: s.base([]openai.ChunkChoice{{Delta: d, FinishReason: finish}})})
}

// base returns the stream's chunk with choices.
func (s *anthropicStream) base(choices []openai.ChunkChoice) openai.ChatCompletionChunk {
	return openai.ChatCompletionChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: choices}
}

func (s *anthropicStream) write(c chunk) {
	s.out.WriteString("data: ")
	if err := encodeJSON(&s.out, &c); err != nil {
		s.fail(err) // not reached: every field marshals
		return
	}
	s.out.WriteString("\n")
}

// chunk is a chat.completion.chunk whose usage has the details, in place
// of ChatCompletionChunk's (see completion).
type chunk struct {
	openai.ChatCompletionChunk
	Usage *usage `json:"usage,omitempty"`
}
