package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/proxy"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m))
}

// logBuffer is a log destination safe for the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// serve builds an App for yaml, in which {{FAKE}} is the fake provider's
// URL, and returns it with its base URL and its log.
func serve(t *testing.T, fake *upstreamtest.Server, yaml string) (*App, string, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	a, err := New(Options{Config: parse(t, strings.ReplaceAll(yaml, "{{FAKE}}", fake.URL)), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ts := httptest.NewServer(a)
	t.Cleanup(ts.Close)
	return a, ts.URL, logs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestConfiguredModels(t *testing.T) {
	cfg := parse(t, `
providers:
  a: {base_url: "http://127.0.0.1:1", models: [m1, m2]}
  b: {base_url: "http://127.0.0.1:1"}
consortia:
  c:
    members:
      - {model: a/m2}
      - {model: b/x, fallbacks: [a/m3, b/org/deep]}
    arbiter: {model: b/judge}
`)
	got := configuredModels(cfg)
	if want := []string{"m1", "m2", "m3"}; !slices.Equal(got["a"], want) {
		t.Errorf("a: %q, want %q", got["a"], want)
	}
	if want := []string{"x", "org/deep", "judge"}; !slices.Equal(got["b"], want) {
		t.Errorf("b: %q, want %q", got["b"], want)
	}
}

// TestConfiguredModelsOfStrategies: the judges' models and a cascade's
// last tier when it is a model are kept, not the tiers that are
// consortiums.
func TestConfiguredModelsOfStrategies(t *testing.T) {
	cfg := parse(t, `
providers:
  a: {base_url: "http://127.0.0.1:1"}
  b: {base_url: "http://127.0.0.1:1"}
consortia:
  best:
    strategy: rank
    members: [{model: a/m}]
    judges: [{model: b/judge1}, {model: a/judge2}, {model: a/m}]
    then: synthesize
    arbiter: {model: b/writer}
  agree:
    strategy: vote
    members: [{model: a/m}]
    tie_break: judge
    judges: [{model: b/judge3}]
  tiered:
    strategy: cascade
    tiers: [agree, best, b/org/big]
`)
	got := configuredModels(cfg)
	if want := []string{"m", "judge2"}; !slices.Equal(got["a"], want) {
		t.Errorf("a: %q, want %q", got["a"], want)
	}
	if want := []string{"writer", "judge1", "judge3", "org/big"}; !slices.Equal(got["b"], want) {
		t.Errorf("b: %q, want %q", got["b"], want)
	}
	if len(got) != 2 {
		t.Errorf("providers %q", got)
	}
}

// TestEngineConfig: every key of every strategy reaches the engine's
// Config, defaults included.
func TestEngineConfig(t *testing.T) {
	cfg := parse(t, `
providers:
  a: {base_url: "http://127.0.0.1:1"}
consortia:
  council:
    description: the council
    system: be brief
    members: [{model: a/m, count: 2, weight: 1.5, system: s, params: {temperature: 0.5}, fallbacks: [a/f]}]
    arbiter: {model: a/arb, prompt: p, params: {temperature: 0}}
    confidence_threshold: 0.9
    min_iterations: 2
    max_iterations: 4
    quorum: 1
    member_timeout: 5s
    min_answers: 2
    weights: adaptive
  best:
    strategy: rank
    members: [{model: a/m}]
    judges: [{model: a/j1, weight: 2, params: {temperature: 0.1}}, {model: a/j2}]
    judge_prompt: jp
    within_model_first: true
    then: synthesize
    arbiter: {model: a/arb}
  agree:
    strategy: vote
    members: [{model: a/m, count: 3}]
    extract: "####\\s*(.+)$"
    tie_break: judge
    arbiter: {model: a/arb}
  tiered:
    strategy: cascade
    tiers: [agree, best, a/big]
    escalate_below: 0.6
`)
	synthesize := func(arbiter consortia.Arbiter) consortia.Synthesize {
		return consortia.Synthesize{Arbiter: arbiter, ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 3}
	}
	shared := func(c consortia.Config) consortia.Config {
		c.MemberTimeout, c.MinAnswers, c.Weights = 60*time.Second, 1, "fixed"
		return c
	}
	for name, want := range map[string]consortia.Config{
		"council": {
			Description: "the council", Strategy: "synthesize", System: "be brief",
			Members:       []consortia.Member{{Model: "a/m", Count: 2, Weight: 1.5, System: "s", Params: map[string]any{"temperature": 0.5}, Fallbacks: []string{"a/f"}}},
			Quorum:        1,
			MemberTimeout: 5 * time.Second,
			MinAnswers:    2,
			Synthesize: consortia.Synthesize{
				Arbiter:             consortia.Arbiter{Model: "a/arb", Prompt: "p", Params: map[string]any{"temperature": 0}},
				ConfidenceThreshold: 0.9, MinIterations: 2, MaxIterations: 4,
			},
			Rank: consortia.Rank{Then: "winner"}, Vote: consortia.Vote{TieBreak: "first"}, Cascade: consortia.Cascade{EscalateBelow: 0.8},
			Weights: "adaptive",
		},
		"best": shared(consortia.Config{
			Strategy:   "rank",
			Members:    []consortia.Member{{Model: "a/m", Count: 1, Weight: 1}},
			Synthesize: synthesize(consortia.Arbiter{Model: "a/arb"}),
			Judges: []consortia.Judge{
				{Model: "a/j1", Weight: 2, Params: map[string]any{"temperature": 0.1}},
				{Model: "a/j2", Weight: 1},
			},
			JudgePrompt: "jp",
			Rank:        consortia.Rank{WithinModelFirst: true, Then: "synthesize"},
			Vote:        consortia.Vote{TieBreak: "first"}, Cascade: consortia.Cascade{EscalateBelow: 0.8},
		}),
		"agree": shared(consortia.Config{
			Strategy:   "vote",
			Members:    []consortia.Member{{Model: "a/m", Count: 3, Weight: 1}},
			Synthesize: synthesize(consortia.Arbiter{Model: "a/arb"}),
			Rank:       consortia.Rank{Then: "winner"},
			Vote:       consortia.Vote{Extract: `####\s*(.+)$`, TieBreak: "judge"}, Cascade: consortia.Cascade{EscalateBelow: 0.8},
		}),
		"tiered": shared(consortia.Config{
			Strategy:   "cascade",
			Synthesize: synthesize(consortia.Arbiter{}),
			Rank:       consortia.Rank{Then: "winner"}, Vote: consortia.Vote{TieBreak: "first"},
			Cascade: consortia.Cascade{Tiers: []string{"agree", "best", "a/big"}, EscalateBelow: 0.6},
		}),
	} {
		if got := engineConfig(cfg.Consortia[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

func TestModels(t *testing.T) {
	yaml := `
providers:
  a: {base_url: "http://127.0.0.1:1", models: [m1]}
consortia:
  c: {description: the council, members: [{model: a/m1}], arbiter: {model: a/m1}}
`
	ids := func(cfg *config.Config) (out []string) {
		for _, m := range Models(cfg) {
			out = append(out, m.ID+" "+m.OwnedBy)
		}
		return out
	}
	if got := ids(parse(t, yaml)); !slices.Equal(got, []string{"c consortium", "a/m1 a"}) {
		t.Errorf("models %q", got)
	}
	if got := ids(parse(t, yaml+"passthrough: false\n")); !slices.Equal(got, []string{"c consortium"}) {
		t.Errorf("without passthrough: %q", got)
	}
}

// TestProviderReports checks the wiring of a provider's reports: every
// finished call is counted in consortium_upstream_requests_total, and a
// breaker state change sets its gauge and writes a log line, at warn when
// the breaker opens.
func TestProviderReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := proxy.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg := providerConfig("p", &config.Provider{}, []string{"m"}, Options{}, m, slog.New(slog.NewTextHandler(logs, nil)))
	if cfg.Name != "p" || !slices.Equal(cfg.Models, []string{"m"}) || cfg.OnCall == nil || cfg.OnBreakerChange == nil {
		t.Fatalf("config %+v", cfg)
	}
	cfg.OnCall(upstream.Call{Provider: "p", Model: "m", Role: "member", Outcome: "ok"})
	cfg.OnCall(upstream.Call{Provider: "p", Model: "m", Role: "arbiter", Outcome: "timeout"})
	if n := series(t, reg, "consortium_upstream_requests_total"); n != 2 {
		t.Errorf("%d upstream call series, want 2", n)
	}
	cfg.OnBreakerChange("m", upstream.BreakerOpen)
	if n := series(t, reg, "consortium_breaker_state"); n != 1 {
		t.Errorf("%d breaker series, want 1", n)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN msg=\"breaker open\" provider=p model=m state=open") {
		t.Errorf("log %q", l)
	}
}

// series returns how many series of the metric name reg holds.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

// TestBreakerChangeLogged opens a model's breaker through a real
// passthrough call and finds the change in the log.
func TestBreakerChangeLogged(t *testing.T) {
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	fake.Script("m", upstreamtest.Reply{Status: 503})
	_, url, logs := serve(t, fake, `
providers:
  fake: {base_url: "{{FAKE}}", max_retries: 0, breaker: {failures: 1, cooldown: 1h}, models: [m]}
`)
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"fake/m","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if l := logs.String(); !strings.Contains(l, `msg="breaker open" provider=fake model=m state=open`) {
		t.Errorf("no breaker line in the log:\n%s", l)
	}
}

// TestOneRedisClient checks that a Redis store and the shared limits use
// the client New opened, and that Close closes it.
func TestOneRedisClient(t *testing.T) {
	redis := redistest.Start(t)
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	a, url, _ := serve(t, fake, `
store: {backend: redis, url: "`+redis.URL()+`"}
auth:
  keys: [{name: alice, key: alice-key, rpm: 1}]
`)
	if a.redis == nil {
		t.Fatal("no Redis client")
	}
	if status, body := get(t, url+"/readyz"); status != 200 {
		t.Fatalf("readyz %d %s", status, body)
	}
	// The limit is kept in Redis: its key is there.
	req, _ := http.NewRequest("GET", url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer alice-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if keys, err := redis.Client(0).Keys(context.Background(), "*consortium:limit:*").Result(); err != nil || len(keys) != 1 {
		t.Errorf("limit keys %q, %v", keys, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, url+"/readyz"); status != 503 || !strings.Contains(body, "closed") {
		t.Errorf("readyz after Close: %d %s", status, body)
	}
}

func TestRedisClient(t *testing.T) {
	for _, tt := range []struct {
		name    string
		store   config.Store
		wantErr string
	}{
		{name: "url", store: config.Store{URL: "redis://127.0.0.1:1/2"}},
		{name: "tls url", store: config.Store{URL: "rediss://user:pw@127.0.0.1:1/0"}},
		{name: "cluster", store: config.Store{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		{name: "sentinels", store: config.Store{Addrs: []string{"127.0.0.1:1"}, MasterName: "main"}},
		{name: "bad url", store: config.Store{URL: "http://127.0.0.1:1"}, wantErr: "store.url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redisClient(tt.store)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

// TestPricing: the configuration's prices reach every engine as they are;
// none means costs are unknown.
func TestPricing(t *testing.T) {
	cfg := parse(t, `
pricing:
  "a/m": {input: 2.5, output: 10}
  "a/c": {input: 1, output: 2, cached_input: 0.5}
providers:
  a: {base_url: "http://127.0.0.1:1"}
`)
	half := 0.5
	want := consortia.Pricing{"a/m": {Input: 2.5, Output: 10}, "a/c": {Input: 1, Output: 2, CachedInput: &half}}
	if got := Pricing(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("pricing %+v, want %+v", got, want)
	}
	if got := Pricing(parse(t, "providers:\n  a: {base_url: \"http://127.0.0.1:1\"}\n")); got != nil {
		t.Errorf("no pricing: %+v, want nil", got)
	}
}
