package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/consortium-dev/consortium/cache"
)

// requestInfo is what the handlers learn about a request that the log line
// and the metrics written after it need. The middleware puts one in the
// context; handlers fill it.
type requestInfo struct {
	id       string
	tenant   string
	model    string
	provider string
	err      error // the failure behind an error answer, for the log
	overhead time.Duration
}

type infoKey struct{}

// info returns the request's requestInfo.
func info(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{tenant: anonymous}
}

// anonymous is the one tenant of a proxy without client keys.
const anonymous = "anonymous"

// requestID gives every request an id, echoed in X-Request-Id: the
// client's own when it sent a sane one, else a new one.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if len(id) == 0 || len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
			id = cache.NewID("req_")
		}
		w.Header().Set("X-Request-Id", id)
		ri := &requestInfo{id: id, tenant: anonymous}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
	})
}

// observe writes one log line and the request metrics for every request.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)

		ri := info(r.Context())
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		// A client that went away is a 499, whatever the handler wrote. A
		// body that timed out ends the request's context too, but that
		// client is still there and got its 408.
		if ri.err != nil && r.Context().Err() != nil && ri.err != errRequestTimeout {
			status = statusClientClosed
		}
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(elapsed.Seconds())
		if ri.overhead > 0 {
			s.metrics.overhead.Observe(ri.overhead.Seconds())
		}

		attrs := []slog.Attr{
			slog.String("request_id", ri.id),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Duration("duration", elapsed),
			slog.String("tenant", ri.tenant),
		}
		if ri.model != "" {
			attrs = append(attrs, slog.String("model", ri.model))
		}
		if ri.provider != "" {
			attrs = append(attrs, slog.String("provider", ri.provider))
		}
		level := slog.LevelInfo
		if ri.err != nil {
			attrs = append(attrs, slog.String("error", ri.err.Error()))
			if status >= 500 && status != statusClientClosed {
				level = slog.LevelWarn
			}
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// statusWriter records the status a handler wrote. It passes Flush through
// and unwraps for http.ResponseController, so streams stay unbuffered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recoverPanics answers a panicking handler with a 500 and logs the stack,
// so no request can take the process down.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p) // net/http's way to abort a response; it logs nothing
			}
			s.metrics.panics.Inc()
			ri := info(r.Context())
			ri.err = fmt.Errorf("panic: %v", p)
			s.log.Error("handler panicked", "request_id", ri.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			writeError(w, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
				Message: "the proxy failed while handling this request; the error is in its log under request id " + ri.id})
		}()
		next.ServeHTTP(w, r)
	})
}

// keyDigest is a configured client key, kept only as its digest.
type keyDigest struct {
	name   string
	digest [sha256.Size]byte
}

func hashKeys(keys []ClientKey) []keyDigest {
	out := make([]keyDigest, len(keys))
	for i, k := range keys {
		out[i] = keyDigest{name: k.Name, digest: sha256.Sum256([]byte(k.Key))}
	}
	return out
}

// clientAuth checks the client's key when keys are configured and records
// the tenant. The key is read from Authorization: Bearer KEY or, as
// Anthropic's SDKs send it, from x-api-key, on every client route (so
// that an Anthropic client can list /v1/models too); when both are sent,
// the bearer key is the one checked. Every configured key is compared, in
// constant time, so timing tells nothing about which keys exist.
func (s *Server) clientAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.keys) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		key, ok := clientKey(r)
		if !ok {
			s.refuse(w, r, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "missing_api_key",
				Message: "You didn't provide an API key. Send it as Authorization: Bearer KEY or as x-api-key: KEY."})
			return
		}
		digest := sha256.Sum256([]byte(key))
		tenant := ""
		for _, k := range s.keys {
			if subtle.ConstantTimeCompare(digest[:], k.digest[:]) == 1 {
				tenant = k.name
			}
		}
		if tenant == "" {
			s.refuse(w, r, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key",
				Message: "Incorrect API key provided."})
			return
		}
		info(r.Context()).tenant = tenant
		next.ServeHTTP(w, r)
	})
}

// clientKey returns the client's key: the bearer token, else x-api-key.
func clientKey(r *http.Request) (string, bool) {
	if r.Header.Get("Authorization") != "" {
		return bearer(r)
	}
	key := strings.TrimSpace(r.Header.Get("X-Api-Key"))
	return key, key != ""
}

// clientLimit holds each client key to its rpm.
func (s *Server) clientLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.limits.Allow(r.Context(), info(r.Context()).tenant); err != nil {
			info(r.Context()).err = err
			s.refuse(w, r, errorFrom(err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a request the middleware turns away in the error shape
// of the API it called: Anthropic's on /v1/messages, OpenAI's elsewhere.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *apiError) {
	if r.URL.Path == messagesPath {
		writeMessagesError(w, r, e)
		return
	}
	writeError(w, e)
}

// messagesPath is the route of Anthropic's Messages API.
const messagesPath = "/v1/messages"

// adminAuth guards /metrics with the admin key when one is set.
func (s *Server) adminAuth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.cfg.AdminKey))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminKey != "" {
			key, _ := bearer(r)
			got := sha256.Sum256([]byte(key))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				writeError(w, &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key",
					Message: "/metrics needs the admin key as Authorization: Bearer KEY."})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// bearer returns the key of an "Authorization: Bearer KEY" header.
func bearer(r *http.Request) (string, bool) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", false
	}
	return key, true
}
