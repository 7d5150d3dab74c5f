package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/config"
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

// TestServeDemo runs the real binary's serve --demo in a child process,
// talks to it, and stops it with SIGTERM while a stream is in flight: the
// stream finishes and the process exits 0.
func TestServeDemo(t *testing.T) {
	clean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, "serve", "--demo", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CONSORTIUM_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v\n%s", err, stderr.String())
	}
	base := strings.TrimSpace(strings.TrimPrefix(line, "consortium listening on "))

	resp, err := http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"demo/alpha"`) || !strings.Contains(string(body), "demo") {
		t.Fatalf("models: %s", body)
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
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "DEMO MODE") {
		t.Errorf("demo not labelled in the log:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "hello") {
		t.Errorf("prompt text in the log:\n%s", stderr.String())
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
