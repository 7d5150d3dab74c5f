package consortia

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/consortium-dev/consortium/openai"
)

// output is the answer on its way to the client, bounded by the
// client's stop sequences and max_tokens. When the client asked for JSON
// it is held whole, so that invalid JSON is refused rather than streamed.
type output struct {
	emit     func(string)
	stops    []string
	hold     int  // bytes kept back in case a stop sequence is forming
	maxRunes int  // 0: no bound
	wantJSON bool // hold everything until close
	pending  string
	sent     strings.Builder
	runes    int
	finish   string
	done     bool
}

// charsPerToken converts the client's max_tokens into a length in
// characters: providers' tokenizers differ, and about four characters a
// token is the usual figure for English text.
const charsPerToken = 4

func newOutput(req *openai.ChatRequest, emit func(string)) *output {
	o := &output{emit: emit, finish: "stop", wantJSON: jsonWanted(req)}
	for _, s := range req.Stop {
		if s != "" {
			o.stops = append(o.stops, s)
			o.hold = max(o.hold, len(s)-1)
		}
	}
	limit := req.MaxCompletionTokens
	if limit == nil {
		limit = req.MaxTokens
	}
	// A limit too large to convert would overflow into a small or
	// negative bound; no synthesis is that long, so it bounds nothing.
	if limit != nil && *limit > 0 && *limit <= math.MaxInt/charsPerToken {
		o.maxRunes = *limit * charsPerToken
	}
	return o
}

// write adds synthesis text.
func (o *output) write(s string) {
	if o.done || s == "" {
		return
	}
	o.pending += s
	if idx := o.firstStop(); idx >= 0 {
		o.pending = o.pending[:idx]
		o.flush(len(o.pending))
		o.done = true
		return
	}
	if o.wantJSON {
		return
	}
	o.flush(len(o.pending) - o.hold)
}

// flush sends the first n bytes of pending (backing off to a rune
// boundary), cutting at maxRunes.
func (o *output) flush(n int) {
	for n > 0 && n < len(o.pending) && !utf8Start(o.pending[n]) {
		n--
	}
	if n <= 0 {
		return
	}
	text := o.pending[:n]
	o.pending = o.pending[n:]
	if o.maxRunes > 0 {
		room := o.maxRunes - o.runes
		if cut := runeIndex(text, room); cut >= 0 {
			text = text[:cut]
			o.finish, o.done = "length", true
			o.pending = ""
		}
	}
	o.runes += countRunes(text)
	o.sent.WriteString(text)
	if text != "" && o.emit != nil && !o.wantJSON {
		o.emit(text)
	}
}

// close sends what is held back and returns the whole synthesis and its
// finish reason.
func (o *output) close() (string, string) {
	if !o.done {
		o.flush(len(o.pending))
		o.done = true
	}
	return o.sent.String(), o.finish
}

// checkJSON refuses a synthesis that is not JSON when JSON was asked for,
// and otherwise sends it, whole, now. A Markdown code fence around the
// JSON, which models often add, is removed; the synthesis sent is
// returned.
func (o *output) checkJSON(synthesis string) (string, error) {
	if !o.wantJSON {
		return synthesis, nil
	}
	synthesis = stripFence(synthesis)
	if !json.Valid([]byte(synthesis)) {
		return "", fmt.Errorf("%w: the client asked for JSON (response_format) and the synthesis does not parse", ErrNotJSON)
	}
	if o.emit != nil {
		o.emit(synthesis)
	}
	return synthesis, nil
}

// stripFence removes a ```json ... ``` fence around s.
func stripFence(s string) string {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "```") || !strings.HasSuffix(t, "```") || len(t) < 6 {
		return t
	}
	t = strings.TrimSuffix(t[3:], "```")
	if nl := strings.IndexByte(t, '\n'); nl >= 0 && !strings.ContainsAny(t[:nl], "{[\"") {
		t = t[nl+1:] // the fence's language tag
	}
	return strings.TrimSpace(t)
}

func (o *output) firstStop() int {
	first := -1
	for _, s := range o.stops {
		if i := strings.Index(o.pending, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// runeIndex returns the byte index of the n-th rune of s, or -1 when s has
// no more than n runes.
func runeIndex(s string, n int) int {
	if n < 0 {
		n = 0
	}
	i := 0
	for pos := range s {
		if i == n {
			return pos
		}
		i++
	}
	return -1
}

func countRunes(s string) int {
	n := 0
	for range s {
		n++
	}
	return n
}

// jsonWanted reports whether the client asked for JSON output.
func jsonWanted(req *openai.ChatRequest) bool {
	return req.ResponseFormat != nil && (req.ResponseFormat.Type == "json_object" || req.ResponseFormat.Type == "json_schema")
}
