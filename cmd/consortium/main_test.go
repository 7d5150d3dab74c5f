package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestMain lets a test run this binary's main in a child process: the
// test binary re-executes itself with CONSORTIUM_RUN_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("CONSORTIUM_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// clean empties the environment variables that add providers, so the
// developer's own keys never leak into a test.
func clean(t *testing.T) {
	for _, v := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY", "OLLAMA_HOST", "CONSORTIUM_CONFIG"} {
		t.Setenv(v, "")
	}
	t.Chdir(t.TempDir())
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "consortium.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	clean(t)
	good := writeFile(t, `
providers:
  local:
    base_url: http://127.0.0.1:9/v1
    models: [m]
`)
	code, out, errOut := runCmd("validate", "-c", good)
	if code != 0 || !strings.Contains(out, "provider local") || !strings.Contains(out, "config file") {
		t.Fatalf("good file: exit %d\n%s%s", code, out, errOut)
	}

	t.Setenv("OPENAI_API_KEY", "sk-test")
	code, out, _ = runCmd("validate", "-c", good)
	if code != 0 || !strings.Contains(out, "provider openai") || !strings.Contains(out, "OPENAI_API_KEY") {
		t.Fatalf("environment provider not reported: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "sk-test") {
		t.Fatal("validate printed a key")
	}

	bad := writeFile(t, `
listen: nowhere
providers:
  local:
    base_url: ftp://x
    timout: 5s
`)
	code, _, errOut = runCmd("validate", "-c", bad)
	if code != 1 {
		t.Fatalf("bad file: exit %d", code)
	}
	for _, want := range []string{"listen:", "providers.local.timout: unknown key", "providers.local.base_url:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing problem %q in:\n%s", want, errOut)
		}
	}

	code, _, errOut = runCmd("validate", "-c", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d: %s", code, errOut)
	}
}

func TestConfigPathFromEnvironment(t *testing.T) {
	clean(t)
	t.Setenv("CONSORTIUM_CONFIG", writeFile(t, "providers: {x: {base_url: 'http://127.0.0.1:9', models: [a, b]}}"))
	code, out, errOut := runCmd("models")
	if code != 0 || out != "x/a\nx/b\n" {
		t.Fatalf("exit %d, models %q %s", code, out, errOut)
	}
}

func TestUsage(t *testing.T) {
	if code, _, errOut := runCmd(); code != 2 || !strings.Contains(errOut, "Usage") {
		t.Errorf("no command: exit %d", code)
	}
	if code, _, errOut := runCmd("bogus"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("bogus: exit %d", code)
	}
}

func TestRefusesOpenRelay(t *testing.T) {
	clean(t)
	file := writeFile(t, "providers: {x: {base_url: 'http://127.0.0.1:9'}}")
	code, _, errOut := runCmd("serve", "-c", file, "--listen", "0.0.0.0:0")
	if code != 1 || !strings.Contains(errOut, "without client keys") || !strings.Contains(errOut, "allow_open") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	demo := &config.Provider{Type: "openai", Demo: true}
	real := &config.Provider{Type: "openai"}
	for _, tc := range []struct {
		providers map[string]*config.Provider
		listen    string
		open      bool
	}{
		{listen: "127.0.0.1:8080", providers: map[string]*config.Provider{"x": real}},
		{listen: "localhost:8080", providers: map[string]*config.Provider{"x": real}},
		{listen: "[::1]:8080", providers: map[string]*config.Provider{"x": real}},
		{listen: "0.0.0.0:8080", providers: map[string]*config.Provider{"demo": demo, "play": demo}},
		{listen: "0.0.0.0:8080", providers: map[string]*config.Provider{"x": real}, open: true},
	} {
		if err := checkOpenRelay(withProviders(t, tc.listen, tc.open, tc.providers)); err != nil {
			t.Errorf("%+v: %v", tc, err)
		}
	}
	if checkOpenRelay(withProviders(t, "0.0.0.0:8080", false, map[string]*config.Provider{"demo": demo, "x": real})) == nil {
		t.Error("demo with a real provider on 0.0.0.0 without keys was allowed")
	}
}

// withProviders is the built-in defaults with these providers.
func withProviders(t *testing.T, listen string, open bool, providers map[string]*config.Provider) *config.Config {
	cfg := mustDefaults(t)
	cfg.Listen, cfg.Auth.AllowOpen, cfg.Providers = listen, open, providers
	for name, p := range providers {
		cfg.ProviderOrder = append(cfg.ProviderOrder, name)
		cfg.Demo = cfg.Demo || p.Demo
	}
	return cfg
}

// startServe runs the real binary's serve in a child process with args
// and returns the URL it announced on stdout, its log and the process; the
// test stops it, and reads the log once the process has exited.
func startServe(t *testing.T, ctx context.Context, args ...string) (base string, log *bytes.Buffer, cmd *exec.Cmd) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.CommandContext(ctx, exe, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "CONSORTIUM_RUN_MAIN=1")
	log = &bytes.Buffer{}
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no listening line: %v\n%s", err, log.String())
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "consortium listening on ")), log, cmd
}

// chat posts a chat request and returns the answer's text.
func chat(t *testing.T, base, body string) string {
	t.Helper()
	return ask(t, base, body).Choices[0].Message.Content
}

// TestServeDemo runs the real binary's serve --demo in a child process
// with a file of its own that names demo models, talks to it, and stops it
// with SIGTERM while a stream is in flight: the stream finishes and the
// process exits 0.
func TestServeDemo(t *testing.T) {
	clean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Before, --demo was added after the file was validated, so the file
	// could not name demo/alpha; and no file could have a demo provider.
	file := writeFile(t, `
providers:
  play: {type: demo, models: [one]}
consortia:
  mine:
    members: [{model: demo/alpha}, {model: play/beta}]
    arbiter: {model: demo/arbiter}
    max_iterations: 1
`)
	base, log, cmd := startServe(t, ctx, "--demo", "-c", file, "--listen", "127.0.0.1:0")

	resp, err := http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, id := range []string{`"demo"`, `"mine"`, `"demo/alpha"`, `"play/one"`} {
		if !strings.Contains(string(body), `"id":`+id) {
			t.Errorf("models lack %s: %s", id, body)
		}
	}

	// The demo arbiter speaks of the question as asked, question mark
	// included (it used to drop it).
	if got := chat(t, base, `{"model":"mine","messages":[{"role":"user","content":"Why is the sky blue?"}]}`); !strings.Contains(got, "\u201cWhy is the sky blue?\u201d") {
		t.Errorf("synthesis does not quote the question: %s", got)
	}
	// A continued turn visibly uses the history.
	got := chat(t, base, `{"model":"play/one","messages":[{"role":"user","content":"Why is the sky blue?"},{"role":"assistant","content":"Rayleigh."},{"role":"user","content":"And at sunset?"}]}`)
	if !strings.Contains(got, "\u201cAnd at sunset?\u201d") || !strings.Contains(got, "1 earlier user turn, which began with \u201cWhy is the sky blue?\u201d") {
		t.Errorf("continued turn does not show its history: %s", got)
	}

	resp, err = http.Post(base+"/chat/completions", "application/json",
		strings.NewReader(`{"model":"demo/alpha","stream":true,"messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if first, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("first stream line %q, %v", first, err)
	}
	// SIGTERM while the stream is in flight: it must still finish.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream cut by shutdown (%v):\n%s", err, rest)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "DEMO MODE") || !strings.Contains(log.String(), "play/one") {
		t.Errorf("demo not labelled in the log:\n%s", log.String())
	}
	if strings.Contains(log.String(), "hello") || strings.Contains(log.String(), "sky") {
		t.Errorf("prompt text in the log:\n%s", log.String())
	}
}

// TestServeLog: the log's level and format come from the file, the flags
// win, the listening line is in the log once with the address as given,
// and a configuration with no providers is warned about.
func TestServeLog(t *testing.T) {
	clean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := writeFile(t, "auth: {allow_open: true}\nlog: {level: error, format: text}\n")
	base, log, cmd := startServe(t, ctx, "-c", file, "--listen", "0.0.0.0:0", "--log-level", "info", "--log-format", "json")
	_, port, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/v1"), ":")
	if !strings.HasPrefix(base, "http://0.0.0.0:") {
		t.Errorf("announced %s, want the address as given, 0.0.0.0", base)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, log.String())
	}
	var listening, noProviders int
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("--log-format json did not win over the file's text: %q", line)
		}
		msg, _ := rec["msg"].(string)
		if strings.Contains(msg, "listening") {
			listening++
			if rec["addr"] != "0.0.0.0:"+port {
				t.Errorf("listening addr %v, want 0.0.0.0:%s", rec["addr"], port)
			}
		}
		if strings.HasPrefix(msg, "providers: none configured") && rec["level"] == "WARN" {
			noProviders++
		}
	}
	if listening != 1 {
		t.Errorf("%d listening lines in the log (--log-level info must win over the file's error), want 1:\n%s", listening, log.String())
	}
	if noProviders != 1 {
		t.Errorf("no warning that no provider is configured:\n%s", log.String())
	}
}

func TestShownAddr(t *testing.T) {
	for _, tc := range []struct{ given, bound, want string }{
		{"0.0.0.0:8093", "[::]:8093", "0.0.0.0:8093"},
		{":8093", "[::]:8093", "0.0.0.0:8093"},
		{"127.0.0.1:0", "127.0.0.1:41234", "127.0.0.1:41234"},
		{"localhost:8080", "127.0.0.1:8080", "localhost:8080"},
		{"[::1]:0", "[::1]:5555", "[::1]:5555"},
	} {
		bound, err := net.ResolveTCPAddr("tcp", tc.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := shownAddr(tc.given, bound); got != tc.want {
			t.Errorf("shownAddr(%q, %s) = %q, want %q", tc.given, tc.bound, got, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runCmd(arg)
		if code != 0 || !strings.HasPrefix(out, "consortium ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%s: exit %d, %q", arg, code, out)
		}
	}
	saved := version
	t.Cleanup(func() { version = saved })
	version = "v1.2.3"
	if _, out, _ := runCmd("version"); !strings.HasPrefix(out, "consortium v1.2.3 (") {
		t.Errorf("with -X main.version: %q", out)
	}
}

// TestHelp: --help on every command prints its usage on stdout and exits
// 0, "help CMD" is the same, and the help spells each flag as the usage
// line does.
func TestHelp(t *testing.T) {
	for _, name := range []string{"serve", "validate", "models", "version", "help"} {
		code, out, errOut := runCmd("help", name)
		if code != 0 || !strings.HasPrefix(out, "Usage: consortium "+name) || errOut != "" {
			t.Errorf("help %s: exit %d, %q, %q", name, code, out, errOut)
		}
		if name == "version" || name == "help" {
			continue
		}
		for _, flag := range []string{"--help", "-h"} {
			if code, got, _ := runCmd(name, flag); code != 0 || got != out {
				t.Errorf("%s %s: exit %d, %q; want help %s", name, flag, code, got, name)
			}
		}
		synopsis, _, _ := strings.Cut(out, "\n")
		if !strings.Contains(strings.Join(strings.Fields(usage), " "), strings.TrimPrefix(synopsis, "Usage: ")) {
			t.Errorf("usage does not spell %s as its help does: %q", name, synopsis)
		}
		for _, m := range regexp.MustCompile(`(?:^|[\s\[])(--?[a-z][a-z-]*)`).FindAllStringSubmatch(out, -1) {
			if f := m[1]; len(f) > 2 && !strings.HasPrefix(f, "--") {
				t.Errorf("help %s spells a long flag %s", name, f)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if code, out, _ := runCmd(args...); code != 0 || !strings.Contains(out, "consortium version") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	if code, _, errOut := runCmd("help", "bogus"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("help bogus: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("serve", "--bogus"); code != 2 || !strings.Contains(errOut, "bogus") || !strings.Contains(errOut, "Usage: consortium serve") {
		t.Errorf("serve --bogus: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("serve", "--log-level", "loud", "--listen", "127.0.0.1:0"); code != 2 || !strings.Contains(errOut, `--log-level "loud"`) {
		t.Errorf("serve --log-level loud: exit %d, %q", code, errOut)
	}
}

// TestValidateReports: validate reports what would make the proxy useless
// or unsafe even though the file is valid, and fails.
func TestValidateReports(t *testing.T) {
	example, err := filepath.Abs(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	clean(t)
	code, out, _ := runCmd("validate")
	if code != 1 || !strings.Contains(out, "warning: providers: none configured") {
		t.Errorf("no providers: exit %d\n%s", code, out)
	}
	// config.example.yaml as it is, with no key variable set.
	code, out, _ = runCmd("validate", "-c", example)
	for _, want := range []string{
		"warning: providers.openai.api_key: is empty (OPENAI_API_KEY not set)",
		"warning: providers.anthropic.api_key: is empty (ANTHROPIC_API_KEY not set)",
		`warning: auth.keys[0].key: is the example's placeholder "change-me-alice"`,
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("example config: exit %d, want %q in\n%s", code, want, out)
		}
	}
	if strings.Contains(out, "providers.local.api_key") {
		t.Errorf("a local server without a key is reported:\n%s", out)
	}
}

// TestValidateBuildsNothing: validate checks an arbiter prompt with the
// engine's own check, along with every other problem and with its key path
// (it used to build the whole server, and so stopped at the first error).
func TestValidateBuildsNothing(t *testing.T) {
	clean(t)
	file := writeFile(t, `
listn: 127.0.0.1:1
store: {backend: redis, url: "redis://127.0.0.1:1/0"}
providers:
  local: {base_url: "http://127.0.0.1:9/v1"}
consortia:
  c:
    members: [{model: local/a}]
    arbiter: {model: local/j, prompt: "{{.NoSuchField}}"}
`)
	code, _, errOut := runCmd("validate", "-c", file)
	for _, want := range []string{`listn: unknown key (did you mean "listen"?)`, "consortia.c.arbiter.prompt: is not a valid arbiter prompt: "} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, want %q in:\n%s", code, want, errOut)
		}
	}
	code, out, errOut := runCmd("validate", "-c", writeFile(t, "providers:\n  play: {type: demo}\n"))
	if code != 0 || !strings.Contains(out, "provider play (demo, built in, canned answers)") {
		t.Errorf("a demo provider: exit %d\n%s%s", code, out, errOut)
	}
	file = writeFile(t, "consortia:\n  mine: {members: [{model: demo/alpha}], arbiter: {model: demo/arbiter}}\n")
	if code, out, errOut := runCmd("validate", "--demo", "-c", file); code != 0 || !strings.Contains(out, "consortium mine") {
		t.Errorf("validate --demo: exit %d\n%s%s", code, out, errOut)
	}
}

// TestDemoArbiterName: the demo models config lists are the ones the demo
// responder answers as it should.
func TestDemoArbiterName(t *testing.T) {
	if config.DemoArbiter != upstreamtest.DemoArbiter {
		t.Errorf("config.DemoArbiter %q, upstreamtest.DemoArbiter %q", config.DemoArbiter, upstreamtest.DemoArbiter)
	}
}

func mustDefaults(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPprof: CONSORTIUM_PPROF serves the profiling endpoints on a loopback
// address only.
func TestPprof(t *testing.T) {
	clean(t)
	t.Setenv("CONSORTIUM_PPROF", "0.0.0.0:0")
	if code, _, stderr := runCmd("serve", "--demo", "--listen", "127.0.0.1:0"); code != 1 || !strings.Contains(stderr, "not a loopback address") {
		t.Errorf("CONSORTIUM_PPROF=0.0.0.0:0: exit %d, stderr %q", code, stderr)
	}

	addr, stop, err := servePprof("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline: %s", resp.Status)
	}
}

func TestDescribeConsortium(t *testing.T) {
	for _, tc := range []struct {
		c    config.Consortium
		want string
	}{
		{config.Consortium{Members: []config.Member{{Model: "a/x", Count: 2}}, Arbiter: config.Arbiter{Model: "a/j"}},
			"synthesize, 2 member instances, arbiter a/j"},
		{config.Consortium{Strategy: "rank", Members: []config.Member{{Model: "a/x", Count: 3}}, Judges: []config.Judge{{Model: "a/j"}, {Model: "b/k"}}},
			"rank, 3 member instances, judges a/j, b/k"},
		{config.Consortium{Strategy: "vote", Members: []config.Member{{Model: "a/x", Count: 5}}},
			"vote, 5 member instances"},
		{config.Consortium{Strategy: "cascade", Tiers: []string{"quick", "council"}},
			"cascade, tiers quick > council"},
	} {
		if got := describeConsortium(&tc.c); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
