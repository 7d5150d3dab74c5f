package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/bench"
)

// target is one proxy (or the upstream itself) under measurement.
type target struct {
	name  string
	base  string // scheme://host:port
	model string // the model id that reaches the fast fake through it
	hdr   http.Header
}

func (t target) request(stream bool, size int) *bench.Request {
	return &bench.Request{URL: t.base + "/v1/chat/completions", Body: bench.ChatBody(t.model, stream, size), Stream: stream, Header: t.hdr}
}

// scenario is one load shape.
type scenario struct {
	name    string
	clients int  // 0: sequential
	stream  bool // SSE answers
	size    int  // prompt bytes
	count   int  // sequential requests
	results [][]*bench.Result
}

// report gathers the figures of a run.
type report struct {
	rounds      int
	duration    time.Duration
	only        bool   // measure some sections alone, print them, write nothing
	passthrough bool   // the passthrough scenarios
	fdLimit     uint64 // if set, the open-file limit that capped the streams scenario
	hardLimit   uint64 // the hard open-file limit the streams scenario ran under
	targets     []target
	scenarios   []*scenario
	consortia   []*overhead
	loads       []*underLoad // the consortium under load, by concurrency
	mem         *memoryFigures
}

func (r *report) measure(ctx context.Context, targets []target, e *env) {
	r.targets = targets
	r.scenarios = []*scenario{
		{name: "sequential, JSON", count: 1000},
		{name: "32 clients, JSON", clients: 32},
		{name: "32 clients, SSE (20 chunks)", clients: 32, stream: true},
		{name: "256 clients, JSON", clients: 256},
		{name: "32 clients, 100 KB prompts", clients: 32, size: 100 << 10},
	}
	if !r.passthrough {
		r.scenarios = nil
	}
	client := bench.NewClient(512)
	for _, s := range r.scenarios {
		s.results = make([][]*bench.Result, len(targets))
	}
	for round := range r.rounds {
		for _, s := range r.scenarios {
			// Rotate the order each round, so no target always runs on a
			// machine warmed (or tired) by the one before.
			for k := range targets {
				i := (k + round) % len(targets)
				t := targets[i]
				req := t.request(s.stream, s.size)
				bench.Sequential(ctx, client, req, 50) // warm the connections
				var res *bench.Result
				if s.clients == 0 {
					res = bench.Sequential(ctx, client, req, s.count)
				} else {
					res = bench.Concurrent(ctx, client, req, s.clients, r.duration)
				}
				if res.Errors > 0 {
					log.Printf("%s / %s: %d errors, first: %s", s.name, t.name, res.Errors, res.FirstErr)
				}
				log.Printf("round %d %-30s %-28s %8.0f req/s  p50 %v", round+1, s.name, t.name, res.Throughput(), res.Quantile(0.5))
				s.results[i] = append(s.results[i], res)
			}
		}
		for _, o := range r.consortia {
			// The proxy, the proxy recording no scores and the direct path
			// take turns at going first.
			for k := range 3 {
				switch (k + round) % 3 {
				case 0:
					o.proxy = append(o.proxy, measureProxy(ctx, client, e.proxy, o, round, r.duration))
				case 1:
					o.plain = append(o.plain, measureProxy(ctx, client, e.plain, o, round, r.duration))
				default:
					slow := target{base: "http://" + e.slow.addr, model: "m"}
					res := bench.Concurrent(ctx, client, criticalPath(slow, o.fanout, o.judges, 0), 16, r.duration)
					if res.Errors > 0 {
						log.Printf("%s, critical path: %d errors, first: %s", o.strategy, res.Errors, res.FirstErr)
					}
					log.Printf("round %d %-34s 16 clients: p50 %v p90 %v errors %d", round+1, o.strategy+" critical path", res.Quantile(0.5), res.Quantile(0.9), res.Errors)
					o.direct = append(o.direct, res)
				}
			}
		}
	}
	var loadClient *http.Client
	if len(r.loads) > 0 {
		loadClient = underLoadClient()
		defer loadClient.CloseIdleConnections()
	}
	for round := range r.rounds {
		if len(r.loads) > 0 {
			measureUnderLoad(ctx, loadClient, r.loads, e, round, r.duration)
		}
	}
	for _, o := range r.consortia {
		log.Printf("%s: median p50 %.2f ms, critical path %.2f ms, overhead %.2f ms", o.strategy, medianP50(o.proxy), medianP50(o.direct), o.over())
	}
}

// measureProxy measures a consortium through a proxy process, 16 clients.
func measureProxy(ctx context.Context, client *http.Client, p *process, o *overhead, round int, d time.Duration) *bench.Result {
	c := target{base: "http://" + p.addr, model: o.model}
	res := bench.Concurrent(ctx, client, c.request(false, 0), 16, d)
	if res.Errors > 0 {
		log.Printf("%s (%s): %d errors, first: %s", o.strategy, p.name, res.Errors, res.FirstErr)
	}
	log.Printf("round %d %-34s 16 clients: p50 %v p90 %v errors %d", round+1, o.strategy+" ("+p.name+")", res.Quantile(0.5), res.Quantile(0.9), res.Errors)
	return res
}

// medianOf returns the median over rounds of f.
func medianOf[T any](rs []T, f func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// roundRange is the lowest and highest over rounds of a ratio taken
// within each round ("1.18–1.25×"): the spread of the figure the tables
// give as a median.
func roundRange(rs, hop []*bench.Result, ratio func(x, hop *bench.Result, round int) float64) string {
	var v []float64
	for k := range min(len(rs), len(hop)) {
		v = append(v, ratio(rs[k], hop[k], k))
	}
	if len(v) == 0 {
		return "—"
	}
	slices.Sort(v)
	return fmt.Sprintf("%.2f–%.2f×", v[0], v[len(v)-1])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// medianP50 is the median over rounds of the median latency, in ms.
func medianP50(rs []*bench.Result) float64 {
	return medianOf(rs, func(x *bench.Result) float64 { return ms(x.Quantile(0.5)) })
}

// overheadMarkdown writes the consortium overhead section.
func (r *report) overheadMarkdown(w func(string, ...any)) {
	w("## Consortium overhead\n\n")
	w("Consortia on an upstream that takes 50 ms for each call, so each critical path is 100 ms; 16 clients each, ")
	w("measured through the proxy, through the same proxy recording no scores, and, in the same rounds, straight to the fake ")
	w("(the three take turns at going first):\n\n")
	for _, o := range r.consortia {
		w("- %s: %s\n", o.strategy, o.about)
	}
	w("\nThe direct path includes the fake's own timer slack and HTTP work, which the proxy cannot remove.\n\n")
	w("| | p50 ms | p90 ms | p99 ms | req/s | errors | p50 over the critical path ms |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, rs []*bench.Result, over string) {
		errs := 0
		for _, x := range rs {
			errs += x.Errors
		}
		w("| %s | %.2f | %.2f | %.2f | %.0f | %d | %s |\n", name, medianP50(rs),
			medianOf(rs, func(x *bench.Result) float64 { return ms(x.Quantile(0.9)) }),
			medianOf(rs, func(x *bench.Result) float64 { return ms(x.Quantile(0.99)) }),
			medianOf(rs, (*bench.Result).Throughput), errs, over)
	}
	var summary, scored []string
	for _, o := range r.consortia {
		row(o.strategy+" "+o.members, o.proxy, fmt.Sprintf("**%.2f**", o.over()))
		row(o.strategy+" without scores", o.plain, fmt.Sprintf("%.2f", medianP50(o.plain)-medianP50(o.direct)))
		row(o.strategy+" critical path, direct", o.direct, "—")
		summary = append(summary, fmt.Sprintf("%s **%.2f ms** over the nominal 100 ms, **%.2f ms** over its measured critical path",
			o.strategy, medianP50(o.proxy)-100, o.over()))
		scored = append(scored, fmt.Sprintf("%s %+.2f ms", o.strategy, medianP50(o.proxy)-medianP50(o.plain)))
	}
	w("\nMedians: %s.\n\n", strings.Join(summary, "; "))
	w("Recording scores (docs/scores.md) happens after the answer, off the run's path: the proxy with them against the same "+
		"proxy without them (`CONSORTIUM_SCORES=off`), p50: %s.\n\n", strings.Join(scored, "; "))
	w("Why the direct path takes more than 100 ms on this machine, and where the proxy's share goes: [performance.md](performance.md).\n\n")
}

// memoryFigures is the open-streams scenario's outcome.
type memoryFigures struct {
	streams          int
	open             int
	before, during   int64 // RSS bytes
	goroutinesBefore float64
	goroutinesDuring float64
	failed           int // streams that did not open
	firstErr         string
	upstreamConns    int           // TCP connections the proxy held to the fake, streams open; -1 if unknown
	rampUp           time.Duration // until every stream had its first chunk
}

// memory opens n long SSE streams through the proxy at once, waits until
// each has its first chunk (or failed), and reads the proxy's resident memory and
// goroutines.
func (r *report) memory(ctx context.Context, e *env, n int) {
	base := "http://" + e.proxy.addr
	client := bench.NewClient(n)
	m := &memoryFigures{streams: n, before: e.proxy.rss(), goroutinesBefore: metric(base, "go_goroutines")}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := make(chan struct{}, n)
	body := bench.ChatBody("long/m", true, 0)
	// At most 500 streams are being opened at any moment: a burst of
	// 10,000 connects overflows the listen backlog (somaxconn), and a
	// dropped SYN waits a second before it is sent again.
	opening := make(chan struct{}, 500)
	began := time.Now()
	for range n {
		wg.Add(1)
		opening <- struct{}{}
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(string(body)))
			resp, err := client.Do(req)
			if err != nil {
				<-opening
				mu.Lock()
				m.failed++
				if m.firstErr == "" {
					m.firstErr = err.Error()
				}
				mu.Unlock()
				opened <- struct{}{}
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 512)
			k, err := resp.Body.Read(buf)
			<-opening
			if err != nil || resp.StatusCode != http.StatusOK {
				mu.Lock()
				m.failed++
				if m.firstErr == "" {
					m.firstErr = fmt.Sprintf("status %d: %s (%v)", resp.StatusCode, buf[:k], err)
				}
				mu.Unlock()
				opened <- struct{}{}
				return
			}
			mu.Lock()
			m.open++
			mu.Unlock()
			opened <- struct{}{}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	deadline := time.After(120 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-opened:
		case <-deadline:
			i = n
		}
	}
	m.rampUp = time.Since(began)
	time.Sleep(500 * time.Millisecond) // let the allocator settle
	m.during = e.proxy.rss()
	m.goroutinesDuring = metric(base, "go_goroutines")
	var err error
	if m.upstreamConns, err = tcpConnsTo(e.proxy.cmd.Process.Pid, e.long.addr); err != nil {
		log.Printf("counting the proxy's connections to the upstream: %v", err)
		m.upstreamConns = -1
	}
	cancel()
	wg.Wait()
	if m.failed > 0 {
		log.Printf("%d streams failed to open, first: %s", m.failed, m.firstErr)
	}
	log.Printf("%d streams open: RSS %d MiB -> %d MiB, goroutines %.0f -> %.0f, %d connections to the upstream", m.open, m.before>>20, m.during>>20,
		m.goroutinesBefore, m.goroutinesDuring, m.upstreamConns)
	r.mem = m
}

// grouped writes n with thousands separators: 9,500.
func grouped(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// metric reads one unlabelled metric from the proxy's /metrics.
func metric(base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var buf strings.Builder
	fmt.Fprint(&buf, "")
	b := make([]byte, 1<<20)
	n, _ := readFull(resp, b)
	for _, line := range strings.Split(string(b[:n]), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

func readFull(resp *http.Response, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := resp.Body.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("Generated by `make bench` (`go run ./bench/cmd/bench`) on %s, %s.\n\n", machine(), time.Now().UTC().Format("2006-01-02"))
	w("## Method\n\n")
	w("Every target runs as its own process on loopback: a fast fake upstream (pre-rendered answers, no parsing), ")
	w("a bare `net/http/httputil.ReverseProxy` hop in front of it (the floor for any Go proxy on this machine; same tuned transport as the proxy), ")
	w("and `consortium serve` with the fake as provider `fast`. The load generator is Go, in the harness process, on the same machine, ")
	w("so every target shares the two cores with it and with the fake alike: compare the ratios, not the absolute numbers. ")
	w("The consortium scenarios' fake (50 ms before each answer) writes a streamed answer in one write (`-burst`), the passthrough's frame by frame.\n\n")
	w("Each scenario runs against every target in %d interleaved rounds (the order rotates each round); ", r.rounds)
	w("each figure is the median over rounds, and \"rounds\" gives the lowest and highest of a ratio taken within each round. ")
	w("Concurrent scenarios keep N requests in flight for %s each.\n\n", r.duration)

	hop := -1
	for i, t := range r.targets {
		if strings.HasPrefix(t.name, "httputil") {
			hop = i
		}
	}
	for _, s := range r.scenarios {
		w("## %s\n\n", s.name)
		if s.clients == 0 {
			direct := medianOf(s.results[0], func(x *bench.Result) float64 { return ms(x.Quantile(0.5)) })
			hopAdded := medianOf(s.results[hop], func(x *bench.Result) float64 { return ms(x.Quantile(0.5)) }) - direct
			w("%d requests one after another; added latency is the target's median minus the upstream's.\n\n", s.count)
			w("| target | p50 ms | p99 ms | added p50 ms | added vs hop | added vs hop, rounds |\n|---|---:|---:|---:|---:|---:|\n")
			for i, t := range r.targets {
				p50 := medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Quantile(0.5)) })
				p99 := medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Quantile(0.99)) })
				ratio, rounds := "—", "—"
				if i > 0 && hopAdded > 0 {
					ratio = fmt.Sprintf("%.2f×", (p50-direct)/hopAdded)
					rounds = roundRange(s.results[i], s.results[hop], func(x, hop *bench.Result, k int) float64 {
						up := ms(s.results[0][k].Quantile(0.5))
						return (ms(x.Quantile(0.5)) - up) / (ms(hop.Quantile(0.5)) - up)
					})
				}
				w("| %s | %.3f | %.3f | %.3f | %s | %s |\n", t.name, p50, p99, p50-direct, ratio, rounds)
			}
			w("\n")
			continue
		}
		var notes []string
		hopTP := medianOf(s.results[hop], (*bench.Result).Throughput)
		w("| target | req/s | vs hop | vs hop, rounds | p50 ms | p90 ms | p99 ms | max ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, t := range r.targets {
			tp := medianOf(s.results[i], (*bench.Result).Throughput)
			errs := 0
			for _, x := range s.results[i] {
				errs += x.Errors
			}
			total, first := 0, ""
			for _, x := range s.results[i] {
				total += x.Requests
				if first == "" {
					first = x.FirstErr
				}
			}
			if errs > 0 {
				notes = append(notes, fmt.Sprintf("%s: %d of %d requests failed; the first: `%s`", t.name, errs, total, strings.TrimSpace(first)))
			}
			rounds := roundRange(s.results[i], s.results[hop], func(x, hop *bench.Result, _ int) float64 { return x.Throughput() / hop.Throughput() })
			w("| %s | %.0f | %.2f× | %s | %.2f | %.2f | %.2f | %.1f | %d |\n", t.name, tp, tp/hopTP, rounds,
				medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Quantile(0.5)) }),
				medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Quantile(0.9)) }),
				medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Quantile(0.99)) }),
				medianOf(s.results[i], func(x *bench.Result) float64 { return ms(x.Max()) }), errs)
		}
		w("\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
		if len(notes) > 0 {
			w("\n")
		}
	}
	if len(r.consortia) > 0 {
		r.overheadMarkdown(w)
	}
	underLoadMarkdown(r.loads, r.rounds, r.duration, w)
	if m := r.mem; m != nil {
		w("## Open SSE streams\n\n")
		w("%d passthrough streams held open at once (an upstream that sends a chunk every 500 ms; at most 500 being opened at a time), ", m.streams)
		w("measured half a second after every one had its first chunk (%.1f s after the first was asked for). ", m.rampUp.Seconds())
		w("Each client stream is its own HTTP/1.1 connection to the proxy, as clients make them. ")
		w("The upstream is HTTPS with HTTP/2, as real providers are (a throwaway self-signed certificate the proxy trusts through `SSL_CERT_FILE`), ")
		w("so the proxy holds one socket per client stream plus a few multiplexed connections upstream ")
		w("(the fake's HTTP/2 server allows 250 streams a connection, Go's default). ")
		w("Over a plain-HTTP/1.1 upstream the proxy needs two sockets a stream")
		if fit := (int(r.hardLimit) - fdReserve) / 2; r.hardLimit > 0 && fit < m.streams {
			w(", and this machine's hard limit of %s open files would cap that at about %s streams", grouped(int(r.hardLimit)), grouped(fit))
		}
		w(". ")
		w("The harness raises its open-file limit, which the proxy inherits, to hold them")
		if r.fdLimit > 0 {
			w("; here the hard limit (%d, which this machine does not let a process raise) capped the streams at %d", r.fdLimit, m.streams)
		}
		w(".\n\n")
		per := float64(m.during-m.before) / float64(max(m.open, 1))
		conns := "unknown"
		if m.upstreamConns >= 0 {
			conns = fmt.Sprint(m.upstreamConns)
		}
		w("| streams open | failed | RSS before | RSS with streams | per stream | goroutines per stream | proxy's connections to the upstream |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		w("| %d | %d | %.1f MiB | %.1f MiB | %.1f KiB | %.1f | %s |\n\n", m.open, m.failed, float64(m.before)/(1<<20), float64(m.during)/(1<<20), per/1024,
			(m.goroutinesDuring-m.goroutinesBefore)/float64(max(m.open, 1)), conns)
		if m.firstErr != "" {
			w("- the first stream that failed: `%s`\n\n", strings.TrimSpace(m.firstErr))
		}
	}
	return b.String()
}
