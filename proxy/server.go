// Package proxy owns consortium's HTTP surface: the chi router and its
// routes, client authentication and tenants, request checks, the mapping of
// every error to OpenAI's JSON shape, passthrough forwarding (JSON and SSE),
// health, readiness and metrics. It decides which model a request goes to;
// calling providers belongs to upstream.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream"
)

// Options is what New needs.
type Options struct {
	// Config is the validated configuration.
	Config *config.Config

	// Logger receives one line per request and every failure. If nil,
	// slog.Default() is used.
	Logger *slog.Logger

	// Registry is where the metrics are registered and what /metrics
	// serves. If nil, a new registry is used.
	Registry *prometheus.Registry

	// Transport, if set, carries every upstream call (tests use it to count
	// connections). If nil, each provider gets a tuned transport of its own.
	Transport http.RoundTripper

	// KeepAlive is how often a consortium stream whose members are still
	// working gets an SSE comment, so that proxies with idle timeouts keep
	// it open. If zero, 10s is used.
	KeepAlive time.Duration

	// Store, if set, keeps conversations and runs instead of the store
	// the configuration names (tests share one between servers).
	Store cache.Store

	// Backoff, if set, replaces the first retry backoff ceiling of every
	// provider (tests shorten it).
	Backoff time.Duration
}

// Server is the proxy's HTTP handler.
type Server struct {
	cfg       *config.Config
	log       *slog.Logger
	metrics   *metrics
	registry  *prometheus.Registry
	providers map[string]*upstream.Provider
	consortia map[string]*consortia.Engine
	keys      []clientKey
	limits    limiter
	router    http.Handler
	draining  atomic.Bool
	keepAlive time.Duration
	store     cache.Store
}

// New builds a Server for a validated configuration.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, fmt.Errorf("proxy: no configuration")
	}
	s := &Server{
		cfg:       cfg,
		log:       opts.Logger,
		registry:  opts.Registry,
		providers: map[string]*upstream.Provider{},
		consortia: map[string]*consortia.Engine{},
		keepAlive: opts.KeepAlive,
	}
	if s.keepAlive <= 0 {
		s.keepAlive = 10 * time.Second
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
		s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m, err := newMetrics(s.registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	for _, name := range cfg.ProviderOrder {
		pc := cfg.Providers[name]
		p, err := upstream.New(upstream.Config{
			Name:        name,
			Type:        pc.Type,
			BaseURL:     pc.BaseURL,
			APIKey:      pc.APIKey,
			Headers:     pc.Headers,
			Timeout:     pc.Timeout,
			IdleTimeout: pc.IdleTimeout,
			MaxRetries:  pc.MaxRetries,
			PromptCache: pc.PromptCache,
			Backoff:     opts.Backoff,
			Breaker:     upstream.BreakerSettings{Failures: pc.Breaker.Failures, Cooldown: pc.Breaker.Cooldown},
			OnBreakerChange: func(model, state string) {
				s.metrics.breakerChanged(name, model, state)
			},
			RPM:            pc.RPM,
			MaxConcurrency: pc.MaxConcurrency,
			Transport:      opts.Transport,
		})
		if err != nil {
			return nil, err
		}
		s.providers[name] = p
	}
	callers := map[string]consortia.Caller{}
	for name, p := range s.providers {
		callers[name] = p
	}
	for _, name := range cfg.ConsortiumOrder {
		e, err := consortia.New(name, engineConfig(cfg.Consortia[name]), callers)
		if err != nil {
			return nil, err
		}
		s.consortia[name] = e
	}
	s.store = opts.Store
	if s.store == nil {
		if s.store, err = newStore(cfg.Store); err != nil {
			return nil, err
		}
	}
	s.keys = hashKeys(cfg.Auth.Keys)
	rpm := map[string]int{}
	for _, k := range cfg.Auth.Keys {
		rpm[k.Name] = k.RPM
	}
	s.limits = ratelimit.NewKeys(rpm)
	if shared, ok := s.store.(*cache.Redis); ok {
		// Replicas that share the store share the client keys' limits.
		s.limits = ratelimit.NewShared(shared.Client(), rpm, 0, s.log)
	}
	s.router = s.routes()
	return s, nil
}

// limiter holds client keys to their rpm.
type limiter interface {
	Allow(ctx context.Context, name string) error
}

// newStore opens the store the configuration names.
func newStore(c config.Store) (cache.Store, error) {
	if c.Backend != "redis" {
		return cache.NewMemory(c.TTL, c.MaxEntries), nil
	}
	return cache.NewRedis(cache.RedisConfig{URL: c.URL, Addrs: c.Addrs, MasterName: c.MasterName, TTL: c.TTL})
}

// Close releases the server's store.
func (s *Server) Close() error { return s.store.Close() }

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.router.ServeHTTP(w, r)
}

// Drain marks the server as shutting down: /readyz answers 503 so load
// balancers stop sending traffic while in-flight requests finish.
func (s *Server) Drain() { s.draining.Store(true) }

// routes lists every route of the API with its middleware.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.requestID, s.observe, s.recoverPanics)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed(r))

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.With(s.adminAuth).Get("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP)

	r.Group(func(r chi.Router) {
		r.Use(s.clientAuth, s.clientLimit)
		for _, prefix := range []string{"/v1", ""} {
			r.Post(prefix+"/chat/completions", s.chatCompletions)
			r.Post(prefix+"/embeddings", s.embeddings)
			r.Get(prefix+"/models", s.listModels)
			r.Get(prefix+"/models/*", s.getModel)
		}
		r.Get("/v1/consortium/runs/{run_id}", s.getRun)
	})
	return r
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "shutting down"})
		return
	}
	if err := s.store.Ping(r.Context()); err != nil {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
		Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)})
}

// methodNotAllowed answers 405 with the Allow header chi would have set
// (chi leaves it to a custom handler to do so).
func (s *Server) methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				w.Header().Add("Allow", m)
			}
		}
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	}
}

// since returns the milliseconds elapsed since t, for headers and logs.
func since(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}

// engineConfig is a consortium's definition as the engine takes it.
func engineConfig(c *config.Consortium) consortia.Config {
	ec := consortia.Config{
		Description: c.Description, Strategy: c.Strategy, System: c.System,
		Arbiter:             consortia.Arbiter{Model: c.Arbiter.Model, Prompt: c.Arbiter.Prompt, Params: c.Arbiter.Params},
		ConfidenceThreshold: c.ConfidenceThreshold, MinIterations: c.MinIterations, MaxIterations: c.MaxIterations,
		Quorum: c.Quorum, MemberTimeout: c.MemberTimeout, MinAnswers: c.MinAnswers,
	}
	for _, m := range c.Members {
		ec.Members = append(ec.Members, consortia.Member{Model: m.Model, Count: m.Count, Weight: m.Weight, System: m.System, Params: m.Params, Fallbacks: m.Fallbacks})
	}
	return ec
}
