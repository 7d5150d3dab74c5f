package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/batch"
	"github.com/consortium-dev/consortium/internal/config"
)

// The batch commands (dataset select, dataset generate, eval) run
// in-process: they build what serve builds with internal/app, call the
// providers and consortiums directly, and leave the work itself to
// internal/batch. This file holds what they share.

// exitInterrupted is the exit code of a batch command stopped by SIGINT
// or SIGTERM, as a shell reports a process ended by SIGINT.
const exitInterrupted = 130

// batchFlags parses a batch command's flags with -c and --demo added;
// required names the flags that must be set. ok is false when the command
// should exit with code (--help: 0, a bad or missing flag: 2).
func batchFlags(name string, args []string, stdout, stderr io.Writer, define func(*flag.FlagSet), required ...string) (o *options, code int, ok bool) {
	return parseCommand(name, args, stdout, stderr, func(fs *flag.FlagSet, _ *options) { define(fs) }, required...)
}

// batchEnv is what a batch command runs with: the configuration, the
// built app, the progress display, and the two stops of Ctrl-C.
type batchEnv struct {
	cfg      *config.Config
	app      *app.App
	progress batch.Progress
	// stop closes on the first SIGINT or SIGTERM: no new item starts.
	// ctx ends on the second: the items in flight are abandoned.
	stop   <-chan struct{}
	ctx    context.Context
	closer []func()
}

// open loads the configuration, starts the demo provider for --demo (as
// serve does), builds the app and catches the signals. On failure it has
// printed why and returns the exit code.
func openBatch(name string, o *options, stderr io.Writer) (*batchEnv, int) {
	cfg, err := load(o)
	if err != nil {
		printProblems(stderr, err)
		return nil, 1
	}
	env := &batchEnv{cfg: cfg, progress: batch.Progress{W: stderr, TTY: isTerminal(stderr)}}
	if cfg.Demo {
		closeDemo, err := serveDemo(cfg)
		if err != nil {
			printProblems(stderr, err)
			return nil, 1
		}
		env.closer = append(env.closer, closeDemo)
	}
	// Only what needs attention reaches the log: breakers opening,
	// the store failing.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(app.Options{Config: cfg, Logger: logger})
	if err != nil {
		env.close()
		fmt.Fprintf(stderr, "consortium %s: %v\n", name, err)
		return nil, 1
	}
	// Close flushes what the runs queued (the scores) before the demo
	// provider goes.
	env.closer = append(env.closer, func() { a.Close() })
	env.app = a

	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-signals:
		case <-done:
			return
		}
		fmt.Fprintf(stderr, "consortium %s: stopping: the items in flight finish and are written (interrupt again to abandon them)\n", name)
		close(stop)
		select {
		case <-signals:
			fmt.Fprintf(stderr, "consortium %s: abandoning the items in flight\n", name)
			cancel()
		case <-done:
		}
	}()
	env.closer = append(env.closer, func() { signal.Stop(signals); close(done); cancel() })
	env.ctx, env.stop = ctx, stop
	return env, 0
}

// openJob does what every batch command does first: it checks --out,
// reads --in and opens the batch environment. On failure it has printed
// why, env is nil and code is the exit code (2 for --out, else 1).
func openJob(name string, o *options, in, out string, stderr io.Writer) (items []batch.Item, env *batchEnv, code int) {
	if !checkOut(name, in, out, stderr) {
		return nil, nil, 2
	}
	items, ok := readInput(name, in, stderr)
	if !ok {
		return nil, nil, 1
	}
	env, code = openBatch(name, o, stderr)
	return items, env, code
}

// consortium returns the engine of the consortium --model names, or says
// why there is none.
func (e *batchEnv) consortium(name, model string, stderr io.Writer) (*consortia.Engine, bool) {
	engine, ok := e.app.Engine(model)
	if !ok {
		fmt.Fprintf(stderr, "consortium %s: %s\n", name, notConsortium(e.cfg, model))
	}
	return engine, ok
}

// close releases what openBatch made, the last made first.
func (e *batchEnv) close() {
	for _, c := range slices.Backward(e.closer) {
		c()
	}
}

// interrupted reports whether the first signal came.
func (e *batchEnv) interrupted() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

// consortiumNames lists the configured consortiums, for messages.
func consortiumNames(cfg *config.Config) string {
	if len(cfg.ConsortiumOrder) == 0 {
		return "none are configured"
	}
	return "configured: " + strings.Join(cfg.ConsortiumOrder, ", ")
}

// notConsortium says why --model names no consortium.
func notConsortium(cfg *config.Config, model string) string {
	if _, _, ok := config.SplitRef(model); ok {
		return fmt.Sprintf("--model %q is a provider/model, not a consortium; %s", model, consortiumNames(cfg))
	}
	return fmt.Sprintf("--model %q is not a consortium (%s)", model, consortiumNames(cfg))
}

// readInput reads --in, saying what is wrong with it.
func readInput(name, path string, stderr io.Writer) ([]batch.Item, bool) {
	items, err := batch.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "consortium %s: --in %v\n", name, err)
		return nil, false
	}
	return items, true
}

// checkOut refuses an --out that is the input file, a directory, or in a
// directory that does not exist, before any call: found at the first
// write, it would waste the calls made before it.
func checkOut(name, in, out string, stderr io.Writer) bool {
	if out == "" {
		return true
	}
	a, errA := os.Stat(in)
	b, errB := os.Stat(out)
	switch dir := filepath.Dir(out); {
	case errA == nil && errB == nil && os.SameFile(a, b):
		fmt.Fprintf(stderr, "consortium %s: --out %s is the input file; choose another\n", name, out)
	case errB == nil && b.IsDir():
		fmt.Fprintf(stderr, "consortium %s: --out %s is a directory; name a file\n", name, out)
	case errors.Is(errB, fs.ErrNotExist) && !isDir(dir):
		fmt.Fprintf(stderr, "consortium %s: --out %s: %s: no such directory\n", name, out, dir)
	default:
		return true
	}
	return false
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// finish reports a job's failures and interruption and returns its exit
// code: 0 when every item is done, 1 when any failed, 130 when stopped.
func finish(name string, rep *batch.Report, out string, err error, interrupted bool, stderr io.Writer) int {
	const shown = 20
	for i, f := range rep.Failures {
		if i == shown {
			fmt.Fprintf(stderr, "  ... and %d more\n", len(rep.Failures)-shown)
			break
		}
		if i == 0 {
			fmt.Fprintf(stderr, "consortium %s: %d item(s) failed:\n", name, len(rep.Failures))
		}
		fmt.Fprintf(stderr, "  id %s (line %d): %s\n", f.ID, f.Line, f.Error)
	}
	if len(rep.Failures) > 0 && out != "" {
		fmt.Fprintf(stderr, "the failures are listed in %s; run the same command again to retry them\n", batch.ErrorsPath(out))
	}
	if err != nil {
		fmt.Fprintf(stderr, "consortium %s: %v\n", name, err)
		return 1
	}
	if interrupted || rep.Interrupted {
		left := rep.Total - rep.Skipped - rep.Done - len(rep.Failures)
		if out == "" {
			fmt.Fprintf(stderr, "consortium %s: interrupted with %d item(s) not done (with --out, a rerun would resume)\n", name, left)
		} else {
			fmt.Fprintf(stderr, "consortium %s: interrupted with %d item(s) not done; run the same command again to resume\n", name, left)
		}
		return exitInterrupted
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}
