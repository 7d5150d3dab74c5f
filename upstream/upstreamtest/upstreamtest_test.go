package upstreamtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer starts a fake provider that the test closes when it ends.
func startServer(t *testing.T) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// client is a plain net/http client of one fake provider.
type client struct {
	t    *testing.T
	hc   *http.Client
	base string
}

func newClient(t *testing.T, s *Server) *client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, hc: &http.Client{Transport: tr}, base: s.URL}
}

// do sends a request; body "" sends none.
func (c *client) do(ctx context.Context, method, path, body string, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return c.hc.Do(req)
}

// call sends a request and reads the whole response.
func (c *client) call(method, path, body string) (*http.Response, []byte) {
	c.t.Helper()
	resp, err := c.do(context.Background(), method, path, body, nil)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

// chatBody is a chat request with one user message.
func chatBody(model, user string, stream, includeUsage bool) string {
	req := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "system", "content": "be brief"}, {"role": "user", "content": user}},
	}
	if stream {
		req["stream"] = true
	}
	if includeUsage {
		req["stream_options"] = map[string]any{"include_usage": true}
	}
	b, _ := json.Marshal(req)
	return string(b)
}

// content sends a non-streamed chat request and returns the answer's text.
func (c *client) content(model string) string {
	c.t.Helper()
	resp, body := c.call("POST", "/chat/completions", chatBody(model, "hi", false, false))
	if resp.StatusCode != 200 {
		c.t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(body, &cc); err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content == nil {
		c.t.Fatalf("bad completion %s: %v", body, err)
	}
	return *cc.Choices[0].Message.Content
}

// frame is one decoded SSE data frame.
type frame struct {
	raw     string
	done    bool
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
	Usage *openai.Usage `json:"usage"`
}

// readSSE reads every frame of a stream and the error that ended it (nil at
// a clean end). It checks that each event is one data line and a blank line.
func readSSE(t *testing.T, r io.Reader) ([]frame, error) {
	t.Helper()
	br := bufio.NewReader(r)
	var frames []frame
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" {
				return frames, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return frames, err
		}
		data, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		if blank, err := br.ReadString('\n'); blank != "\n" {
			if err != nil {
				return frames, err
			}
			t.Fatalf("event %q is not followed by a blank line", data)
		}
		f := frame{raw: data, done: data == "[DONE]"}
		if !f.done {
			if err := json.Unmarshal([]byte(data), &f); err != nil {
				t.Fatalf("frame %q: %v", data, err)
			}
		}
		frames = append(frames, f)
	}
}

func usage(p, c int) *openai.Usage {
	return &openai.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}
}

func TestChatJSON(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	// The request's messages hold 4 words: "be brief" and "hi there".
	tests := []struct {
		name        string
		reply       *Reply // nil: the default responder
		status      int
		header      map[string]string
		content     string
		finish      string
		usage       *openai.Usage
		body        string // exact body, for replies that are not completions
		errType     string
		errCode     *string
		errContains string
	}{
		{name: "echo default", status: 200, content: "echo: hi there", finish: "stop", usage: usage(4, 3)},
		{name: "content and finish", reply: &Reply{Content: "one two", FinishReason: "length"},
			status: 200, content: "one two", finish: "length", usage: usage(4, 2)},
		{name: "chunks when content is empty", reply: &Reply{Chunks: []string{"a", " b"}},
			status: 200, content: "a b", finish: "stop", usage: usage(4, 2)},
		{name: "explicit usage", reply: &Reply{Content: "x", Usage: usage(10, 20)},
			status: 200, content: "x", finish: "stop", usage: usage(10, 20)},
		{name: "no usage", reply: &Reply{Content: "x", NoUsage: true}, status: 200, content: "x", finish: "stop"},
		{name: "extra headers on success", reply: &Reply{Content: "x", Header: http.Header{"X-Ratelimit-Remaining-Requests": {"9"}}},
			status: 200, header: map[string]string{"X-Ratelimit-Remaining-Requests": "9"}, content: "x", finish: "stop", usage: usage(4, 1)},
		{name: "429 with retry-after", reply: &Reply{Status: 429, Header: http.Header{"retry-after": {"7"}}},
			status: 429, header: map[string]string{"Retry-After": "7", "Content-Type": "application/json"},
			errType: "rate_limit_error", errContains: "429"},
		{name: "503 without error text", reply: &Reply{Status: 503}, status: 503, errType: "server_error", errContains: "Service Unavailable"},
		{name: "error envelope", reply: &Reply{Error: "boom", ErrorType: "server_error", ErrorCode: "overloaded"},
			status: 500, errType: "server_error", errCode: ptr("overloaded"), errContains: "boom"},
		{name: "error with status 400", reply: &Reply{Status: 400, Error: "bad param"},
			status: 400, errType: "invalid_request_error", errContains: "bad param"},
		{name: "error in a 200", reply: &Reply{Status: 200, Error: "surprise"}, status: 200, errType: "server_error", errContains: "surprise"},
		{name: "invalid JSON in a 200", reply: &Reply{Body: `{"choices": [`, Content: "ignored"},
			status: 200, header: map[string]string{"Content-Type": "application/json"}, body: `{"choices": [`},
		{name: "body with status and type", reply: &Reply{Status: 502, Body: "<html>bad gateway</html>", Header: http.Header{"Content-Type": {"text/html"}}},
			status: 502, header: map[string]string{"Content-Type": "text/html"}, body: "<html>bad gateway</html>"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := fmt.Sprintf("m%d", i)
			if tt.reply != nil {
				s.Script(model, *tt.reply)
			}
			resp, body := c.call("POST", "/chat/completions", chatBody(model, "hi there", false, false))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			switch {
			case tt.body != "":
				if string(body) != tt.body {
					t.Errorf("body %q, want %q", body, tt.body)
				}
			case tt.errType != "":
				var env struct {
					Error map[string]any `json:"error"`
				}
				if err := json.Unmarshal(body, &env); err != nil {
					t.Fatalf("error body %s: %v", body, err)
				}
				e := env.Error
				if len(e) != 4 || e["param"] != nil || e["type"] != tt.errType || !strings.Contains(e["message"].(string), tt.errContains) {
					t.Errorf("error %s, want type %s and message with %q", body, tt.errType, tt.errContains)
				}
				if tt.errCode == nil && e["code"] != nil || tt.errCode != nil && e["code"] != *tt.errCode {
					t.Errorf("error code %v, want %v", e["code"], tt.errCode)
				}
			default:
				var cc openai.ChatCompletion
				if err := json.Unmarshal(body, &cc); err != nil {
					t.Fatal(err)
				}
				if cc.Object != "chat.completion" || !strings.HasPrefix(cc.ID, "chatcmpl-") || cc.Created == 0 || cc.Model != model || len(cc.Choices) != 1 {
					t.Fatalf("bad completion %s", body)
				}
				ch := cc.Choices[0]
				if ch.Message.Role != "assistant" || ch.Message.Content == nil || *ch.Message.Content != tt.content || ch.FinishReason != tt.finish {
					t.Errorf("choice %s, want content %q finish %q", body, tt.content, tt.finish)
				}
				if !reflect.DeepEqual(cc.Usage, tt.usage) {
					t.Errorf("usage %+v, want %+v", cc.Usage, tt.usage)
				}
				if tt.usage == nil && bytes.Contains(body, []byte(`"usage"`)) {
					t.Errorf("body has a usage field: %s", body)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestChatStream(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	// The request's messages hold 5 words: "be brief" and "one two three".
	const prompt = 5
	tests := []struct {
		name         string
		reply        Reply
		includeUsage bool
		deltas       []string
		finish       string // "" when the stream has no frame with finish_reason
		usage        *openai.Usage
		usageOnly    bool // usage comes in a frame with choices: []
		usageFinal   bool // usage rides on the frame with finish_reason
		done         bool
		cut          bool // the stream ends with an unexpected EOF
	}{
		{name: "words without usage", reply: Reply{Content: "Hello brave new world"},
			deltas: []string{"Hello", " brave", " new", " world"}, finish: "stop", done: true},
		{name: "usage-only frame", reply: Reply{Content: "Hello brave new world"}, includeUsage: true,
			deltas: []string{"Hello", " brave", " new", " world"}, finish: "stop", usage: usage(prompt, 4), usageOnly: true, done: true},
		{name: "usage in final frame", reply: Reply{Content: "Hello  world\n", UsageInFinal: true}, includeUsage: true,
			deltas: []string{"Hello", "  world\n"}, finish: "stop", usage: usage(prompt, 2), usageFinal: true, done: true},
		{name: "usage in final frame without content", reply: Reply{UsageInFinal: true}, includeUsage: true,
			finish: "stop", usage: usage(prompt, 0), usageFinal: true, done: true},
		{name: "no usage though asked", reply: Reply{Content: "a b", NoUsage: true}, includeUsage: true,
			deltas: []string{"a", " b"}, finish: "stop", done: true},
		{name: "explicit chunks, usage and finish", reply: Reply{Content: "ignored", Chunks: []string{"x", "y z"}, Usage: usage(1, 2), FinishReason: "length"},
			includeUsage: true, deltas: []string{"x", "y z"}, finish: "length", usage: usage(1, 2), usageOnly: true, done: true},
		{name: "empty content", reply: Reply{}, finish: "stop", done: true},
		{name: "no done", reply: Reply{Content: "a b", NoDone: true}, deltas: []string{"a", " b"}, finish: "stop"},
		{name: "cut mid-stream", reply: Reply{Content: "a b c d", CutAfter: 2}, includeUsage: true,
			deltas: []string{"a", " b"}, cut: true},
		{name: "cut past the end", reply: Reply{Content: "a b", CutAfter: 5}, deltas: []string{"a", " b"}, cut: true},
		{name: "chunk delay", reply: Reply{Content: "a b c", ChunkDelay: time.Millisecond}, deltas: []string{"a", " b", " c"}, finish: "stop", done: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := fmt.Sprintf("s%d", i)
			s.Script(model, tt.reply)
			resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody(model, "one two three", true, tt.includeUsage), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			frames, err := readSSE(t, resp.Body)
			if tt.cut != errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("stream ended with %v, want cut %v", err, tt.cut)
			}
			if len(frames) == 0 || !strings.Contains(frames[0].raw, `"delta":{"role":"assistant","content":""}`) {
				t.Fatalf("first frame is not the role frame: %+v", frames)
			}

			var deltas []string
			var finish string
			var gotUsage *openai.Usage
			usageOnly, usageFinal, done := false, false, false
			for j, f := range frames {
				if done {
					t.Fatalf("frame after [DONE]: %s", f.raw)
				}
				if f.done {
					done = true
					continue
				}
				if f.Object != "chat.completion.chunk" || f.ID != frames[0].ID || !strings.HasPrefix(f.ID, "chatcmpl-") || f.Model != model {
					t.Errorf("frame %d: bad envelope %s", j, f.raw)
				}
				// OpenAI writes "usage": null on the other frames when
				// usage was asked for, and no usage key otherwise.
				if f.Usage == nil && strings.Contains(f.raw, `"usage"`) != (tt.includeUsage && !tt.reply.NoUsage) {
					t.Errorf("frame %d: usage key presence wrong: %s", j, f.raw)
				}
				if f.Usage != nil {
					if gotUsage != nil {
						t.Errorf("second usage frame %s", f.raw)
					}
					gotUsage = f.Usage
				}
				if len(f.Choices) == 0 {
					if f.Usage == nil || !strings.Contains(f.raw, `"choices":[]`) {
						t.Errorf("frame %d: empty choices without usage: %s", j, f.raw)
					}
					usageOnly = true
					continue
				}
				ch := f.Choices[0]
				if j > 0 && ch.Delta.Content != nil {
					deltas = append(deltas, *ch.Delta.Content)
				}
				if ch.FinishReason != nil {
					if finish != "" {
						t.Errorf("second finish_reason in %s", f.raw)
					}
					finish = *ch.FinishReason
					usageFinal = f.Usage != nil
				} else if finish != "" {
					t.Errorf("choice frame after finish_reason: %s", f.raw)
				}
			}
			if !reflect.DeepEqual(deltas, tt.deltas) {
				t.Errorf("deltas %q, want %q", deltas, tt.deltas)
			}
			if finish != tt.finish || done != tt.done || usageOnly != tt.usageOnly || usageFinal != tt.usageFinal {
				t.Errorf("finish %q done %v usage-only %v usage-final %v; want %q %v %v %v",
					finish, done, usageOnly, usageFinal, tt.finish, tt.done, tt.usageOnly, tt.usageFinal)
			}
			if !reflect.DeepEqual(gotUsage, tt.usage) {
				t.Errorf("usage %+v, want %+v", gotUsage, tt.usage)
			}
		})
	}
}

func TestStreamedErrorsAreJSON(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.Script("m", Reply{Status: 429, Header: http.Header{"Retry-After": {"2"}}})
	resp, body := c.call("POST", "/chat/completions", chatBody("m", "x", true, true))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	if e, ok := openai.ParseError(body); !ok || e.Type != "rate_limit_error" {
		t.Fatalf("body %s", body)
	}
}

// TestDelays runs on a fake clock (the fake in memory, under
// testing/synctest): the delays are exact.
func TestDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory()
		defer s.Close()
		c := memClient(t, s)
		const d = 30 * time.Millisecond
		s.Script("slow", Reply{Content: "x", Delay: d})
		s.Script("slow-error", Reply{Status: 503, Delay: d})
		s.Script("paced", Reply{Content: "a b c", ChunkDelay: d / 3})
		for _, tc := range []struct {
			model  string
			stream bool
			status int
		}{{"slow", false, 200}, {"slow", true, 200}, {"slow-error", false, 503}, {"paced", true, 200}} {
			start := time.Now()
			resp, _ := c.call("POST", "/chat/completions", chatBody(tc.model, "x", tc.stream, false))
			if el := time.Since(start); el != d || resp.StatusCode != tc.status {
				t.Errorf("%s stream=%v: status %d after %v, want %d after %v", tc.model, tc.stream, resp.StatusCode, el, tc.status, d)
			}
		}
	})
}

func TestDrop(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.Script("m", Reply{Drop: true})
	resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("m", "x", false, false), nil)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a connection error", resp.StatusCode)
	}
	if n := len(s.Requests()); n != 1 {
		t.Fatalf("%d requests recorded, want 1", n)
	}
}

func TestCancellation(t *testing.T) {
	tests := []struct {
		name   string
		reply  Reply
		stream bool
		frames int // cancel after reading this many frames; 0: before the headers
	}{
		{name: "hang", reply: Reply{Hang: true}},
		{name: "delay", reply: Reply{Content: "x", Delay: time.Hour}},
		{name: "hang on a stream", reply: Reply{Hang: true}, stream: true},
		{name: "between chunks", reply: Reply{Content: "a b c", ChunkDelay: time.Hour}, stream: true, frames: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			c := newClient(t, s)
			s.Script("m", tt.reply)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				resp, err := c.do(ctx, "POST", "/chat/completions", chatBody("m", "x", tt.stream, false), nil)
				if err != nil {
					errc <- err
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				for range 2 * tt.frames {
					if _, err := br.ReadString('\n'); err != nil {
						errc <- err
						return
					}
				}
				cancel()
				_, err = io.ReadAll(br)
				errc <- err
			}()

			wait, stop := context.WithTimeout(context.Background(), 2*time.Second)
			defer stop()
			if err := s.WaitRequests(wait, 1); err != nil {
				t.Fatal(err)
			}
			if tt.frames == 0 {
				// The request is in the handler, answering nothing yet.
				if err := s.WaitIdle(shortCtx(t)); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("WaitIdle with a request in flight: %v", err)
				}
				if n := s.InFlight(); n != 1 {
					t.Fatalf("InFlight %d, want 1", n)
				}
				cancel()
			}
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("client error %v, want context.Canceled", err)
			}
			if err := s.WaitIdle(wait); err != nil {
				t.Fatalf("WaitIdle: %v", err)
			}
			reqs := s.Requests()
			if len(reqs) != 1 || !reqs[0].Cancelled {
				t.Fatalf("requests %+v, want one, cancelled", reqs)
			}
		})
	}
}

// shortCtx is a context that ends soon, for waits that should time out.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestFinishedRequestIsNotCancelled(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	c.content("m")
	c.call("POST", "/chat/completions", chatBody("m", "x", true, true))
	if err := s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Requests() {
		if r.Cancelled {
			t.Errorf("request %s marked cancelled", r.Body)
		}
	}
}

func TestCloseWithHungRequests(t *testing.T) {
	s := NewServer()
	c := newClient(t, s)
	s.Script("hang", Reply{Hang: true})
	s.Script("slow-stream", Reply{Content: "a b", ChunkDelay: time.Hour})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, tc := range []struct {
		model  string
		stream bool
	}{{"hang", false}, {"slow-stream", true}} {
		wg.Go(func() {
			resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody(tc.model, "x", tc.stream, false), nil)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			errs <- err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.WaitRequests(ctx, 2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v", el)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("a hung request completed without error")
		}
	}
	if n := s.InFlight(); n != 0 {
		t.Errorf("InFlight %d after Close", n)
	}
	for _, r := range s.Requests() {
		if r.Cancelled {
			t.Errorf("request for %s marked cancelled by Close", r.Model)
		}
	}
	s.Close() // a second Close is harmless
}

func TestScript(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	r := func(text string) Reply { return Reply{Content: text} }
	expect := func(model string, want ...string) {
		t.Helper()
		for _, w := range want {
			if got := c.content(model); got != w {
				t.Errorf("model %s: got %q, want %q", model, got, w)
			}
		}
	}

	s.Script("queue", r("A"), r("B"))
	expect("queue", "A", "B", "B")
	s.Script("queue", r("C"), r("D")) // B was repeating: it is replaced
	expect("queue", "C", "D", "D")

	s.Script("append", r("A"))
	s.Script("append", r("B")) // A was never served: B queues behind it
	expect("append", "A", "B", "B")

	s.Handle("both", func(*Request) Reply { return r("handled") })
	s.Script("both", r("scripted"))
	expect("both", "scripted", "scripted")
	s.Script("both") // removes the script: the handler answers again
	expect("both", "handled")
	s.Handle("both", nil)
	expect("both", "echo: hi")

	s.Handle("seen", func(req *Request) Reply {
		return r(fmt.Sprintf("%s %s %v %s", req.Model, req.Path, req.Stream, req.LastUserText()))
	})
	expect("seen", "seen /v1/chat/completions false hi")

	s.SetDefault(func(req *Request) Reply { return r("default for " + req.Model) })
	expect("other", "default for other")
	s.SetDefault(nil)
	expect("other", "echo: hi")

	// Scripted replies are copies.
	h := http.Header{"X-Test": {"before"}}
	s.Script("copy", Reply{Content: "x", Header: h})
	h.Set("X-Test", "after")
	resp, _ := c.call("POST", "/chat/completions", chatBody("copy", "x", false, false))
	if got := resp.Header.Get("X-Test"); got != "before" {
		t.Errorf("header %q, want the one given to Script", got)
	}

	s.SetDefault(func(*Request) Reply { return r("kept") })
	s.Reset()
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests after Reset", n)
	}
	expect("queue", "kept")
	expect("seen", "kept")
}

func TestRecording(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	chat := chatBody("gpt", "hello", true, false)
	resp, err := c.do(context.Background(), "POST", "/chat/completions", chat,
		http.Header{"Authorization": {"Bearer sk-client"}, "X-Custom": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.call("POST", "/chat/completions", "not json")
	c.call("POST", "/embeddings", `{"model":"emb","input":"x"}`)
	c.call("GET", "/models", "")
	c.call("GET", "/nowhere", "")

	reqs := s.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || string(r.Body) != chat || r.Model != "gpt" || !r.Stream ||
		r.Header.Get("Authorization") != "Bearer sk-client" || r.Header.Get("X-Custom") != "1" || r.Received.IsZero() || r.Cancelled {
		t.Errorf("chat request recorded as %+v", r)
	}
	if r.Chat == nil || len(r.Chat.Messages) != 2 || r.Chat.Messages[1].Content.String() != "hello" || r.LastUserText() != "hello" {
		t.Errorf("chat not parsed: %+v", r.Chat)
	}
	if r := reqs[1]; r.Chat != nil || r.Model != "" || string(r.Body) != "not json" {
		t.Errorf("bad request recorded as %+v", r)
	}
	if r := reqs[2]; r.Path != "/v1/embeddings" || r.Model != "emb" || r.Chat != nil {
		t.Errorf("embeddings request recorded as %+v", r)
	}
	if reqs[3].Method != "GET" || reqs[3].Path != "/v1/models" || reqs[4].Path != "/v1/nowhere" {
		t.Errorf("GETs recorded as %+v, %+v", reqs[3], reqs[4])
	}
	if got := s.RequestsFor("emb"); len(got) != 1 || got[0].Path != "/v1/embeddings" {
		t.Errorf("RequestsFor(emb) = %+v", got)
	}
	if got := s.RequestsFor("absent"); got == nil || len(got) != 0 {
		t.Errorf("RequestsFor(absent) = %#v, want empty", got)
	}

	// Snapshots are copies.
	reqs[0].Header.Set("X-Custom", "changed")
	reqs[0].Body[0] = 'X'
	if r := s.Requests()[0]; r.Header.Get("X-Custom") != "1" || string(r.Body) != chat {
		t.Errorf("a snapshot shares memory with the record")
	}
}

func TestRecordLimit(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.SetRecordLimit(2)
	for i := range 5 {
		c.content(fmt.Sprint(i))
	}
	if err := s.WaitRequests(shortCtx(t), 5); err != nil {
		t.Errorf("WaitRequests(5) with a limit of 2: %v", err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Model != "3" || reqs[1].Model != "4" {
		t.Errorf("kept %+v, want the requests for 3 and 4", reqs)
	}
	s.SetRecordLimit(0)
	if n := len(s.Requests()); n != 2 {
		t.Errorf("%d requests after lifting the limit, want the 2 kept", n)
	}
	s.SetRecordLimit(-1)
	c.content("5")
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests kept with a negative limit", n)
	}
}

func TestRoutesAndBadRequests(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	tests := []struct {
		method, path, body string
		status             int
		allow              string
	}{
		{"POST", "/chat/completions", "{not json", 400, ""},
		{"POST", "/chat/completions", `["an array"]`, 400, ""},
		{"POST", "/chat/completions", "", 400, ""},
		{"GET", "/chat/completions", "", 405, "POST"},
		{"POST", "/models", "{}", 405, "GET"},
		{"POST", "/embeddings", "nope", 400, ""},
		{"POST", "/embeddings", `{"model":"e"}`, 400, ""},
		{"POST", "/embeddings", `{"model":"e","input":[true]}`, 400, ""},
		{"POST", "/completions", "{}", 404, ""},
		{"GET", "/", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			resp, body := c.call(tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("status %d allow %q, want %d %q", resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow)
			}
			if e, ok := openai.ParseError(body); !ok || e.Type != "invalid_request_error" {
				t.Errorf("body %s is not an invalid_request_error", body)
			}
		})
	}
	// Outside of the router, a valid but odd chat body is answered as
	// scripted: the test, not the fake, decides how strict a provider is.
	resp, body := c.call("POST", "/chat/completions", `{"model":"m","messages":"not an array"}`)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"echo: "`)) {
		t.Errorf("lenient chat: status %d body %s", resp.StatusCode, body)
	}
}

func TestEmbeddings(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	embed := func(body string) (int, embeddingResponse) {
		t.Helper()
		resp, b := c.call("POST", "/embeddings", body)
		var er embeddingResponse
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &er); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			if er.Object != "list" {
				t.Errorf("object %q", er.Object)
			}
			for i, d := range er.Data {
				if d.Object != "embedding" || d.Index != i {
					t.Errorf("entry %d: %+v", i, d)
				}
			}
		}
		return resp.StatusCode, er
	}
	vector := func(d embeddingData) []float64 {
		var v []float64
		if err := json.Unmarshal(d.Embedding, &v); err != nil {
			t.Fatalf("embedding %s: %v", d.Embedding, err)
		}
		return v
	}

	_, one := embed(`{"model":"e","input":"hello there world"}`)
	if len(one.Data) != 1 || one.Model != "e" || !reflect.DeepEqual(one.Usage, map[string]int{"prompt_tokens": 3, "total_tokens": 3}) {
		t.Fatalf("one input: %+v", one)
	}
	v := vector(one.Data[0])
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	if len(v) != 8 || math.Abs(norm-1) > 1e-9 {
		t.Errorf("vector %v is not an 8-dim unit vector", v)
	}

	_, many := embed(`{"model":"e","input":["other","hello there world"]}`)
	if len(many.Data) != 2 || !reflect.DeepEqual(vector(many.Data[1]), v) || reflect.DeepEqual(vector(many.Data[0]), v) {
		t.Errorf("vectors are not derived from their input alone: %+v", many)
	}

	_, tokens := embed(`{"model":"e","input":[[1,2,3],[4]]}`)
	if len(tokens.Data) != 2 || tokens.Usage["prompt_tokens"] != 4 {
		t.Errorf("token arrays: %+v", tokens)
	}

	_, b64 := embed(`{"model":"e","input":"hello there world","encoding_format":"base64"}`)
	var s64 string
	if err := json.Unmarshal(b64.Data[0].Embedding, &s64); err != nil {
		t.Fatalf("base64 embedding %s: %v", b64.Data[0].Embedding, err)
	}
	raw, err := base64.StdEncoding.DecodeString(s64)
	if err != nil || len(raw) != 4*len(v) {
		t.Fatalf("base64 %q: %v", s64, err)
	}
	for i, x := range v {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != float32(x) {
			t.Errorf("base64 value %d = %v, want %v", i, got, float32(x))
		}
	}

	s.Script("scripted", Reply{Embedding: []float64{1, 0}, Usage: usage(9, 0)}, Reply{Status: 429, Error: "slow down", NoUsage: true})
	_, fixed := embed(`{"model":"scripted","input":["a","b"]}`)
	if len(fixed.Data) != 2 || !reflect.DeepEqual(vector(fixed.Data[1]), []float64{1, 0}) || fixed.Usage["prompt_tokens"] != 9 {
		t.Errorf("scripted embedding: %+v", fixed)
	}
	if status, _ := embed(`{"model":"scripted","input":"a"}`); status != 429 {
		t.Errorf("scripted error: status %d", status)
	}

	s.Script("bare", Reply{NoUsage: true})
	resp, body := c.call("POST", "/embeddings", `{"model":"bare","input":"a"}`)
	if resp.StatusCode != 200 || bytes.Contains(body, []byte("usage")) {
		t.Errorf("NoUsage: %s", body)
	}
}

type embeddingResponse struct {
	Object string          `json:"object"`
	Data   []embeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  map[string]int  `json:"usage"`
}

type embeddingData struct {
	Object    string          `json:"object"`
	Index     int             `json:"index"`
	Embedding json.RawMessage `json:"embedding"`
}

func TestModels(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	if _, body := c.call("GET", "/models", ""); !bytes.Contains(body, []byte(`"data":[]`)) {
		t.Errorf("empty list: %s", body)
	}
	s.SetModels("gpt-4o-mini", "meta/llama-3")
	_, body := c.call("GET", "/models", "")
	var list openai.ModelList
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[1].ID != "meta/llama-3" {
		t.Fatalf("list %s", body)
	}
	for _, m := range list.Data {
		if m.Object != "model" || m.OwnedBy != "upstreamtest" || m.Created == 0 {
			t.Errorf("model %+v", m)
		}
	}
	resp, body := c.call("GET", "/models/"+url.PathEscape("meta/llama-3"), "")
	var m openai.Model
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m.ID != "meta/llama-3" {
		t.Errorf("one model: %d %s", resp.StatusCode, body)
	}
	resp, body = c.call("GET", "/models/missing", "")
	if e, _ := openai.ParseError(body); resp.StatusCode != 404 || e.Code == nil || *e.Code != "model_not_found" {
		t.Errorf("missing model: %d %s", resp.StatusCode, body)
	}
}

func TestNewServerAddr(t *testing.T) {
	s, err := NewServerAddr(":0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || !strings.HasSuffix(s.URL, "/v1") {
		t.Errorf("URL %q", s.URL)
	}
	if got := newClient(t, s).content("m"); got != "echo: hi" {
		t.Errorf("answer %q", got)
	}
	if _, err := NewServerAddr("256.0.0.1:0"); err == nil {
		t.Error("NewServerAddr with a bad address succeeded")
	}
}

func TestHandlerWithoutListener(t *testing.T) {
	s := startServer(t)
	s.Script("m", Reply{Content: "a b"})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(chatBody("m", "x", true, false)))
	s.Handler().ServeHTTP(rec, req)
	frames, err := readSSE(t, rec.Body)
	if err != nil || len(frames) != 5 || !frames[4].done {
		t.Errorf("frames %+v, err %v", frames, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	s.Script("q", Reply{Content: "first"}, Reply{Content: "rest"})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("q", "x", i%2 == 0, true), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		})
		wg.Go(func() { _ = s.Requests(); _ = s.InFlight() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(s.RequestsFor("q")); got != n {
		t.Errorf("%d requests recorded, want %d", got, n)
	}
}

func TestDemo(t *testing.T) {
	long := strings.Repeat("Please explain how rainbows form ", 5)
	req := func(model, user string, stream bool) *Request {
		body := chatBody(model, user, stream, false)
		chat, _ := openai.ParseChatRequest([]byte(body)) // nil without a model
		return &Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(body), Model: model, Stream: stream, Chat: chat}
	}
	demo := Demo()
	for _, tc := range []struct{ model, user string }{{"demo/alpha", "Why is the sky blue?"}, {"demo/beta", long}, {"", ""}} {
		r := demo(req(tc.model, tc.user, true))
		if r.Delay < 250*time.Millisecond || r.Delay > 400*time.Millisecond || r.ChunkDelay < 15*time.Millisecond || r.ChunkDelay > 30*time.Millisecond {
			t.Errorf("%s: delay %v, chunk delay %v", tc.model, r.Delay, r.ChunkDelay)
		}
		if !strings.Contains(r.Content, "demo answer") || !strings.Contains(r.Content, tc.model) {
			t.Errorf("%s: content %q does not say it is a demo of the model", tc.model, r.Content)
		}
		if sentences := strings.Count(r.Content, ". "); sentences < 2 || sentences > 4 || !strings.HasSuffix(r.Content, ".") {
			t.Errorf("%s: %d+1 sentences in %q", tc.model, sentences, r.Content)
		}
		if !reflect.DeepEqual(demo(req(tc.model, tc.user, true)), r) {
			t.Errorf("%s: the answer is not deterministic", tc.model)
		}
		if tc.user == "" {
			continue
		}
		want := quoteStart(tc.user, 60)
		if !strings.Contains(r.Content, "\u201c"+want+"\u201d") || utf8.RuneCountInString(want) > 60 {
			t.Errorf("%s: content %q does not quote %q", tc.model, r.Content, want)
		}
		plain := demo(req(tc.model, tc.user, false))
		if plain.Content != r.Content || plain.ChunkDelay != 0 || plain.Delay < r.Delay+10*r.ChunkDelay {
			t.Errorf("%s: non-streamed demo reply %+v", tc.model, plain)
		}
	}
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"one", []string{"one"}},
		{"Hello brave world", []string{"Hello", " brave", " world"}},
		{"  lead and trail  ", []string{"  lead", " and", " trail  "}},
		{"line\n\nbreak, día", []string{"line", "\n\nbreak,", " día"}},
	} {
		got := splitWords(tc.in)
		if !reflect.DeepEqual(got, tc.want) || strings.Join(got, "") != tc.in {
			t.Errorf("splitWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestQuoteStart(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"  many\n spaces  here ", 20, "many spaces here"},
		{"exactly ten", 11, "exactly ten"},
		{"one two three four", 10, "one two\u2026"},
		{"ééééééé", 4, "ééé\u2026"},
	} {
		if got := quoteStart(tc.in, tc.limit); got != tc.want {
			t.Errorf("quoteStart(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}
