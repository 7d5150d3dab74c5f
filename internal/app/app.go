// Package app is consortium's wiring: it builds every dependency from a
// validated configuration once (the providers, the consortium engines, the
// one Redis client, the conversation store, the client keys' limits and
// the metrics) and hands them to the proxy, which only serves HTTP. It is
// the one place that reads internal/config to make things; the packages it
// builds know nothing of the configuration file, and none of them reaches
// into another's concrete types.
package app

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/proxy"
	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/scores"
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
	// connections, or to call a fake's handler in memory). If nil, each
	// provider gets a tuned transport of its own.
	Transport http.RoundTripper

	// KeepAlive is how often a consortium stream whose members are still
	// working gets an SSE comment. If zero, 10s is used.
	KeepAlive time.Duration

	// Store, if set, keeps conversations and runs instead of the store
	// the configuration names (tests share one between servers). The
	// caller closes it.
	Store cache.Store

	// Backoff, if set, replaces the first retry backoff ceiling of every
	// provider (tests shorten it).
	Backoff time.Duration

	// NoScores records no scores: runs feed no statistics and the
	// leaderboard answers 503 (the benchmark measures runs without them).
	NoScores bool
}

// App is the built proxy: an http.Handler over everything New made.
type App struct {
	server *proxy.Server
	redis  redis.UniversalClient // nil without a Redis store

	// What the batch commands use in-process (Engine, Provider, Solo).
	cfg       *config.Config
	engines   map[string]proxy.Consortium
	providers map[string]*upstream.Provider
	callers   map[string]consortia.Caller

	scores *scores.Board
}

// New builds the proxy and its dependencies for a validated
// configuration. It connects to nothing: a Redis that is down now is used
// once it answers.
func New(opts Options) (*App, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("app: no configuration")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	registry := opts.Registry
	if registry == nil {
		registry = proxy.NewRegistry()
	}
	metrics, err := proxy.NewMetrics(registry)
	if err != nil {
		return nil, err
	}

	a := &App{cfg: cfg, providers: map[string]*upstream.Provider{}, callers: map[string]consortia.Caller{}}
	providers := map[string]proxy.Provider{}
	callers := a.callers
	models := configuredModels(cfg)
	for _, name := range cfg.ProviderOrder {
		p, err := upstream.New(providerConfig(name, cfg.Providers[name], models[name], opts, metrics, log))
		if err != nil {
			return nil, err
		}
		providers[name], callers[name], a.providers[name] = p, p, p
	}
	store := opts.Store
	rpm := map[string]int{}
	keys := make([]proxy.ClientKey, len(cfg.Auth.Keys))
	for i, k := range cfg.Auth.Keys {
		rpm[k.Name] = k.RPM
		keys[i] = proxy.ClientKey{Name: k.Name, Key: k.Key}
	}
	var limits proxy.Limiter = ratelimit.NewKeys(rpm)
	if store == nil && cfg.Store.Backend == "redis" {
		if a.redis, err = redisClient(cfg.Store); err != nil {
			return nil, err
		}
		// Under Sentinel a turn is acknowledged once the replica holds it
		// too, so a failover loses no turn a client was told was saved.
		replicas := 0
		if cfg.Store.MasterName != "" {
			replicas = 1
		}
		store = cache.NewRedis(a.redis, cache.RedisConfig{TTL: cfg.Store.TTL, Timeout: redisTimeout, Replicas: replicas})
		// Replicas that share the store share the client keys' limits.
		limits = ratelimit.NewShared(a.redis, rpm, 0, log)
	}
	if store == nil {
		store = cache.NewMemory(cfg.Store.TTL, cfg.Store.MaxEntries)
	}
	// Every run's scores go to the Board, which is every engine's
	// ratings too.
	if !opts.NoScores {
		a.scores = scores.New(scores.Config{Store: scoresStore(cfg.Store, a.redis), Consortia: cfg.ConsortiumOrder,
			OnSkip: metrics.ScoresSkipped, Logger: log, Pricing: Pricing(cfg)})
	}
	engines, err := buildEngines(cfg, callers, a.scores)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.engines = engines

	a.server, err = proxy.New(proxy.Options{
		Settings: proxy.Settings{
			MaxBody:     int64(cfg.MaxBody),
			Passthrough: cfg.Passthrough,
			Keys:        keys,
			AdminKey:    cfg.Auth.AdminKey,
			Models:      Models(cfg),
			// The 404 of an unconfigured provider names its variable.
			ProviderVariable: config.ProviderVariable,
		},
		Providers:     providers,
		Consortia:     engines,
		Conversations: cache.NewConversations(store),
		Limits:        limits,
		Metrics:       metrics,
		Registry:      registry,
		Logger:        log,
		KeepAlive:     opts.KeepAlive,
		Scores:        leaderboard(a.scores),
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// ServeHTTP serves a request.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.server.ServeHTTP(w, r) }

// Drain marks the proxy as shutting down: /readyz answers 503 so load
// balancers stop sending traffic while in-flight requests finish.
func (a *App) Drain() { a.server.Drain() }

// Engine returns the engine of the consortium name, as the proxy runs
// it (its runs feed the scores), for the batch commands.
func (a *App) Engine(name string) (*consortia.Engine, bool) {
	e, ok := a.engines[name].(*consortia.Engine)
	return e, ok
}

// Provider returns the client of the provider name, for the batch
// commands' direct calls (embeddings, eval's judges).
func (a *App) Provider(name string) (*upstream.Provider, bool) {
	p, ok := a.providers[name]
	return p, ok
}

// Solo returns engines that each answer with one model of the consortium
// name on its own, as eval compares them: one per distinct member model,
// with its configured system prompt (after the consortium's), params and
// fallbacks, priced as the consortium's, named by its ref; for a cascade,
// one per tier, a consortium tier being that consortium's own engine. The
// solo engines' runs feed no scores: they are not runs of a consortium.
func (a *App) Solo(name string) ([]*consortia.Engine, error) {
	c, ok := a.cfg.Consortia[name]
	if !ok {
		return nil, fmt.Errorf("no consortium %q", name)
	}
	solo := func(m config.Member) (*consortia.Engine, error) {
		return consortia.New(m.Model, consortia.Config{
			Strategy: "vote", System: c.System, MemberTimeout: c.MemberTimeout, Pricing: Pricing(a.cfg),
			Members: []consortia.Member{{Model: m.Model, Count: 1, Weight: 1, System: m.System, Params: m.Params, Fallbacks: m.Fallbacks}},
		}, a.callers)
	}
	var out []*consortia.Engine
	if c.Strategy == "cascade" {
		for _, t := range c.Tiers {
			if e, ok := a.Engine(t); ok {
				out = append(out, e)
				continue
			}
			e, err := solo(config.Member{Model: t})
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, m := range c.Members {
		if seen[m.Model] {
			continue
		}
		seen[m.Model] = true
		e, err := solo(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Close releases what New opened: it writes the scores of the runs that
// ended (for a bounded time), then closes the Redis client the stores and
// the limits share.
func (a *App) Close() error {
	if a.scores != nil {
		a.scores.Close()
	}
	if a.redis == nil {
		return nil
	}
	return a.redis.Close()
}

// providerConfig is a provider's configuration as upstream takes it, with
// its calls and breaker changes reported to the metrics (and breaker
// changes to the log).
func providerConfig(name string, pc *config.Provider, models []string, opts Options, m *proxy.Metrics, log *slog.Logger) upstream.Config {
	return upstream.Config{
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
			m.BreakerChanged(name, model, state)
			level := slog.LevelInfo
			if state == upstream.BreakerOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "breaker "+state, "provider", name, "model", model, "state", state)
		},
		RPM:            pc.RPM,
		MaxConcurrency: pc.MaxConcurrency,
		Transport:      opts.Transport,
		MaxResponse:    int64(pc.MaxResponse),
		Models:         models,
		OnCall:         m.ObserveCall,
	}
}

// leaderboard is what the proxy's leaderboard reads: the Board, or none.
func leaderboard(b *scores.Board) proxy.Scores {
	if b == nil {
		return nil
	}
	return b
}

// buildEngines builds every consortium's engine, each recording its runs
// on board and reading its ratings from it (when board is not nil).
func buildEngines(cfg *config.Config, callers map[string]consortia.Caller, board *scores.Board) (map[string]proxy.Consortium, error) {
	cfgs := map[string]consortia.Config{}
	pricing := Pricing(cfg)
	for _, name := range cfg.ConsortiumOrder {
		ec := engineConfig(cfg.Consortia[name])
		ec.Pricing = pricing
		if board != nil {
			ec.OnRun, ec.Ratings = board.Record, board
		}
		cfgs[name] = ec
	}
	// A cascade's tiers are other consortiums' engines: NewSet builds
	// each after those it names.
	set, err := consortia.NewSet(cfgs, callers)
	if err != nil {
		return nil, err
	}
	engines := make(map[string]proxy.Consortium, len(set))
	for name, e := range set {
		engines[name] = e
	}
	return engines, nil
}

// Estimates returns the estimate of req for every consortium of cfg, by
// name (consortia.Engine.Estimate), from engines built over providers
// that are never called: it needs no key and opens no connection.
func Estimates(cfg *config.Config, req *openai.ChatRequest) (map[string]*consortia.Estimate, error) {
	callers := map[string]consortia.Caller{}
	for _, name := range cfg.ProviderOrder {
		callers[name] = uncalled{}
	}
	engines, err := buildEngines(cfg, callers, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*consortia.Estimate, len(engines))
	for name, e := range engines {
		est, err := e.Estimate(req)
		if err != nil {
			return nil, fmt.Errorf("consortium %s: %w", name, err)
		}
		out[name] = est
	}
	return out, nil
}

// uncalled is the provider of engines that only estimate.
type uncalled struct{}

var errUncalled = errors.New("an estimate calls no provider")

func (uncalled) Chat(context.Context, string, *openai.ChatRequest) (*openai.ChatCompletion, error) {
	return nil, errUncalled
}

func (uncalled) ChatStream(context.Context, string, *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error] {
	return func(yield func(*openai.ChatCompletionChunk, error) bool) { yield(nil, errUncalled) }
}

// configuredModels returns, per provider, the models the configuration
// names: those it lists, then those its consortiums use (members, their
// fallbacks, arbiters, judges, and a cascade's last tier when it is a
// model), each once. Their per-model state is kept; that of
// any other model a client names is bounded.
func configuredModels(cfg *config.Config) map[string][]string {
	out := map[string][]string{}
	seen := map[string]bool{}
	add := func(provider, model string) {
		if !seen[provider+"/"+model] {
			seen[provider+"/"+model] = true
			out[provider] = append(out[provider], model)
		}
	}
	addRef := func(ref string) {
		if provider, model, ok := config.SplitRef(ref); ok {
			add(provider, model)
		}
	}
	for _, name := range cfg.ProviderOrder {
		for _, m := range cfg.Providers[name].Models {
			add(name, m)
		}
	}
	for _, name := range cfg.ConsortiumOrder {
		c := cfg.Consortia[name]
		for _, m := range c.Members {
			addRef(m.Model)
			for _, f := range m.Fallbacks {
				addRef(f)
			}
		}
		addRef(c.Arbiter.Model)
		for _, j := range c.Judges {
			addRef(j.Model)
		}
		for _, t := range c.Tiers {
			if _, consortium := cfg.Consortia[t]; !consortium {
				addRef(t)
			}
		}
	}
	return out
}

// engineConfig is a consortium's definition as the engine takes it.
func engineConfig(c *config.Consortium) consortia.Config {
	ec := consortia.Config{
		Description: c.Description, Strategy: c.Strategy, System: c.System,
		Quorum: c.Quorum, MemberTimeout: c.MemberTimeout, MinAnswers: c.MinAnswers,
		Synthesize: consortia.Synthesize{
			Arbiter:             consortia.Arbiter{Model: c.Arbiter.Model, Prompt: c.Arbiter.Prompt, Params: c.Arbiter.Params},
			ConfidenceThreshold: c.ConfidenceThreshold, MinIterations: c.MinIterations, MaxIterations: c.MaxIterations,
		},
		JudgePrompt: c.JudgePrompt,
		Rank:        consortia.Rank{WithinModelFirst: c.WithinModelFirst, Then: c.Then},
		Vote:        consortia.Vote{Extract: c.Extract, TieBreak: c.TieBreak},
		Cascade:     consortia.Cascade{Tiers: c.Tiers, EscalateBelow: c.EscalateBelow},
		Weights:     c.Weights,
	}
	for _, m := range c.Members {
		ec.Members = append(ec.Members, consortia.Member{Model: m.Model, Count: m.Count, Weight: m.Weight, System: m.System, Params: m.Params, Fallbacks: m.Fallbacks})
	}
	for _, j := range c.Judges {
		ec.Judges = append(ec.Judges, consortia.Judge{Model: j.Model, Weight: j.Weight, Params: j.Params})
	}
	return ec
}

// Pricing returns the configuration's prices as the engines take them;
// nil when it has none, so that costs are unknown.
func Pricing(cfg *config.Config) consortia.Pricing {
	if len(cfg.Pricing) == 0 {
		return nil
	}
	out := make(consortia.Pricing, len(cfg.Pricing))
	for ref, p := range cfg.Pricing {
		out[ref] = consortia.Price{Input: p.Input, Output: p.Output, CachedInput: p.CachedInput}
	}
	return out
}

// Models returns what /v1/models lists: consortiums first, then the
// passthrough models each provider lists in its configuration.
func Models(cfg *config.Config) []openai.Model {
	var out []openai.Model
	for _, name := range cfg.ConsortiumOrder {
		out = append(out, openai.Model{ID: name, Object: "model", OwnedBy: "consortium", Description: cfg.Consortia[name].Description})
	}
	if !cfg.Passthrough {
		return out
	}
	for _, name := range cfg.ProviderOrder {
		desc := ""
		if cfg.Providers[name].Demo {
			desc = "demo: a built-in local provider with canned answers, not a real model"
		}
		for _, m := range cfg.Providers[name].Models {
			out = append(out, openai.Model{ID: name + "/" + m, Object: "model", OwnedBy: name, Description: desc})
		}
	}
	return out
}

// scoresStore is where the scores are kept: in Redis when the store is
// (shared by the replicas, with the store's TTL), else in memory.
func scoresStore(c config.Store, client redis.UniversalClient) scores.Store {
	if client != nil {
		return scores.NewRedis(client, scores.RedisConfig{TTL: c.TTL, Timeout: redisTimeout})
	}
	return scores.NewMemory(c.TTL, 0)
}

// redisTimeout bounds every Redis operation, connecting included, so no
// request waits long on a Redis that does not answer.
const redisTimeout = 500 * time.Millisecond

// redisClient opens the one Redis client of the process, for the store and
// the shared limits: one server by URL, or Cluster nodes, or Sentinels
// with a master name.
func redisClient(c config.Store) (redis.UniversalClient, error) {
	quietRedis.Do(func() { redis.SetLogger(redisLog{}) })
	if len(c.Addrs) > 0 {
		return redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs:      c.Addrs,
			MasterName: c.MasterName,
			// addrs without master_name are Cluster nodes, even when only
			// one is listed (go-redis would take one for a single server,
			// and every key of another node's slots would fail MOVED).
			IsClusterMode:         c.MasterName == "",
			DialTimeout:           redisTimeout,
			ReadTimeout:           redisTimeout,
			WriteTimeout:          redisTimeout,
			PoolTimeout:           redisTimeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
		}), nil
	}
	opts, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = redisTimeout, redisTimeout, redisTimeout, redisTimeout
	// The callers' deadlines (the store's and the limits' own) bound each
	// operation, not only the socket timeouts.
	opts.ContextTimeoutEnabled = true
	// A retry would double the wait on a Redis that is down; a request
	// that needs the store is better answered 503 at once.
	opts.MaxRetries = -1
	return redis.NewClient(opts), nil
}

// redisLog routes go-redis' own log lines (one per failed dial while Redis
// is down) to slog at debug level: the proxy reports the store's state
// itself, once, as a warning and a metric.
type redisLog struct{}

func (redisLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

var quietRedis sync.Once
