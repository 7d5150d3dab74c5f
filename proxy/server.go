// Package proxy owns consortium's HTTP surface: the chi router and its
// routes, client authentication and tenants, request checks, the mapping of
// every error to OpenAI's JSON shape (Anthropic's on /v1/messages),
// passthrough forwarding (JSON and SSE), health, readiness and metrics. It decides which model a request goes to;
// calling providers belongs to upstream, conversation state to cache. It
// builds nothing: internal/app hands New the providers, engines, store and
// limits it made from the configuration, through the small interfaces
// declared here.
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
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// Provider is what a passthrough calls: *upstream.Provider satisfies it.
// The copy loop reads a streamed Response's Body as upstream promises: it
// ends with io.EOF only after the answer's end, and a stream cut short
// fails with an error instead.
type Provider interface {
	Name() string
	Do(ctx context.Context, req *upstream.Request) (*upstream.Response, error)
}

// Consortium is what a consortium request calls: *consortia.Engine
// satisfies it.
type Consortium interface {
	Name() string
	// Check reports a request the consortium's strategy cannot serve (n >
	// 1 but for rank, tools, ...) as an *openai.FieldError.
	Check(req *openai.ChatRequest) error
	Run(ctx context.Context, req *openai.ChatRequest, deltas func(string)) (*consortia.Result, error)
	// Estimate works out the calls, tokens and cost a request would take,
	// calling no provider; a request Check refuses is refused.
	Estimate(req *openai.ChatRequest) (*consortia.Estimate, error)
}

// Conversations keeps consortium conversations and runs, and the
// Responses API's stored responses: *cache.Conversations satisfies it.
type Conversations interface {
	Place(ctx context.Context, tenant, consortium, id string, msgs []openai.Message) (*cache.Placement, error)
	Save(ctx context.Context, tenant string, p *cache.Placement, synthesis, runID string, run *cache.RunRecord) error
	Run(ctx context.Context, tenant, id string) ([]byte, error)
	Runs(ctx context.Context, tenant string, limit int) ([]cache.RunSummary, error)
	SaveResponse(ctx context.Context, tenant string, r *cache.Response) error
	Response(ctx context.Context, tenant, id string) (*cache.Response, error)
	DeleteResponse(ctx context.Context, tenant, id string) error
	Ping(ctx context.Context) error
}

// Limiter holds client keys to their rpm: *ratelimit.Keys and
// *ratelimit.Shared satisfy it. Allow returns a *ratelimit.LimitError for
// a request over the limit.
type Limiter interface {
	Allow(ctx context.Context, name string) error
}

// Settings are the few settings the HTTP surface reads itself.
type Settings struct {
	// MaxBody is the largest request body; larger ones get 413. If zero,
	// 10 MiB is used.
	MaxBody int64
	// Passthrough lets clients call provider/model directly.
	Passthrough bool
	// Keys are the client keys, each key's name its tenant. No keys means
	// every request is the tenant "anonymous".
	Keys []ClientKey
	// AdminKey, when set, guards /metrics.
	AdminKey string
	// Models is what /v1/models lists, in order.
	Models []openai.Model
	// ProviderVariable, if set, names the environment variable that
	// configures a provider known by name (OPENAI_API_KEY for openai),
	// or returns "" for a name it does not know: the 404 for a model of
	// an unconfigured provider tells the user to set it. If nil, that
	// 404 names no variable.
	ProviderVariable func(provider string) string
}

// ClientKey is a key a client may send as Authorization: Bearer KEY; Name
// is its tenant. Its limits are the Limiter's business.
type ClientKey struct {
	Name, Key string
}

// Options is what New needs: the dependencies the wiring (internal/app)
// built once from the configuration, and the settings of the HTTP
// surface.
type Options struct {
	Settings

	// Providers are the passthrough providers by name.
	Providers map[string]Provider

	// Consortia are the consortiums by name.
	Consortia map[string]Consortium

	// Conversations keeps conversation and run state. If nil, it is kept
	// in memory with cache.NewMemory's defaults.
	Conversations Conversations

	// Limits holds client keys to their rpm. If nil, nothing is limited.
	Limits Limiter

	// Metrics are where the server counts what it serves; the wiring
	// makes them first, on Registry, so that the providers report to them
	// too. If nil, New registers its own on Registry.
	Metrics *Metrics

	// Registry is what /metrics serves: the one Metrics are registered
	// on. If nil, a new registry with the Go and process collectors is
	// used.
	Registry *prometheus.Registry

	// Logger receives one line per request and every failure. If nil,
	// slog.Default() is used.
	Logger *slog.Logger

	// KeepAlive is how often a consortium stream whose members are still
	// working gets an SSE comment, so that proxies with idle timeouts keep
	// it open. If zero, 10s is used.
	KeepAlive time.Duration

	// Scores answers the leaderboard. If nil, it answers 503.
	Scores Scores
}

// Server is the proxy's HTTP handler.
type Server struct {
	cfg       Settings
	log       *slog.Logger
	metrics   *Metrics
	registry  *prometheus.Registry
	providers map[string]Provider
	consortia map[string]Consortium
	keys      []keyDigest
	limits    Limiter
	router    http.Handler
	draining  atomic.Bool
	keepAlive time.Duration
	store     Conversations
	scores    Scores
	ui        http.Handler
}

// New returns a Server over built dependencies.
func New(opts Options) (*Server, error) {
	s := &Server{
		cfg:       opts.Settings,
		log:       opts.Logger,
		registry:  opts.Registry,
		providers: opts.Providers,
		consortia: opts.Consortia,
		limits:    opts.Limits,
		keepAlive: opts.KeepAlive,
		store:     opts.Conversations,
		scores:    opts.Scores,
	}
	if s.cfg.MaxBody <= 0 {
		s.cfg.MaxBody = 10 << 20
	}
	if s.keepAlive <= 0 {
		s.keepAlive = 10 * time.Second
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.registry == nil {
		s.registry = NewRegistry()
	}
	s.metrics = opts.Metrics
	if s.metrics == nil {
		m, err := NewMetrics(s.registry)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	if s.store == nil {
		s.store = cache.NewConversations(cache.NewMemory(0, 0))
	}
	if s.limits == nil {
		s.limits = unlimited{}
	}
	s.keys = hashKeys(s.cfg.Keys)
	s.ui = s.pages()
	s.router = s.routes()
	return s, nil
}

// unlimited is the Limiter of a server given none.
type unlimited struct{}

func (unlimited) Allow(context.Context, string) error { return nil }

// NewRegistry returns a Prometheus registry with the Go runtime and
// process collectors, as /metrics serves them.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

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
	// Any client key, or the admin key for the columns that sum every
	// tenant.
	r.With(s.leaderboardAuth).Get("/v1/consortium/leaderboard", s.leaderboard)
	// The web pages: their own sign-in, never a /v1 key. /ui too, so
	// that its redirect to /ui/ carries the pages' headers and checks.
	r.Handle("/ui", s.ui)
	r.Handle("/ui/*", s.ui)

	r.Group(func(r chi.Router) {
		r.Use(s.clientAuth, s.clientLimit)
		for _, prefix := range []string{"/v1", ""} {
			r.Post(prefix+"/chat/completions", s.chatCompletions)
			r.Post(prefix+"/embeddings", s.embeddings)
			r.Get(prefix+"/models", s.listModels)
			r.Get(prefix+"/models/*", s.getModel)
		}
		r.Get("/v1/consortium/runs/{run_id}", s.getRun)
		r.Post("/v1/consortium/estimate", s.estimate)
		r.Post("/v1/responses", s.createResponse)
		r.Get("/v1/responses/{response_id}", s.getResponse)
		r.Delete("/v1/responses/{response_id}", s.deleteResponse)
		r.Post("/v1/messages", s.messages)
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
