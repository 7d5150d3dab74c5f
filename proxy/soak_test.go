package proxy_test

// TestSoak is the proxy's soak test: mixed faults under load for a while,
// then a check that nothing leaked. It is off unless the environment asks
// for it, so that CI and everyday `go test` runs stay fast:
//
//	CONSORTIUM_SOAK=2m go test -race -run TestSoak -v ./proxy/
//
// CONSORTIUM_SOAK is how long the load runs (a Go duration). The optional
// CONSORTIUM_SOAK_WORKERS sets the number of concurrent clients (default
// 32). Go's test timeout (10m by default) bounds the whole run; pass
// -timeout for longer soaks.
//
// The fake provider answers every call with a fault drawn at random:
// success, 503, 429 with retry-after-ms, 400, dropped connections, streams
// cut midway, hangs past the provider's timeout, streams slower than its
// idle_timeout, slow but healthy streams, malformed 200s. The clients send
// passthrough and consortium requests, JSON and streamed, and some of them
// hang up midway. The test fails on a status the design does not list for
// the request, a stream that ends without [DONE] although its client
// stayed, a request that hangs, a recovered panic, or goroutines that do
// not return to their baseline once the load stops. It logs the outcome
// counts, the goroutines and the heap in use before, at peak and after.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const soakYAML = `
providers:
  fake:
    base_url: {{FAKE}}
    timeout: 300ms
    idle_timeout: 300ms
    max_retries: 2
    breaker: {failures: 5, cooldown: 200ms}
consortia:
  council:
    members:
      - {model: fake/a, fallbacks: [fake/b]}
      - {model: fake/c}
      - {model: fake/d, fallbacks: [fake/b]}
    arbiter: {model: fake/judge}
    max_iterations: 2
    member_timeout: 1s
`

// soakFault answers one upstream call with a fault drawn at random.
func soakFault(r *upstreamtest.Request) upstreamtest.Reply {
	content := "a fine answer from " + r.Model
	if r.Model == "judge" {
		content = "<confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>the synthesis of the council</synthesis>"
	}
	switch n := rand.IntN(100); {
	case n < 60:
		return upstreamtest.Reply{Content: content}
	case n < 68:
		return upstreamtest.Reply{Status: 503, Error: "overloaded"}
	case n < 72:
		return upstreamtest.Reply{Status: 429, Header: http.Header{"Retry-After-Ms": {"20"}}}
	case n < 74:
		return upstreamtest.Reply{Status: 400, Error: "bad request"}
	case n < 80:
		return upstreamtest.Reply{Drop: true}
	case n < 86:
		return upstreamtest.Reply{Content: content + " cut short by the provider", CutAfter: 2}
	case n < 89:
		return upstreamtest.Reply{Hang: true}
	case n < 92:
		return upstreamtest.Reply{Content: content, Chunks: []string{"slow", " and", " stalled"}, ChunkDelay: 400 * time.Millisecond}
	case n < 98:
		return upstreamtest.Reply{Content: content, ChunkDelay: 5 * time.Millisecond, Delay: 20 * time.Millisecond}
	default:
		return upstreamtest.Reply{Body: `{"choices": [`}
	}
}

// soakCase is one kind of request the clients send.
type soakCase struct {
	name   string
	body   string
	stream bool
	allow  []int // statuses the design lists for it
}

var soakCases = []soakCase{
	{name: "passthrough", body: `{"model":"fake/m","messages":[{"role":"user","content":"hi"}]}`,
		allow: []int{200, 400, 429, 502, 503, 504}},
	{name: "passthrough stream", body: `{"model":"fake/m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
		stream: true, allow: []int{200, 400, 429, 502, 503, 504}},
	{name: "consortium", body: `{"model":"council","messages":[{"role":"user","content":"hi"}]}`,
		allow: []int{200, 502, 503, 504}},
	{name: "consortium stream", body: `{"model":"council","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		stream: true, allow: []int{200}},
}

// soakTally counts outcomes by name.
type soakTally struct {
	mu         sync.Mutex
	counts     map[string]int
	unexpected []string
}

func (s *soakTally) add(outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[outcome]++
}

func (s *soakTally) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts["UNEXPECTED"]++
	if len(s.unexpected) < 20 {
		s.unexpected = append(s.unexpected, fmt.Sprintf(format, args...))
	}
}

func TestSoak(t *testing.T) {
	setting := os.Getenv("CONSORTIUM_SOAK")
	if setting == "" {
		t.Skip("set CONSORTIUM_SOAK to a duration (e.g. 2m) to run the soak test")
	}
	duration, err := time.ParseDuration(setting)
	if err != nil || duration <= 0 {
		t.Fatalf("CONSORTIUM_SOAK=%q is not a positive duration", setting)
	}
	workers := 32
	if s := os.Getenv("CONSORTIUM_SOAK_WORKERS"); s != "" {
		if workers, err = strconv.Atoi(s); err != nil || workers < 1 {
			t.Fatalf("CONSORTIUM_SOAK_WORKERS=%q is not a positive number", s)
		}
	}

	baseline := goleak.IgnoreCurrent()
	goroutinesBefore := runtime.NumGoroutine()
	heapBefore := heapInUse(true)

	var tally soakTally
	tally.counts = map[string]int{}
	var peakGoroutines, peakHeap atomic.Uint64
	var panics string

	t.Run("load", func(t *testing.T) {
		fake := upstreamtest.NewServer()
		defer fake.Close()
		fake.SetRecordLimit(-1)
		fake.SetDefault(soakFault)

		ts := httptest.NewServer(newProxy(t, fake, soakYAML, func(o *app.Options) { o.Backoff = 5 * time.Millisecond }))
		defer ts.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
		defer client.CloseIdleConnections()

		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					storeMax(&peakGoroutines, uint64(runtime.NumGoroutine()))
					storeMax(&peakHeap, heapInUse(false))
				}
			}
		})

		end := time.Now().Add(duration)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					soakRequest(client, ts.URL, soakCases[rand.IntN(len(soakCases))], &tally)
				}
			})
		}
		wg.Wait()
		close(stop)
		sampler.Wait()

		_, metrics := soakGet(client, ts.URL+"/metrics")
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "consortium_panics_total ") {
				panics = strings.TrimPrefix(line, "consortium_panics_total ")
			}
			if strings.HasPrefix(line, "consortium_breaker_state{") || strings.HasPrefix(line, "consortium_upstream_requests_total{") {
				t.Log(line)
			}
		}
	})

	// Let the last connections close, then compare with the baseline. The
	// soak runs real sockets on the real clock, as in production, so no
	// synctest: it polls the goroutine count, which nothing signals.
	settle := time.Now()
	for runtime.NumGoroutine() > goroutinesBefore && time.Since(settle) < 5*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	settled := time.Since(settle)
	goroutinesAfter := runtime.NumGoroutine()
	heapAfter := heapInUse(true)

	var report strings.Builder
	fmt.Fprintf(&report, "soak: %v with %d workers\n", duration, workers)
	names := make([]string, 0, len(tally.counts))
	total := 0
	for name, n := range tally.counts {
		names = append(names, name)
		total += n
	}
	slices.Sort(names)
	fmt.Fprintf(&report, "  requests: %d (%.0f/s)\n", total, float64(total)/duration.Seconds())
	for _, name := range names {
		fmt.Fprintf(&report, "  %-48s %7d\n", name, tally.counts[name])
	}
	fmt.Fprintf(&report, "  goroutines: before %d, peak %d, after %d (settled in %v)\n",
		goroutinesBefore, peakGoroutines.Load(), goroutinesAfter, settled.Round(time.Millisecond))
	fmt.Fprintf(&report, "  heap in use: before %.1f MiB, peak %.1f MiB, after %.1f MiB\n",
		mib(heapBefore), mib(peakHeap.Load()), mib(heapAfter))
	fmt.Fprintf(&report, "  recovered panics: %s", panics)
	t.Log(report.String())

	for _, u := range tally.unexpected {
		t.Error(u)
	}
	if n := tally.counts["UNEXPECTED"]; n > 0 {
		t.Errorf("%d unexpected outcomes (the first %d above)", n, len(tally.unexpected))
	}
	if panics != "0" {
		t.Errorf("consortium_panics_total %q, want 0", panics)
	}
	if err := goleak.Find(baseline); err != nil {
		t.Errorf("goroutines leaked: %v", err)
	}
	// A generous bound: the heap after the load should be near where it
	// began, not grown with the number of requests served.
	if heapAfter > heapBefore+64<<20 {
		t.Errorf("heap in use grew from %.1f MiB to %.1f MiB", mib(heapBefore), mib(heapAfter))
	}
}

// soakRequest sends one request of c, hanging up midway one time in ten,
// and tallies what came back.
func soakRequest(client *http.Client, base string, c soakCase, tally *soakTally) {
	// No request may take this long: every upstream phase has a timeout
	// well below it.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	leave := rand.IntN(10) == 0
	var left atomic.Bool
	if leave {
		timer := time.AfterFunc(time.Duration(rand.IntN(300))*time.Millisecond, func() {
			left.Store(true)
			cancel()
		})
		defer timer.Stop()
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(c.body))
	resp, err := client.Do(req)
	if err != nil {
		soakClientError(tally, c, ctx, &left, "before the answer", err)
		return
	}
	defer resp.Body.Close()
	if !slices.Contains(c.allow, resp.StatusCode) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		tally.fail("%s: status %d: %s", c.name, resp.StatusCode, body)
		return
	}
	if resp.StatusCode != 200 {
		body, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			soakClientError(tally, c, ctx, &left, "reading an error", err)
		case !strings.Contains(string(body), `"error"`):
			tally.fail("%s: status %d without an error body: %s", c.name, resp.StatusCode, body)
		case (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "":
			tally.fail("%s: status %d without Retry-After", c.name, resp.StatusCode)
		default:
			tally.add(fmt.Sprintf("%s: %d", c.name, resp.StatusCode))
		}
		return
	}
	if !c.stream {
		body, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			soakClientError(tally, c, ctx, &left, "reading the answer", err)
		case !strings.Contains(string(body), `"choices"`):
			tally.fail("%s: a 200 without choices: %s", c.name, body)
		default:
			tally.add(c.name + ": 200")
		}
		return
	}
	// A stream must end with [DONE], after an error event when it broke.
	var last string
	errorEvent := false
	events := newSSEReader(resp.Body)
	for {
		ev, err := events.next()
		if ev.data != "" {
			last = ev.data
			if strings.HasPrefix(last, `{"error":`) {
				errorEvent = true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			soakClientError(tally, c, ctx, &left, "mid-stream", err)
			return
		}
	}
	switch {
	case last != "[DONE]":
		if left.Load() {
			tally.add(c.name + ": client left mid-stream")
			return
		}
		tally.fail("%s: the stream ended without [DONE]; last frame %q", c.name, last)
	case errorEvent:
		tally.add(c.name + ": 200, error event and [DONE]")
	default:
		tally.add(c.name + ": 200, [DONE]")
	}
}

// soakClientError tallies a request that failed on the client's side:
// expected when the client hung up, a failure otherwise.
func soakClientError(tally *soakTally, c soakCase, ctx context.Context, left *atomic.Bool, when string, err error) {
	switch {
	case left.Load():
		tally.add(c.name + ": client left " + when)
	case ctx.Err() == context.DeadlineExceeded:
		tally.fail("%s: no answer within 15s (%s): %v", c.name, when, err)
	default:
		tally.fail("%s: %s: %v", c.name, when, err)
	}
}

func soakGet(client *http.Client, url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// heapInUse returns the bytes of heap spans in use, after a collection
// when gc is set.
func heapInUse(gc bool) uint64 {
	if gc {
		// Twice, so that pooled buffers (kept for one more cycle in
		// sync.Pool's victim cache) are counted out.
		runtime.GC()
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func storeMax(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}
