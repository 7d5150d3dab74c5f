package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one request a load test sends.
type Request struct {
	URL    string // full URL of the chat completions endpoint
	Body   []byte
	Stream bool // read the answer as SSE up to [DONE]
	Header http.Header
	// Fanout, if more than 1, sends this many copies at once and waits
	// for them all, as a consortium's members are asked.
	Fanout int
	// Then, if set, is sent when this request's answer is complete, as
	// part of the same measured request (a critical path of calls).
	Then *Request
	// Bodies, if set, replace Body: each send takes the next one in turn,
	// round and round (its Fanout copies share it), so that a load of
	// different requests reaches the target, not one request again and
	// again (which a cache or a deterministic fake would answer alike).
	Bodies [][]byte

	turn atomic.Uint64 // the next of Bodies
}

// body is the body of the next send of r.
func (r *Request) body() []byte {
	if len(r.Bodies) == 0 {
		return r.Body
	}
	return r.Bodies[(r.turn.Add(1)-1)%uint64(len(r.Bodies))]
}

// Result is what a load test measured.
type Result struct {
	Requests  int
	Errors    int
	FirstErr  string
	Elapsed   time.Duration
	latencies []time.Duration // sorted
}

// Throughput is the successful requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile latency (0.5 for the median).
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.latencies)))) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// Max returns the longest latency.
func (r *Result) Max() time.Duration { return r.Quantile(1) }

// NewClient returns an HTTP client able to keep n connections open to one
// host, so the client is never the bottleneck.
func NewClient(n int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n * 2,
		MaxIdleConnsPerHost: n * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// do sends one request (its Fanout copies, and then its Then) and reads
// the whole answer.
func do(ctx context.Context, c *http.Client, r *Request) error {
	if err := doFanout(ctx, c, r); err != nil || r.Then == nil {
		return err
	}
	return do(ctx, c, r.Then)
}

// doFanout sends r.Fanout copies of r at once and returns the first error.
func doFanout(ctx context.Context, c *http.Client, r *Request) error {
	body := r.body()
	if r.Fanout <= 1 {
		return do1(ctx, c, r, body)
	}
	errs := make(chan error, r.Fanout)
	for range r.Fanout {
		go func() { errs <- do1(ctx, c, r, body) }()
	}
	var first error
	for range r.Fanout {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// do1 sends one request with body and reads its whole answer.
func do1(ctx context.Context, c *http.Client, r *Request, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if !r.Stream {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	for {
		line, err := br.ReadSlice('\n')
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			io.Copy(io.Discard, br)
			return nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return fmt.Errorf("stream ended without [DONE]: %v", err)
		}
	}
}

// readers are the buffers streams are read through: a load generator
// that allocated one a stream would spend, at a thousand streams a
// second, CPU of the cores it shares with what it measures.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// Concurrent keeps n requests in flight for d (each client sends its next
// request when the previous one is answered) and measures each.
func Concurrent(ctx context.Context, c *http.Client, r *Request, n int, d time.Duration) *Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	res := &Result{}
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var errs int
			var first string
			for ctx.Err() == nil {
				t0 := time.Now()
				err := do(ctx, c, r)
				if ctx.Err() != nil {
					break // cut by the end of the test, not a failure
				}
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.Errors += errs
			if res.FirstErr == "" {
				res.FirstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = len(res.latencies)
	slices.Sort(res.latencies)
	return res
}

// Sequential sends count requests one after another.
func Sequential(ctx context.Context, c *http.Client, r *Request, count int) *Result {
	res := &Result{}
	start := time.Now()
	for range count {
		t0 := time.Now()
		if err := do(ctx, c, r); err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
		}
		res.latencies = append(res.latencies, time.Since(t0))
	}
	res.Elapsed = time.Since(start)
	res.Requests = count
	slices.Sort(res.latencies)
	return res
}

// Rate sends rate requests a second for d, each at its scheduled time
// whatever happened to the previous ones, and measures each latency from
// its scheduled time, so that a stall is charged to every request it
// delayed (no coordinated omission).
func Rate(ctx context.Context, c *http.Client, r *Request, rate float64, d time.Duration) *Result {
	interval := time.Duration(float64(time.Second) / rate)
	total := int(d / interval)
	res := &Result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		scheduled := start.Add(time.Duration(i) * interval)
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := do(ctx, c, r)
			lat := time.Since(scheduled)
			mu.Lock()
			defer mu.Unlock()
			res.latencies = append(res.latencies, lat)
			if err != nil {
				res.Errors++
				if res.FirstErr == "" {
					res.FirstErr = err.Error()
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = len(res.latencies)
	slices.Sort(res.latencies)
	return res
}

// ChatBody returns a chat completion body for model with a prompt of
// about size bytes.
func ChatBody(model string, stream bool, size int) []byte {
	return chatBody(model, stream, Prompt(size))
}

// Prompt is the prompt of ChatBody: "Say something.", or about size bytes
// of filler when size is larger.
func Prompt(size int) string {
	prompt := "Say something."
	if size > len(prompt) {
		prompt = strings.Repeat("lorem ipsum ", size/12+1)[:size]
	}
	return prompt
}

func chatBody(model string, stream bool, prompt string) []byte {
	m, _ := json.Marshal(model)
	p, _ := json.Marshal(prompt)
	if stream {
		return fmt.Appendf(nil, `{"model":%s,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":%s}]}`, m, p)
	}
	return fmt.Appendf(nil, `{"model":%s,"messages":[{"role":"user","content":%s}]}`, m, p)
}

// ChatBodies returns a chat completion body for model per prompt, in order.
func ChatBodies(model string, stream bool, prompts []string) [][]byte {
	out := make([][]byte, len(prompts))
	for i, p := range prompts {
		out[i] = chatBody(model, stream, p)
	}
	return out
}
