package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// testBody is an idleBody over r, as a call's body, with a day's idle
// timeout.
func testBody(r io.Reader) *idleBody {
	ctx, cancel := context.WithCancelCause(context.Background())
	return newIdleBody(ctx, cancel, io.NopCloser(r), 24*time.Hour)
}

// created is the created field of a chunk, set to a fixed time by
// translateStream so that its output compares with golden files.
var created = regexp.MustCompile(`"created":\d+`)

// translateStream runs an Anthropic event stream through the passthrough
// translation, reading body through wrap, and returns what it wrote, the
// error it ended with (nil at EOF) and what the breaker is told.
func translateStream(t testing.TB, body []byte, includeUsage bool, wrap func(io.Reader) io.Reader) (out string, err error, reported error) {
	t.Helper()
	ib := testBody(wrap(bytes.NewReader(body)))
	var got []error
	ib.onClose = func(err error) { got = append(got, err) }
	s, _ := (&anthropicDialect{}).passStream(ib, "claude-x", includeUsage)
	b, err := io.ReadAll(s)
	s.Close()
	if len(got) != 1 {
		t.Fatalf("the breaker was told %d times", len(got))
	}
	return created.ReplaceAllString(string(b), `"created":1700000000`), err, got[0]
}

// splitReader returns its data in two reads, split at n.
type splitReader struct {
	parts [][]byte
}

func (r *splitReader) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && len(r.parts[0]) == 0 {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	return n, nil
}

// TestAnthropicStream translates the Anthropic event streams in
// testdata/anthropic/stream and compares the chunk streams with the
// golden *.openai.sse files; the body is read whole, a byte at a time, and
// split in two at every byte, and all must give the same stream.
func TestAnthropicStream(t *testing.T) {
	for _, tc := range []struct {
		name         string
		includeUsage bool
		err          string // part of the read error the stream ends with
		reported     string // part of what the breaker is told
	}{
		{name: "text", includeUsage: true},
		{name: "text", includeUsage: false},
		{name: "tool_use", includeUsage: true},
		{name: "thinking", includeUsage: true},
		{name: "crlf", includeUsage: true},
		{name: "error", includeUsage: true, reported: "status 529: Overloaded"},
		{name: "truncated", includeUsage: true, err: "ended before message_stop", reported: "ended before message_stop"},
		{name: "not_json", includeUsage: true, err: "not the JSON of an Anthropic event", reported: "not the JSON"},
	} {
		name := tc.name
		if tc.includeUsage {
			name += ".usage"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(filepath.Join("testdata", "anthropic", "stream", tc.name+".anthropic.sse"))
			if err != nil {
				t.Fatal(err)
			}
			out, readErr, reported := translateStream(t, in, tc.includeUsage, func(r io.Reader) io.Reader { return r })
			if (readErr == nil) != (tc.err == "") || readErr != nil && !strings.Contains(readErr.Error(), tc.err) {
				t.Errorf("read error %v, want %q", readErr, tc.err)
			}
			if tc.err != "" && !errors.Is(readErr, ErrMalformed) {
				t.Errorf("read error %v is not ErrMalformed", readErr)
			}
			switch {
			case tc.reported == "" && reported != nil:
				t.Errorf("reported %v", reported)
			case tc.reported != "" && (reported == nil || !strings.Contains(reported.Error(), tc.reported)):
				t.Errorf("reported %v, want an error with %q", reported, tc.reported)
			}
			goldenText(t, filepath.Join("anthropic", "stream", name+".openai.sse"), out)
			checkChunks(t, out, readErr == nil)

			same := func(how string, wrap func(io.Reader) io.Reader) {
				got, gotErr, _ := translateStream(t, in, tc.includeUsage, wrap)
				if got != out || fmt.Sprint(gotErr) != fmt.Sprint(readErr) {
					t.Fatalf("%s: a different stream:\n%s\nerror %v", how, got, gotErr)
				}
			}
			same("one byte at a time", iotest.OneByteReader)
			for i := range in {
				same(fmt.Sprintf("split at %d", i), func(r io.Reader) io.Reader {
					return &splitReader{parts: [][]byte{bytes.Clone(in[:i]), bytes.Clone(in[i:])}}
				})
			}
		})
	}
}

// goldenText is golden for text files.
func goldenText(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// checkChunks checks that out is a well-formed OpenAI chunk stream: events
// that are comments or data lines holding a chunk or an error, then [DONE]
// and nothing after it when complete. It returns the chunks.
func checkChunks(t testing.TB, out string, complete bool) []openai.ChatCompletionChunk {
	t.Helper()
	var chunks []openai.ChatCompletionChunk
	done := false
	for _, ev := range strings.SplitAfter(out, "\n\n") {
		if ev == "" {
			continue
		}
		if done {
			t.Fatalf("%q after [DONE]", ev)
		}
		if !strings.HasSuffix(ev, "\n\n") || strings.Count(ev, "\n") != 2 {
			t.Fatalf("event %q is not one line", ev)
		}
		line := strings.TrimSuffix(ev, "\n\n")
		if strings.HasPrefix(line, ":") {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("event %q is not data", ev)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		if _, ok := openai.ParseError([]byte(data)); ok && !strings.Contains(data, `"choices"`) {
			continue
		}
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil || c.Object != "chat.completion.chunk" || c.Choices == nil {
			t.Fatalf("not a chunk: %s (%v)", data, err)
		}
		chunks = append(chunks, c)
	}
	if complete && !done {
		t.Fatalf("no [DONE] in\n%s", out)
	}
	return chunks
}
