// Command consortium is an OpenAI-compatible gateway: plain provider/model
// names pass through to their provider, and consortiums (several models
// answering, one arbiter synthesizing) are served as virtual models.
//
// Usage:
//
//	consortium serve    [-c FILE] [--listen ADDR] [--demo] [--log-level LEVEL] [--log-format FORMAT]
//	consortium validate [-c FILE] [--demo] [--estimate]
//	consortium models   [-c FILE] [--demo]
//	consortium leaderboard [--url URL] [--key KEY] [CONSORTIUM]
//	consortium version
//	consortium dataset select   -c FILE --embed provider/model --in PROMPTS --out FILE [--max N] [--tripwire 0.9] [--method centroid|fps]
//	consortium dataset generate -c FILE --model CONSORTIUM --in FILE --out FILE [--concurrency 8] [--format native|openai]
//	consortium eval             -c FILE --model CONSORTIUM --in FILE [--out FILE] [--concurrency 8] [--match exact|contains|numeric|regex]
//	consortium help     [COMMAND]
package main

import (
	"cmp"
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
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const usage = `consortium: an OpenAI-compatible gateway for multi-model answers

Usage:
  consortium serve    [-c FILE] [--listen ADDR] [--demo] [--log-level LEVEL] [--log-format FORMAT]
  consortium validate [-c FILE] [--demo] [--estimate]
                                           exit 0, or 1 with every problem and its key path;
                                           --estimate: each consortium's calls, tokens and cost
  consortium models   [-c FILE] [--demo]   the model ids that /v1/models would list
  consortium leaderboard [--url URL] [--key KEY] [CONSORTIUM]
                                           a running proxy's leaderboard, as a table
  consortium version                       this binary's version (also --version)
  consortium dataset select   -c FILE --embed provider/model --in PROMPTS --out FILE [--max N] [--tripwire 0.9] [--method centroid|fps]
  consortium dataset generate -c FILE --model CONSORTIUM --in FILE --out FILE [--concurrency 8] [--format native|openai]
  consortium eval             -c FILE --model CONSORTIUM --in FILE [--out FILE] [--concurrency 8] [--match exact|contains|numeric|regex]
  consortium help     [COMMAND]            this text, or a command's (also COMMAND --help)

The configuration file is -c, else $CONSORTIUM_CONFIG, else ./consortium.yaml
if it exists, else the built-in defaults. See config.example.yaml.
`

// commands holds each command's help: its usage line, then its flags, each
// spelled as the usage line spells it.
var commands = map[string]string{
	"serve": `Usage: consortium serve [-c FILE] [--listen ADDR] [--demo] [--log-level LEVEL] [--log-format FORMAT]

Serves the OpenAI-compatible API until SIGINT or SIGTERM, then lets the
requests in flight finish (shutdown_timeout).

  -c FILE               the configuration file
  --listen ADDR         the address to listen on, over the file's listen
  --demo                add the built-in demo provider "demo" and a demo
                        consortium per strategy: demo (synthesize),
                        demo-rank, demo-vote and demo-cascade (canned
                        answers; no keys, no network)
  --log-level LEVEL     debug, info, warn or error, over the file's log.level
  --log-format FORMAT   text or json, over the file's log.format

The log goes to stderr; its "consortium listening" line gives the address.
When stdout is not a terminal, it gets one line for scripts:
"consortium listening on http://ADDR/v1". Then stdout gets the web
pages' address, "consortium pages on http://ADDR/ui/" (docs/ui.md).
`,
	"validate": `Usage: consortium validate [-c FILE] [--demo] [--estimate]

Reads the configuration as serve would and reports every problem with its
key path, and what is likely a mistake (no providers, a provider without its
key, the example's client keys); exits 0 only when there is neither. It
builds nothing and calls nothing.

  -c FILE   the configuration file
  --demo       validate as serve --demo would run: the demo provider and
               consortiums are added first, so the file may name demo/alpha
  --estimate   also print, per consortium, what POST /v1/consortium/estimate
               answers for one user message of 2000 characters with
               max_tokens 1000: the calls, tokens and cost in US dollars
`,
	"models": `Usage: consortium models [-c FILE] [--demo]

Prints the model ids /v1/models would list, one a line.

  -c FILE   the configuration file
  --demo    list as serve --demo would
`,
	"version": `Usage: consortium version

Prints this binary's version, commit and Go version (also --version).
`,
	"help": `Usage: consortium help [COMMAND]

Prints the usage of consortium, or of one command (also COMMAND --help).
`,
}

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
	case "dataset":
		return dataset(args[1:], stdout, stderr)
	case "eval":
		return eval(args[1:], stdout, stderr)
	case "leaderboard":
		return leaderboard(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if help, ok := commands[strings.Join(args[1:], " ")]; ok {
			fmt.Fprint(stdout, help)
			return 0
		}
		fmt.Fprintf(stderr, "consortium help: unknown command %q\n\n%s", args[1], usage)
		return 2
	}
	fmt.Fprintf(stderr, "consortium: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// version is this binary's version when the build sets it:
// go build -ldflags "-X main.version=v1.2.3" (make build does). Otherwise
// the module version Go recorded is used: v1.2.3 for
// go install github.com/consortium-dev/consortium/cmd/consortium@v1.2.3,
// "(devel)" for a build in a checkout.
var version string

// versionString is what version prints: the version, the commit it was
// built from (with -dirty for uncommitted changes) and the Go version.
func versionString() string {
	v, commit := version, ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		dirty := ""
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if commit != "" {
			commit = "commit " + commit + dirty + ", "
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("consortium %s (%s%s)", v, commit, runtime.Version())
}

// options are the flags of the commands.
type options struct {
	config    string
	demo      bool
	listen    string
	logLevel  string
	logFormat string
	estimate  bool
}

// parseFlags parses the flags of serve, validate and models. --help
// prints the command's help on stdout (code 0); a bad flag prints what is
// wrong and the help on stderr (code 2). ok is false when the command
// should exit with code.
func parseFlags(name string, args []string, stdout, stderr io.Writer) (o *options, code int, ok bool) {
	return parseCommand(name, args, stdout, stderr, func(fs *flag.FlagSet, o *options) {
		if name == "validate" {
			fs.BoolVar(&o.estimate, "estimate", false, "")
		}
		if name == "serve" {
			fs.StringVar(&o.listen, "listen", "", "")
			fs.StringVar(&o.logLevel, "log-level", "", "")
			fs.StringVar(&o.logFormat, "log-format", "", "")
		}
	})
}

// parseCommand parses a command's flags: -c and --demo, those define adds,
// and no argument. required names the flags that must be set. --help
// prints the command's help on stdout (code 0); a bad or missing flag
// prints what is wrong and the help on stderr (code 2). ok is false when
// the command should exit with code.
func parseCommand(name string, args []string, stdout, stderr io.Writer, define func(*flag.FlagSet, *options), required ...string) (o *options, code int, ok bool) {
	o = &options{}
	fs := flag.NewFlagSet("consortium "+name, flag.ContinueOnError)
	// The help is written by hand, spelled as the usage line spells the
	// flags; the flag package's own would say -listen.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.config, "c", "", "")
	fs.BoolVar(&o.demo, "demo", false, "")
	define(fs, o)
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, r := range required {
			if !set[r] {
				err = fmt.Errorf("--%s is required", r)
				break
			}
		}
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, commands[name])
		return nil, 0, false
	case err != nil:
		fmt.Fprintf(stderr, "consortium %s: %v\n\n%s", name, err, commands[name])
		return nil, 2, false
	}
	return o, 0, true
}

// load reads the configuration the flags and environment point at,
// checking arbiter prompts with the engine's own check (so that validate
// builds nothing), and adding the demo first for --demo.
func load(o *options) (*config.Config, error) {
	opts := []config.Option{config.WithPromptCheck(consortia.CheckPrompt), config.WithJudgePromptCheck(consortia.CheckJudgePrompt)}
	if o.demo {
		opts = append(opts, config.WithDemo())
	}
	return config.Load(config.Path(o.config, os.LookupEnv), os.LookupEnv, opts...)
}

// loadFor parses the flags of a command that only reads the configuration,
// and loads it; on failure it returns the exit code.
func loadFor(name string, args []string, stdout, stderr io.Writer) (*config.Config, int) {
	o, code, ok := parseFlags(name, args, stdout, stderr)
	if !ok {
		return nil, code
	}
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return nil, 1
	}
	return cfg, 0
}

func validate(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseFlags("validate", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	if len(cfg.Warnings) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", cfg.Source)
	} else {
		fmt.Fprintf(stdout, "%s: valid, but with %d warning(s)\n", cfg.Source, len(cfg.Warnings))
	}
	for _, name := range cfg.ProviderOrder {
		p := cfg.Providers[name]
		where := p.BaseURL
		if p.Demo {
			where = "built in, canned answers"
		}
		fmt.Fprintf(stdout, "provider %s (%s, %s) from %s\n", name, p.Type, where, p.Origin)
	}
	for _, name := range cfg.ConsortiumOrder {
		fmt.Fprintf(stdout, "consortium %s: %s\n", name, describeConsortium(cfg.Consortia[name]))
	}
	if o.estimate {
		if err := printEstimates(stdout, cfg); err != nil {
			fmt.Fprintf(stderr, "consortium validate: %v\n", err)
			return 1
		}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if len(cfg.Warnings) > 0 {
		return 1
	}
	return 0
}

func models(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadFor("models", args, stdout, stderr)
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

// newLogger builds the log the configuration and the flags ask for; the
// flags win.
func newLogger(w io.Writer, cfg config.Log, o *options) (*slog.Logger, error) {
	name, format := cmp.Or(o.logLevel, cfg.Level), cmp.Or(o.logFormat, cfg.Format)
	level, ok := config.LogLevel(name)
	if !ok {
		return nil, fmt.Errorf("--log-level %q is not debug, info, warn or error", name)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q is not %s", format, strings.Join(config.LogFormats, " or "))
}

func serve(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseFlags("serve", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	// Everything serve writes to stderr goes through the one background
	// writer, in order.
	logOut := newLogWriter(stderr)
	defer logOut.Close()
	stderr = logOut
	logger, err := newLogger(stderr, cfg.Log, o)
	if err != nil {
		fmt.Fprintf(stderr, "consortium serve: %v\n", err)
		return 2
	}
	if o.listen != "" {
		cfg.Listen = o.listen
	}
	if cfg.Demo {
		closeDemo, err := serveDemo(cfg)
		if err != nil {
			printProblems(stderr, err)
			return 1
		}
		defer closeDemo()
		logger.Warn("DEMO MODE: demo providers and consortiums are built-in fakes with canned answers, not real models", "models", demoRefs(cfg))
	}
	if err := checkOpenRelay(cfg); err != nil {
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

	// CONSORTIUM_SCORES=off records no scores (the benchmark compares
	// runs with and without them).
	srv, err := app.New(app.Options{Config: cfg, Logger: logger, NoScores: os.Getenv("CONSORTIUM_SCORES") == "off"})
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
		logger.Info("provider", "name", name, "type", p.Type, "base_url", p.BaseURL, "from", p.Origin, "models", len(p.Models), "demo", p.Demo)
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
	// Signals are caught before the address is announced: whoever read it
	// may stop the proxy at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	addr := shownAddr(cfg.Listen, ln.Addr())
	logger.Info("consortium listening", "addr", addr, "url", "http://"+addr+"/v1", "pages", "http://"+addr+"/ui/", "config", cfg.Source)
	if !isTerminal(stdout) {
		// Scripts and the test harnesses read the URL here; a person at a
		// terminal has the log line.
		fmt.Fprintf(stdout, "consortium listening on http://%s/v1\n", addr)
	}
	// The web pages' address, for a person: the line after the URL, which
	// scripts that read the first line never wait for.
	fmt.Fprintf(stdout, "consortium pages on http://%s/ui/\n", addr)

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

// shownAddr is the listen address as the configuration gives it
// (0.0.0.0:8093, not Go's [::]:8093), with the port the listener got when
// it asked for port 0. An empty host listens everywhere: 0.0.0.0.
func shownAddr(given string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(given)
	if err != nil {
		return bound.String()
	}
	if _, boundPort, err := net.SplitHostPort(bound.String()); err == nil && (port == "0" || port == "") {
		port = boundPort
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// serveDemo starts the in-process demo provider of --demo and points the
// configuration's demo providers at it; the caller calls close when done.
func serveDemo(cfg *config.Config) (close func(), err error) {
	demo := upstreamtest.NewServer()
	demo.SetDefault(upstreamtest.Demo())
	demo.SetModels(config.DemoModels()...)
	demo.SetRecordLimit(-1) // a long-running demo keeps no requests
	if err := cfg.ServeDemo(demo.URL); err != nil {
		demo.Close()
		return nil, err
	}
	return demo.Close, nil
}

// demoRefs lists the models of the demo providers, for the log.
func demoRefs(cfg *config.Config) []string {
	var refs []string
	for _, name := range cfg.ProviderOrder {
		if p := cfg.Providers[name]; p.Demo {
			for _, m := range p.Models {
				refs = append(refs, name+"/"+m)
			}
		}
	}
	return refs
}

// checkOpenRelay refuses to serve without client keys on an address others
// can reach, unless the operator said so: otherwise a misplaced deployment
// is an open relay billing the operator's provider keys. Demo providers
// alone have nothing to bill and are exempt.
func checkOpenRelay(cfg *config.Config) error {
	if len(cfg.Auth.Keys) > 0 || cfg.Auth.AllowOpen || isLoopback(cfg.Listen) {
		return nil
	}
	if !slices.ContainsFunc(cfg.ProviderOrder, func(name string) bool { return !cfg.Providers[name].Demo }) && cfg.Demo {
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

// describeConsortium says in one line what validate found a consortium to
// be: its strategy and the models it calls.
func describeConsortium(c *config.Consortium) string {
	strategy := c.Strategy
	if strategy == "" {
		strategy = "synthesize"
	}
	var judges []string
	for _, j := range c.Judges {
		judges = append(judges, j.Model)
	}
	switch strategy {
	case "cascade":
		return fmt.Sprintf("cascade, tiers %s", strings.Join(c.Tiers, " > "))
	case "rank":
		s := fmt.Sprintf("rank, %d member instances, judges %s", c.Instances(), strings.Join(judges, ", "))
		if c.Arbiter.Model != "" {
			s += ", arbiter " + c.Arbiter.Model
		}
		return s
	case "vote":
		s := fmt.Sprintf("vote, %d member instances", c.Instances())
		if len(judges) > 0 {
			s += ", tie-break judges " + strings.Join(judges, ", ")
		} else if c.Arbiter.Model != "" {
			s += ", tie-break arbiter " + c.Arbiter.Model
		}
		return s
	}
	return fmt.Sprintf("synthesize, %d member instances, arbiter %s", c.Instances(), c.Arbiter.Model)
}
