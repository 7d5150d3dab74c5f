package consortia_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// BenchmarkEngineOverhead runs a consortium of three members and an
// arbiter that each take 50ms to answer, 16 requests at a time, and
// reports the latency beyond the 100ms critical path (members, then
// arbiter): what the engine itself costs under concurrency.
func BenchmarkEngineOverhead(b *testing.B) {
	const (
		delay    = 50 * time.Millisecond
		critical = 2 * delay
		workers  = 16
	)
	f := newFixture(b, `
members: [{model: fake/a}, {model: fake/b}, {model: fake/c}]
arbiter: {model: fake/judge}
max_iterations: 1
`)
	f.fake.SetRecordLimit(-1)
	for _, m := range []string{"a", "b", "c"} {
		f.fake.Script(m, upstreamtest.Reply{Content: "An answer of a few words, as a member would write it.", Delay: delay})
	}
	f.fake.Script("judge", upstreamtest.Reply{
		Content: verdict("0.9", "The synthesis, streamed to the client word by word as the arbiter writes it."), Delay: delay})

	run := func() (time.Duration, error) {
		req, err := openai.ParseChatRequest([]byte(hello))
		if err != nil {
			return 0, err
		}
		start := time.Now()
		_, err = f.engine.Run(context.Background(), req, func(string) {})
		return time.Since(start), err
	}
	// Warm the connection pool, so that dialing is not measured.
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { run() })
	}
	wg.Wait()

	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				d, err := run()
				if err != nil {
					b.Error(err)
					return
				}
				latencies[i] = d
			}
		})
	}
	wg.Wait()
	b.StopTimer()

	slices.Sort(latencies)
	overhead := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))]-critical) / float64(time.Millisecond)
	}
	b.ReportMetric(overhead(0.5), "overhead-ms-p50")
	b.ReportMetric(overhead(0.9), "overhead-ms-p90")
}

// stampWriter notes when the fake provider writes the first frame that
// holds marker, just before the bytes leave.
type stampWriter struct {
	http.ResponseWriter
	marker []byte
	sent   *atomic.Pointer[time.Time]
}

func (w *stampWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, w.marker) {
		now := time.Now()
		w.sent.CompareAndSwap(nil, &now)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush the underlying writer.
func (w *stampWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// BenchmarkFirstByte measures how long the first chunk of the synthesis
// takes from the moment the provider writes it to the moment the engine
// hands it to the client's delta callback: the tag parsing and streaming
// path, without the providers' own latency.
func BenchmarkFirstByte(b *testing.B) {
	const marker = "FIRSTBYTE"
	fake := upstreamtest.NewServer()
	b.Cleanup(fake.Close)
	fake.SetRecordLimit(-1)
	var sent atomic.Pointer[time.Time]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fake.Handler().ServeHTTP(&stampWriter{ResponseWriter: w, marker: []byte(marker), sent: &sent}, r)
	}))
	b.Cleanup(srv.Close)
	transport := upstream.NewTransport()
	b.Cleanup(transport.CloseIdleConnections)
	e := newEngine(b, srv.URL+"/v1", transport, "members: [{model: fake/a}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
	fake.Script("a", upstreamtest.Reply{Content: "an answer"})
	fake.Script("judge", upstreamtest.Reply{Chunks: []string{
		"<analysis>fine</analysis><confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>",
		marker, " and the rest of the synthesis", "</synthesis>"}})

	firstBytes := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, err := openai.ParseChatRequest([]byte(hello))
		if err != nil {
			b.Fatal(err)
		}
		sent.Store(nil)
		var got time.Time
		_, err = e.Run(context.Background(), req, func(string) {
			if got.IsZero() {
				got = time.Now()
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		s := sent.Load()
		if s == nil || got.IsZero() {
			b.Fatal("the synthesis was not streamed")
		}
		firstBytes = append(firstBytes, got.Sub(*s))
	}
	b.StopTimer()
	slices.Sort(firstBytes)
	b.ReportMetric(float64(firstBytes[len(firstBytes)/2])/float64(time.Microsecond), "first-byte-us")
}
