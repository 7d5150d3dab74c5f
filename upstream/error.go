package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/ratelimit"
)

// ErrTimeout is the cause of a call that got no answer within the
// provider's timeout, or whose stream fell silent past its idle timeout.
var ErrTimeout = errors.New("upstream timeout")

// Error is a failed call: a status the provider answered with, or (Status
// 0) a call that got no answer, with Err saying why.
type Error struct {
	Provider string
	Model    string

	// Status is the provider's HTTP status; 0 when there was no answer.
	Status int

	// Message, Type and Code are read from the provider's error body.
	Message string
	Type    string
	Code    string

	// RetryAfter is how long the provider asked callers to wait (from
	// Retry-After or retry-after-ms); 0 when it did not say.
	RetryAfter time.Duration

	// Err is the underlying failure when there was no answer.
	Err error

	// Attempts is how many attempts were made before giving up.
	Attempts int
}

// ErrLimited is the cause of a call refused by the provider's own rpm or
// max_concurrency in this process (the error is then also a
// *ratelimit.LimitError, with the time to wait). It is ratelimit's
// sentinel, so that callers of upstream need no other import to tell a
// limit apart.
var ErrLimited = ratelimit.ErrLimited

// Ref is the model ref the error concerns: provider/model.
func (e *Error) Ref() string { return e.Provider + "/" + e.Model }

// Error says which upstream failed and how (Describe), and for a call that
// got no answer the transport's own words, for logs.
func (e *Error) Error() string {
	s := "upstream " + e.Ref() + ": " + e.Describe()
	if e.Status == 0 && e.Err != nil && connectionFailure(e.Err) {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// refusedCredentials is how a 401 or 403 of the provider reads, whatever
// its body said: a provider may echo the key it received.
const refusedCredentials = "the provider refused the proxy's credentials"

// Describe says what happened without naming the upstream, in words a
// client may be shown: "status 503 after 3 attempts: overloaded",
// "circuit breaker open", "no answer: the connection failed". A 401 or 403
// reads "the provider refused the proxy's credentials", never the
// provider's body. It covers every failure, limits included, so callers
// need not look inside Err.
func (e *Error) Describe() string {
	var what string
	switch {
	case e.Status != 0:
		what = fmt.Sprintf("status %d", e.Status)
	case e.Err == nil:
		what = "failed"
	case connectionFailure(e.Err):
		what = "no answer"
	default:
		what = e.Err.Error()
	}
	if e.Attempts > 1 {
		what += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		what += ": " + refusedCredentials
	case e.Status != 0 && e.Message != "":
		what += ": " + e.Message
	case e.Status == 0 && connectionFailure(e.Err):
		what += ": the connection failed"
	}
	return what
}

func (e *Error) Unwrap() error { return e.Err }

// connectionFailure reports a call that got no answer for none of the
// reasons this package names: the transport's own failure (refused,
// reset, cut), whose words may hold addresses.
func connectionFailure(err error) bool {
	return !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBreakerOpen) &&
		!errors.Is(err, ErrLimited) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// outcome names how a call ended, for Call.Outcome.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	switch {
	case errors.Is(err, ErrBreakerOpen):
		return "breaker_open"
	case errors.Is(err, ErrLimited):
		return "limited"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &e) && e.Status == http.StatusTooManyRequests:
		return "limited"
	}
	return "error"
}

// wrap makes err, a failure of a call to model, the call's *Error, its
// text scrubbed of the provider's credentials. An *Error is returned as
// it is, scrubbed.
func (p *Provider) wrap(model string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Provider: p.name, Model: model, Err: err}
	}
	e.Provider, e.Model = p.name, model
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		e.Message = refusedCredentials
	}
	e.Message, e.Type = p.scrub(e.Message), p.scrub(e.Type)
	if e.Err != nil {
		if s := e.Err.Error(); p.scrub(s) != s {
			e.Err = &scrubbed{err: e.Err, text: p.scrub(s)}
		}
	}
	return e
}

// scrubbed is an error whose text held a credential: Error gives the text
// without it; errors.Is still sees through it.
type scrubbed struct {
	err  error
	text string
}

func (s *scrubbed) Error() string { return s.text }
func (s *scrubbed) Unwrap() error { return s.err }

// secrets returns the credentials a provider sends, longest first (so that
// a key is not half replaced inside its own bearer token): the key, and
// the values of the credential headers.
func secrets(key string, h http.Header) []string {
	var out []string
	add := func(v string) {
		// A very short value would scrub ordinary words; no real key is
		// that short.
		if v = strings.TrimSpace(v); len(v) >= 8 && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	add(key)
	for _, name := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"} {
		v := h.Get(name)
		add(v)
		if _, token, ok := strings.Cut(v, " "); ok {
			add(token) // "Bearer KEY": the key alone too
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrub removes the provider's credentials from text the provider wrote.
func (p *Provider) scrub(text string) string {
	for _, s := range p.secrets {
		if strings.Contains(text, s) {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}

// scrubBytes removes the provider's credentials from a passthrough answer
// in buf: a 200 may carry an error body that echoes the key.
func (p *Provider) scrubBytes(buf *bytes.Buffer) {
	data := buf.Bytes()
	for _, s := range p.secrets {
		if bytes.Contains(data, []byte(s)) {
			data = bytes.ReplaceAll(data, []byte(s), redacted)
		}
	}
	if len(data) != buf.Len() || (len(data) > 0 && &data[0] != &buf.Bytes()[0]) {
		buf.Reset()
		buf.Write(data)
	}
}

var redacted = []byte("[redacted]")

// scrubBody removes the provider's credentials from a passthrough stream,
// which is forwarded as the provider wrote it: an error event may echo
// the key. A read's bytes are given out at once, except a tail that could
// begin a credential, held until the next read says.
type scrubBody struct {
	body    io.ReadCloser
	secrets [][]byte
	buf     []byte // read and scrubbed; buf[:ready] may be given out
	ready   int
	err     error
}

// secretBytes returns the secrets as bytes, for scrubBody.
func secretBytes(secrets []string) [][]byte {
	out := make([][]byte, len(secrets))
	for i, k := range secrets {
		out[i] = []byte(k)
	}
	return out
}

func (s *scrubBody) Read(p []byte) (int, error) {
	if len(s.buf) == 0 && s.err == nil {
		// Nothing is held: read into p, and give it out as it is unless
		// it holds a credential or may end inside one (the common case
		// costs a search and no copy).
		n, err := s.body.Read(p)
		if !s.touches(p[:n], err) {
			return n, err
		}
		s.buf = append(s.buf, p[:n]...)
		s.settle(err)
	}
	for s.ready == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if cap(s.buf)-len(s.buf) < 4<<10 {
			nb := make([]byte, len(s.buf), max(2*cap(s.buf), 8<<10))
			copy(nb, s.buf)
			s.buf = nb
		}
		n, err := s.body.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		s.settle(err)
	}
	n := copy(p, s.buf[:s.ready])
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	s.ready -= n
	return n, nil
}

// touches reports whether data, read with err, holds a credential or may
// end inside one.
func (s *scrubBody) touches(data []byte, err error) bool {
	for _, k := range s.secrets {
		if bytes.Contains(data, k) {
			return true
		}
	}
	return err == nil && partial(data, s.secrets) > 0
}

// settle scrubs what is held, read with err, and says how much of it may
// be given out.
func (s *scrubBody) settle(err error) {
	s.err = err
	for _, k := range s.secrets {
		if bytes.Contains(s.buf, k) {
			s.buf = bytes.ReplaceAll(s.buf, k, redacted)
		}
	}
	s.ready = len(s.buf)
	if err == nil {
		s.ready -= partial(s.buf, s.secrets)
	}
}

// partial returns the length of the longest tail of data that begins a
// secret. Only the places in the tail that hold a secret's first byte
// are tried, most often none.
func partial(data []byte, secrets [][]byte) int {
	longest := 0
	for _, k := range secrets {
		tail := data[max(0, len(data)-len(k)+1):]
		for i := 0; len(tail)-i > longest; i++ {
			j := bytes.IndexByte(tail[i:], k[0])
			if j < 0 {
				break
			}
			i += j
			if len(tail)-i > longest && bytes.HasPrefix(k, tail[i:]) {
				longest = len(tail) - i
				break
			}
		}
	}
	return longest
}

func (s *scrubBody) Close() error { return s.body.Close() }

// statusError builds the Error for a non-2xx answer to a call to model.
func (p *Provider) statusError(model string, resp *http.Response, body []byte) error {
	e := &Error{
		Status:     resp.StatusCode,
		RetryAfter: retryAfter(resp.Header, time.Now()),
	}
	if pe, ok := openai.ParseError(body); ok {
		e.Message, e.Type = pe.Message, pe.Type
		if pe.Code != nil {
			e.Code = p.scrub(*pe.Code)
		}
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) <= 200 && !strings.ContainsAny(s, "<{") {
		e.Message = s // a short plain-text error, as some servers send
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return p.wrap(model, e)
}

// retryAfter reads retry-after-ms, then Retry-After in seconds or as an
// HTTP date; 0 when the header is absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms := h.Get("Retry-After-Ms"); ms != "" {
		if v, err := strconv.ParseFloat(ms, 64); err == nil && v > 0 {
			return fromFloat(v, time.Millisecond)
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if !(secs > 0) { // NaN too
			return 0
		}
		return fromFloat(secs, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// fromFloat converts v units to a Duration, saturating rather than
// overflowing (a float past int64's range converts to a negative or
// arbitrary value, which would read as "no Retry-After" and be retried).
func fromFloat(v float64, unit time.Duration) time.Duration {
	d := v * float64(unit)
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
