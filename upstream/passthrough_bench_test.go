package upstream

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// BenchmarkPassthrough measures Do, the proxy's passthrough, over the fake
// provider in memory (no sockets, so that the figures are the package's
// own work): a JSON answer read whole into a reused buffer, and a stream
// of 40 deltas read to its end.
func BenchmarkPassthrough(b *testing.B) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.SetRecordLimit(-1)
	answer := strings.Repeat("A sentence of a long enough answer. ", 40)
	fake.Script("m", upstreamtest.Reply{Content: answer})
	for _, typ := range []string{"openai", "anthropic"} {
		p, err := New(Config{Name: "bench", Type: typ, BaseURL: fake.URL, APIKey: "sk-bench-0123456789", Transport: fake.RoundTripper()})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(typ+"/json", func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				req := chat("m")
				req.Buffer = &buf
				if _, err := p.Do(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(typ+"/stream", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := p.Do(context.Background(), stream("m"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
