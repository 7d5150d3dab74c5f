package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// fakeConfig starts the fake provider, answering every model after delay,
// and writes a configuration with it as provider "fake", an anthropic
// provider and a vote consortium "pair" over two of the fake's models.
func fakeConfig(t *testing.T, delay time.Duration) string {
	t.Helper()
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	fake.SetRecordLimit(-1)
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Delay: delay, Content: "Answer: " + fmt.Sprint(len(r.LastUserText()))}
	})
	return writeFile(t, fmt.Sprintf(`
providers:
  fake:
    base_url: %s
    models: [a, b]
  claude:
    type: anthropic
    base_url: http://127.0.0.1:9
    api_key: x
consortia:
  pair:
    strategy: vote
    members: [{model: fake/a}, {model: fake/b}]
`, fake.URL))
}

func writeInput(t *testing.T, name string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":"item-%03d","prompt":"question %d","reference":"%d"}`+"\n", i, i, len(fmt.Sprintf("question %d", i)))
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBatchBadInput(t *testing.T) {
	clean(t)
	cfg := fakeConfig(t, 0)
	in := writeInput(t, "in.jsonl", 3)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	malformed := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(malformed, []byte(`{"prompt":"ok"}`+"\n"+`{"prompt": nope}`+"\n"+`{"prompt":""}`+"\n"), 0o644)
	noReference := filepath.Join(dir, "open.txt")
	os.WriteFile(noReference, []byte("an open question\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"tripwire", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--tripwire", "1.5"}, 2, "--tripwire 1.5 is outside 0..1"},
		{"method", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--method", "kmeans"}, 2, `--method "kmeans"`},
		{"anthropic embeddings", []string{"dataset", "select", "-c", cfg, "--embed", "claude/x", "--in", in, "--out", out}, 1, "Anthropic has no embeddings endpoint"},
		{"unknown embed provider", []string{"dataset", "select", "-c", cfg, "--embed", "nope/x", "--in", in, "--out", out}, 1, `no provider "nope"`},
		{"missing flag", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in}, 2, "--out is required"},
		{"missing file", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", filepath.Join(dir, "none.jsonl"), "--out", out}, 1, "none.jsonl: no such file"},
		{"malformed line", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", malformed, "--out", out}, 1, "line 2: malformed JSON"},
		{"empty prompt", []string{"eval", "-c", cfg, "--model", "pair", "--in", malformed}, 1, "line 3: empty prompt"},
		{"model is a provider model", []string{"dataset", "generate", "-c", cfg, "--model", "fake/a", "--in", in, "--out", out}, 1, `"fake/a" is a provider/model, not a consortium; configured: pair`},
		{"model unknown", []string{"eval", "-c", cfg, "--model", "nope", "--in", in}, 1, `"nope" is not a consortium`},
		{"out is in", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in, "--out", in}, 2, "is the input file"},
		{"match", []string{"eval", "-c", cfg, "--model", "pair", "--in", in, "--match", "fuzzy"}, 2, `--match "fuzzy"`},
		{"no judges", []string{"eval", "-c", cfg, "--model", "pair", "--in", noReference}, 1, "open.txt: 1 problem(s), nothing was done:\n  line 1: no reference, and consortium pair has no judges or arbiter"},
		{"tripwire NaN", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--tripwire", "NaN"}, 2, "--tripwire NaN is outside 0..1"},
		{"max zero", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--max", "0"}, 2, "--max 0 is not above 0"},
		{"max negative", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--max", "-3"}, 2, "--max -3 is not above 0"},
		{"generate concurrency", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in, "--out", out, "--concurrency", "0"}, 2, "--concurrency 0 is below 1"},
		{"select out in a missing directory", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", filepath.Join(dir, "none", "out.jsonl")}, 2, "none: no such directory"},
		{"generate out in a missing directory", []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in, "--out", filepath.Join(dir, "none", "out.jsonl")}, 2, "none: no such directory"},
		{"eval out in a missing directory", []string{"eval", "-c", cfg, "--model", "pair", "--in", in, "--out", filepath.Join(dir, "none", "out.jsonl")}, 2, "none: no such directory"},
		{"select out is a directory", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", dir}, 2, "is a directory"},
		{"eval out is a directory", []string{"eval", "-c", cfg, "--model", "pair", "--in", in, "--out", dir}, 2, "is a directory"},
		{"max not a number", []string{"dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--max", "ten"}, 2, "--max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	for _, p := range []string{out, dir + ".embeddings", dir + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s written by a refused command: %v", p, err)
		}
	}
}

func TestBatchHelp(t *testing.T) {
	for _, args := range [][]string{{"help", "eval"}, {"eval", "--help"}, {"dataset", "select", "--help"}, {"help", "dataset", "generate"}, {"dataset", "--help"}} {
		code, out, _ := runCmd(args...)
		if code != 0 || !strings.HasPrefix(out, "Usage: consortium ") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	code, _, errOut := runCmd("dataset")
	if code != 2 || !strings.Contains(errOut, "select or generate") {
		t.Errorf("dataset: exit %d, %q", code, errOut)
	}
}

func TestEvalCommand(t *testing.T) {
	clean(t)
	cfg := fakeConfig(t, 0)
	in := writeInput(t, "in.jsonl", 20)
	out := filepath.Join(t.TempDir(), "eval.jsonl")
	code, stdout, errOut := runCmd("eval", "-c", cfg, "--model", "pair", "--in", in, "--out", out, "--match", "numeric")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, errOut)
	}
	for _, want := range []string{"20 items scored (20 by --match numeric", "fake/a ", "fake/b ", "pair (consortium)  1.000  [1.000, 1.000]"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("missing %q in:\n%s", want, stdout)
		}
	}
	if n := countLines(t, out); n != 20 {
		t.Errorf("%d lines in --out", n)
	}
}

func countLines(t *testing.T, path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

// startBatch runs the binary (this test binary as main) with args.
func startBatch(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "CONSORTIUM_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &stderr
}

// waitLines waits until path has at least n lines.
func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil && bytes.Count(data, []byte("\n")) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never reached %d lines", path, n)
}

// checkOutput checks every line of a generate --out is whole JSON and
// every id is there exactly once.
func checkOutput(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] != '\n' {
			t.Fatalf("a torn last line: %q", line)
		}
		if len(line) > 0 {
			var v struct{ ID string }
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				t.Fatalf("not JSON: %q", line)
			}
			seen[v.ID]++
		}
		if err != nil {
			break
		}
	}
	for i := range n {
		id := fmt.Sprintf("item-%03d", i)
		if seen[id] != 1 {
			t.Errorf("%s appears %d times", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d ids; want %d", len(seen), n)
	}
}

// TestGenerateResumesAfterKill: a generate killed mid-run (SIGKILL, no
// chance to clean up) and run again has every item exactly once.
func TestGenerateResumesAfterKill(t *testing.T) {
	clean(t)
	cfg := fakeConfig(t, 50*time.Millisecond)
	const n = 160
	in := writeInput(t, "in.jsonl", n)
	out := filepath.Join(t.TempDir(), "gen.jsonl")
	args := []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in, "--out", out, "--concurrency", "4"}
	cmd, _ := startBatch(t, args...)
	waitLines(t, out, 10)
	cmd.Process.Kill()
	cmd.Wait()
	done := countLines(t, out)
	if done >= n {
		t.Fatalf("the run finished (%d lines) before it was killed", done)
	}
	// A crash mid-write leaves a torn line: the rerun cuts it.
	f, _ := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"id":"item-999","messa`)
	f.Close()

	code, stdout, errOut := runCmd(args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d\n%s%s", code, stdout, errOut)
	}
	if !strings.Contains(stdout, fmt.Sprintf("%d by an earlier run", done)) {
		t.Errorf("rerun did not skip the %d finished items: %s", done, stdout)
	}
	checkOutput(t, out, n)
}

// TestGenerateInterrupted: SIGINT stops after the items in flight are
// written (exit 130), SIGTERM too, and a rerun completes the file.
func TestGenerateInterrupted(t *testing.T) {
	clean(t)
	cfg := fakeConfig(t, 40*time.Millisecond)
	const n = 240
	in := writeInput(t, "in.jsonl", n)
	out := filepath.Join(t.TempDir(), "gen.jsonl")
	args := []string{"dataset", "generate", "-c", cfg, "--model", "pair", "--in", in, "--out", out, "--concurrency", "4", "--format", "openai"}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		before := 0
		if _, err := os.Stat(out); err == nil {
			before = countLines(t, out)
		}
		cmd, stderr := startBatch(t, args...)
		waitLines(t, out, before+5)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
			t.Fatalf("%v: exit %d (%v)\n%s", sig, code, err, stderr)
		}
		if !strings.Contains(stderr.String(), "run the same command again to resume") {
			t.Errorf("%v: stderr %s", sig, stderr)
		}
		ids := countLines(t, batchProgress(out))
		if lines := countLines(t, out); lines != ids || lines >= n {
			t.Errorf("%v: %d lines, %d ids recorded", sig, lines, ids)
		}
	}
	code, stdout, errOut := runCmd(args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d\n%s%s", code, stdout, errOut)
	}
	if lines := countLines(t, out); lines != n {
		t.Errorf("%d lines; want %d", lines, n)
	}
	data, _ := os.ReadFile(batchProgress(out))
	seen := map[string]bool{}
	for _, id := range strings.Fields(string(data)) {
		if seen[id] {
			t.Errorf("id %s twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Errorf("%d ids; want %d", len(seen), n)
	}
}

func batchProgress(out string) string { return out + ".progress" }

// TestSelectCommand: select through the fake's embeddings, then a rerun
// from the cache alone.
func TestSelectCommand(t *testing.T) {
	clean(t)
	cfg := fakeConfig(t, 0)
	dir := t.TempDir()
	in := filepath.Join(dir, "prompts.txt")
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "prompt %d\n", i%30)
	}
	os.WriteFile(in, []byte(b.String()), 0o644)
	out := filepath.Join(dir, "sel.jsonl")
	for run, want := range []string{"30 embedded, 0 from the cache", "0 embedded, 30 from the cache"} {
		code, stdout, errOut := runCmd("dataset", "select", "-c", cfg, "--embed", "fake/e", "--in", in, "--out", out, "--max", "12", "--tripwire", "1")
		if code != 0 || !strings.Contains(stdout, want) || !strings.Contains(stdout, "selected 12 of 40 prompts (centroid, stopped at --max 12; 10 exact duplicates dropped)") {
			t.Fatalf("run %d: exit %d\n%s%s", run, code, stdout, errOut)
		}
	}
	if n := countLines(t, out); n != 12 {
		t.Errorf("%d lines", n)
	}
}

// TestEvalMatchExtracts: a vote consortium's extract is part of how vote
// normalizes, so eval's --match compares what it extracts: the default
// exact match of "Answer: 10" against the reference "10" is a hit.
func TestEvalMatchExtracts(t *testing.T) {
	clean(t)
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	fake.SetRecordLimit(-1)
	fake.SetDefault(func(r *upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: "Let me count the letters.\nAnswer: " + fmt.Sprint(len(r.LastUserText()))}
	})
	cfg := writeFile(t, fmt.Sprintf(`
providers:
  fake:
    base_url: %s
    models: [a, b]
consortia:
  pair:
    strategy: vote
    members: [{model: fake/a}, {model: fake/b}]
    extract: "(?m)^Answer:\\s*(.+?)\\s*$"
`, fake.URL))
	in := writeInput(t, "in.jsonl", 5)
	for _, match := range []string{"exact", "contains", "numeric"} {
		code, stdout, errOut := runCmd("eval", "-c", cfg, "--model", "pair", "--in", in, "--match", match)
		if code != 0 {
			t.Fatalf("--match %s: exit %d\n%s%s", match, code, stdout, errOut)
		}
		if n := strings.Count(stdout, " 1.000  [1.000, 1.000] "); n != 3 {
			t.Errorf("--match %s: %d rows of 1.000, want 3 (fake/a, fake/b, pair):\n%s", match, n, stdout)
		}
	}
}
