// Package upstream owns the calls to LLM providers: one Provider per
// configured provider, speaking its wire protocol over a shared, tuned
// http.Transport, with the phase timeouts of the configuration (until the
// first byte, then between chunks). It knows nothing of HTTP routing,
// clients or consortiums; it returns OpenAI-shaped bodies and typed errors
// (*Error, ErrTimeout) that callers map to their own answers.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config is what New needs to build a Provider.
type Config struct {
	// Name is the provider's name in model refs ("openai" in
	// "openai/gpt-4o-mini").
	Name string

	// Type is the wire protocol: "openai" (any OpenAI-compatible API).
	Type string

	// BaseURL is the API root, e.g. "https://api.openai.com/v1"; endpoint
	// paths such as "/chat/completions" are appended to it.
	BaseURL string

	// APIKey is sent as a bearer token. If empty, no Authorization is sent
	// (a local server such as Ollama).
	APIKey string

	// Headers are extra headers sent with every call.
	Headers map[string]string

	// Timeout bounds the wait for the first byte of an answer (its response
	// headers). If zero, 60s is used.
	Timeout time.Duration

	// IdleTimeout bounds the silence between reads of a body once it has
	// begun. If zero, 60s is used.
	IdleTimeout time.Duration

	// Transport carries the calls. If nil, New makes a tuned transport of
	// the provider's own, kept for its lifetime so connections are reused.
	Transport http.RoundTripper
}

// Provider calls one upstream provider. It is safe for concurrent use.
type Provider struct {
	name        string
	baseURL     string
	header      http.Header // sent with every call: auth, content type, extra headers
	timeout     time.Duration
	idleTimeout time.Duration
	client      *http.Client
}

// New checks cfg and returns a Provider for it.
func New(cfg Config) (*Provider, error) {
	if cfg.Name == "" {
		return nil, errors.New("upstream: provider has no name")
	}
	if cfg.Type != "" && cfg.Type != "openai" {
		return nil, fmt.Errorf("upstream %s: provider type %q is not supported yet", cfg.Name, cfg.Type)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: base URL %q is not an http(s) URL", cfg.Name, cfg.BaseURL)
	}
	p := &Provider{
		name:        cfg.Name,
		baseURL:     strings.TrimRight(cfg.BaseURL, "/"),
		header:      http.Header{},
		timeout:     cfg.Timeout,
		idleTimeout: cfg.IdleTimeout,
	}
	if p.timeout <= 0 {
		p.timeout = 60 * time.Second
	}
	if p.idleTimeout <= 0 {
		p.idleTimeout = 60 * time.Second
	}
	for k, v := range cfg.Headers {
		p.header.Set(k, v)
	}
	p.header.Set("Content-Type", "application/json")
	p.header.Set("User-Agent", "consortium")
	if cfg.APIKey != "" {
		p.header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	transport := cfg.Transport
	if transport == nil {
		transport = NewTransport()
	}
	p.client = &http.Client{
		Transport: transport,
		// A provider that redirects is misconfigured; following it could
		// send the key elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// NewTransport returns an http.Transport tuned for many concurrent calls to
// one host: a deep idle pool (the default keeps two connections per host,
// which turns a burst into a storm of new TLS handshakes), dial and TLS
// deadlines, and no transparent gzip, which would hold back streamed chunks.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.name }

// Request is one call to a provider.
type Request struct {
	// Model is the provider's own model name (the part after the slash).
	Model string

	// Path is the endpoint below the base URL: "/chat/completions" or
	// "/embeddings".
	Path string

	// Body is the JSON body, its model already set to Model.
	Body []byte

	// Stream says the body asks for an SSE answer.
	Stream bool
}

// Response is a provider's successful (2xx) answer. Its Body must be closed;
// reading it is bounded by the provider's idle timeout.
type Response struct {
	Status      int
	ContentType string
	Body        io.ReadCloser
}

// Do sends req and returns the response once its headers have arrived. A
// non-2xx answer is returned as an *Error with the provider's message; no
// answer within the provider's timeout is ErrTimeout.
func (p *Provider) Do(ctx context.Context, req *Request) (*Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	firstByte := time.AfterFunc(p.timeout, func() { cancel(errFirstByte) })

	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.baseURL+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		firstByte.Stop()
		cancel(nil)
		return nil, p.fail(req, 0, err)
	}
	hreq.Header = p.header.Clone()
	if req.Stream {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}

	resp, err := p.client.Do(hreq)
	firstByte.Stop()
	if err != nil {
		err = causeOf(ctx, err)
		cancel(nil)
		return nil, p.fail(req, 0, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer cancel(nil)
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, p.statusError(req, resp, body)
	}
	return &Response{
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		Body:        newIdleBody(ctx, cancel, resp.Body, p.idleTimeout),
	}, nil
}

func (p *Provider) fail(req *Request, status int, err error) error {
	return &Error{Provider: p.name, Model: req.Model, Status: status, Err: err}
}

var (
	errFirstByte = fmt.Errorf("no answer before the provider's timeout: %w", ErrTimeout)
	errIdle      = fmt.Errorf("the stream was silent longer than the provider's idle_timeout: %w", ErrTimeout)
)

// causeOf returns why ctx ended when err is only the transport's report of
// it, so a phase timeout reads as ErrTimeout rather than "context canceled".
func causeOf(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		if errors.Is(cause, ErrTimeout) {
			return cause
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return cause
		}
	}
	return err
}

// idleBody ends a body whose reads stall longer than the idle timeout, and
// releases the call's context when closed.
type idleBody struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	body   io.ReadCloser
	idle   time.Duration
	timer  *time.Timer
}

func newIdleBody(ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, idle time.Duration) *idleBody {
	b := &idleBody{ctx: ctx, cancel: cancel, body: body, idle: idle}
	b.timer = time.AfterFunc(idle, func() { cancel(errIdle) })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		err = causeOf(b.ctx, err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.body.Close()
	b.cancel(nil)
	return err
}
