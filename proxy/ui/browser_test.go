package ui_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/consortium-dev/consortium/proxy/ui"
)

// The pages in a real browser: Debian's chromium, headless, driven by
// chromedp against the built binary serving --demo (DESIGN "Web pages").
// `make deps` installs chromium; without it the test skips, except in CI
// ($CI set), where it fails.

var screenshots = flag.Bool("screenshots", false, "write docs/img/run.png (docs/img/leaderboard.png is shot from a demo run: docs/ui.md)")

// browserPath finds chromium, or skips the test (fails it in CI).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI is set: the browser tests must run in CI (make deps installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: `make deps` installs Debian's chromium; the browser tests are skipped")
	return ""
}

// browser starts one headless chromium for the test and returns a tab's
// context, with every request the page makes and every console error it
// logs collected.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	requests []string
	errors   []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := browserPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		// The machine's network is closed: Chromium's own background
		// connections would only fail (and are no request of the page).
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		}
	})
	if err != nil {
		t.Fatalf("chromium did not start: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// check fails the test for a console error, or a request that left the
// origin base.
func (b *browser) check(t *testing.T, base string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		t.Errorf("console error: %s", e)
	}
	for _, u := range b.requests {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("a request left the origin %s: %s", base, u)
		}
	}
	if len(b.requests) == 0 {
		t.Error("no request seen: the network listener is not working")
	}
}

// forget drops the console errors that hold text, once expected.
func (b *browser) forget(text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.errors[:0]
	for _, e := range b.errors {
		if !strings.Contains(e, text) {
			kept = append(kept, e)
		}
	}
	b.errors = kept
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript condition holds, across page loads
// (an evaluation that a navigation interrupts is tried again).
func waitFor(t *testing.T, b *browser, cond string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %v", cond, last)
}

// serveDemo builds the binary (or takes $CONSORTIUM_BIN) and runs it with
// --demo and a client key, returning its base URL.
func serveDemo(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CONSORTIUM_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "consortium")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/consortium-dev/consortium/cmd/consortium").CombinedOutput()
		if err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	cfg := filepath.Join(t.TempDir(), "consortium.yaml")
	os.WriteFile(cfg, []byte("auth:\n  keys: [{name: alice, key: alice-key}]\n  admin_key: admin-key\n"), 0o600)
	cmd := exec.Command(bin, "serve", "--demo", "-c", cfg, "--listen", "127.0.0.1:0", "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v", err)
	}
	return strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "consortium listening on ")), "/v1")
}

// TestBrowser signs in, refuses a wrong key, runs demo in the playground
// (each member's answer shown before the synthesis ends), opens the run's
// page (every member, the waterfall), the leaderboard, and checks that a
// <script> in the answers stays text, that nothing logged an error and
// that no request left the origin.
func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	base := serveDemo(t)
	start := time.Now()

	// A wrong key is refused; the right one signs in.
	b.do(t, "sign-in page", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.ID("key")))
	if loc := eval[string](t, b, "location.pathname"); loc != "/ui/signin" {
		t.Fatalf("not sent to sign in: %s", loc)
	}
	b.do(t, "wrong key", chromedp.SendKeys(chromedp.ID("key"), "wrong-key"), chromedp.Submit(chromedp.ID("key")),
		chromedp.WaitVisible(chromedp.CSS("p.error")))
	if txt := eval[string](t, b, "document.querySelector('p.error').textContent"); !strings.Contains(txt, "not one of this proxy's keys") {
		t.Errorf("wrong key: %q", txt)
	}
	// The refused sign-in is a 401, which Chromium logs as a resource that
	// failed to load: the one console error this test expects.
	b.forget("status of 401")
	b.do(t, "sign in", chromedp.SendKeys(chromedp.ID("key"), "alice-key"), chromedp.Submit(chromedp.ID("key")))
	waitFor(t, b, "location.pathname === '/ui/' && document.readyState === 'complete'")
	if h := eval[string](t, b, "document.querySelector('h1').textContent"); h != "Recent runs" {
		t.Fatalf("after sign-in: %q", h)
	}
	if c := eval[string](t, b, "document.cookie"); c != "" {
		t.Errorf("the session cookie is readable by scripts: %q", c)
	}

	// The playground: members first, then the synthesis.
	const question = `What is 17 + 25? <script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	b.do(t, "playground", chromedp.Navigate(base+"/ui/playground"), chromedp.WaitVisible(chromedp.ID("send")),
		chromedp.SetValue(chromedp.ID("consortium"), "demo"), chromedp.SetValue(chromedp.ID("message"), question),
		chromedp.Click(chromedp.ID("send")))
	waitFor(t, b, "document.querySelectorAll('#members article').length > 0")
	if done := eval[bool](t, b, "!!document.getElementById('runpage')"); done {
		t.Error("the first member's answer appeared only once the run was done")
	}
	waitFor(t, b, "!!document.getElementById('runpage')")
	// Each member once per round (the demo arbiter may ask for another).
	if n := eval[int](t, b, "new Set([...document.querySelectorAll('#members article')].map(a => a.dataset.model)).size"); n != 3 {
		t.Errorf("%d members' answers shown, want 3", n)
	}
	if s := eval[string](t, b, "document.getElementById('synthesis').textContent"); s == "" {
		t.Error("no synthesis")
	}
	if !eval[bool](t, b, "document.getElementById('members').textContent.includes('<script>window.pwned=1</script>')") {
		t.Error("the question's <script> is not shown as text in the members' answers")
	}

	// The run's page: every member, the waterfall.
	b.do(t, "run page", chromedp.Click(chromedp.ID("runpage")), chromedp.WaitVisible(chromedp.ID("waterfall")))
	for _, m := range []string{"demo/alpha#1", "demo/beta#1", "demo/gamma#1"} {
		if !eval[bool](t, b, fmt.Sprintf("document.querySelector('.members').textContent.includes(%q)", m)) {
			t.Errorf("the run page lacks member %s", m)
		}
	}
	if n := eval[int](t, b, "document.querySelectorAll('#waterfall rect').length"); n < 4 {
		t.Errorf("%d bars in the waterfall, want the 3 members and the arbiter", n)
	}
	if !eval[bool](t, b, "document.body.textContent.includes('<script>window.pwned=1</script>')") {
		t.Error("the run page does not show the <script> as text")
	}
	if *screenshots {
		shoot(t, b, "run.png")
	}
	// At a phone's width the page folds: nothing wider than the screen
	// but inside its own scrolling box.
	b.do(t, "phone width", chromedp.EmulateViewport(390, 844))
	if w := eval[int](t, b, "document.documentElement.scrollWidth"); w > 390 {
		t.Errorf("the run page is %dpx wide at a 390px phone width", w)
	}
	b.do(t, "desktop width", chromedp.EmulateViewport(1280, 900))

	// The leaderboard: the run just made was scored, so demo's members
	// are drawn with their intervals; and the runs list holding the run.
	b.do(t, "leaderboard", chromedp.Navigate(base+"/ui/leaderboard"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := eval[string](t, b, "document.querySelector('h1').textContent"); h != "Leaderboard" {
		t.Errorf("leaderboard: %q", h)
	}
	if !eval[bool](t, b, `!!document.querySelector('svg.intervals') && ['demo/alpha', 'demo/beta', 'demo/gamma'].every(m => document.querySelector('main').textContent.includes(m))`) {
		t.Error("the leaderboard does not draw demo's members after a scored run")
	}
	b.do(t, "runs", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("table.runs")))

	// Nothing ran the injected script, on any page.
	if p := eval[any](t, b, "window.pwned === undefined ? null : window.pwned"); p != nil {
		t.Errorf("the injected script ran: window.pwned = %v", p)
	}
	// Signed out, the pages ask for a key again.
	b.do(t, "sign out", chromedp.Click(chromedp.CSS(".signout button")))
	waitFor(t, b, "location.pathname === '/ui/signin' && !!document.getElementById('key')")
	b.check(t, base)
	t.Logf("the browser test took %s", time.Since(start).Round(time.Millisecond))
}

// shoot writes a screenshot of the window (1280×900) to docs/img.
func shoot(t *testing.T, b *browser, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

var _ http.Handler = (*ui.Handler)(nil)
