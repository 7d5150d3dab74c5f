package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// cookieName is the session cookie. It holds a random id, never a key, and
// is scoped to /ui/, so no /v1 route ever receives it.
const cookieName = "consortium_ui"

// maxSessions bounds the sessions kept; past it the oldest goes.
const maxSessions = 10000

// sessionsPerViewer bounds one tenant's (or the admin's) sessions; past
// it that viewer's oldest goes, so that a key holder signing in again
// and again ends its own sessions, never another tenant's.
const sessionsPerViewer = 100

// viewer is who is looking at a page: a tenant, or the admin (every
// tenant's runs).
type viewer struct {
	Tenant string
	Admin  bool
	// Session is the session id, "" without keys (no sign-in).
	Session string
}

type session struct {
	viewer
	expires time.Time
}

// sessions are the signed-in sessions, in memory: a replica signs in its
// own (behind a load balancer, sticky sessions or a sign-in per replica).
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]session{}}
}

// add starts a session for v and returns its id.
func (s *sessions) add(v viewer) (string, time.Time) {
	var b [32]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	now := time.Now()
	expires := now.Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	mine, oldestMine, atMine := 0, "", time.Time{}
	for k, se := range s.m {
		if se.Tenant == v.Tenant && se.Admin == v.Admin {
			mine++
			if oldestMine == "" || se.expires.Before(atMine) {
				oldestMine, atMine = k, se.expires
			}
		}
	}
	if mine >= sessionsPerViewer {
		delete(s.m, oldestMine)
	}
	if len(s.m) >= maxSessions {
		// Expired ones first; then the one that expires soonest.
		oldest, at := "", time.Time{}
		for k, v := range s.m {
			if now.After(v.expires) {
				delete(s.m, k)
				continue
			}
			if oldest == "" || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		if len(s.m) >= maxSessions {
			delete(s.m, oldest)
		}
	}
	v.Session = id
	s.m[id] = session{viewer: v, expires: expires}
	return id, expires
}

func (s *sessions) get(id string) (viewer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return viewer{}, false
	}
	if time.Now().After(se.expires) {
		delete(s.m, id)
		return viewer{}, false
	}
	return se.viewer, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

type viewerKey struct{}

func viewerOf(ctx context.Context) viewer {
	v, _ := ctx.Value(viewerKey{}).(viewer)
	return v
}

// signedIn serves a page to a signed-in viewer, and sends others to the
// sign-in form. Without keys every viewer is the tenant "anonymous".
func (h *Handler) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := viewer{Tenant: anonymous}
		if len(h.keys) > 0 {
			c, err := r.Cookie(cookieName)
			var ok bool
			if err == nil {
				v, ok = h.sessions.get(c.Value)
			}
			if !ok {
				if r.Method != http.MethodGet && r.Method != http.MethodHead {
					http.Error(w, "sign in first", http.StatusUnauthorized)
					return
				}
				http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	}
}

func (h *Handler) signInPage(w http.ResponseWriter, r *http.Request) {
	if len(h.keys) == 0 {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "signin", page{Title: "Sign in"})
}

// signIn checks the key posted by the form and starts a session. The key
// comes in the body only, never in a URL; the cookie holds a random id.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	if len(h.keys) == 0 {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	if !h.limiter.allow(limitKey(clientAddr(r))) {
		w.Header().Set("Retry-After", "60")
		h.render(w, r, http.StatusTooManyRequests, "signin", page{Title: "Sign in", Error: "Too many sign-in attempts. Wait a minute and try again."})
		return
	}
	body, err := readBody(w, r, 8<<10)
	if errors.Is(err, errBodyTimeout) {
		return
	}
	form, perr := url.ParseQuery(string(body))
	if err != nil || perr != nil {
		h.render(w, r, http.StatusBadRequest, "signin", page{Title: "Sign in", Error: "The form could not be read."})
		return
	}
	key := strings.TrimSpace(form.Get("key"))
	tenant, admin, ok := h.authenticate(key)
	if !ok {
		h.log.Warn("ui: sign-in refused", "addr", clientAddr(r))
		h.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Error: "That key is not one of this proxy's keys."})
		return
	}
	// The session the browser held, if any, ends: it is replaced, never
	// left valid beside the new one.
	if c, err := r.Cookie(cookieName); err == nil {
		h.sessions.remove(c.Value)
	}
	id, expires := h.sessions.add(viewer{Tenant: tenant, Admin: admin})
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: "/ui/", Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: behindTLS(r),
	})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		h.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: behindTLS(r)})
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

// behindTLS reports whether the browser reached the pages over TLS: this
// server's own, or a terminating proxy's that says so.
func behindTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// clientAddr is the client's address, without its port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitKey is what the sign-in limit counts attempts by: the client's
// address, or for IPv6 its /64, which one host holds whole and could
// otherwise spend a fresh budget per address of.
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is6() || ip.Is4In6() {
		return addr
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}

// signInLimiter bounds sign-in attempts per client address, so that keys
// cannot be guessed through the form faster than through the API.
type signInLimiter struct {
	perMinute int
	mu        sync.Mutex
	m         map[string]*rate.Limiter
}

func newSignInLimiter(perMinute int) *signInLimiter {
	return &signInLimiter{perMinute: perMinute, m: map[string]*rate.Limiter{}}
}

func (l *signInLimiter) allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[addr]
	if !ok {
		if len(l.m) >= maxSessions {
			// Bounded: forgetting every address lets each try its
			// burst again, no more.
			clear(l.m)
		}
		lim = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.m[addr] = lim
	}
	return lim.Allow()
}
