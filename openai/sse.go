package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"

	sse "github.com/tmaxmax/go-sse"
)

// EventWriter writes a server-sent event stream: OpenAI's data frames,
// named events, comments and the closing [DONE]. Each event is framed by
// go-sse's Message (so data holding newlines stays one event), written in
// one Write, and flushed when the writer is an http.ResponseWriter, as
// httputil.ReverseProxy flushes text/event-stream. It is safe for use by
// several goroutines (a stream's writer and its keep-alive ticker).
//
// Every SSE frame the project writes goes through it: the proxy's
// consortium and error frames, the fake providers and the benchmark's
// fake. The passthrough hot path forwards a provider's raw lines instead.
type EventWriter struct {
	mu    sync.Mutex
	w     io.Writer
	flush func() error
	buf   bytes.Buffer
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

// JSON sends v, encoded as JSON, as one unnamed event.
func (e *EventWriter) JSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return e.Data(data)
}

// Event sends one event named name ("" for none: OpenAI's streams name
// none) whose data is data.
func (e *EventWriter) Event(name string, data []byte) error {
	var m sse.Message
	if name != "" {
		m.Type = sse.Type(name)
	}
	m.AppendData(string(data))
	return e.write(&m)
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

func (e *EventWriter) write(m *sse.Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf.Reset()
	m.WriteTo(&e.buf) // a bytes.Buffer does not fail
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.flushLocked()
}

func (e *EventWriter) flushLocked() error {
	if e.flush == nil {
		return nil
	}
	return e.flush()
}
