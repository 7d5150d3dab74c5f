package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"

	sse "github.com/tmaxmax/go-sse"
)

// EventWriter writes a server-sent event stream: OpenAI's data frames,
// named events, comments and the closing [DONE]. Each event is framed by
// go-sse's Message (so data holding newlines stays one event), written in
// one Write, and flushed when the writer is an http.ResponseWriter, as
// httputil.ReverseProxy flushes text/event-stream. It is safe for use by
// several goroutines (a stream's writer and its keep-alive ticker).
// JSON's events are framed by hand, byte for byte as go-sse frames one
// line of data, since JSON text is one line.
//
// Every SSE frame the project writes goes through it: the proxy's
// consortium and error frames, the fake providers and the benchmark's
// fake. The passthrough hot path forwards a provider's raw lines instead.
type EventWriter struct {
	mu    sync.Mutex
	w     io.Writer
	flush func() error
	buf   frame // the event being written, reused
	held  bool  // Hold wrote events not yet flushed
}

// frame is an event's bytes before their one Write; Message.WriteTo
// appends to it.
type frame []byte

func (f *frame) Write(p []byte) (int, error) {
	*f = append(*f, p...)
	return len(p), nil
}

// NewEventWriter returns an EventWriter on w.
func NewEventWriter(w io.Writer) *EventWriter {
	e := &EventWriter{w: w}
	if rw, ok := w.(http.ResponseWriter); ok {
		e.flush = http.NewResponseController(rw).Flush
	}
	return e
}

// Data sends one unnamed event whose data is data.
func (e *EventWriter) Data(data []byte) error { return e.Event("", data) }

// JSON sends v, encoded as JSON, as one unnamed event. A
// *ChatCompletionChunk, of which a consortium's stream writes one for
// every delta, is encoded by its AppendJSON, anything else by
// json.Marshal; the bytes are the same.
func (e *EventWriter) JSON(v any) error { return e.json(v, true) }

// Hold writes v as JSON sends it, but leaves it for the next flush: the
// next event's, or FlushHeld's. A stream that relays events it has already
// received (a burst that came in one read) sends them in one write this
// way, as long as whoever holds them calls FlushHeld before waiting for
// more.
func (e *EventWriter) Hold(v any) error { return e.json(v, false) }

func (e *EventWriter) json(v any, flush bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := append(e.buf[:0], dataField...)
	var err error
	if c, ok := v.(*ChatCompletionChunk); ok {
		b, err = c.AppendJSON(b)
	} else {
		var data []byte
		data, err = json.Marshal(v)
		b = append(b, data...)
	}
	e.buf = b // keep what it grew to for the next event
	if err != nil {
		return err
	}
	data := b[len(dataField):]
	if hasLineBreak(data) {
		// JSON text holds no raw line break; should one come, go-sse
		// splits the data into lines as Data does.
		var m sse.Message
		m.AppendData(string(data))
		return e.writeLocked(&m, flush)
	}
	// One line of data is what Message.WriteTo writes for it: the field,
	// the line, and the blank line that ends the event.
	e.buf = append(b, "\n\n"...)
	return e.sendLocked(flush)
}

var dataField = []byte("data: ")

func hasLineBreak(p []byte) bool {
	return bytes.IndexByte(p, '\n') >= 0 || bytes.IndexByte(p, '\r') >= 0
}

// Event sends one event named name ("" for none: OpenAI's streams name
// none) whose data is data.
func (e *EventWriter) Event(name string, data []byte) error { return e.event(name, data, true) }

// HoldEvent writes the event as Event does but, like Hold, leaves it for
// the next flush.
func (e *EventWriter) HoldEvent(name string, data []byte) error { return e.event(name, data, false) }

// event sends the event, flushed or held. One line of data, as every
// event the project names is (JSON), is framed by hand, as
// Message.WriteTo frames it; anything else goes through go-sse.
func (e *EventWriter) event(name string, data []byte, flush bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(data) > 0 && !hasLineBreak(data) && !strings.ContainsAny(name, "\r\n") {
		b := e.buf[:0]
		if name != "" {
			b = append(append(append(b, "event: "...), name...), '\n')
		}
		e.buf = append(append(append(b, dataField...), data...), "\n\n"...)
		return e.sendLocked(flush)
	}
	var m sse.Message
	if name != "" {
		m.Type = sse.Type(name)
	}
	m.AppendData(string(data))
	return e.writeLocked(&m, flush)
}

// Comment sends an SSE comment, which clients ignore and proxies with
// idle timeouts count as traffic.
func (e *EventWriter) Comment(text string) error {
	var m sse.Message
	m.AppendComment(text)
	return e.write(&m)
}

// Done sends OpenAI's end of stream, data: [DONE].
func (e *EventWriter) Done() error { return e.Data(done) }

var done = []byte("[DONE]")

// End sends data: [DONE] as Done does but, like Hold, leaves it unflushed,
// with whatever else is held: it is for a handler that returns next, whose
// server then sends the stream's last events and the end of its body in
// one write instead of two.
func (e *EventWriter) End() error { return e.event("", done, false) }

// Raw writes bytes that are already SSE frames (a provider's own lines,
// forwarded) and flushes them.
func (e *EventWriter) Raw(p []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(p); err != nil {
		return err
	}
	return e.flushLocked()
}

// Flush flushes what was written, when the writer can.
func (e *EventWriter) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.flushLocked()
}

// FlushHeld flushes the events Hold wrote, if any wait.
func (e *EventWriter) FlushHeld() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.held {
		return nil
	}
	return e.flushLocked()
}

func (e *EventWriter) write(m *sse.Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.writeLocked(m, true)
}

// writeLocked frames m and sends it (see sendLocked).
func (e *EventWriter) writeLocked(m *sse.Message, flush bool) error {
	e.buf = e.buf[:0]
	m.WriteTo(&e.buf) // a frame does not fail
	return e.sendLocked(flush)
}

// sendLocked writes the event in e.buf and flushes it (with any held
// before it), or holds it.
func (e *EventWriter) sendLocked(flush bool) error {
	if _, err := e.w.Write(e.buf); err != nil {
		return err
	}
	if !flush {
		e.held = true
		return nil
	}
	return e.flushLocked()
}

func (e *EventWriter) flushLocked() error {
	e.held = false
	if e.flush == nil {
		return nil
	}
	return e.flush()
}
