package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestMaxResponse: an answer past max_response fails as malformed, counts
// against the breaker, and is never read past the limit: a JSON body, a
// passthrough stream and a typed stream, whether the answer says its
// length or not.
func TestMaxResponse(t *testing.T) {
	const limit = 64 << 10
	for _, tc := range []struct {
		name  string
		reply upstreamtest.Reply
		call  func(p *Provider) error
	}{
		{"JSON of unknown length", upstreamtest.Reply{BodySize: 1 << 30}, func(p *Provider) error {
			_, err := p.Do(context.Background(), chat("m"))
			return err
		}},
		{"JSON that says its length", upstreamtest.Reply{Body: `{"x":"` + strings.Repeat("y", 2*limit) + `"}`}, func(p *Provider) error {
			_, err := p.Do(context.Background(), chat("m"))
			return err
		}},
		{"Chat", upstreamtest.Reply{BodySize: 1 << 30}, func(p *Provider) error {
			_, err := p.Chat(context.Background(), "m", ask("hi"))
			return err
		}},
		{"passthrough stream without end", upstreamtest.Reply{Endless: true, Content: strings.Repeat("z", 100)}, func(p *Provider) error {
			resp, err := p.Do(context.Background(), stream("m"))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if n > limit {
				return fmt.Errorf("read %d bytes past the limit of %d", n, limit)
			}
			return err
		}},
		{"typed stream without end", upstreamtest.Reply{Endless: true}, func(p *Provider) error {
			for _, err := range p.ChatStream(context.Background(), "m", ask("hi")) {
				if err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
				p := newProvider(t, fake, Config{MaxResponse: limit, Breaker: BreakerSettings{Failures: 1, Cooldown: time.Hour}})
				fake.Script("m", tc.reply)
				err := tc.call(p)
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "max_response") {
					t.Fatalf("err %v, want ErrMalformed past max_response", err)
				}
				refused(t, p, fake, chat("m"), time.Hour, time.Hour)
			})
		})
	}

	t.Run("an answer at the limit is whole", func(t *testing.T) {
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			body := `{"x":"` + strings.Repeat("y", limit-8) + `"}`
			p := newProvider(t, fake, Config{MaxResponse: int64(len(body))})
			fake.Script("m", upstreamtest.Reply{Body: body})
			resp, err := p.Do(context.Background(), chat("m"))
			if err != nil || string(resp.Data) != body {
				t.Fatalf("err %v, %d bytes", err, len(resp.Data))
			}
		})
	})

	t.Run("the default", func(t *testing.T) {
		p, err := New(Config{Name: "p", BaseURL: "http://127.0.0.1:1/v1"})
		if err != nil || p.maxResponse != 32<<20 {
			t.Errorf("max_response %d, %v", p.maxResponse, err)
		}
	})
}

// TestMaxResponseMemory reads a 256 MiB answer with the default limit
// and checks what it cost: the allocations stay near the limit, not the
// answer's size.
func TestMaxResponseMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 32 MiB")
	}
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		p := newProvider(t, fake, Config{})
		fake.Script("m", upstreamtest.Reply{BodySize: 256 << 20})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := p.Do(context.Background(), chat("m"))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("err %v", err)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("a 256 MiB answer with max_response 32 MiB: %d MiB allocated", alloc>>20)
		if alloc > 72<<20 {
			t.Errorf("%d MiB allocated for a 256 MiB answer refused at 32 MiB", alloc>>20)
		}
	})
}

// TestUnconfiguredModels: a client naming random models cannot grow the
// breakers without bound; configured models keep theirs.
func TestUnconfiguredModels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := newBreakers(BreakerSettings{Failures: 1, Cooldown: time.Hour}, nil, []string{"kept"})
		kept := bs.get("kept")
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range 30000 {
			bs.get(fmt.Sprintf("rand-%d-%x", i, i*7919))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		t.Logf("30,000 random model names: %d breakers held, live heap %+d KiB", bs.len(), (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
		if n := bs.len(); n > maxOthers+1 {
			t.Errorf("%d breakers after 30,000 model names, want at most %d", n, maxOthers+1)
		}
		if bs.get("kept") != kept {
			t.Error("the configured model's breaker was evicted")
		}

		// A recently used one stays; idle ones go.
		recent := bs.get("rand-29999-" + fmt.Sprintf("%x", 29999*7919))
		time.Sleep(othersIdle / 2)
		bs.get("rand-29999-" + fmt.Sprintf("%x", 29999*7919))
		time.Sleep(othersIdle/2 + time.Second)
		bs.get("newcomer")
		if n := bs.len(); n != 3 {
			t.Errorf("%d breakers after the others went idle, want 3 (kept, the recent one, the newcomer)", n)
		}
		if bs.get("rand-29999-"+fmt.Sprintf("%x", 29999*7919)) != recent {
			t.Error("a breaker in use was evicted")
		}
	})
}

// callLog records what OnCall is told.
type callLog struct {
	mu    sync.Mutex
	calls []Call
}

func (l *callLog) record(c Call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *callLog) take() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

func TestOnCall(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		var log callLog
		p := newProvider(t, fake, Config{MaxRetries: 2, Timeout: time.Second, Backoff: time.Millisecond, RPM: 1000, OnCall: log.record,
			Breaker: BreakerSettings{Failures: 3, Cooldown: time.Hour}})
		ctx := WithRole(context.Background(), "member")
		check := func(what string, want Call) {
			t.Helper()
			got := log.take()
			if len(got) != 1 {
				t.Fatalf("%s: OnCall told %d times, want once: %+v", what, len(got), got)
			}
			g := got[0]
			g.Duration = 0
			want.Provider = "fake"
			if g != want {
				t.Errorf("%s: %+v, want %+v", what, g, want)
			}
		}

		fake.Script("ok", upstreamtest.Reply{Content: "hi", Delay: 10 * time.Millisecond})
		if _, err := p.Do(ctx, chat("ok")); err != nil {
			t.Fatal(err)
		}
		if c := log.calls[0]; c.Duration != 10*time.Millisecond {
			t.Errorf("duration %v, want 10ms", c.Duration)
		}
		check("Do", Call{Model: "ok", Role: "member", Outcome: "ok", Status: 200, Attempts: 1})

		if _, err := p.Chat(WithRole(ctx, "arbiter"), "ok", ask("hi")); err != nil {
			t.Fatal(err)
		}
		check("Chat", Call{Model: "ok", Role: "arbiter", Outcome: "ok", Status: 200, Attempts: 1})

		// A stream is told of when it ends, not when it begins.
		resp, err := p.Do(context.Background(), stream("ok"))
		if err != nil {
			t.Fatal(err)
		}
		if got := log.take(); len(got) != 0 {
			t.Errorf("told of a stream before it ended: %+v", got)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resp.Body.Close()
		check("a passthrough stream", Call{Model: "ok", Outcome: "ok", Status: 200, Attempts: 1})

		for range p.ChatStream(WithRole(ctx, "judge"), "ok", ask("hi")) {
		}
		check("ChatStream", Call{Model: "ok", Role: "judge", Outcome: "ok", Status: 200, Attempts: 1})

		fake.Script("cut", upstreamtest.Reply{Content: "a b c", CutAfter: 1})
		for range p.ChatStream(ctx, "cut", ask("hi")) {
		}
		check("a stream cut midway", Call{Model: "cut", Role: "member", Outcome: "error", Status: 200, Attempts: 1})

		fake.Script("busy", upstreamtest.Reply{Status: 503})
		p.Do(ctx, chat("busy"))
		check("503s", Call{Model: "busy", Role: "member", Outcome: "error", Status: 503, Attempts: 3})
		p.Do(ctx, chat("busy"))
		check("an open breaker", Call{Model: "busy", Role: "member", Outcome: "breaker_open", Attempts: 1, Status: 0})

		fake.Script("slow", upstreamtest.Reply{Status: 429})
		p.Do(ctx, chat("slow"))
		check("429s", Call{Model: "slow", Role: "member", Outcome: "limited", Status: 429, Attempts: 3})

		fake.Script("bad", upstreamtest.Reply{Body: "{"})
		p.Chat(ctx, "bad", ask("hi"))
		check("malformed", Call{Model: "bad", Role: "member", Outcome: "malformed", Status: 200, Attempts: 1})

		fake.Script("hung", upstreamtest.Reply{Hang: true})
		p.Do(ctx, chat("hung"))
		check("a timeout", Call{Model: "hung", Role: "member", Outcome: "timeout", Attempts: 1})

		doCancelled(ctx, p, chat("hung"))
		check("a cancelled call", Call{Model: "hung", Role: "member", Outcome: "canceled", Attempts: 1})

		q := &Provider{}
		*q = *p
		q.gate = ratelimit.NewGate("fake", 1, 0)
		q.gate.Enter(context.Background()) // the minute's one call
		q.Do(ctx, chat("ok"))
		check("a provider limit", Call{Model: "ok", Role: "member", Outcome: "limited", Attempts: 1})

		if _, err := newAnthropicFor(t, fake, log.record).Do(ctx, &Request{Model: "e", Path: "/embeddings", Body: []byte(`{}`)}); err == nil {
			t.Fatal("embeddings reached an anthropic provider")
		}
		check("a request the dialect refuses", Call{Model: "e", Role: "member", Outcome: "error", Status: 0, Attempts: 0})
	})
}

// TestKeyNeverLeaks: a provider that echoes the key it received, in an
// error body or an error event, never gets it into an error's text; a
// 401 or 403 reads with the fixed wording.
func TestKeyNeverLeaks(t *testing.T) {
	const key = "sk-live-0123456789abcdef"
	for _, typ := range []string{"openai", "anthropic"} {
		t.Run(typ, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fake, Config{Type: typ, APIKey: key})
			for _, tc := range []struct {
				name  string
				reply upstreamtest.Reply
				call  func() error
				fixed bool // the fixed wording of refused credentials
			}{
				{"401", upstreamtest.Reply{Status: 401, EchoKey: true}, nil, true},
				{"403", upstreamtest.Reply{Status: 403, Error: "forbidden", EchoKey: true}, nil, true},
				{"400", upstreamtest.Reply{Status: 400, Error: "bad request", EchoKey: true}, nil, false},
				{"500", upstreamtest.Reply{Status: 500, Error: "oops", EchoKey: true}, nil, false},
				{"error event", upstreamtest.Reply{Content: "a b", StreamError: "overloaded", EchoKey: true}, nil, false},
				{"error event of refused credentials", upstreamtest.Reply{Content: "a b", StreamError: "bad key", ErrorType: "authentication_error", EchoKey: true}, nil, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					fake.Script("m", tc.reply)
					var errs []error
					_, err := p.Chat(context.Background(), "m", ask("hi"))
					errs = append(errs, err)
					resp, err := p.Do(context.Background(), stream("m"))
					errs = append(errs, err)
					if err == nil {
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						errs = append(errs, err)
						if strings.Contains(string(b), key[8:]) {
							t.Errorf("the passthrough stream carries the key: %s", b)
						}
					}
					for c, err := range p.ChatStream(context.Background(), "m", ask("hi")) {
						if c == nil {
							errs = append(errs, err)
						}
					}
					for _, err := range errs {
						if err == nil {
							continue
						}
						e := upstreamError(t, err)
						for _, text := range []string{err.Error(), e.Describe(), e.Message, fmt.Sprint(e.Err)} {
							if strings.Contains(text, key[8:]) {
								t.Errorf("the key is in %q", text)
							}
						}
						if errors.Is(err, ErrNoDone) {
							// The passthrough stream ended after the error
							// event, without [DONE]: the event went to the
							// client as written, scrubbed (checked above).
							continue
						}
						if got := strings.Contains(e.Describe(), "the provider refused the proxy's credentials"); got != tc.fixed {
							t.Errorf("Describe %q: fixed wording %v, want %v", e.Describe(), got, tc.fixed)
						}
					}
				})
			}
			// The fake did see the key: the scrubbing is what hid it.
			if r := fake.Requests(); len(r) == 0 || !strings.Contains(r[0].Header.Get("Authorization")+r[0].Header.Get("X-Api-Key"), key) {
				t.Error("the key did not reach the provider")
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want string
	}{
		{&Error{Status: 503, Message: "overloaded", Attempts: 3}, "status 503 after 3 attempts: overloaded"},
		{&Error{Status: 401, Message: "bad key sk-1"}, "status 401: the provider refused the proxy's credentials"},
		{&Error{Status: 403}, "status 403: the provider refused the proxy's credentials"},
		{&Error{Err: ErrBreakerOpen}, "circuit breaker open"},
		{&Error{Err: errFirstByte, Attempts: 2}, "no answer before the provider's timeout: upstream timeout after 2 attempts"},
		{&Error{Err: fmt.Errorf("%w: bad", ErrMalformed)}, "the provider's answer was malformed: bad"},
		{&Error{Err: io.ErrUnexpectedEOF, Attempts: 3}, "no answer after 3 attempts: the connection failed"},
		{&Error{Err: errors.New(`Post "http://10.0.0.1/v1": connection refused`)}, "no answer: the connection failed"},
		{&Error{Err: context.Canceled}, "context canceled"},
	} {
		if got := tc.e.Describe(); got != tc.want {
			t.Errorf("Describe = %q, want %q", got, tc.want)
		}
	}
	// A limit reads as one, and is ErrLimited, without importing ratelimit.
	p, _ := New(Config{Name: "p", BaseURL: "http://127.0.0.1:1/v1", RPM: 1, Timeout: time.Second})
	p.gate.Enter(context.Background())
	_, err := p.Do(context.Background(), chat("m"))
	if e := upstreamError(t, err); !errors.Is(err, ErrLimited) || !strings.Contains(e.Describe(), "rate limit") {
		t.Errorf("a limited call: %v, Describe %q", err, e.Describe())
	}
	// The transport's words stay in Error, for logs.
	e := &Error{Provider: "p", Model: "m", Err: io.ErrUnexpectedEOF}
	if got := e.Error(); got != "upstream p/m: no answer: the connection failed (unexpected EOF)" {
		t.Errorf("Error = %q", got)
	}
}

func TestSecrets(t *testing.T) {
	p := &Provider{secrets: secrets("sk-abcdefgh", map[string][]string{"Authorization": {"Bearer sk-abcdefgh"}, "X-Api-Key": {"other-key-123"}})}
	if !slices.Equal(p.secrets, []string{"Bearer sk-abcdefgh", "other-key-123", "sk-abcdefgh"}) {
		t.Errorf("secrets %q", p.secrets)
	}
	if got := p.scrub("got Bearer sk-abcdefgh and sk-abcdefgh and other-key-123"); got != "got [redacted] and [redacted] and [redacted]" {
		t.Errorf("scrub = %q", got)
	}
	for _, tc := range []struct {
		data string
		want int
	}{{"data: x\n\n", 0}, {"abc sk-ab", 5}, {"sxs", 1}, {"sk-abcdefg", 10}, {"", 0}, {"sk-abcdefgh", 0}} {
		if got := partial([]byte(tc.data), [][]byte{[]byte("sk-abcdefgh"), []byte("sabc")}); got != tc.want {
			t.Errorf("partial(%q) = %d, want %d", tc.data, got, tc.want)
		}
	}
	if got := (&Provider{secrets: secrets("short", nil)}).scrub("a short text"); got != "a short text" {
		t.Errorf("a short key scrubbed words: %q", got)
	}
}

// newAnthropicFor is an anthropic provider in front of fake that tells
// onCall.
func newAnthropicFor(t *testing.T, fake *upstreamtest.Server, onCall func(Call)) *Provider {
	return newProvider(t, fake, Config{Type: "anthropic", APIKey: "sk-ant-test", OnCall: onCall})
}

// TestScrubBody: a credential is scrubbed from a passthrough stream even
// when the reads cut it in pieces, and a read that cannot end inside one
// is given out at once (a frame is not held back until the next).
func TestScrubBody(t *testing.T) {
	const key = "sk-live-0123456789"
	in := "data: {\"error\":{\"message\":\"bad key " + key + "\"}}\n\ndata: [DONE]\n\n"
	want := strings.ReplaceAll(in, key, "[redacted]")
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
	} {
		s := &scrubBody{body: io.NopCloser(wrap(strings.NewReader(in))), secrets: secretBytes([]string{key})}
		got, err := io.ReadAll(s)
		if err != nil || string(got) != want {
			t.Errorf("read %q, %v; want %q", got, err, want)
		}
	}

	pr, pw := io.Pipe()
	s := &scrubBody{body: pr, secrets: secretBytes([]string{key})}
	go pw.Write([]byte("data: {\"a\":1}\n\n"))
	buf := make([]byte, 100)
	if n, err := s.Read(buf); string(buf[:n]) != "data: {\"a\":1}\n\n" || err != nil {
		t.Errorf("first read %q, %v; want the whole frame at once", buf[:n], err)
	}
	go pw.Write([]byte("data: sk-li"))
	if n, _ := s.Read(buf); string(buf[:n]) != "data: " {
		t.Errorf("read %q; want the part before what may begin the key", buf[:n])
	}
	go pw.CloseWithError(io.ErrUnexpectedEOF)
	if n, _ := s.Read(buf); string(buf[:n]) != "sk-li" {
		t.Errorf("read %q; want the held tail once the stream ended", buf[:n])
	}
	if _, err := s.Read(buf); err != io.ErrUnexpectedEOF {
		t.Errorf("err %v, want the body's", err)
	}
}

// TestWrongShape: an answer of the other shape than asked for (an event
// stream for JSON, JSON for a stream) is malformed, and counts.
func TestWrongShape(t *testing.T) {
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		p := newProvider(t, fake, Config{Breaker: BreakerSettings{Failures: 2, Cooldown: time.Hour}})
		fake.Script("m", upstreamtest.Reply{Body: "data: {}\n\ndata: [DONE]\n\n", Header: map[string][]string{"Content-Type": {"text/event-stream"}}},
			upstreamtest.Reply{Body: `{"choices":[]}`})
		if _, err := p.Chat(context.Background(), "m", ask("hi")); !errors.Is(err, ErrMalformed) {
			t.Errorf("an event stream for Chat: %v", err)
		}
		for _, err := range p.ChatStream(context.Background(), "m", ask("hi")) {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("JSON for ChatStream: %v", err)
			}
		}
		refused(t, p, fake, chat("m"), time.Hour, time.Hour)
	})
}
