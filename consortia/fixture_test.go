package consortia_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// fixture is the engine of one consortium, "council", whose members and
// arbiter are models of a fake provider named "fake", reached through
// upstream.Provider.
type fixture struct {
	fake   *upstreamtest.Server
	engine *consortia.Engine
}

// newFixture starts a fake provider, reached over real HTTP, and builds
// the engine of a consortium from the YAML of its body (members, arbiter,
// ...), in the configuration file's keys.
func newFixture(t testing.TB, body string) *fixture {
	t.Helper()
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	transport := upstream.NewTransport()
	t.Cleanup(transport.CloseIdleConnections)
	return &fixture{fake: fake, engine: newEngine(t, fake.URL, transport, body)}
}

// inBubble runs test inside a testing/synctest bubble, with the engine of
// the consortium body over a fake provider made in the bubble and served
// in memory (upstreamtest.NewInMemory and its RoundTripper): no socket, so
// the bubble's clock runs the member_timeout, the providers' timeouts and
// the fake's delays and hangs.
func inBubble(t *testing.T, body string, test func(t *testing.T, f *fixture)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		fake := upstreamtest.NewInMemory()
		defer fake.Close()
		test(t, &fixture{fake: fake, engine: newEngine(t, fake.URL, fake.RoundTripper(), body)})
	})
}

// consortiumYAML is a consortium as the tests write it, in the
// configuration file's keys. A Member's and an Arbiter's fields read as
// their keys do (yaml.v3 lowercases field names).
type consortiumYAML struct {
	Strategy            string             `yaml:"strategy"`
	System              string             `yaml:"system"`
	Members             []consortia.Member `yaml:"members"`
	Arbiter             consortia.Arbiter  `yaml:"arbiter"`
	ConfidenceThreshold float64            `yaml:"confidence_threshold"`
	MinIterations       int                `yaml:"min_iterations"`
	MaxIterations       int                `yaml:"max_iterations"`
	Quorum              int                `yaml:"quorum"`
	MemberTimeout       time.Duration      `yaml:"member_timeout"`
	MinAnswers          int                `yaml:"min_answers"`
}

// consortiumConfig reads a consortium's YAML into the engine's Config,
// with the configuration file's defaults.
func consortiumConfig(t testing.TB, body string) consortia.Config {
	t.Helper()
	y := consortiumYAML{ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 3, MemberTimeout: time.Minute, MinAnswers: 1}
	dec := yaml.NewDecoder(strings.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil {
		t.Fatalf("consortium:\n%s\n%v", body, err)
	}
	for i := range y.Members {
		m := &y.Members[i]
		m.Count = max(m.Count, 1)
		if m.Weight == 0 {
			m.Weight = 1
		}
	}
	return consortia.Config{
		Strategy: y.Strategy, System: y.System, Members: y.Members,
		Quorum: y.Quorum, MemberTimeout: y.MemberTimeout, MinAnswers: y.MinAnswers,
		Synthesize: consortia.Synthesize{
			Arbiter:             y.Arbiter,
			ConfidenceThreshold: y.ConfidenceThreshold, MinIterations: y.MinIterations, MaxIterations: y.MaxIterations,
		},
	}
}

// newEngine builds the consortium "council" over the provider "fake" at
// fakeURL, called through transport.
func newEngine(t testing.TB, fakeURL string, transport http.RoundTripper, body string) *consortia.Engine {
	t.Helper()
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fakeURL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	e, err := consortia.New("council", consortiumConfig(t, body), map[string]consortia.Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run answers a client's request body and returns the result and the
// deltas the engine sent, checking that they add up to the synthesis.
func (f *fixture) run(t testing.TB, body string) (*consortia.Result, []string, error) {
	t.Helper()
	req, err := openai.ParseChatRequest([]byte(body))
	if err != nil {
		t.Fatalf("request %s: %v", body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var deltas []string
	res, err := f.engine.Run(ctx, req, func(d string) { deltas = append(deltas, d) })
	if err == nil && strings.Join(deltas, "") != res.Synthesis {
		t.Errorf("deltas %q do not add up to the synthesis %q", deltas, res.Synthesis)
	}
	return res, deltas, err
}

// mustRun is run for a request that must succeed.
func (f *fixture) mustRun(t testing.TB, body string) (*consortia.Result, []string) {
	t.Helper()
	res, deltas, err := f.run(t, body)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res, deltas
}
