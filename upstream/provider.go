// Package upstream owns the calls to LLM providers: one Provider per
// configured provider, speaking its wire protocol over its own HTTP/1.1
// client for plain-HTTP providers (h1.go) and a tuned net/http Transport
// for the rest, with the phase timeouts of the configuration (until the
// first byte, then between chunks). It knows nothing of HTTP routing,
// clients or consortiums; it returns OpenAI-shaped bodies, typed chat
// completions and chunks, and typed errors (*Error, ErrTimeout,
// ErrMalformed, ErrBreakerOpen, ErrLimited) that callers map to their own
// answers, with (*Error).Describe as the words a client may see.
//
// The flow of a call: Do (the passthrough: a raw OpenAI body in, an OpenAI
// body or event stream out), Chat or ChatStream (typed) build a call; one
// retry loop (send, try) admits each attempt through the model's circuit
// breaker and the provider's limits (admit, one release per attempt) and
// reads the answer through a bound on its size (max_response); a dialect
// (dialect.go) is the only part that knows the wire protocol: openai, or
// anthropic (Anthropic's Messages API, anthropic.go), so that callers see
// every provider as OpenAI-compatible. Text the provider wrote is scrubbed
// of the credentials it was sent before it leaves the package.
package upstream

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/ratelimit"
)

// Config is what New needs to build a Provider.
type Config struct {
	// Name is the provider's name in model refs ("openai" in
	// "openai/gpt-4o-mini").
	Name string

	// Type is the wire protocol: "openai" (any OpenAI-compatible API; the
	// default when empty) or "anthropic" (Anthropic's Messages API, which
	// Do translates from and to Chat Completions).
	Type string

	// BaseURL is the API root, e.g. "https://api.openai.com/v1"; endpoint
	// paths such as "/chat/completions" are appended to it. For an
	// anthropic provider "/v1/messages" is, or "/messages" when BaseURL
	// already ends in /v1; if empty, https://api.anthropic.com is used.
	BaseURL string

	// APIKey is sent as a bearer token, or as x-api-key for an anthropic
	// provider. If empty, neither is sent (a local server such as Ollama).
	APIKey string

	// Headers are extra headers sent with every call. For an anthropic
	// provider they may set anthropic-version (2023-06-01 otherwise) and
	// anthropic-beta.
	Headers map[string]string

	// PromptCache, for an anthropic provider, marks the stable prefix of
	// each request for Anthropic's prompt cache (cache_control on the end
	// of the system prompt and of the turn before the last user turn), so
	// that a consortium's later rounds and continued conversations are
	// billed as cache reads. False sends no cache_control. Other providers
	// ignore it: OpenAI-compatible APIs cache prefixes by themselves.
	PromptCache bool

	// Timeout bounds the wait for the first byte of an answer (its response
	// headers). If zero, 60s is used.
	Timeout time.Duration

	// IdleTimeout bounds the silence between reads of a body once it has
	// begun. If zero, 60s is used.
	IdleTimeout time.Duration

	// MaxRetries is how many times a failed attempt is tried again (see
	// Do). Zero means no retries.
	MaxRetries int

	// Backoff is the first backoff ceiling between attempts; it doubles
	// with each attempt, up to 10s, and the wait is drawn at random below
	// it (full jitter). If zero, 250ms is used.
	Backoff time.Duration

	// Breaker configures the circuit breaker of each model.
	Breaker BreakerSettings

	// OnBreakerChange, if set, is told when a model's breaker changes
	// state (BreakerClosed, BreakerHalfOpen, BreakerOpen).
	OnBreakerChange func(model, state string)

	// RPM and MaxConcurrency limit the calls to this provider: callers
	// wait for their turn while their deadline allows. Zero means
	// unlimited.
	RPM            int
	MaxConcurrency int

	// Transport carries the calls. If nil, New makes a tuned transport of
	// the provider's own, kept for its lifetime so connections are reused.
	Transport http.RoundTripper

	// MaxResponse bounds an answer: a JSON body, or the sum of a stream's
	// data. Past it the call fails with ErrMalformed. If zero, 32 MiB is
	// used.
	MaxResponse int64

	// Models are the models the configuration names for this provider
	// (listed, or used by a consortium). Their per-model state (breakers)
	// is kept; the state of any other model a client names is bounded in
	// number and evicted when idle.
	Models []string

	// OnCall, if set, is told of every call when it ends: each Do, Chat
	// or ChatStream, its retries included, once.
	OnCall func(Call)
}

// Call describes one finished call, for metrics and logs.
type Call struct {
	Provider, Model string
	// Role is what the call was for, as WithRole set it: "passthrough",
	// "member", "arbiter", "judge"; "" when unset.
	Role string
	// Outcome is "ok", "error", "timeout", "breaker_open", "limited",
	// "malformed" or "canceled".
	Outcome string
	// Status is the provider's HTTP status, when it answered.
	Status   int
	Attempts int
	Duration time.Duration
}

type roleKey struct{}

// WithRole returns a context whose calls report role in Call.Role.
func WithRole(ctx context.Context, role string) context.Context {
	return context.WithValue(ctx, roleKey{}, role)
}

// RoleOf returns the role WithRole set on ctx, or "".
func RoleOf(ctx context.Context) string {
	r, _ := ctx.Value(roleKey{}).(string)
	return r
}

type beforeReadKey struct{}

// WithBeforeRead returns a context whose calls' streams call f before each
// read from the provider, which may wait for the network, and when they
// are closed. A caller that relays what it reads can hold its writes
// until then (openai.EventWriter.Hold): a burst the provider sent at once
// goes on in one write, and nothing read waits for the next read.
func WithBeforeRead(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, beforeReadKey{}, f)
}

// Provider calls one upstream provider. It is safe for concurrent use.
type Provider struct {
	name        string
	baseURL     string
	dialect     dialect
	header      http.Header // sent with every call: auth, content type, extra headers
	secrets     []string    // the credentials sent, scrubbed from the provider's text
	secretBytes [][]byte    // the same, for scrubbing streams
	timeout     time.Duration
	idleTimeout time.Duration
	maxRetries  int
	backoff     time.Duration
	cooldown    time.Duration
	maxResponse int64
	breakers    *breakers
	gate        *ratelimit.Gate // nil when the provider is not limited
	transport   http.RoundTripper
	onCall      func(Call)

	// chatTarget is where chat completions go, parsed once; other paths
	// are parsed per call.
	chatPath   string
	chatTarget *target

	// jsonHeader and streamHeader are header with the Accept of a JSON
	// call and of a stream, made once: requests share them, read only
	// (a RoundTripper does not modify its request).
	jsonHeader, streamHeader http.Header
}

// New checks cfg and returns a Provider for it.
func New(cfg Config) (*Provider, error) {
	if cfg.Name == "" {
		return nil, errors.New("upstream: provider has no name")
	}
	var d dialect = openaiDialect{}
	switch cfg.Type {
	case "", "openai":
	case "anthropic":
		if cfg.BaseURL == "" {
			cfg.BaseURL = "https://api.anthropic.com"
		}
		ad := &anthropicDialect{messagesPath: "/v1/messages", promptCache: cfg.PromptCache}
		if strings.HasSuffix(strings.TrimRight(cfg.BaseURL, "/"), "/v1") {
			ad.messagesPath = "/messages"
		}
		d = ad
	default:
		return nil, fmt.Errorf("upstream %s: provider type %q is not openai or anthropic", cfg.Name, cfg.Type)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: base URL %q is not an http(s) URL", cfg.Name, cfg.BaseURL)
	}
	p := &Provider{
		name:        cfg.Name,
		baseURL:     strings.TrimRight(cfg.BaseURL, "/"),
		dialect:     d,
		header:      http.Header{},
		timeout:     cmp.Or(max(cfg.Timeout, 0), 60*time.Second),
		idleTimeout: cmp.Or(max(cfg.IdleTimeout, 0), 60*time.Second),
		maxRetries:  max(cfg.MaxRetries, 0),
		backoff:     cmp.Or(max(cfg.Backoff, 0), 250*time.Millisecond),
		maxResponse: cmp.Or(max(cfg.MaxResponse, 0), DefaultMaxResponse),
		onCall:      cfg.OnCall,
	}
	bs := cfg.Breaker
	if bs.Failures <= 0 {
		bs.Failures = 5
	}
	if bs.Cooldown <= 0 {
		bs.Cooldown = 30 * time.Second
	}
	p.cooldown = bs.Cooldown
	p.breakers = newBreakers(bs, cfg.OnBreakerChange, cfg.Models)
	if cfg.RPM > 0 || cfg.MaxConcurrency > 0 {
		p.gate = ratelimit.NewGate(cfg.Name, cfg.RPM, cfg.MaxConcurrency)
	}
	for k, v := range cfg.Headers {
		p.header.Set(k, v)
	}
	p.header.Set("Content-Type", "application/json")
	p.header.Set("User-Agent", "consortium")
	d.headers(p.header, cfg.APIKey)
	if u.User != nil && p.header.Get("Authorization") == "" {
		// What http.Client sends for credentials in the URL; the calls
		// go to the transport directly (see try).
		pass, _ := u.User.Password()
		p.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass)))
	}
	p.jsonHeader, p.streamHeader = p.header.Clone(), p.header.Clone()
	p.jsonHeader.Set("Accept", "application/json")
	p.streamHeader.Set("Accept", "text/event-stream")
	p.secrets = secrets(cfg.APIKey, p.header)
	p.secretBytes = secretBytes(p.secrets)
	p.transport = cfg.Transport
	if p.transport == nil {
		p.transport = newH1Transport(NewTransport())
	}
	p.chatPath, _ = d.endpoint("/chat/completions")
	if p.chatTarget, err = newTarget(p.baseURL + p.chatPath); err != nil {
		return nil, fmt.Errorf("upstream %s: base URL %q: %w", cfg.Name, cfg.BaseURL, err)
	}
	return p, nil
}

// target is a URL calls are sent to, as http.NewRequest would set it in a
// request: its URL and Host, and the text errors show it by.
type target struct {
	url  *url.URL
	host string
	text string // the URL, its password hidden, as http.Client shows it
}

func newTarget(rawURL string) (*target, error) {
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		return nil, err
	}
	t := &target{url: req.URL, host: req.Host, text: req.URL.String()}
	if _, ok := req.URL.User.Password(); ok {
		t.text = strings.Replace(t.text, req.URL.User.String()+"@", req.URL.User.Username()+":***@", 1)
	}
	return t, nil
}

// target returns where a call to path goes.
func (p *Provider) target(path string) (*target, error) {
	if path == p.chatPath {
		return p.chatTarget, nil
	}
	return newTarget(p.baseURL + path)
}

// roundTrip sends req through the transport directly, as
// httputil.ReverseProxy does. An http.Client would copy the request's
// headers on every call, to follow redirects, and none is followed: a
// provider that redirects is misconfigured, and following it could send
// the key elsewhere, so its 3xx is its answer. What else the client did
// is kept: an error reads as its errors do ("Post \"URL\": ..."), a
// response without a body gets an empty one, and credentials in the base
// URL are sent (New puts them in the headers).
func (p *Provider) roundTrip(req *http.Request, t *target) (*http.Response, error) {
	resp, err := p.transport.RoundTrip(req)
	if err == nil && resp == nil {
		err = fmt.Errorf("http: RoundTripper implementation (%T) returned a nil *Response with a nil error", p.transport)
	}
	if err != nil {
		if tlsErr, ok := err.(tls.RecordHeaderError); ok && string(tlsErr.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return nil, &url.Error{Op: "Post", URL: t.text, Err: err}
	}
	if resp.Body == nil {
		if resp.ContentLength > 0 {
			return nil, &url.Error{Op: "Post", URL: t.text,
				Err: fmt.Errorf("http: RoundTripper implementation (%T) returned a *Response with content length %d but a nil Body", p.transport, resp.ContentLength)}
		}
		resp.Body = http.NoBody
	}
	return resp, nil
}

// DefaultMaxResponse is the bound of an answer when Config.MaxResponse is
// zero.
const DefaultMaxResponse = 32 << 20

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

	// Buffer, if set, receives a JSON answer's body (Response.Data then
	// aliases it), so that a caller can reuse its buffers.
	Buffer *bytes.Buffer

	// Release, if set, is called once no attempt will read Body again: as
	// Do returns, or later, when net/http still writes an attempt's body
	// after its answer came (a provider that answers before reading it
	// all). A caller that pools Body's memory gives it back then. Do
	// calls it whether it succeeds or fails.
	Release func()
}

// Response is a provider's successful (2xx) answer. For a stream, Body is
// the event stream, bounded by the provider's idle timeout, and must be
// closed; it ends with io.EOF only after the answer's end (data: [DONE]),
// and a stream cut short fails with an *Error instead (ErrNoDone when it
// simply stopped), which the model's breaker and OnCall count as a
// failure. For a JSON answer, Data is the whole body, already checked to
// be JSON, and Body is nil.
type Response struct {
	Status      int
	ContentType string
	Body        io.ReadCloser
	Data        []byte
	// Attempts is how many attempts the call took.
	Attempts int
	// Arrived says that part of a stream's body had already arrived with
	// its headers, so that its first read does not wait for the provider
	// (known for plain-HTTP providers; false when unknown).
	Arrived bool
}

// Do sends req, a raw OpenAI body, and returns the response once it has
// begun (a stream) or has been read whole (JSON): the passthrough. Failed
// attempts are retried while none of the answer has been returned:
// connection errors and 408, 429, 500, 502, 503, 504 and 529 answers, up
// to MaxRetries times, with exponential backoff and full jitter, or after
// the Retry-After the provider sent when it fits in the time left. The
// model's breaker sees every attempt; an open breaker fails the call at
// once with ErrBreakerOpen. The provider's timeout bounds the wait for the
// first byte across all attempts.
//
// A non-2xx answer is returned as an *Error with the provider's message;
// no answer in time is ErrTimeout; a 200 that is not JSON, or an answer
// past MaxResponse, is ErrMalformed.
//
// An anthropic provider takes and returns the same OpenAI shapes: Do
// parses the body and encodes it in its dialect before the first attempt
// (a body it cannot translate is an *Error with status 400, a path other
// than /chat/completions one with 404, and neither reaches the provider),
// and translates each attempt's answer as it is read, so a malformed
// answer counts against the breaker like any other.
func (p *Provider) Do(ctx context.Context, req *Request) (*Response, error) {
	c := p.newCall(ctx, req.Model)
	resp, err := p.do(ctx, c, req)
	if err != nil || resp.Body == nil {
		c.end(err)
	}
	return resp, err
}

func (p *Provider) do(ctx context.Context, c *call, req *Request) (*Response, error) {
	if req.Release != nil {
		c.hold(req.Release)
		defer c.dropBody()
	}
	path, refused := p.dialect.endpoint(req.Path)
	if refused != nil {
		refused.Provider, refused.Model = p.name, req.Model
		return nil, refused
	}
	body, includeUsage, err := p.dialect.passRequest(req.Body, req.Model)
	if err != nil {
		return nil, p.refusal(req.Model, err)
	}
	c.path, c.body, c.stream, c.buf = path, body, req.Stream, req.Buffer
	var contentType string
	c.check = func(data []byte, buf *bytes.Buffer) (err error) {
		if contentType, err = p.dialect.passJSON(data, req.Model, buf); err != nil {
			return err
		}
		p.scrubBytes(buf)
		return nil
	}
	resp, err := p.send(ctx, c)
	if err != nil {
		return nil, err
	}
	if resp.Body != nil {
		resp.Body, contentType = p.dialect.passStream(resp.Body.(*idleBody), req.Model, includeUsage)
		if len(p.secretBytes) > 0 {
			resp.Body = &scrubBody{body: resp.Body, secrets: p.secretBytes}
		}
	}
	if contentType != "" {
		resp.ContentType = contentType
	}
	return resp, nil
}

// refusal is the *Error of a request the dialect cannot carry: a 400
// naming the field, as the provider would answer.
func (p *Provider) refusal(model string, err error) *Error {
	msg := err.Error()
	var fe *openai.FieldError
	if errors.As(err, &fe) && fe.Param != "" {
		msg = fe.Param + ": " + fe.Message
	}
	return &Error{Provider: p.name, Model: model, Status: http.StatusBadRequest, Type: "invalid_request_error", Message: msg}
}

// call is one call through the retry loop: what is sent, and what the
// loop learns of it.
type call struct {
	p      *Provider
	model  string
	role   string
	start  time.Time
	path   string
	body   []byte
	stream bool
	buf    *bytes.Buffer
	// check reads a 2xx JSON answer within its attempt, so that a
	// malformed one counts against the breaker; it may rewrite buf.
	check func(data []byte, buf *bytes.Buffer) error

	attempts int
	status   int // of the last answer
	ended    bool

	// bodies counts the holds on body: Do's, and each attempt's until
	// the transport closes it; release is called when the last goes.
	bodies  atomic.Int32
	release func()
}

// hold makes the call's body one to give back, by calling release once no
// attempt will read it again, and takes the caller's hold on it, which
// the caller drops (dropBody) once send has returned; each attempt holds
// it too, until the transport closes it.
func (c *call) hold(release func()) {
	c.bodies.Add(1)
	c.release = release
}

// dropBody drops one hold on the call's body.
func (c *call) dropBody() {
	if c.bodies.Add(-1) == 0 && c.release != nil {
		c.release()
	}
}

// callBody is an attempt's request body: it reads the call's body (in
// one Write, bytes.Reader's WriteTo, so that a large body goes past a
// buffered writer's buffer) and drops its hold on it when the transport
// closes it. A transport may close it while it still reads it: HTTP/2's
// closes it from another goroutine when the answer came first, and its
// writer may be in a Read, or start one, then. The hold is dropped only
// once the read in flight has ended, and a read after Close reads
// nothing: the memory may hold another request by then.
type callBody struct {
	r bytes.Reader // by value: one allocation per attempt, not two
	c *call

	mu      sync.Mutex
	reading bool // a Read or WriteTo is in flight
	closed  bool
}

// errCallBodyClosed is a read of a request body its transport closed.
var errCallBodyClosed = errors.New("upstream: read on a closed request body")

func (c *call) newBody() *callBody {
	if c.release != nil {
		c.bodies.Add(1)
	}
	b := &callBody{c: c}
	b.r.Reset(c.body)
	return b
}

func (b *callBody) Read(p []byte) (int, error) {
	if !b.begin() {
		return 0, errCallBodyClosed
	}
	defer b.end()
	return b.r.Read(p)
}

func (b *callBody) WriteTo(w io.Writer) (int64, error) {
	if !b.begin() {
		return 0, errCallBodyClosed
	}
	defer b.end()
	return b.r.WriteTo(w)
}

// begin marks a read in flight, unless the body is closed.
func (b *callBody) begin() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = !b.closed
	return b.reading
}

// end ends a read, and drops the hold of a body closed meanwhile (Close
// left it to the read; no read begins after Close).
func (b *callBody) end() {
	b.mu.Lock()
	b.reading = false
	drop := b.closed
	b.mu.Unlock()
	if drop {
		b.drop()
	}
}

// Close drops the hold at once, or when the read in flight ends; it never
// waits for one, which may wait for the network.
func (b *callBody) Close() error {
	b.mu.Lock()
	drop := !b.closed && !b.reading
	b.closed = true
	b.mu.Unlock()
	if drop {
		b.drop()
	}
	return nil
}

func (b *callBody) drop() {
	if b.c.release != nil {
		b.c.dropBody()
	}
}

func (p *Provider) newCall(ctx context.Context, model string) *call {
	return &call{p: p, model: model, role: RoleOf(ctx), start: time.Now()}
}

// end tells OnCall how the call ended, once.
func (c *call) end(err error) {
	if c.ended || c.p.onCall == nil {
		c.ended = true
		return
	}
	c.ended = true
	c.p.onCall(Call{Provider: c.p.name, Model: c.model, Role: c.role, Outcome: outcome(err),
		Status: c.status, Attempts: c.attempts, Duration: time.Since(c.start)})
}

// send runs the retry loop (see Do) and returns the 2xx answer: a stream
// as an *idleBody, or JSON in Data, read whole and checked.
func (p *Provider) send(ctx context.Context, c *call) (*Response, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	deadline := time.Now().Add(p.timeout)
	firstByte := time.AfterFunc(p.timeout, func() { cancel(errFirstByte) })
	b := p.breakers.get(c.model)
	for attempt := 1; ; attempt++ {
		c.attempts = attempt
		resp, err := p.try(ctx, cancel, firstByte, deadline, b, c)
		if err == nil {
			resp.Attempts = attempt
			if resp.Body == nil {
				cancel(nil) // a JSON answer has been read whole: the call is over
			}
			return resp, nil
		}
		var e *Error
		if errors.As(err, &e) {
			e.Attempts = attempt
		}
		wait, ok := p.retryWait(ctx, e, attempt, deadline)
		if !ok {
			firstByte.Stop()
			cancel(nil)
			return nil, err
		}
		// An attempt that failed reading its body had stopped the clock
		// at its first byte; the next one has what is left of the time.
		firstByte.Reset(time.Until(deadline))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			firstByte.Stop()
			cancel(nil)
			return nil, err
		}
	}
}

// retryWait says whether the failed attempt number attempt is tried again,
// and after how long.
func (p *Provider) retryWait(ctx context.Context, e *Error, attempt int, deadline time.Time) (time.Duration, bool) {
	if e == nil || attempt > p.maxRetries || !retryable(e) || ctx.Err() != nil {
		return 0, false
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	left := time.Until(deadline)
	if e.RetryAfter > 0 {
		// The provider said when: wait exactly that, or give up now
		// rather than come back early or wait in vain.
		return e.RetryAfter, e.RetryAfter < left
	}
	// Doubled step by step rather than shifted, which would overflow into
	// a negative ceiling (and a panic in Int64N) past a few dozen attempts.
	ceiling := p.backoff
	for i := 1; i < attempt && ceiling < maxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxBackoff)
	wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
	return wait, wait < left
}

// maxBackoff caps the exponential backoff between attempts.
const maxBackoff = 10 * time.Second

// admit lets one attempt at model through its breaker and the provider's
// limits, or says why not, as the *Error the attempt ends with. The
// release it returns must be called once, with how the attempt ended
// (nil for a success; an error the breaker reads, see countsAgainst).
func (p *Provider) admit(ctx context.Context, deadline time.Time, b *breaker, model string) (release func(outcome error), err error) {
	done, retryAfter, err := b.allow(p.cooldown)
	if err != nil {
		return nil, &Error{Provider: p.name, Model: model, Err: err, RetryAfter: retryAfter}
	}
	if p.gate == nil {
		return done, nil
	}
	// The gate learns the first-byte deadline too (ctx carries only the
	// caller's): a turn that cannot come in time is refused at once with
	// a LimitError, rather than waited for until the timeout.
	gctx, gcancel := context.WithDeadline(ctx, deadline)
	leave, err := p.gate.Enter(gctx)
	gcancel()
	if err != nil {
		if !isLimited(err) {
			// Only a wait the caller ended is read for its cause; a
			// LimitError at the first-byte deadline stays one.
			err = causeOf(ctx, err)
		}
		done(context.Canceled) // the provider was not called: neither success nor failure
		return nil, &Error{Provider: p.name, Model: model, Err: err}
	}
	return func(outcome error) {
		leave()
		done(outcome)
	}, nil
}

// try makes one attempt.
func (p *Provider) try(ctx context.Context, cancel context.CancelCauseFunc, firstByte *time.Timer, deadline time.Time, b *breaker, c *call) (*Response, error) {
	t, err := p.target(c.path)
	if err != nil {
		return nil, p.wrap(c.model, err) // not reached: the base URL was checked
	}
	header := p.jsonHeader
	if c.stream {
		header = p.streamHeader
	}
	sent := c.newBody()
	// The request as http.NewRequestWithContext makes it, from the
	// target parsed once; the transport reads t's URL and never changes
	// it.
	hreq := (&http.Request{
		Method: http.MethodPost, URL: t.url, Host: t.host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Body: sent, ContentLength: int64(len(c.body)),
		GetBody: func() (io.ReadCloser, error) { return c.newBody(), nil },
	}).WithContext(ctx)
	release, err := p.admit(ctx, deadline, b, c.model)
	if err != nil {
		sent.Close()
		return nil, err
	}
	resp, err := p.roundTrip(hreq, t) // closes sent, now or once net/http is done with it
	if err != nil {
		err = p.wrap(c.model, causeOf(ctx, err))
		release(err)
		return nil, err
	}
	c.status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		err := p.statusError(c.model, resp, body)
		release(err)
		return nil, err
	}
	firstByte.Stop()
	out := &Response{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type")}
	body := newIdleBody(ctx, cancel, resp.Body, p.idleTimeout)
	body.http1 = resp.ProtoMajor == 1
	body.limit = p.maxResponse
	body.p, body.model = p, c.model
	if c.stream && isEventStream(out.ContentType) {
		body.beforeRead, _ = ctx.Value(beforeReadKey{}).(func())
		if b, ok := resp.Body.(interface{ Buffered() int }); ok {
			out.Arrived = b.Buffered() > 0
		}
		// The breaker and OnCall learn how the stream ended when it is
		// closed.
		body.onClose = func(readErr error) {
			release(readErr)
			c.end(readErr)
		}
		out.Body = body
		return out, nil
	}
	buf := c.buf
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset() // a failed attempt may have left part of its body
	if resp.ContentLength > p.maxResponse {
		err = body.tooLarge()
	} else {
		err = readAll(buf, body, resp.ContentLength, p.maxResponse)
	}
	// Not body.Close, which would end the call's context: a body cut
	// midway is a connection error that Do may try again. Do ends the
	// context once the call is over.
	body.timer.Stop()
	resp.Body.Close()
	if err == nil {
		err = c.check(buf.Bytes(), buf)
	}
	if err != nil {
		err = p.wrap(c.model, err)
		release(err)
		return nil, err
	}
	release(nil)
	out.Data = buf.Bytes()
	return out, nil
}

// readAll reads r, an answer of length bytes (-1 when unknown), into buf.
// buf grows by doubling, as bytes.Buffer does, but never past limit+1
// bytes (r fails past limit): an answer past the limit costs no more than
// the limit.
func readAll(buf *bytes.Buffer, r io.Reader, length, limit int64) error {
	b := buf.AvailableBuffer()
	if length >= 0 && int64(cap(b)) <= length {
		b = make([]byte, 0, length+1) // +1: the EOF is read without growing
	}
	var err error
	for err == nil {
		if len(b) == cap(b) {
			size := max(2*int64(cap(b)), 512)
			if size >= limit {
				// The last step: to the limit, and the one byte that
				// says the answer is past it.
				size = max(limit+1, int64(cap(b))+512)
			}
			nb := make([]byte, len(b), size)
			copy(nb, b)
			b = nb
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
	}
	*buf = *bytes.NewBuffer(b)
	if err == io.EOF {
		return nil
	}
	return err
}

// isEventStream reports an SSE content type.
func isEventStream(contentType string) bool {
	return strings.HasPrefix(contentType, "text/event-stream")
}

var (
	errFirstByte = fmt.Errorf("no answer before the provider's timeout: %w", ErrTimeout)
	errIdle      = fmt.Errorf("the stream was silent longer than the provider's idle_timeout: %w", ErrTimeout)
)

// causeOf returns ErrTimeout's phase error when one of the provider's own
// timeouts ended ctx, so that it reads as a timeout rather than as the
// transport's "context canceled". Any other end (the caller went away, a
// quorum was reached) is left as the transport reported it.
func causeOf(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrTimeout) {
			return cause
		}
	}
	return err
}

// idleBody ends a body whose reads stall longer than the idle timeout, or
// that runs past the provider's max_response, and releases the call's
// context when closed.
type idleBody struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	body    io.ReadCloser
	idle    time.Duration
	timer   *time.Timer
	limit   int64     // bytes the answer may have
	read    int64     // bytes read so far
	p       *Provider // makes a failure the call's *Error, when set
	model   string
	err     error               // the first failure other than EOF, wrapped
	onClose func(readErr error) // told how reading ended; nil when nobody asks
	closed  bool
	http1   bool // the connection carries one response at a time
	// beforeRead, if set, is called before each read and on Close (see
	// WithBeforeRead).
	beforeRead func()
	// wantDone makes the body an event stream that must end with data:
	// [DONE]: one that reaches its end without it fails with ErrNoDone.
	// tail keeps what the check needs of what was read.
	wantDone bool
	tail     doneTail
}

func newIdleBody(ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, idle time.Duration) *idleBody {
	b := &idleBody{ctx: ctx, cancel: cancel, body: body, idle: idle, limit: math.MaxInt64}
	b.timer = time.AfterFunc(idle, func() { cancel(errIdle) })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.beforeRead != nil {
		b.beforeRead()
	}
	if b.read >= b.limit {
		// What is past the limit is never read, so never held: only
		// whether there is any is asked for, one byte.
		p = p[:min(len(p), 1)]
	}
	n, err := b.body.Read(p)
	b.read += int64(n)
	if n > 0 {
		b.timer.Reset(b.idle)
		if b.wantDone {
			b.tail.keep(p[:n])
		}
	}
	if b.read > b.limit {
		return 0, b.fail(b.tooLarge())
	}
	switch {
	case err == io.EOF && b.wantDone && !b.tail.done():
		err = b.fail(ErrNoDone)
	case err != nil && err != io.EOF:
		err = b.fail(causeOf(b.ctx, err))
	}
	return n, err
}

// tooLarge is the failure of an answer past the limit.
func (b *idleBody) tooLarge() error {
	return fmt.Errorf("%w: the answer is larger than max_response (%d bytes)", ErrMalformed, b.limit)
}

// fail records err, made the call's *Error, as how reading ended, unless a
// failure came first, and returns it: a typed stream tells the breaker of
// the failures its events carry.
func (b *idleBody) fail(err error) error {
	if b.p != nil {
		err = b.p.wrap(b.model, err)
	}
	if b.err == nil {
		b.err = err
	}
	return err
}

// drain reads what is left of a body whose content has all been read (an
// event stream after its [DONE]), so that an HTTP/1 connection goes back to
// the pool rather than being closed: most of all a TLS connection, which
// costs a handshake to replace. It gives up after drainLimit bytes or
// drainTimeout, and what it reads or fails to read does not count as how
// the stream ended.
func (b *idleBody) drain() {
	if b.closed || !b.http1 {
		return // HTTP/2 ends a stream without closing its connection
	}
	if b.beforeRead != nil {
		b.beforeRead() // the drain may wait
	}
	// The idle timer cancels the call if the rest does not come soon.
	b.timer.Reset(drainTimeout)
	io.CopyN(io.Discard, b.body, drainLimit)
}

// The bounds of idleBody.drain: a provider that ends its response promptly
// has sent the rest (a chunked body's last line) with or just after its
// last event.
const (
	drainLimit   = 4 << 10
	drainTimeout = 50 * time.Millisecond
)

func (b *idleBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.beforeRead != nil {
		b.beforeRead()
	}
	b.timer.Stop()
	err := b.body.Close()
	b.cancel(nil)
	if b.onClose != nil {
		b.onClose(b.err)
	}
	return err
}
