package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	wire "github.com/consortium-dev/consortium/openai"
)

// The one SSE reader of the proxy's tests: every stream a test reads, a
// passthrough or a consortium's, whole or as it arrives, goes through it.

// event is one server-sent event: its data lines joined, and its comment.
type event struct {
	data    string
	comment string
}

// sseReader reads the events of a stream as they arrive. Lines of any
// length are read whole.
type sseReader struct{ br *bufio.Reader }

func newSSEReader(r io.Reader) *sseReader { return &sseReader{br: bufio.NewReader(r)} }

// next returns the next event: io.EOF when the stream ended between
// events, io.ErrUnexpectedEOF when it ended inside one.
func (s *sseReader) next() (event, error) {
	var ev event
	begun := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && (begun || line != "") {
				err = io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if begun {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			ev.comment, begun = strings.TrimSpace(line[1:]), true
		case strings.HasPrefix(line, "data:"):
			if ev.data != "" {
				ev.data += "\n"
			}
			ev.data, begun = ev.data+strings.TrimPrefix(line[len("data:"):], " "), true
		default:
			return ev, &badLine{line}
		}
	}
}

type badLine struct{ line string }

func (b *badLine) Error() string { return "not an SSE line the proxy writes: " + b.line }

// frame is one data frame of a chat completion stream: a chunk, or the
// error event a stream that failed after it began ends with.
type frame struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage      *wire.Usage `json:"usage"`
	Consortium *summary    `json:"consortium"`
	Error      *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

// nextFrame returns the next data frame, skipping comments; done is set
// at [DONE].
func (s *sseReader) nextFrame(t *testing.T) (f frame, done bool) {
	t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("stream ended before a frame: %v", err)
		}
		if ev.data == "" {
			continue
		}
		if ev.data == "[DONE]" {
			return f, true
		}
		if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
			t.Fatalf("bad frame %q: %v", ev.data, err)
		}
		return f, false
	}
}

// parseFrames reads a whole stream's data frames in order, and whether it
// ended with [DONE]. Every frame must be JSON, and nothing may follow
// [DONE].
func parseFrames(t *testing.T, body []byte) (frames []frame, done bool) {
	t.Helper()
	r := newSSEReader(bytes.NewReader(body))
	for {
		ev, err := r.next()
		if err == io.EOF {
			return frames, done
		}
		if err != nil {
			t.Fatalf("%v in\n%s", err, body)
		}
		if ev.data == "" {
			continue
		}
		if done {
			t.Fatalf("event %q after [DONE] in\n%s", ev.data, body)
		}
		if ev.data == "[DONE]" {
			done = true
			continue
		}
		var f frame
		if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
			t.Fatalf("bad frame %q: %v", ev.data, err)
		}
		frames = append(frames, f)
	}
}

// readFrames is parseFrames for a stream that must end with [DONE].
func readFrames(t *testing.T, body []byte) []frame {
	t.Helper()
	frames, done := parseFrames(t, body)
	if !done {
		t.Fatalf("no [DONE] in\n%s", body)
	}
	return frames
}

// text is the content the frames carry.
func text(frames []frame) string {
	var b strings.Builder
	for _, f := range frames {
		for _, c := range f.Choices {
			if c.Delta.Content != nil {
				b.WriteString(*c.Delta.Content)
			}
		}
	}
	return b.String()
}

// hasUsage reports a frame with usage.
func hasUsage(frames []frame) bool {
	for _, f := range frames {
		if f.Usage != nil {
			return true
		}
	}
	return false
}

// streamError returns the error event of the frames, or nil.
func streamError(frames []frame) *frame {
	for i := range frames {
		if frames[i].Error != nil {
			return &frames[i]
		}
	}
	return nil
}
