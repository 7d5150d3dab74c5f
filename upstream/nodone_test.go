package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestPassthroughWithoutDone: an OpenAI passthrough stream that ends
// without [DONE] fails at its end with ErrNoDone, after every byte the
// provider sent; the breaker counts it (N of them open it) and OnCall
// reports it as malformed. A stream that ends with [DONE] is a success
// that resets the count.
func TestPassthroughWithoutDone(t *testing.T) {
	const failures = 3
	inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
		var log callLog
		p := newProvider(t, fake, Config{OnCall: log.record, Breaker: BreakerSettings{Failures: failures, Cooldown: time.Hour}})
		ctx := WithRole(context.Background(), "passthrough")
		read := func() ([]byte, error) {
			t.Helper()
			resp, err := p.Do(ctx, stream("m"))
			if err != nil {
				t.Fatalf("the stream did not begin: %v", err)
			}
			defer resp.Body.Close()
			return io.ReadAll(resp.Body)
		}
		check := func(what, outcome string) {
			t.Helper()
			got := log.take()
			if len(got) != 1 || got[0].Outcome != outcome || got[0].Role != "passthrough" || got[0].Status != 200 {
				t.Errorf("%s: OnCall was told %+v, want one call with outcome %s", what, got, outcome)
			}
		}

		// failures-1 cut streams, then a whole one: the count starts over.
		for range failures - 1 {
			fake.Script("m", upstreamtest.Reply{Content: "one two", NoDone: true})
			b, err := read()
			if !errors.Is(err, ErrNoDone) || !errors.Is(err, ErrMalformed) || upstreamError(t, err).Ref() != "fake/m" {
				t.Fatalf("err %v, want an *Error wrapping ErrNoDone", err)
			}
			if len(b) == 0 || !bytes.Contains(b, []byte("two")) {
				t.Errorf("the stream's bytes were not all given out before the error: %q", b)
			}
			check("a stream without [DONE]", "malformed")
		}
		fake.Script("m", upstreamtest.Reply{Content: "one two"})
		if _, err := read(); err != nil {
			t.Fatalf("a stream with [DONE]: %v", err)
		}
		check("a stream with [DONE]", "ok")

		for i := range failures {
			if st := p.breakers.get("m").cb.State().String(); st != "closed" {
				t.Fatalf("breaker %s after %d cut streams, want closed until %d", st, i, failures)
			}
			fake.Script("m", upstreamtest.Reply{Content: "one two", NoDone: true})
			if _, err := read(); !errors.Is(err, ErrNoDone) {
				t.Fatalf("err %v, want ErrNoDone", err)
			}
			check("a stream without [DONE]", "malformed")
		}
		refused(t, p, fake, stream("m"), time.Hour, time.Hour)
		if got := log.take(); len(got) != 1 || got[0].Outcome != "breaker_open" {
			t.Errorf("the open breaker: OnCall was told %+v", got)
		}
	})
}

// TestDoneTail: the end of an event stream is found whichever way its reads
// split it.
func TestDoneTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		done bool
	}{
		{"done", "data: {\"a\":1}\n\ndata: [DONE]\n\n", true},
		{"no space", "data: {}\n\ndata:[DONE]\n\n", true},
		{"crlf", "data: {}\r\n\r\ndata: [DONE]\r\n\r\n", true},
		{"no final newline", "data: {}\n\ndata: [DONE]", true},
		{"only done", "data: [DONE]\n\n", true},
		{"no done", "data: {\"a\":1}\n\n", false},
		{"empty", "", false},
		{"done is not last", "data: [DONE]\n\ndata: {}\n\n", false},
		{"done inside content", "data: {\"c\":\"data: [DONE]\"}\n\n", false},
		{"cut inside done", "data: {}\n\ndata: [DO", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every split of the stream into reads of 1 to 20 bytes.
			for size := 1; size <= 20; size++ {
				var tail doneTail
				for b := []byte(tc.data); len(b) > 0; {
					n := min(size, len(b))
					tail.keep(b[:n])
					b = b[n:]
				}
				if tail.done() != tc.done {
					t.Errorf("reads of %d bytes: done %v, want %v", size, tail.done(), tc.done)
				}
			}
		})
	}
}
