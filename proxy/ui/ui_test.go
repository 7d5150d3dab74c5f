package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// fakeRuns keeps run records per tenant.
type fakeRuns map[string]map[string]*consortia.Run

func (f fakeRuns) Runs(_ context.Context, tenant string, _ int) ([]cache.RunSummary, error) {
	var out []cache.RunSummary
	for _, r := range f[tenant] {
		out = append(out, cache.RunSummary{RunID: r.ID, Consortium: r.Consortium, Strategy: r.Strategy, Created: r.Created, Rounds: r.Iterations})
	}
	return out, nil
}

func (f fakeRuns) Run(_ context.Context, tenant, id string) ([]byte, error) {
	r, ok := f[tenant][id]
	if !ok {
		return nil, cache.ErrNotFound
	}
	return json.Marshal(r)
}

func sampleRun(id, content string) *consortia.Run {
	conf := 0.9
	return &consortia.Run{ID: id, Consortium: "council", Strategy: "synthesize", Created: time.Now(), Iterations: 1, DurationMs: 300,
		Outcome: consortia.Outcome{Confidence: &conf},
		Rounds: []consortia.Round{{Number: 1,
			Members: []consortia.MemberAnswer{
				{Model: "fake/alpha", Instance: 1, Status: "ok", LatencyMs: 120, StartMs: 0, Content: content, Usage: &openai.Usage{PromptTokens: 3, CompletionTokens: 7, TotalTokens: 10}},
				{Model: "fake/beta", Instance: 1, Status: "timeout", LatencyMs: 200, Error: "no answer within member_timeout (200ms)"},
			},
			Arbiter: &consortia.ArbiterReply{Model: "fake/judge", Reply: "<analysis>fine</analysis>", Confidence: &conf, Dissent: "beta <b>timed</b> out", StartMs: 200, LatencyMs: 100},
		}},
	}
}

type testUI struct {
	t *testing.T
	h *Handler
}

func newTestUI(t *testing.T, cfg Config) *testUI {
	if cfg.Runs == nil {
		cfg.Runs = fakeRuns{
			"alice": {"run_a": sampleRun("run_a", "alice says <script>alert('x')</script>")},
			"bob":   {"run_b": sampleRun("run_b", "bob's answer")},
		}
	}
	return &testUI{t: t, h: New(cfg)}
}

// do serves a request to host (localhost when empty) with the cookie c.
func (u *testUI) do(method, target, body string, c *http.Cookie, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://localhost"+target, strings.NewReader(body))
	if method == http.MethodPost {
		r.Header.Set("Origin", "http://localhost")
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if c != nil {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	u.h.ServeHTTP(w, r)
	return w
}

func (u *testUI) signIn(key string) *http.Cookie {
	u.t.Helper()
	w := u.do("POST", "/ui/signin", "key="+url.QueryEscape(key), nil)
	if w.Code != http.StatusSeeOther {
		u.t.Fatalf("sign in with %q: %d %s", key, w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	u.t.Fatal("no session cookie")
	return nil
}

var keyed = Config{Keys: []Key{{"alice", "sk-alice"}, {"bob", "sk-bob"}}, AdminKey: "sk-admin"}

func TestEscapingAndHeaders(t *testing.T) {
	u := newTestUI(t, keyed)
	c := u.signIn("sk-alice")
	w := u.do("GET", "/ui/runs/run_a", "", c)
	if w.Code != 200 {
		t.Fatalf("run page: %d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") {
		t.Errorf("the member's <script> is not escaped as text:\n%s", body)
	}
	if strings.Contains(body, "<b>timed</b>") {
		t.Error("the arbiter's dissent is not escaped")
	}
	if got := w.Header().Get("Content-Security-Policy"); got != "default-src 'self'; frame-ancestors 'none'" {
		t.Errorf("CSP %q", got)
	}
	for _, want := range []string{"fake/alpha#1", "fake/beta#1", "timeout", "no answer within member_timeout", `id="waterfall"`, "<rect", "/ui/runs/run_a/record.json", "3 in / 7 out"} {
		if !strings.Contains(body, want) {
			t.Errorf("the run page lacks %q", want)
		}
	}
	if strings.Contains(body, "style=") || strings.Contains(body, "<script>") && !strings.Contains(body, `<script src="/ui/static/`) {
		t.Error("inline style or script, which the CSP blocks")
	}
	w = u.do("GET", "/ui/runs/run_a/record.json", "", c)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"run_id":"run_a"`) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("record: %d %s", w.Code, w.Body)
	}
}

func TestSignIn(t *testing.T) {
	u := newTestUI(t, keyed)
	// Without a session, pages send to the form.
	if w := u.do("GET", "/ui/", "", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/signin" {
		t.Errorf("no session: %d %q", w.Code, w.Header().Get("Location"))
	}
	// A wrong key is refused, and says so.
	w := u.do("POST", "/ui/signin", "key=sk-wrong", nil)
	if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "not one of this proxy") {
		t.Errorf("wrong key: %d %v", w.Code, w.Result().Cookies())
	}
	w = u.do("POST", "/ui/signin", "key=sk-alice", nil)
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure || c.MaxAge <= 0 || c.Expires.IsZero() {
		t.Errorf("cookie %+v", c)
	}
	if strings.Contains(c.Value, "sk-alice") || len(c.Value) < 32 || strings.Contains(w.Header().Get("Location"), "sk-") {
		t.Errorf("the key leaks: cookie %q, location %q", c.Value, w.Header().Get("Location"))
	}
	// Behind TLS the cookie is Secure.
	w = u.do("POST", "/ui/signin", "key=sk-alice", nil, "X-Forwarded-Proto", "https")
	if c := w.Result().Cookies()[0]; !c.Secure {
		t.Error("not Secure behind TLS")
	}
	// Sign-out ends the session.
	if w := u.do("POST", "/ui/signout", "", c); w.Code != http.StatusSeeOther {
		t.Errorf("sign out: %d", w.Code)
	}
	if w := u.do("GET", "/ui/", "", c); w.Code != http.StatusSeeOther {
		t.Errorf("the session outlived its sign-out: %d", w.Code)
	}
}

func TestSignInRateLimited(t *testing.T) {
	u := newTestUI(t, Config{Keys: keyed.Keys, SignInsPerMinute: 3})
	for i := range 3 {
		if w := u.do("POST", "/ui/signin", "key=guess", nil); w.Code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, w.Code)
		}
	}
	w := u.do("POST", "/ui/signin", "key=sk-alice", nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("the 4th attempt in a minute: %d", w.Code)
	}
}

func TestOrigin(t *testing.T) {
	u := newTestUI(t, keyed)
	for _, origin := range []string{"", "null", "http://evil.example", "http://localhost.evil.example"} {
		r := httptest.NewRequest("POST", "http://localhost/ui/signin", strings.NewReader("key=sk-alice"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		u.h.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
			t.Errorf("origin %q: %d", origin, w.Code)
		}
	}
}

func TestLoopbackOnlyWithoutKeys(t *testing.T) {
	u := newTestUI(t, Config{Runs: fakeRuns{"anonymous": {"run_x": sampleRun("run_x", "hi")}}})
	for host, want := range map[string]int{"localhost:8080": 200, "127.0.0.1:8080": 200, "[::1]:8080": 200, "evil.example": 403, "10.0.0.5:8080": 403} {
		r := httptest.NewRequest("GET", "http://"+host+"/ui/", nil)
		w := httptest.NewRecorder()
		u.h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %s: %d, want %d", host, w.Code, want)
		}
		if want == 200 && !strings.Contains(w.Body.String(), "run_x") {
			t.Errorf("Host %s: no run listed", host)
		}
	}
}

func TestTenantsSeeOnlyTheirOwn(t *testing.T) {
	u := newTestUI(t, keyed)
	alice := u.signIn("sk-alice")
	list := u.do("GET", "/ui/", "", alice).Body.String()
	if !strings.Contains(list, "run_a") || strings.Contains(list, "run_b") {
		t.Errorf("alice's list:\n%s", list)
	}
	for _, target := range []string{"/ui/runs/run_b", "/ui/runs/run_b/record.json", "/ui/runs/run_b?tenant=bob"} {
		if w := u.do("GET", target, "", alice); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "bob's answer") {
			t.Errorf("alice reads %s: %d", target, w.Code)
		}
	}
	admin := u.signIn("sk-admin")
	list = u.do("GET", "/ui/", "", admin).Body.String()
	if !strings.Contains(list, "run_a") || !strings.Contains(list, "run_b") || !strings.Contains(list, "/ui/runs/run_b?tenant=bob") {
		t.Errorf("the admin's list:\n%s", list)
	}
	if w := u.do("GET", "/ui/runs/run_b?tenant=bob", "", admin); w.Code != 200 || !strings.Contains(w.Body.String(), "bob&#39;s answer") {
		t.Errorf("the admin reads bob's run: %d", w.Code)
	}
}

type fakeBoard string

func (f fakeBoard) Board(context.Context, string, bool) ([]byte, error) { return []byte(f), nil }

func TestLeaderboard(t *testing.T) {
	u := newTestUI(t, Config{})
	if w := u.do("GET", "/ui/leaderboard", "", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "No scores yet") {
		t.Errorf("no scores: %d %s", w.Code, w.Body)
	}
	u = newTestUI(t, Config{Leaderboard: fakeBoard(`{"consortia":[{"name":"best","models":[
		{"model":"openai/<gpt>","rating":1100,"rating_ci95":[1050,1150],"win_rate":0.7,"answers":10},
		{"model":"anthropic/haiku","rating":900,"rating_ci95":[850,960],"win_rate":0.3,"answers":10}]}]}`)})
	body := u.do("GET", "/ui/leaderboard", "", nil).Body.String()
	if strings.Count(body, "<circle") != 2 || !strings.Contains(body, "openai/&lt;gpt&gt;") || !strings.Contains(body, "1050.0–1150.0") {
		t.Errorf("leaderboard:\n%s", body)
	}
}

func TestPlayground(t *testing.T) {
	var got struct {
		tenant, body, events string
	}
	cfg := keyed
	cfg.Consortia = []string{"council"}
	cfg.Chat = func(w http.ResponseWriter, r *http.Request, tenant string) {
		b := new(strings.Builder)
		r.Body.Read(make([]byte, 0))
		buf := make([]byte, 4096)
		n, _ := r.Body.Read(buf)
		b.Write(buf[:n])
		got.tenant, got.body, got.events = tenant, b.String(), r.Header.Get("X-Consortium-Events")
		if r.Header.Get("Cookie") != "" {
			t.Error("the cookie reaches the chat")
		}
		w.Write([]byte("data: [DONE]\n\n"))
	}
	u := newTestUI(t, cfg)
	c := u.signIn("sk-bob")
	if w := u.do("GET", "/ui/playground", "", c); w.Code != 200 || !strings.Contains(w.Body.String(), "<option>council</option>") {
		t.Fatalf("playground page: %d", w.Code)
	}
	w := u.do("POST", "/ui/playground/chat", `{"consortium":"council","message":"hi"}`, c)
	if w.Code != 200 || got.tenant != "bob" || got.events != "true" || !strings.Contains(got.body, `"model":"council"`) || !strings.Contains(got.body, `"stream":true`) {
		t.Errorf("chat: %d, tenant %q, events %q, body %s", w.Code, got.tenant, got.events, got.body)
	}
	if w := u.do("POST", "/ui/playground/chat", `{"consortium":"other","message":"hi"}`, c); w.Code != http.StatusBadRequest {
		t.Errorf("unknown consortium: %d", w.Code)
	}
	if w := u.do("POST", "/ui/playground/chat", `{"consortium":"council","message":"hi"}`, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("no session: %d", w.Code)
	}
}

// TestLeaderboardWithoutRatings: models without comparisons have no
// rating: the table lists them, the chart leaves them out.
func TestLeaderboardWithoutRatings(t *testing.T) {
	u := newTestUI(t, Config{Leaderboard: fakeBoard(`{"consortia":[{"name":"new","models":[
		{"model":"demo/alpha","rating":null,"rating_ci95":null,"win_rate":null,"answers":1,"regret":0}]}]}`)})
	w := u.do("GET", "/ui/leaderboard", "", nil)
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, "demo/alpha") || strings.Contains(body, "<svg") {
		t.Errorf("leaderboard without ratings: %d\n%s", w.Code, body)
	}
}

// TestSessionsOfOneTenantEvictNoOther: a key holder signing in over and
// over (from many addresses) ends only its own oldest sessions, never
// another tenant's or the admin's.
func TestSessionsOfOneTenantEvictNoOther(t *testing.T) {
	s := newSessions(time.Hour)
	admin, _ := s.add(viewer{Admin: true})
	bob, _ := s.add(viewer{Tenant: "bob"})
	for range maxSessions + 10 {
		s.add(viewer{Tenant: "mallory"})
	}
	if _, ok := s.get(admin); !ok {
		t.Error("the admin's session was evicted by another tenant's sign-ins")
	}
	if _, ok := s.get(bob); !ok {
		t.Error("bob's session was evicted by another tenant's sign-ins")
	}
	if n := len(s.m); n > maxSessions {
		t.Errorf("%d sessions kept, more than %d", n, maxSessions)
	}
}

// TestSignInRateLimitedPerIPv6Network: a client holding an IPv6 /64 (as
// any IPv6 host does) cannot take a fresh budget per address in it.
func TestSignInRateLimitedPerIPv6Network(t *testing.T) {
	u := newTestUI(t, Config{Keys: keyed.Keys, SignInsPerMinute: 3})
	try := func(addr string) int {
		r := httptest.NewRequest("POST", "http://localhost/ui/signin", strings.NewReader("key=guess"))
		r.Header.Set("Origin", "http://localhost")
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Forwarded-For", "198.51.100.7")
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		u.h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range 3 {
		if code := try(fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1)); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	if code := try("[2001:db8:1:2:ffff::9]:4000"); code != http.StatusTooManyRequests {
		t.Errorf("a 4th attempt from another address of the same /64: %d, want 429", code)
	}
	if code := try("[2001:db8:1:3::1]:4000"); code != http.StatusUnauthorized {
		t.Errorf("another /64: %d, want 401", code)
	}
	if code := try("192.0.2.10:4000"); code != http.StatusUnauthorized {
		t.Errorf("an IPv4 address: %d, want 401", code)
	}
}

// TestHeadWithoutSession: a HEAD is a GET without its body: without a
// session it is sent to the sign-in form too, not refused as a POST is.
func TestHeadWithoutSession(t *testing.T) {
	u := newTestUI(t, keyed)
	if w := u.do("HEAD", "/ui/", "", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/signin" {
		t.Errorf("HEAD /ui/ without a session: %d %q, want 303 to /ui/signin", w.Code, w.Header().Get("Location"))
	}
}

// TestLoopbackOnlyWithoutKeysNotBySpoofedHost: without keys, a client
// that reached the proxy on another address (a listener on 0.0.0.0 with
// auth.allow_open) cannot read the runs by sending Host: localhost.
func TestLoopbackOnlyWithoutKeysNotBySpoofedHost(t *testing.T) {
	u := newTestUI(t, Config{Runs: fakeRuns{"anonymous": {"run_x": sampleRun("run_x", "hi")}}})
	for local, want := range map[string]int{"127.0.0.1": 200, "::1": 200, "10.0.0.5": 403, "192.0.2.80": 403} {
		r := httptest.NewRequest("GET", "http://localhost:8080/ui/", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP(local), Port: 8080}))
		w := httptest.NewRecorder()
		u.h.ServeHTTP(w, r)
		if w.Code != want || (want != 200 && strings.Contains(w.Body.String(), "run_x")) {
			t.Errorf("Host localhost on a connection to %s: %d, want %d", local, w.Code, want)
		}
	}
}

// TestSignInEndsThePreviousSession: signing in again, as anyone, ends the
// session the browser held; its id opens nothing afterwards.
func TestSignInEndsThePreviousSession(t *testing.T) {
	u := newTestUI(t, keyed)
	old := u.signIn("sk-alice")
	w := u.do("POST", "/ui/signin", "key=sk-bob", old)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", w.Code)
	}
	if w := u.do("GET", "/ui/", "", old); w.Code != http.StatusSeeOther {
		t.Errorf("the session before the second sign-in still opens the pages: %d", w.Code)
	}
}

// TestEveryUntrustedStringEscaped: every string a run record, the config
// or a tenant's name brings, markup in each, renders as text on the run
// page (its SVG waterfall included), the runs list and the playground.
func TestEveryUntrustedStringEscaped(t *testing.T) {
	const x = `<x y="1">`
	conf := 0.5
	run := sampleRun("run_e", "member "+x)
	run.Consortium, run.Strategy, run.ConversationID, run.Fallback = "c"+x, "s"+x, "conv"+x, "fallback"+x
	run.Scores = []consortia.Score{{Model: "m" + x, Instance: 1, Score: 1, Place: 1}}
	run.Votes = []consortia.VoteGroup{{Answer: "vote" + x, Weight: 1, Members: []string{"voter" + x}}}
	rd := &run.Rounds[0]
	rd.Members[0].Model, rd.Members[0].Fallback, rd.Members[0].Label = "member-model"+x, "member-fallback"+x, "label"+x
	rd.Members[1].Error, rd.Members[1].Status = "error"+x, "status"+x
	rd.Judges = []consortia.JudgeReply{{Model: "judge" + x, Group: "group" + x, RankedMembers: []string{"ranked" + x}, Dropped: []string{"dropped" + x}},
		{Model: "judge2" + x, Error: "judge-error" + x}}
	a := rd.Arbiter
	a.Model, a.Reply, a.Dissent, a.RefinementAreas, a.RankedModels, a.Error = "arbiter"+x, "reply"+x, "dissent"+x, "areas"+x, []string{"arbiter-ranked" + x}, "arbiter-error"+x
	tierRun := sampleRun("run_t", "tier member "+x)
	rd.Tiers = []consortia.TierRun{
		{Tier: consortia.Tier{Tier: "tier" + x, Confidence: &conf}, Run: tierRun},
		{Tier: consortia.Tier{Tier: "tier-call" + x}, Call: &consortia.MemberAnswer{Model: "tier-model" + x, Status: "ok", Content: "tier-content" + x}},
		{Tier: consortia.Tier{Tier: "tier-failed" + x, Error: "tier-error" + x}},
	}
	tenant := "t" + x
	cfg := Config{Keys: []Key{{tenant, "sk-t"}}, AdminKey: "sk-admin", Consortia: []string{"c" + x},
		Chat: func(http.ResponseWriter, *http.Request, string) {},
		Runs: fakeRuns{tenant: {"run_e": run}}}
	u := newTestUI(t, cfg)
	admin, tc := u.signIn("sk-admin"), u.signIn("sk-t")
	for _, p := range []struct {
		c    *http.Cookie
		path string
	}{{admin, "/ui/"}, {admin, "/ui/runs/run_e?tenant=" + url.QueryEscape(tenant)}, {tc, "/ui/"}, {tc, "/ui/runs/run_e"}, {tc, "/ui/playground"}} {
		w := u.do("GET", p.path, "", p.c)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", p.path, w.Code, w.Body)
		}
		if body := w.Body.String(); strings.Contains(body, "<x") || !strings.Contains(body, "&lt;x") {
			i := strings.Index(body, "<x")
			t.Errorf("%s renders markup from the record: …%s…", p.path, body[max(0, i-120):min(len(body), i+40)])
		}
	}
}

// TestRefusalsArePages: the pages' refusals a browser lands on (a Host
// they do not answer, a form posted from another origin) are HTML pages
// under the pages' headers, not bare text.
func TestRefusalsArePages(t *testing.T) {
	open := newTestUI(t, Config{})
	r := httptest.NewRequest("GET", "http://rebound.example/ui/", nil)
	w := httptest.NewRecorder()
	open.h.ServeHTTP(w, r)
	keyedUI := newTestUI(t, keyed)
	r = httptest.NewRequest("POST", "http://localhost/ui/signout", nil)
	r.Header.Set("Origin", "http://evil.example")
	w2 := httptest.NewRecorder()
	keyedUI.h.ServeHTTP(w2, r)
	for _, w := range []*httptest.ResponseRecorder{w, w2} {
		if w.Code != http.StatusForbidden || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") || !strings.Contains(w.Body.String(), `<p class="error" role="alert">`) ||
			w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("refusal: %d %q\n%s", w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
}

type downBoard struct{}

func (downBoard) Board(context.Context, string, bool) ([]byte, error) {
	return nil, errors.New("scores store unavailable: dial tcp 10.1.2.3:6379: connect: connection refused")
}

// TestLeaderboardStoreDown: the page says the scores are unavailable,
// never the store's own error, which names its address (the log has it).
func TestLeaderboardStoreDown(t *testing.T) {
	u := newTestUI(t, Config{Leaderboard: downBoard{}})
	w := u.do("GET", "/ui/leaderboard", "", nil)
	if body := w.Body.String(); w.Code != http.StatusServiceUnavailable || !strings.Contains(body, "unavailable") || strings.Contains(body, "10.1.2.3") {
		t.Errorf("store down: %d\n%s", w.Code, body)
	}
}
