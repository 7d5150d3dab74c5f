package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/consortium-dev/consortium/internal/batch"
	"github.com/consortium-dev/consortium/internal/config"
)

func init() {
	commands["dataset"] = datasetHelp
	commands["dataset select"] = selectHelp
	commands["dataset generate"] = generateHelp
}

const datasetHelp = `Usage: consortium dataset select   -c FILE --embed provider/model --in PROMPTS --out FILE [--max N] [--tripwire 0.9] [--method centroid|fps]
       consortium dataset generate -c FILE --model CONSORTIUM --in FILE --out FILE [--concurrency 8] [--format native|openai]

Builds a dataset from prompts: select picks the most diverse by their
embeddings, generate answers each with a consortium. See
"consortium dataset select --help", "consortium dataset generate --help"
and docs/datasets.md.
`

const selectHelp = `Usage: consortium dataset select -c FILE --embed provider/model --in PROMPTS --out FILE [--max N] [--tripwire 0.9] [--method centroid|fps]

Embeds every prompt (exact duplicates dropped first) through the provider's
embeddings endpoint, then selects the most diverse: centroid (the prompt
least similar to the mean of those selected so far, each time) or fps
(the prompt whose highest similarity to any selected one is lowest). Each
output line is the input line plus "selection": {"order", "similarity"}, in
selection order; --out is written whole at the end. The embeddings are
cached in OUT.embeddings, so a rerun embeds nothing again.

  -c FILE              the configuration file
  --demo               add the demo provider (demo/alpha embeds; no keys)
  --embed REF          the embeddings model, provider/model
  --in PROMPTS         .jsonl lines {"id", "prompt"} or {"id", "messages"},
                       or .txt, one prompt a line
  --out FILE           the selected lines (JSON lines)
  --max N              select at most N (default: no bound)
  --tripwire S         stop before a pick more similar than S, 0..1 (default 0.9)
  --method M           centroid (default) or fps

A malformed input line refuses the whole file, with each bad line's number.
Exit 0 when done, 1 on an error, 130 when interrupted.
`

const generateHelp = `Usage: consortium dataset generate -c FILE --model CONSORTIUM --in FILE --out FILE [--concurrency 8] [--format native|openai]

Answers every input item with the consortium and appends one line per item
to --out: {"id", "messages": [...the prompt..., the answer], "consortium":
{...}} (native), or only {"messages"} (openai, the fine-tuning format; the
finished ids are then kept in OUT.progress). Run it again with the same
--out to resume: finished ids are skipped. Ctrl-C stops after the items in
flight are written. Failed items are listed at the end and in
OUT.errors.jsonl, and make the exit status 1.

  -c FILE           the configuration file
  --demo            add the demo provider and consortiums (no keys)
  --model NAME      the consortium that answers
  --in FILE         .jsonl lines {"id", "prompt"} or {"id", "messages"}, or
                    .txt, one prompt a line
  --out FILE        the answers (JSON lines, appended)
  --concurrency N   items in flight at once (default 8)
  --format F        native (default) or openai
`

func dataset(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "consortium dataset: select or generate?\n\n%s", datasetHelp)
		return 2
	}
	switch args[0] {
	case "select":
		return datasetSelect(args[1:], stdout, stderr)
	case "generate":
		return datasetGenerate(args[1:], stdout, stderr)
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, datasetHelp)
		return 0
	}
	fmt.Fprintf(stderr, "consortium dataset: unknown command %q\n\n%s", args[0], datasetHelp)
	return 2
}

func datasetSelect(args []string, stdout, stderr io.Writer) int {
	const name = "dataset select"
	var (
		embed, in, out, method string
		max                    int
		tripwire               float64
		maxSet                 bool
	)
	o, code, ok := batchFlags(name, args, stdout, stderr, func(fs *flag.FlagSet) {
		// --max absent is no bound; given, it must be a bound.
		fs.Func("max", "", func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil {
				return errors.New("not a whole number")
			}
			max, maxSet = n, true
			return nil
		})
		fs.StringVar(&embed, "embed", "", "")
		fs.StringVar(&in, "in", "", "")
		fs.StringVar(&out, "out", "", "")
		fs.StringVar(&method, "method", "centroid", "")
		fs.Float64Var(&tripwire, "tripwire", 0.9, "")
	}, "embed", "in", "out")
	if !ok {
		return code
	}
	switch {
	case !(tripwire >= 0 && tripwire <= 1): // NaN too
		fmt.Fprintf(stderr, "consortium %s: --tripwire %v is outside 0..1\n", name, tripwire)
		return 2
	case maxSet && max <= 0:
		fmt.Fprintf(stderr, "consortium %s: --max %d is not above 0\n", name, max)
		return 2
	case method != "centroid" && method != "fps":
		fmt.Fprintf(stderr, "consortium %s: --method %q is not %s\n", name, method, strings.Join(batch.Methods, " or "))
		return 2
	}
	items, env, code := openJob(name, o, in, out, stderr)
	if env == nil {
		return code
	}
	defer env.close()
	providerName, model, ok := config.SplitRef(embed)
	if !ok {
		fmt.Fprintf(stderr, "consortium %s: --embed %q is not provider/model\n", name, embed)
		return 2
	}
	pc, known := env.cfg.Providers[providerName]
	provider, _ := env.app.Provider(providerName)
	switch {
	case !known || provider == nil:
		fmt.Fprintf(stderr, "consortium %s: --embed %q: no provider %q is configured (%s)\n", name, embed, providerName, strings.Join(env.cfg.ProviderOrder, ", "))
		return 1
	case pc.Type == "anthropic":
		fmt.Fprintf(stderr, "consortium %s: --embed %q: the provider %s is of type anthropic, and Anthropic has no embeddings endpoint; use an OpenAI-compatible provider's embeddings model\n", name, embed, providerName)
		return 1
	}
	s := &batch.Select{Embedder: provider, Model: model, Ref: embed, Method: method, Max: max, Tripwire: tripwire, Progress: env.progress, Stop: env.stop}
	rep, err := s.Run(env.ctx, items, out)
	if err != nil {
		if errors.Is(err, batch.ErrInterrupted) || env.interrupted() {
			fmt.Fprintf(stderr, "consortium %s: interrupted; the vectors embedded so far are cached in %s, and nothing was written to %s; run the same command again to go on\n", name, batch.CachePath(out), out)
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "consortium %s: %v\n", name, err)
		if rep != nil && rep.Embedded > 0 {
			fmt.Fprintf(stderr, "the %d vectors embedded are cached in %s; nothing was written to %s\n", rep.Embedded, batch.CachePath(out), out)
		}
		return 1
	}
	why := map[string]string{
		"all":      "every prompt",
		"max":      fmt.Sprintf("stopped at --max %d", max),
		"tripwire": fmt.Sprintf("stopped at the tripwire %v", tripwire),
	}[rep.Stop]
	fmt.Fprintf(stdout, "selected %d of %d prompts (%s, %s; %d exact duplicates dropped) into %s\n", len(rep.Picks), rep.Total, method, why, rep.Duplicates, out)
	fmt.Fprintf(stdout, "embeddings: %d embedded, %d from the cache, %d dimensions\n", rep.Embedded, rep.Cached, rep.Dims)
	return 0
}

func datasetGenerate(args []string, stdout, stderr io.Writer) int {
	const name = "dataset generate"
	var (
		model, in, out, format string
		concurrency            int
	)
	o, code, ok := batchFlags(name, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&model, "model", "", "")
		fs.StringVar(&in, "in", "", "")
		fs.StringVar(&out, "out", "", "")
		fs.StringVar(&format, "format", "native", "")
		fs.IntVar(&concurrency, "concurrency", 8, "")
	}, "model", "in", "out")
	if !ok {
		return code
	}
	switch {
	case format != "native" && format != "openai":
		fmt.Fprintf(stderr, "consortium %s: --format %q is not native or openai\n", name, format)
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
	output, err := batch.OpenOutput(out, format == "openai")
	if err != nil {
		fmt.Fprintf(stderr, "consortium %s: --out %v\n", name, err)
		return 1
	}
	g := &batch.Generate{Job: batch.Job{Concurrency: concurrency, Progress: env.progress, Stop: env.stop}, Consortium: engine, OpenAI: format == "openai"}
	rep, err := g.Run(env.ctx, items, output)
	if cerr := output.Close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(stdout, "%d of %d items answered by %s into %s (%d done now, %d by an earlier run, %d failed)\n", rep.Done+rep.Skipped, rep.Total, model, out, rep.Done, rep.Skipped, len(rep.Failures))
	return finish(name, rep, out, err, env.interrupted(), stderr)
}
