package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/consortium-dev/consortium/upstream"
)

// Metrics are the proxy's Prometheus collectors, registered on the
// registry they were made for. The wiring makes them before the providers,
// so that every upstream call is counted (upstream.Config.OnCall is
// ObserveCall) and every breaker change is shown (BreakerChanged).
type Metrics struct {
	requests      *prometheus.CounterVec   // route, status
	latency       *prometheus.HistogramVec // route
	overhead      prometheus.Histogram
	upstreamCalls *prometheus.CounterVec   // provider, model, role, outcome
	upstreamTime  *prometheus.HistogramVec // provider, model
	streams       prometheus.Gauge
	panics        prometheus.Counter
	breakers      *prometheus.GaugeVec   // provider, model
	storeErrors   *prometheus.CounterVec // op

	// Consortium runs. Consortium names and member refs come from the
	// configuration, so these labels are bounded without help.
	runs           *prometheus.CounterVec   // consortium, outcome
	rounds         *prometheus.HistogramVec // consortium
	confidence     *prometheus.HistogramVec // consortium
	members        *prometheus.CounterVec   // consortium, model, status
	firstSynthesis *prometheus.HistogramVec // consortium
	scoresSkipped  *prometheus.CounterVec   // reason

	// models bounds the model label values: clients choose model names,
	// and every new name would be a new time series.
	mu     sync.Mutex
	models map[modelRef]bool
}

// modelRef is a provider and one of its models, a key that costs no
// string of its own.
type modelRef struct{ provider, model string }

// maxModelLabels is how many distinct provider/model pairs get a label of
// their own; later ones are counted as model "other".
const maxModelLabels = 500

// modelLabel returns the label value for a model of a provider.
func (m *Metrics) modelLabel(provider, model string) string {
	key := modelRef{provider, model}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.models[key] {
		return model
	}
	if len(m.models) >= maxModelLabels {
		return "other"
	}
	m.models[key] = true
	return model
}

// NewMetrics makes the proxy's collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		models: map[modelRef]bool{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consortium_requests_total",
			Help: "HTTP requests served, by route and status (499: the client went away).",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "consortium_overhead_seconds",
			Help:    "Time a request spent in the proxy itself, waits on providers excluded.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consortium_upstream_requests_total",
			Help: "Finished calls to providers, retries included in one call, by provider, model, role " +
				"(passthrough, member, arbiter, judge) and outcome (ok, error, timeout, breaker_open, limited, malformed, canceled).",
		}, []string{"provider", "model", "role", "outcome"}),
		upstreamTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_upstream_duration_seconds",
			Help:    "Time from sending a passthrough call to a provider to its answer's first byte, by provider and model.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "model"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consortium_streams_in_flight",
			Help: "SSE streams being sent to clients now.",
		}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consortium_breaker_state",
			Help: "Circuit breaker state per upstream model: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider", "model"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consortium_store_errors_total",
			Help: "Conversation store operations that failed (the store was down or too slow), by operation.",
		}, []string{"op"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consortium_panics_total",
			Help: "Handler panics recovered into 500 answers.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consortium_runs_total",
			Help: "Consortium runs, by consortium and outcome (ok, or the error type the client got: upstream_error, timeout, client_closed ...).",
		}, []string{"consortium", "outcome"}),
		rounds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_rounds",
			Help:    "Rounds a successful consortium run took, by consortium.",
			Buckets: prometheus.LinearBuckets(1, 1, 10),
		}, []string{"consortium"}),
		confidence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_confidence",
			Help:    "The arbiter's final confidence of a successful run that reported one, by consortium.",
			Buckets: []float64{.1, .2, .3, .4, .5, .6, .7, .8, .9, 1},
		}, []string{"consortium"}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consortium_member_answers_total",
			Help: "Member answers of successful runs, every round's, by consortium, member model ref and status (ok, error, timeout, cancelled).",
		}, []string{"consortium", "model", "status"}),
		firstSynthesis: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_first_synthesis_seconds",
			Help:    "Time from a streamed consortium request's arrival to the first byte of its synthesis, by consortium.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120},
		}, []string{"consortium"}),
	}
	m.scoresSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "consortium_scores_skipped_total",
		Help: "Runs whose scores were not recorded, by reason (queue_full, store, closed); the runs themselves were served.",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.overhead, m.upstreamCalls, m.upstreamTime, m.streams, m.panics,
		m.breakers, m.storeErrors, m.runs, m.rounds, m.confidence, m.members, m.firstSynthesis, m.scoresSkipped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveCall counts one finished upstream call. It is what the wiring
// passes as upstream.Config.OnCall, so that passthrough, member, arbiter
// and judge calls are all counted, each once.
func (m *Metrics) ObserveCall(c upstream.Call) {
	role := c.Role
	if role == "" {
		role = "unknown" // a call made without upstream.WithRole
	}
	m.upstreamCalls.WithLabelValues(c.Provider, m.modelLabel(c.Provider, c.Model), role, c.Outcome).Inc()
}

// BreakerChanged records a model's new breaker state. It is what the
// wiring passes, with the provider's name, as
// upstream.Config.OnBreakerChange.
func (m *Metrics) BreakerChanged(provider, model, state string) {
	v := 0.0
	switch state {
	case upstream.BreakerHalfOpen:
		v = 1
	case upstream.BreakerOpen:
		v = 2
	}
	m.breakers.WithLabelValues(provider, m.modelLabel(provider, model)).Set(v)
}

// ScoresSkipped counts a run whose scores were not recorded. It is what
// the wiring passes as scores.Config.OnSkip.
func (m *Metrics) ScoresSkipped(reason string) {
	m.scoresSkipped.WithLabelValues(reason).Inc()
}
