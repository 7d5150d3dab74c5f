package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/consortium-dev/consortium/internal/batch"
	"github.com/consortium-dev/consortium/internal/config"
)

func init() { commands["eval"] = evalHelp }

const evalHelp = `Usage: consortium eval -c FILE --model CONSORTIUM --in FILE [--out FILE] [--concurrency 8] [--match exact|contains|numeric|regex]

Answers every item with each member model on its own (for a cascade: each
tier) and with the consortium, scores the answers, and prints one row per
model and one for the consortium: the mean score with a 95% bootstrap
interval, mean latency, tokens and cost (when the usage carries cost_usd).
Items with a "reference" are scored by --match (1 or 0); others by the
consortium's judges (or its arbiter) ranking every answer blind (normalized
Borda points, 0..1). With --out, every item's answers and scores are kept
there, and a rerun with the same --out skips the finished items and
reports over all of them.

  -c FILE           the configuration file
  --demo            add the demo provider and consortiums (no keys)
  --model NAME      the consortium evaluated
  --in FILE         .jsonl lines {"id", "prompt" or "messages", "reference"},
                    or .txt, one prompt a line
  --out FILE        every item's answers and scores (JSON lines, appended)
  --concurrency N   items in flight at once (default 8)
  --match M         exact (default), contains, numeric (the answer's last
                    number) or regex (the reference is a regexp), after
                    normalizing as vote does (a vote consortium's extract
                    first, except for regex)

Failed items are listed at the end (and in OUT.errors.jsonl) and make the
exit status 1.
`

func eval(args []string, stdout, stderr io.Writer) int {
	const name = "eval"
	var (
		model, in, out, match string
		concurrency           int
	)
	o, code, ok := batchFlags(name, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&model, "model", "", "")
		fs.StringVar(&in, "in", "", "")
		fs.StringVar(&out, "out", "", "")
		fs.StringVar(&match, "match", "exact", "")
		fs.IntVar(&concurrency, "concurrency", 8, "")
	}, "model", "in")
	if !ok {
		return code
	}
	switch {
	case !slices.Contains(batch.Matches, match):
		fmt.Fprintf(stderr, "consortium %s: --match %q is not %s\n", name, match, strings.Join(batch.Matches, ", "))
		return 2
	case concurrency < 1:
		fmt.Fprintf(stderr, "consortium %s: --concurrency %d is below 1\n", name, concurrency)
		return 2
	}
	items, env, code := openJob(name, o, in, out, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	engine, ok := env.consortium(name, model, stderr)
	if !ok {
		return 1
	}
	solo, err := env.app.Solo(model)
	if err != nil {
		fmt.Fprintf(stderr, "consortium %s: %v\n", name, err)
		return 1
	}
	e := &batch.Eval{Job: batch.Job{Concurrency: concurrency, Progress: env.progress, Stop: env.stop}, Consortium: engine, Match: match}
	for _, s := range solo {
		e.Members = append(e.Members, s)
	}
	refs, prompt := judgesOf(env.cfg, model)
	for _, ref := range refs {
		p, m, _ := config.SplitRef(ref)
		if provider, ok := env.app.Provider(p); ok {
			e.Judges = append(e.Judges, batch.Judge{Ref: ref, Model: m, Caller: provider})
		}
	}
	e.JudgePrompt = prompt
	if x := env.cfg.Consortia[model].Extract; x != "" {
		// Validated with the configuration: only vote has one.
		if e.Extract, err = regexp.Compile(x); err != nil {
			fmt.Fprintf(stderr, "consortium %s: extract of %s: %v\n", name, model, err)
			return 1
		}
	}
	var output *batch.Output
	if out != "" {
		if output, err = batch.OpenOutput(out, false); err != nil {
			fmt.Fprintf(stderr, "consortium %s: --out %v\n", name, err)
			return 1
		}
	}
	rep, err := e.Run(env.ctx, items, output)
	if output != nil {
		if cerr := output.Close(); err == nil {
			err = cerr
		}
	}
	if rep == nil {
		if ie, ok := errors.AsType[*batch.InputError](err); ok {
			ie.Path = "--in " + in // its references, as readInput names the file
		}
		fmt.Fprintf(stderr, "consortium %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s on %s: %d items scored (%d by --match %s, %d by judges)\n", model, in, rep.Items, rep.ByMatch, match, rep.ByJudges)
	rep.WriteTable(stdout)
	return finish(name, &rep.Report, out, err, env.interrupted(), stderr)
}

// judgesOf returns who judges eval's items without a reference for a
// consortium, and their prompt: its judges, else its arbiter; for a
// cascade, those of its first tier that has any.
func judgesOf(cfg *config.Config, name string) ([]string, string) {
	c := cfg.Consortia[name]
	if c == nil {
		return nil, ""
	}
	var refs []string
	for _, j := range c.Judges {
		refs = append(refs, j.Model)
	}
	if len(refs) == 0 && c.Arbiter.Model != "" {
		refs = []string{c.Arbiter.Model}
	}
	if len(refs) > 0 {
		return refs, c.JudgePrompt
	}
	for _, t := range c.Tiers {
		if t != name {
			if refs, prompt := judgesOf(cfg, t); len(refs) > 0 {
				return refs, prompt
			}
		}
	}
	return nil, ""
}
