package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// pagesYAML is a consortium with two client keys and an admin key.
const pagesYAML = `
providers:
  fake:
    base_url: {{FAKE}}
    max_retries: 0
auth:
  keys:
    - {name: alice, key: alice-key}
    - {name: bob, key: bob-key}
  admin_key: admin-key
consortia:
  council:
    members: [{model: fake/alpha}, {model: fake/beta}]
    arbiter: {model: fake/judge}
    max_iterations: 1
`

// signIn signs in to the pages with key and returns the session cookie.
func signIn(t *testing.T, e *env, key string) *http.Cookie {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", e.proxy.URL+"/ui/signin", strings.NewReader("key="+url.QueryEscape(key)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.proxy.URL)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "consortium_ui" {
			return c
		}
	}
	t.Fatalf("sign in: %d, no cookie", resp.StatusCode)
	return nil
}

// TestPagesCookieNeverOnV1: the pages' session cookie, a tenant's or the
// admin's, authenticates no /v1 route, nor /metrics.
func TestPagesCookieNeverOnV1(t *testing.T) {
	e := start(t, pagesYAML)
	for _, key := range []string{"alice-key", "admin-key"} {
		c := signIn(t, e, key)
		for _, path := range []string{"/v1/models", "/v1/consortium/runs/run_x", "/v1/consortium/leaderboard", "/metrics"} {
			req, _ := http.NewRequest("GET", e.proxy.URL+path, nil)
			req.AddCookie(c)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with the pages' cookie of %s: %d, want 401", path, key, resp.StatusCode)
			}
		}
	}
}

// TestPlaygroundRunsAsTheTenant: the playground's chat runs as the
// signed-in tenant, streams its progress events, and its run is that
// tenant's (its list and page), not another's.
func TestPlaygroundRunsAsTheTenant(t *testing.T) {
	e := start(t, pagesYAML)
	e.fake.Script("alpha", upstreamtest.Reply{Content: "alpha <script>alert(1)</script>"})
	e.fake.Script("beta", upstreamtest.Reply{Content: "beta's answer"})
	e.fake.Script("judge", upstreamtest.Reply{Content: "<confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>forty-two</synthesis>"})
	c := signIn(t, e, "alice-key")

	req, _ := http.NewRequest("POST", e.proxy.URL+"/ui/playground/chat", strings.NewReader(`{"consortium":"council","message":"q"}`))
	req.Header.Set("Origin", e.proxy.URL)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	runID := resp.Header.Get("X-Consortium-Run-Id")
	if resp.StatusCode != 200 || strings.Count(string(body), "event: consortium.member") != 2 || !strings.Contains(string(body), "forty-two") || runID == "" {
		t.Fatalf("playground chat: %d %s", resp.StatusCode, body)
	}

	page := func(cookie *http.Cookie, path string) (int, string) {
		req, _ := http.NewRequest("GET", e.proxy.URL+path, nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, list := page(c, "/ui/"); code != 200 || !strings.Contains(list, runID) {
		t.Errorf("alice's runs: %d, no %s", code, runID)
	}
	if code, run := page(c, "/ui/runs/"+runID); code != 200 || !strings.Contains(run, "alpha &lt;script&gt;") || strings.Contains(run, "<script>alert") {
		t.Errorf("alice's run page: %d\n%s", code, run)
	}
	bob := signIn(t, e, "bob-key")
	if code, list := page(bob, "/ui/"); code != 200 || strings.Contains(list, runID) {
		t.Errorf("bob sees alice's run in his list")
	}
	if code, _ := page(bob, "/ui/runs/"+runID); code != http.StatusNotFound {
		t.Errorf("bob reads alice's run: %d", code)
	}
	admin := signIn(t, e, "admin-key")
	if code, list := page(admin, "/ui/"); code != 200 || !strings.Contains(list, runID) {
		t.Errorf("the admin's list lacks alice's run")
	}
}

// TestPagesHeadersOnEveryResponse: every response of the pages, /ui
// included (a redirect) and whatever its method, carries the pages'
// Content-Security-Policy; with no client keys, /ui answers only a
// loopback Host too.
func TestPagesHeadersOnEveryResponse(t *testing.T) {
	e := start(t, pagesYAML)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, path string }{{"GET", "/ui"}, {"POST", "/ui"}, {"GET", "/ui/"}, {"GET", "/ui/nothing"}} {
		req, _ := http.NewRequest(tc.method, e.proxy.URL+tc.path, nil)
		req.Header.Set("Origin", e.proxy.URL)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Content-Security-Policy"); got != "default-src 'self'; frame-ancestors 'none'" {
			t.Errorf("%s %s: %d, CSP %q", tc.method, tc.path, resp.StatusCode, got)
		}
	}
	open := start(t, "")
	req, _ := http.NewRequest("GET", open.proxy.URL+"/ui", nil)
	req.Host = "rebound.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("/ui without keys for Host rebound.example: %d, want 403", resp.StatusCode)
	}
}

// TestPlaygroundHonoursTheRPM: the playground's chat counts against the
// signed-in tenant's rpm, as its key's requests on /v1 do, and against no
// other tenant's.
func TestPlaygroundHonoursTheRPM(t *testing.T) {
	e := start(t, strings.Replace(pagesYAML, "{name: alice, key: alice-key}", "{name: alice, key: alice-key, rpm: 1}", 1))
	e.fake.Script("alpha", upstreamtest.Reply{Content: "a"}, upstreamtest.Reply{Content: "a"})
	e.fake.Script("beta", upstreamtest.Reply{Content: "b"}, upstreamtest.Reply{Content: "b"})
	e.fake.Script("judge", upstreamtest.Reply{Content: "<confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>s</synthesis>"},
		upstreamtest.Reply{Content: "<confidence>0.9</confidence><needs_iteration>false</needs_iteration><synthesis>s</synthesis>"})
	chat := func(c *http.Cookie) int {
		req, _ := http.NewRequest("POST", e.proxy.URL+"/ui/playground/chat", strings.NewReader(`{"consortium":"council","message":"q"}`))
		req.Header.Set("Origin", e.proxy.URL)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	alice := signIn(t, e, "alice-key")
	if code := chat(alice); code != 200 {
		t.Fatalf("alice's first chat: %d", code)
	}
	if code := chat(alice); code != http.StatusTooManyRequests {
		t.Errorf("alice's second chat in a minute at rpm 1: %d, want 429", code)
	}
	if code := chat(signIn(t, e, "bob-key")); code != 200 {
		t.Errorf("bob's chat: %d", code)
	}
}

// TestPagesBodyTimeout: the pages' POSTs hold a silent body to the
// minute every route gives it (DESIGN, "Limits that protect the
// process"): 408 and the connection closed, never a connection held open
// by a sign-in form or a playground chat that trickles its body.
func TestPagesBodyTimeout(t *testing.T) {
	inBubble(t, pagesYAML, func(t *testing.T, e *memEnv) {
		client := &http.Client{Transport: e.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("POST", memBase+"/ui/signin", strings.NewReader("key=alice-key"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", memBase)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var cookie string
		for _, c := range resp.Cookies() {
			cookie = c.Name + "=" + c.Value
		}
		if cookie == "" {
			t.Fatalf("sign in: %d, no cookie", resp.StatusCode)
		}
		for _, tc := range []struct{ path, head, partial string }{
			{"/ui/signin", "Content-Type: application/x-www-form-urlencoded\r\n", "key=ali"},
			{"/ui/playground/chat", "Content-Type: application/json\r\nCookie: " + cookie + "\r\n", `{"consortium":"council","mess`},
		} {
			conn := e.dial()
			began := time.Now()
			if _, err := io.WriteString(conn, "POST "+tc.path+" HTTP/1.1\r\nHost: proxy.test\r\nOrigin: "+memBase+"\r\n"+tc.head+
				"Content-Length: 200\r\n\r\n"+tc.partial); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(time.Hour))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Errorf("%s: no answer to a silent body: %v", tc.path, err)
				conn.Close()
				continue
			}
			resp.Body.Close()
			if took := time.Since(began); resp.StatusCode != http.StatusRequestTimeout || took != time.Minute || !resp.Close {
				t.Errorf("%s: %d after %v, Connection %q; want 408 at the body deadline (1m), closed", tc.path, resp.StatusCode, took, resp.Header.Get("Connection"))
			}
			if got := resp.Header.Get("Content-Security-Policy"); got == "" {
				t.Errorf("%s: the 408 lacks the pages' CSP", tc.path)
			}
			conn.Close()
		}
	})
}
