package upstream

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/openai"
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

// Ref is the model ref the error concerns: provider/model.
func (e *Error) Ref() string { return e.Provider + "/" + e.Model }

func (e *Error) Error() string {
	return "upstream " + e.Ref() + ": " + e.Describe()
}

// Describe says what happened without naming the upstream: "status 503
// after 3 attempts: overloaded", "circuit breaker open".
func (e *Error) Describe() string {
	var what string
	if e.Status == 0 {
		what = fmt.Sprint(e.Err)
	} else {
		what = fmt.Sprintf("status %d", e.Status)
	}
	if e.Attempts > 1 {
		what += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	if e.Status != 0 && e.Message != "" {
		what += ": " + e.Message
	}
	return what
}

func (e *Error) Unwrap() error { return e.Err }

// statusError builds the Error for a non-2xx answer.
func (p *Provider) statusError(req *Request, resp *http.Response, body []byte) *Error {
	e := &Error{
		Provider:   p.name,
		Model:      req.Model,
		Status:     resp.StatusCode,
		RetryAfter: retryAfter(resp.Header, time.Now()),
	}
	if pe, ok := openai.ParseError(body); ok {
		e.Message, e.Type = pe.Message, pe.Type
		if pe.Code != nil {
			e.Code = *pe.Code
		}
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) <= 200 && !strings.ContainsAny(s, "<{") {
		e.Message = s // a short plain-text error, as some servers send
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
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
