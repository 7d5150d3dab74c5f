package upstreamtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// memClient is a client of s through its RoundTripper.
func memClient(t *testing.T, s *Server) *client {
	return &client{t: t, hc: &http.Client{Transport: s.RoundTripper()}, base: s.URL}
}

// TestInMemory drives the fake through RoundTripper on a fake clock: the
// same answers as over a socket, delays exact, and the failures a real
// connection shows.
func TestInMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory()
		defer s.Close()
		c := memClient(t, s)

		s.Script("m", Reply{Content: "hello there", Delay: time.Second})
		start := time.Now()
		if got := c.content("m"); got != "hello there" || time.Since(start) != time.Second {
			t.Errorf("content %q after %v, want after exactly 1s", got, time.Since(start))
		}

		s.Script("s", Reply{Content: "a b c", ChunkDelay: 10 * time.Millisecond})
		resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("s", "x", true, true), nil)
		if err != nil {
			t.Fatal(err)
		}
		frames, err := readSSE(t, resp.Body)
		resp.Body.Close()
		var text strings.Builder
		for _, f := range frames {
			for _, ch := range f.Choices {
				if ch.Delta.Content != nil {
					text.WriteString(*ch.Delta.Content)
				}
			}
		}
		if err != nil || text.String() != "a b c" || !frames[len(frames)-1].done || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("stream %q, %v, %d frames", text.String(), err, len(frames))
		}

		s.Script("drop", Reply{Drop: true})
		if _, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("drop", "x", false, false), nil); !errors.Is(err, io.EOF) {
			t.Errorf("Drop: err %v, want a connection closed (EOF)", err)
		}

		for _, r := range []Reply{{Content: "a b c", CutAfter: 1}, {Body: `{"a":`, Header: http.Header{"Content-Length": {"100"}}}} {
			s.Script("cut", r)
			resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("cut", "x", r.Body == "", false), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%+v: err %v, want io.ErrUnexpectedEOF", r, err)
			}
		}

		// A client that goes away, by its context or by closing the
		// body, is seen by the handler.
		s.Reset()
		s.Script("hang", Reply{Hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.do(ctx, "POST", "/chat/completions", chatBody("hang", "x", false, false), nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the deadline", err)
		}
		s.Script("slow", Reply{Content: "a b", ChunkDelay: time.Hour})
		resp, err = c.do(context.Background(), "POST", "/chat/completions", chatBody("slow", "x", true, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := s.WaitIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Requests() {
			if !r.Cancelled {
				t.Errorf("%s: not cancelled", r.Model)
			}
		}
	})
}

func TestEchoKey(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s)
	for _, tc := range []struct {
		reply  Reply
		path   string
		header http.Header
		want   string
	}{
		{Reply{Status: 401, EchoKey: true}, "/chat/completions", http.Header{"Authorization": {"Bearer sk-1"}}, "Incorrect API key provided: Bearer sk-1"},
		{Reply{Status: 400, Error: "bad", EchoKey: true}, "/chat/completions", http.Header{"Authorization": {"Bearer sk-2"}}, "bad (key: Bearer sk-2)"},
		{Reply{Status: 403, EchoKey: true}, "/messages", http.Header{"X-Api-Key": {"sk-ant-3"}}, "Incorrect API key provided: sk-ant-3"},
	} {
		s.Script("m", tc.reply)
		body := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
		resp, err := c.do(context.Background(), "POST", tc.path, body, tc.header)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e); e.Error.Message != tc.want {
			t.Errorf("%s: message %q, want %q", tc.path, e.Error.Message, tc.want)
		}
	}
	s.Script("m", Reply{Content: "a", StreamError: "overloaded", EchoKey: true})
	resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("m", "x", true, false), http.Header{"Authorization": {"Bearer sk-4"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"message":"overloaded (key: Bearer sk-4)"`) {
		t.Errorf("stream %s", b)
	}
}

func TestHugeAndEndless(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory()
		defer s.Close()
		c := memClient(t, s)

		s.Script("huge", Reply{BodySize: 3<<20 + 7})
		resp, body := c.call("POST", "/chat/completions", chatBody("huge", "x", false, false))
		var cc openai.ChatCompletion
		if err := json.Unmarshal(body, &cc); err != nil || resp.StatusCode != 200 || len(*cc.Choices[0].Message.Content) != 3<<20+7 {
			t.Errorf("status %d, %d bytes: %v", resp.StatusCode, len(body), err)
		}

		s.Script("endless", Reply{Endless: true, Content: "ab", ChunkDelay: time.Millisecond})
		resp, err := c.do(context.Background(), "POST", "/chat/completions", chatBody("endless", "x", true, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var got strings.Builder
		buf := make([]byte, 4096)
		for got.Len() < 64<<10 {
			n, err := resp.Body.Read(buf)
			if err != nil {
				t.Fatalf("an endless stream ended: %v", err)
			}
			got.Write(buf[:n])
		}
		resp.Body.Close()
		if n := strings.Count(got.String(), `"content":"ab"`); n < 100 || time.Since(start) < time.Duration(n)*time.Millisecond {
			t.Errorf("%d deltas in %v", n, time.Since(start))
		}
		if err := s.WaitIdle(context.Background()); err != nil || !s.RequestsFor("endless")[0].Cancelled {
			t.Errorf("the endless stream did not end when its client went: %v", err)
		}
	})
}
