// Command consortium is an OpenAI-compatible gateway: plain provider/model
// names pass through to their provider, and consortiums (several models
// answering, one arbiter synthesizing) are served as virtual models.
//
// Usage:
//
//	consortium serve    [-c FILE] [--listen ADDR] [--demo]
//	consortium validate [-c FILE]
//	consortium models   [-c FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const usage = `consortium: an OpenAI-compatible gateway for multi-model answers

Usage:
  consortium serve    [-c FILE] [--listen ADDR] [--demo]
  consortium validate [-c FILE]     exit 0, or 1 with every problem and its key path
  consortium models   [-c FILE]     the model ids that /v1/models would list

The configuration file is -c, else $CONSORTIUM_CONFIG, else ./consortium.yaml
if it exists, else the built-in defaults. See config.example.yaml.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "models":
		return models(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "consortium: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// options are the flags the subcommands share.
type options struct {
	config string
	listen string
	demo   bool
}

func parseFlags(name string, args []string, stderr io.Writer, serve bool) (*options, error) {
	var o options
	fs := flag.NewFlagSet("consortium "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "c", "", "configuration `file`")
	fs.StringVar(&o.config, "config", "", "configuration `file` (same as -c)")
	if serve {
		fs.StringVar(&o.listen, "listen", "", "listen `address`, overriding the file's listen")
		fs.BoolVar(&o.demo, "demo", false, "add the built-in demo provider (no keys, no network)")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return &o, nil
}

// load reads the configuration the flags and environment point at.
func load(o *options) (*config.Config, error) {
	return config.Load(config.Path(o.config, os.LookupEnv), os.LookupEnv)
}

// loadFor parses the flags of a subcommand that only reads the
// configuration, and loads it; on failure it returns the exit code.
func loadFor(name string, args []string, stderr io.Writer) (*config.Config, int) {
	o, err := parseFlags(name, args, stderr, false)
	if err != nil {
		return nil, 2
	}
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return nil, 1
	}
	return cfg, 0
}

func validate(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadFor("validate", args, stderr)
	if cfg == nil {
		return code
	}
	// Building the server checks what the schema cannot, such as the
	// fields a custom arbiter prompt uses; it starts nothing.
	srv, err := app.New(app.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintf(stderr, "consortium: %v\n", err)
		return 1
	}
	srv.Close()
	fmt.Fprintf(stdout, "%s: ok\n", cfg.Source)
	for _, name := range cfg.ProviderOrder {
		p := cfg.Providers[name]
		fmt.Fprintf(stdout, "provider %s (%s, %s) from %s\n", name, p.Type, p.BaseURL, p.Origin)
	}
	for _, name := range cfg.ConsortiumOrder {
		fmt.Fprintf(stdout, "consortium %s: %d member instances, arbiter %s\n", name, cfg.Consortia[name].Instances(), cfg.Consortia[name].Arbiter.Model)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return 0
}

func models(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadFor("models", args, stderr)
	if cfg == nil {
		return code
	}
	for _, m := range app.Models(cfg) {
		fmt.Fprintln(stdout, m.ID)
	}
	return 0
}

func printProblems(w io.Writer, err error) {
	var problems config.Problems
	if errors.As(err, &problems) {
		fmt.Fprintf(w, "consortium: the configuration has %d problem(s):\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "consortium: %v\n", err)
}

// demoModels are the models the built-in demo provider serves.
var demoModels = []string{"alpha", "beta", "gamma"}

func serve(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags("serve", args, stderr, true)
	if err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	realProviders := len(cfg.Providers)
	if o.demo {
		demo := upstreamtest.NewServer()
		demo.SetDefault(upstreamtest.Demo())
		demo.SetModels(demoModels...)
		demo.SetRecordLimit(-1) // a long-running demo keeps no requests
		defer demo.Close()
		if err := cfg.AddDemo(demo.URL, append(demoModels, upstreamtest.DemoArbiter)); err != nil {
			printProblems(stderr, err)
			return 1
		}
		if err := cfg.AddDemoConsortium(demoModels, upstreamtest.DemoArbiter); err != nil {
			printProblems(stderr, err)
			return 1
		}
		logger.Warn("DEMO MODE: the provider \"demo\" and the consortium \"demo\" are built-in fakes with canned answers, not real models", "models", demoRefs())
	}
	if err := checkOpenRelay(cfg, realProviders); err != nil {
		fmt.Fprintf(stderr, "consortium: %v\n", err)
		return 1
	}

	if addr := os.Getenv("CONSORTIUM_PPROF"); addr != "" {
		_, stopPprof, err := servePprof(addr, logger)
		if err != nil {
			fmt.Fprintf(stderr, "consortium: CONSORTIUM_PPROF: %v\n", err)
			return 1
		}
		defer stopPprof()
	}

	srv, err := app.New(app.Options{Config: cfg, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "consortium: %v\n", err)
		return 1
	}
	defer srv.Close()
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}
	for _, name := range cfg.ProviderOrder {
		p := cfg.Providers[name]
		logger.Info("provider", "name", name, "type", p.Type, "base_url", p.BaseURL, "from", p.Origin, "models", len(p.Models))
	}
	logger.Info("store", "backend", cfg.Store.Backend, "ttl", cfg.Store.TTL)
	if len(cfg.Auth.Keys) == 0 {
		logger.Warn("no client keys configured: every request is served as tenant \"anonymous\"")
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "consortium: %v\n", err)
		return 1
	}
	hs := &http.Server{
		Handler: srv,
		// A client gets 10s to send its headers; the body's deadline is
		// set per request, and none is set on writes, so long streams
		// are not cut.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("consortium listening", "addr", ln.Addr().String(), "config", cfg.Source)
	fmt.Fprintf(stdout, "consortium listening on http://%s/v1\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "consortium: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	logger.Info("shutting down: no new connections; waiting for requests in flight", "timeout", cfg.ShutdownTimeout)
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("shutdown timeout passed; closing the remaining connections", "error", err)
		hs.Close()
	}
	<-served
	logger.Info("stopped")
	return 0
}

func demoRefs() []string {
	refs := make([]string, len(demoModels))
	for i, m := range demoModels {
		refs[i] = config.DemoProvider + "/" + m
	}
	return refs
}

// checkOpenRelay refuses to serve without client keys on an address others
// can reach, unless the operator said so: otherwise a misplaced deployment
// is an open relay billing the operator's provider keys. A demo with no
// real provider has nothing to bill and is exempt.
func checkOpenRelay(cfg *config.Config, realProviders int) error {
	if len(cfg.Auth.Keys) > 0 || cfg.Auth.AllowOpen || isLoopback(cfg.Listen) {
		return nil
	}
	if cfg.Demo && realProviders == 0 {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s without client keys: anyone who can reach it could spend your provider keys.\n"+
		"Add auth.keys to the configuration, listen on a loopback address (--listen 127.0.0.1:8080), or set auth.allow_open: true", cfg.Listen)
}

// isLoopback reports whether a listen address only accepts local
// connections.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
