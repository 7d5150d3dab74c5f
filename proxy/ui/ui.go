// Package ui owns consortium's web pages under /ui/: the recent runs, a
// run's page (rounds, members side by side, the arbiter's or judges'
// decision, a timing waterfall, usage and cost), the leaderboard and a
// playground. Pages are html/template with embedded CSS and JavaScript:
// no build step, no request leaving the origin, every model output
// escaped as text, under a strict Content-Security-Policy. It owns the
// pages' sign-in (a random session id in a cookie, never the key), their
// same-origin checks and the sign-in rate limit. It stores nothing and
// runs nothing itself: the proxy hands it the run store, the scores and a
// function that runs a chat for a tenant, through the interfaces declared
// here; the cookie it sets is never accepted on the /v1 routes.
package ui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/cache"
)

// Runs is where the pages read runs: *cache.Conversations satisfies it.
type Runs interface {
	// Runs returns a tenant's recent runs, newest first.
	Runs(ctx context.Context, tenant string, limit int) ([]cache.RunSummary, error)
	// Run returns a run record (the JSON of GET /v1/consortium/runs/{id}),
	// or cache.ErrNotFound.
	Run(ctx context.Context, tenant, id string) ([]byte, error)
}

// Leaderboard is where the leaderboard page reads the scores. Board
// returns the body GET /v1/consortium/leaderboard serves (DESIGN "Scores,
// leaderboard and cost"): every consortium, or only the named one;
// volumes adds the admin's columns (runs, tokens, cost_usd).
type Leaderboard interface {
	Board(ctx context.Context, consortium string, volumes bool) ([]byte, error)
}

// Key is a client key the sign-in form accepts; Tenant is its name.
type Key struct {
	Tenant, Key string
}

// Config is what New needs.
type Config struct {
	// Keys are the client keys. With none, the pages need no sign-in, serve
	// the tenant "anonymous", and answer only a loopback Host.
	Keys []Key
	// AdminKey, when set, signs in to every tenant's runs.
	AdminKey string
	// Runs is the run store. Required.
	Runs Runs
	// Leaderboard reads the scores. If nil, the leaderboard page says
	// there are none yet.
	Leaderboard Leaderboard
	// Consortia are the consortiums the playground offers, in order.
	Consortia []string
	// Chat serves a chat completion request r (a streamed one, with
	// X-Consortium-Events: true) as tenant, as POST /v1/chat/completions
	// would for that tenant's key, limits included. If nil, the
	// playground is off.
	Chat func(w http.ResponseWriter, r *http.Request, tenant string)
	// SessionTTL is how long a sign-in lasts. If zero, 12h is used.
	SessionTTL time.Duration
	// SignInsPerMinute bounds sign-in attempts per client address. If
	// zero, 10 is used.
	SignInsPerMinute int
	// Logger receives sign-in failures. If nil, slog.Default() is used.
	Logger *slog.Logger
}

// Handler serves the pages. It is an http.Handler for the paths under
// /ui/.
type Handler struct {
	cfg      Config
	keys     []keyDigest
	admin    *[sha256.Size]byte
	sessions *sessions
	limiter  *signInLimiter
	tmpl     map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
	log      *slog.Logger
}

type keyDigest struct {
	tenant string
	digest [sha256.Size]byte
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// anonymous is the one tenant of a proxy without client keys.
const anonymous = "anonymous"

// New returns the pages' handler.
func New(cfg Config) *Handler {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SignInsPerMinute <= 0 {
		cfg.SignInsPerMinute = 10
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, sessions: newSessions(cfg.SessionTTL), limiter: newSignInLimiter(cfg.SignInsPerMinute)}
	if h.log == nil {
		h.log = slog.Default()
	}
	for _, k := range cfg.Keys {
		h.keys = append(h.keys, keyDigest{tenant: k.Tenant, digest: sha256.Sum256([]byte(k.Key))})
	}
	if cfg.AdminKey != "" {
		d := sha256.Sum256([]byte(cfg.AdminKey))
		h.admin = &d
	}
	h.tmpl = parseTemplates()
	sub, _ := fs.Sub(staticFS, "static")
	h.static = http.StripPrefix("/ui/static/", http.FileServerFS(sub))

	m := http.NewServeMux()
	m.HandleFunc("GET /ui/{$}", h.signedIn(h.runsPage))
	m.HandleFunc("GET /ui/runs/{id}", h.signedIn(h.runPage))
	m.HandleFunc("GET /ui/runs/{id}/record.json", h.signedIn(h.runRecord))
	m.HandleFunc("GET /ui/leaderboard", h.signedIn(h.leaderboardPage))
	m.HandleFunc("GET /ui/playground", h.signedIn(h.playgroundPage))
	m.HandleFunc("POST /ui/playground/chat", h.signedIn(h.playgroundChat))
	m.HandleFunc("GET /ui/signin", h.signInPage)
	m.HandleFunc("POST /ui/signin", h.signIn)
	m.HandleFunc("POST /ui/signout", h.signOut)
	m.Handle("GET /ui/static/", h.static)
	m.HandleFunc("/ui/", h.notFound)
	h.mux = m
	return h
}

// ServeHTTP serves a page, under the headers every page carries, to a
// request the pages may answer: with no keys configured, only one whose
// Host is loopback (a DNS-rebinding page elsewhere must not read the
// runs) and that came in on a loopback address (a client elsewhere, on a
// listener opened with auth.allow_open, would just send Host: localhost);
// every POST only from the pages' own origin.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	if len(h.keys) == 0 && (!loopbackHost(r.Host) || !loopbackConn(r)) {
		h.render(w, r, http.StatusForbidden, "error", page{Title: "Forbidden",
			Error: "Without client keys configured, the pages answer only on a loopback address (localhost, 127.0.0.1, [::1])."})
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		h.render(w, r, http.StatusForbidden, "error", page{Title: "Forbidden", Error: "A form posted from another origin is refused."})
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackConn reports whether r came in on a loopback address of this
// host; true when the server does not say (a handler called directly).
func loopbackConn(r *http.Request) bool {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return a.IP.IsLoopback()
	}
	return true
}

// sameOrigin reports whether a POST comes from a page of this origin: its
// Origin header names this Host (a browser sends it on every POST).
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	scheme, host, ok := strings.Cut(origin, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return false
	}
	return strings.EqualFold(host, r.Host)
}

// bodyReadTimeout is how long a client has to send a POST's body, as on
// every route of the proxy (DESIGN, "Limits that protect the process").
const bodyReadTimeout = time.Minute

// errBodyTimeout is a body that did not arrive within bodyReadTimeout.
var errBodyTimeout = errors.New("the request body did not arrive within a minute")

// readBody reads a POST's body, at most limit bytes, within
// bodyReadTimeout. A client that trickles it gets 408 and its connection
// closed (the deadline stays, so net/http does not wait on it after the
// handler), and errBodyTimeout; other failures are the caller's to
// answer.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		w.Header().Set("Connection", "close")
		http.Error(w, errBodyTimeout.Error(), http.StatusRequestTimeout)
		return nil, errBodyTimeout
	}
	rc.SetReadDeadline(time.Time{})
	return data, err
}

// authenticate returns the tenant of a key and whether it is the admin's.
// Every key is compared, in constant time.
func (h *Handler) authenticate(key string) (tenant string, admin, ok bool) {
	d := sha256.Sum256([]byte(key))
	for _, k := range h.keys {
		if subtle.ConstantTimeCompare(d[:], k.digest[:]) == 1 {
			tenant, ok = k.tenant, true
		}
	}
	if h.admin != nil && subtle.ConstantTimeCompare(d[:], h.admin[:]) == 1 {
		return "", true, true
	}
	return tenant, false, ok
}

// tenants are the tenants an admin sees: the configured keys' names.
func (h *Handler) tenants() []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range h.keys {
		if !seen[k.tenant] {
			seen[k.tenant] = true
			out = append(out, k.tenant)
		}
	}
	return out
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusNotFound, "error", page{Title: "Not found", Error: "There is no page at " + r.URL.Path + "."})
}
