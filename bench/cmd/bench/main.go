// Command bench is consortium's benchmark harness. `go run ./bench/cmd/bench`
// (or `make bench`) builds the proxy, starts a fast fake upstream, a bare
// httputil.ReverseProxy hop and the proxy as separate processes on loopback
// ports, measures every scenario against every target in interleaved
// rounds, and writes docs/benchmarks.md.
//
// Usage:
//
//	bench [run] [-duration 5s] [-rounds 3] [-out docs/benchmarks.md] [-others] [-streams 10000] [-only passthrough,consortium,rank,load,streams]
//	bench fake -listen ADDR [-latency D] [-chunks N] [-token-interval D] [-rank] [-burst] [-tls-cert FILE -tls-key FILE]
//	bench hop  -listen ADDR -target URL
//	bench batch [-n 50000] [-d 1536] [-k 500] [-rounds 3] [-items 4000] [-latency 50ms] [-python PATH] [-out docs/benchmarks.md]
//	bench load -base URL -model M [-clients 16] [-duration 5s] [-stream] [-size N] [-prompts FILE] [-vary] [-key K] [-events] [-critical N [-judges N]]
//	bench burn [-cores 0.5] [-burst 1ms]
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/consortium-dev/consortium/bench"
	"github.com/consortium-dev/consortium/upstream"
)

func main() {
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(args)
	case "fake":
		err = serveFake(args)
	case "hop":
		err = serveHop(args)
	case "load":
		err = load(args)
	case "batch":
		err = batchBench(args)
	case "select-go":
		err = selectGo(args)
	case "burn":
		err = burn(args)
	default:
		err = fmt.Errorf("unknown command %q (run, fake, hop, load, batch, burn)", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// burn keeps a share of one core busy until interrupted, in busy
// stretches of a set length: the control of the experiment in
// docs/performance.md ("Consortiums under load"), which measures what the
// direct path loses to any process that takes the proxy's share of the
// cores. The busy time is counted, so that sleeps which overshoot are made
// up for.
func burn(args []string) error {
	fs := flag.NewFlagSet("burn", flag.ExitOnError)
	share := fs.Float64("cores", 0.5, "share of one core to keep busy, above 0 and at most 1")
	stretch := fs.Duration("burst", time.Millisecond, "length of each busy stretch")
	fs.Parse(args)
	if *share <= 0 || *share > 1 || *stretch <= 0 {
		return fmt.Errorf("burn: -cores must be in (0, 1] and -burst positive")
	}
	start, busy := time.Now(), time.Duration(0)
	for {
		if float64(busy) > *share*float64(time.Since(start)) {
			time.Sleep(*stretch)
			continue
		}
		t := time.Now()
		for time.Since(t) < *stretch {
		}
		busy += time.Since(t)
	}
}

// serveUntilSignal serves h on addr, printing the address, until SIGTERM.
// Given a certificate and key, it serves HTTPS, where http.Server speaks
// HTTP/2 to a client that offers it.
func serveUntilSignal(addr string, h http.Handler, certFile, keyFile string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if certFile != "" || keyFile != "" {
		err = srv.ServeTLS(ln, certFile, keyFile)
	} else {
		err = srv.Serve(ln)
	}
	if err != http.ErrServerClosed {
		return err
	}
	return nil
}

func serveFake(args []string) error {
	fs := flag.NewFlagSet("fake", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	f := &bench.Fake{}
	fs.DurationVar(&f.Latency, "latency", 0, "wait before each answer")
	fs.IntVar(&f.Chunks, "chunks", 20, "deltas of a streamed answer")
	fs.DurationVar(&f.TokenInterval, "token-interval", 0, "wait between streamed deltas")
	fs.BoolVar(&f.Rank, "rank", false, "answer a judge prompt (### Response X headings) with a ranking of its labels")
	fs.BoolVar(&f.Burst, "burst", false, "with no -token-interval, write a streamed answer in one write instead of frame by frame")
	certFile := fs.String("tls-cert", "", "serve HTTPS (HTTP/2 to a client that offers it) with this PEM certificate `file`; needs -tls-key")
	keyFile := fs.String("tls-key", "", "the PEM private key `file` of -tls-cert")
	fs.Parse(args)
	if (*certFile == "") != (*keyFile == "") {
		return fmt.Errorf("-tls-cert and -tls-key go together")
	}
	return serveUntilSignal(*listen, f, *certFile, *keyFile)
}

func serveHop(args []string) error {
	fs := flag.NewFlagSet("hop", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	target := fs.String("target", "", "upstream base URL (scheme://host:port)")
	fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q is not a URL", *target)
	}
	return serveUntilSignal(*listen, bench.Hop(u, upstream.NewTransport()), "", "")
}

// load drives a running target (the proxy under a profiler, say) with
// fixed-concurrency load and prints what it measured.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	base := fs.String("base", "", "the target's scheme://host:port")
	model := fs.String("model", "", "the model to ask for")
	clients := fs.Int("clients", 16, "requests in flight")
	duration := fs.Duration("duration", 5*time.Second, "how long to measure")
	stream := fs.Bool("stream", false, "ask for SSE answers")
	size := fs.Int("size", 0, "prompt bytes")
	key := fs.String("key", "", "client key sent as a bearer token")
	events := fs.Bool("events", false, "ask a consortium stream for named progress events (X-Consortium-Events: true)")
	critical := fs.Int("critical", 0, "send N JSON requests at once, then one streamed arbiter request (the proxy's default prompt over N answers), as one measured request (a consortium's critical path, straight to a provider); -stream does not apply")
	judges := fs.Int("judges", 0, "with -critical: then N JSON judge requests at once instead of the streamed one (a rank consortium's critical path; the fake needs -rank)")
	promptFile := fs.String("prompts", "", "ask the prompts of this `file` (one a line, blank lines skipped), the next one per request, round and round, instead of one prompt again and again")
	vary := fs.Bool("vary", false, "number each request's prompt (\"… (request 17)\"), so that no two of 10,000 requests are equal")
	fs.Parse(args)
	if *base == "" || *model == "" {
		return fmt.Errorf("load needs -base and -model")
	}
	if *critical > 0 && (*promptFile != "" || *vary) {
		return fmt.Errorf("-prompts and -vary do not apply to -critical")
	}
	prompts := []string{bench.Prompt(*size)}
	if *promptFile != "" {
		var err error
		if prompts, err = readPrompts(*promptFile); err != nil {
			return err
		}
	}
	t := target{base: *base, model: *model}
	t.hdr = http.Header{}
	if *key != "" {
		t.hdr.Set("Authorization", "Bearer "+*key)
	}
	if *events {
		t.hdr.Set(eventsHeader, "true")
	}
	client := bench.NewClient(*clients)
	req := t.request(*stream, *size)
	if *vary {
		prompts = numbered(prompts, 10000)
	}
	if len(prompts) > 1 {
		req.Bodies = bench.ChatBodies(t.model, *stream, prompts)
	}
	if *critical > 0 {
		req = criticalPath(t, *critical, *judges, *size)
	}
	bench.Sequential(context.Background(), client, req, 5) // warm up
	res := bench.Concurrent(context.Background(), client, req, *clients, *duration)
	fmt.Printf("%d requests, %d errors, %.0f req/s; p50 %v p90 %v p99 %v max %v\n", res.Requests, res.Errors, res.Throughput(),
		res.Quantile(0.5), res.Quantile(0.9), res.Quantile(0.99), res.Max())
	if res.FirstErr != "" {
		fmt.Printf("first error: %s\n", res.FirstErr)
	}
	return nil
}

// readPrompts reads a file of prompts, one a line, blank lines skipped.
func readPrompts(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	return out, nil
}

// numbered makes n prompts of prompts, round and round, each numbered
// ("… (request 17)").
func numbered(prompts []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s (request %d)", prompts[i%len(prompts)], i+1)
	}
	return out
}

// process is a child process serving on a loopback port.
type process struct {
	name string
	cmd  *exec.Cmd
	addr string
}

// start runs a command that prints "listening on ADDR" (the harness's own
// fake and hop) or "…listening on http://ADDR/v1" (the proxy) and waits
// for that line.
func start(name string, cmd *exec.Cmd) (*process, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on ") {
				line <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		addr := l[strings.Index(l, "listening on ")+len("listening on "):]
		addr = strings.TrimSuffix(strings.TrimPrefix(addr, "http://"), "/v1")
		return &process{name: name, cmd: cmd, addr: addr}, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start", name)
	}
}

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// rss returns a process's resident memory in bytes.
func (p *process) rss() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb * 1024
		}
	}
	return 0
}

// cpu returns the CPU time a process has used so far, user and system.
func (p *process) cpu() time.Duration { return cpuOf(strconv.Itoa(p.cmd.Process.Pid)) }

// cpuOf reads /proc/PID/stat's utime and stime (pid "self" for the
// harness itself), in clock ticks of 10 ms; 0 where /proc is missing.
func cpuOf(pid string) time.Duration {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in brackets, may hold spaces; the fields after it
	// are numbered from 3 (state): utime is 14th, stime 15th.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// env is the set of processes one harness run measures.
type env struct {
	fast, slow, long *process // fake upstreams: no latency; 50 ms; long streams
	hop, proxy       *process
	plain            *process // the proxy recording no scores (CONSORTIUM_SCORES=off)
	others           []*process
	dir              string
}

func (e *env) stop() {
	for _, p := range append([]*process{e.proxy, e.plain, e.hop, e.fast, e.slow, e.long}, e.others...) {
		if p != nil {
			p.stop()
		}
	}
	os.RemoveAll(e.dir)
}

func setUp() (*env, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "consortium-bench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	bin := filepath.Join(dir, "consortium")
	build := exec.Command("go", "build", "-o", bin, "./cmd/consortium")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return e, fmt.Errorf("building the proxy: %w", err)
	}
	if e.fast, err = start("fake", exec.Command(self, "fake")); err != nil {
		return e, err
	}
	// The consortiums' upstream. Its streams go in one write each: what
	// the consortium scenarios measure is the proxy's work around its
	// calls, and a frame-by-frame fake would spend 24 writes an arbiter
	// stream of the cores the proxy and the load generator share with it.
	if e.slow, err = start("fake 50ms", exec.Command(self, "fake", "-latency", "50ms", "-rank", "-burst")); err != nil {
		return e, err
	}
	// Long streams: a chunk every half second for ten minutes, so that
	// 10,000 of them open make 20,000 chunks a second for the proxy to
	// pass on, on two cores shared with the fake and the clients. The
	// fake serves HTTPS, and so HTTP/2, as real providers do: the proxy
	// multiplexes the streams over a few connections instead of holding
	// one a stream. The proxy trusts its throwaway certificate through
	// SSL_CERT_FILE.
	certFile, keyFile, err := writeCert(dir)
	if err != nil {
		return e, fmt.Errorf("the long-streams upstream's certificate: %w", err)
	}
	if e.long, err = start("fake long streams", exec.Command(self, "fake", "-chunks", "1200", "-token-interval", "500ms",
		"-tls-cert", certFile, "-tls-key", keyFile)); err != nil {
		return e, err
	}
	if e.hop, err = start("hop", exec.Command(self, "hop", "-target", "http://"+e.fast.addr)); err != nil {
		return e, err
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
providers:
  fast: {base_url: "http://%s/v1", max_retries: 0, timeout: 60s, idle_timeout: 120s}
  slow: {base_url: "http://%s/v1", max_retries: 0}
  long: {base_url: "https://%s/v1", max_retries: 0, timeout: 60s, idle_timeout: 120s}
consortia:
  council:
    members:
      - {model: slow/member, count: 3}
    arbiter: {model: slow/arbiter}
    max_iterations: 1
  ranked:
    strategy: rank
    members:
      - {model: slow/member, count: 3}
    judges:
      - {model: slow/judge-a}
      - {model: slow/judge-b}
`, e.fast.addr, e.slow.addr, e.long.addr)
	cfgPath := filepath.Join(dir, "consortium.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return e, err
	}
	proxy := exec.Command(bin, "serve", "-c", cfgPath)
	proxy.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile)
	if e.proxy, err = start("consortium", proxy); err != nil {
		return e, err
	}
	plain := exec.Command(bin, "serve", "-c", cfgPath)
	plain.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile, "CONSORTIUM_SCORES=off")
	if e.plain, err = start("consortium without scores", plain); err != nil {
		return e, err
	}
	return e, nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	duration := fs.Duration("duration", 5*time.Second, "length of each throughput measurement")
	rounds := fs.Int("rounds", 3, "interleaved rounds; each figure is the median over rounds")
	out := fs.String("out", "docs/benchmarks.md", "report file ('-' for stdout only)")
	streams := fs.Int("streams", 10000, "SSE streams held open in the memory scenario")
	only := fs.String("only", "", `measure these sections alone, comma-separated, and print them (no report file): "passthrough" (every target, every load shape), `+
		`"consortium" and "rank" (each consortium's overhead), "load" (the consortium under load), "streams" (open streams' memory)`)
	others := fs.Bool("others", false, "also measure LiteLLM and Portkey when they can be installed (see docs/benchmarks.md)")
	fs.Parse(args)

	r := &report{rounds: *rounds, duration: *duration, only: *only != ""}
	sections, consortia := map[string]bool{}, []string{}
	for _, name := range strings.Split(*only, ",") {
		switch name = strings.TrimSpace(name); name {
		case "passthrough", "load", "streams":
			sections[name] = true
		case "":
		default:
			consortia = append(consortia, name)
		}
	}
	all := *only == ""
	var err error
	if len(consortia) > 0 || all {
		if r.consortia, err = consortiaNamed(strings.Join(consortia, ",")); err != nil {
			return err
		}
	}
	r.passthrough = all || sections["passthrough"]
	if all || sections["load"] {
		for _, n := range underLoadClients {
			r.loads = append(r.loads, &underLoad{clients: n})
		}
	}
	var limit uint64
	limit, r.hardLimit, err = raiseFileLimit(*streams)
	if err != nil {
		return err
	}
	// The proxy holds a socket a stream (its upstream connections are
	// few, multiplexed over HTTP/2); what the limit cannot hold would fail
	// for want of descriptors, not for the proxy's sake.
	if fit := int(limit) - fdReserve; *streams > fit {
		log.Printf("open files: the limit (%d) holds %d streams of the %d asked for", limit, fit, *streams)
		r.fdLimit, *streams = limit, fit
	}
	e, err := setUp()
	if e != nil {
		defer e.stop()
	}
	if err != nil {
		return err
	}
	if *others {
		e.others = startOthers(e)
	}

	ctx := context.Background()
	targets := []target{
		{name: "upstream directly", base: "http://" + e.fast.addr, model: "m"},
		{name: "httputil.ReverseProxy hop", base: "http://" + e.hop.addr, model: "m"},
		{name: "consortium passthrough", base: "http://" + e.proxy.addr, model: "fast/m"},
	}
	for _, o := range e.others {
		targets = append(targets, target{name: o.name, base: "http://" + o.addr, model: otherModel(o.name), hdr: otherHeaders(o.name, e.fast.addr)})
	}
	log.Printf("measuring %d targets, %d rounds of %s", len(targets), *rounds, *duration)
	r.measure(ctx, targets, e)
	if all || sections["streams"] {
		r.memory(ctx, e, *streams)
	}
	text := r.markdown()
	if r.only {
		fmt.Print(text)
		return nil
	}
	fmt.Print(text)
	if *out != "-" {
		// bench batch's section is measured apart; it stays.
		if kept := keptSection(*out); kept != "" {
			text = strings.TrimRight(text, "\n") + "\n\n" + kept
		}
		return os.WriteFile(*out, []byte(text), 0o644)
	}
	return nil
}

// raiseFileLimit lets the harness and the processes it starts (which
// inherit the limit) hold the open-streams scenario's sockets: each
// stream is a connection from the harness to the proxy, and the proxy
// reaches the fake over HTTPS with HTTP/2, many streams to a connection,
// so the harness and the proxy each hold about one descriptor a stream.
// (Over a plain-HTTP/1.1 upstream the proxy would hold two.) Raising the
// hard limit needs CAP_SYS_RESOURCE; without it the soft limit goes as
// high as the hard one allows and the scenario reports what opened.
// It returns the limit it set and the hard limit.
func raiseFileLimit(streams int) (limit, hard uint64, err error) {
	want := uint64(streams + 4096)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, lim.Max, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return want, want, nil
		}
		log.Printf("open files: hard limit %d, fewer than %d streams need; raising it was refused", lim.Max, streams)
	}
	lim.Cur = min(want, lim.Max)
	return lim.Cur, lim.Max, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// fdReserve is how many of the proxy's open files the streams scenario
// leaves for everything but its streams' sockets.
const fdReserve = 1000

// machine describes where the figures were taken.
func machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s %s/%s", cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
