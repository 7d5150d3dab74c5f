package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/consortium-dev/consortium/upstream"
)

// metrics are the proxy's Prometheus collectors, registered on the
// registry the Server was given.
type metrics struct {
	requests      *prometheus.CounterVec   // route, status
	latency       *prometheus.HistogramVec // route
	overhead      prometheus.Histogram
	upstreamCalls *prometheus.CounterVec   // provider, model, outcome
	upstreamTime  *prometheus.HistogramVec // provider, model
	streams       prometheus.Gauge
	panics        prometheus.Counter
	breakers      *prometheus.GaugeVec   // provider, model
	storeErrors   *prometheus.CounterVec // op

	// models bounds the model label values: clients choose model names,
	// and every new name would be a new time series.
	mu     sync.Mutex
	models map[string]bool
}

// maxModelLabels is how many distinct provider/model pairs get a label of
// their own; later ones are counted as model "other".
const maxModelLabels = 500

// modelLabel returns the label value for a model of a provider.
func (m *metrics) modelLabel(provider, model string) string {
	key := provider + "/" + model
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

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		models: map[string]bool{},
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
			Help: "Calls to providers, by provider, model and outcome (ok, or the error class).",
		}, []string{"provider", "model", "outcome"}),
		upstreamTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consortium_upstream_duration_seconds",
			Help:    "Time from sending a call to a provider to its answer's first byte, by provider and model.",
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
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.overhead, m.upstreamCalls, m.upstreamTime, m.streams, m.panics, m.breakers, m.storeErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// breakerChanged records a model's new breaker state.
func (m *metrics) breakerChanged(provider, model, state string) {
	v := 0.0
	switch state {
	case upstream.BreakerHalfOpen:
		v = 1
	case upstream.BreakerOpen:
		v = 2
	}
	m.breakers.WithLabelValues(provider, m.modelLabel(provider, model)).Set(v)
}
