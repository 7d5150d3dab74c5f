package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/ratelimit"
	"github.com/consortium-dev/consortium/upstream"
)

// apiError is an answer in OpenAI's error shape.
type apiError struct {
	Status     int
	Type       string
	Code       string // "" for null
	Param      string // "" for null
	Message    string
	RetryAfter time.Duration // sets Retry-After when positive
}

func (e *apiError) Error() string { return e.Message }

// statusClientClosed is what the logs call a request whose client went
// away before the answer, after nginx's 499.
const statusClientClosed = 499

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}

func modelNotFound(model string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)}
}

// providerNotConfigured is the 404 for a provider/model ref whose provider
// the configuration does not have: a new user's most likely mistake, so it
// says how to add it, and which environment variable would, when the
// provider is one the configuration knows by name (variable not "").
func providerNotConfigured(model, provider, variable string) *apiError {
	ae := modelNotFound(model)
	ae.Message = fmt.Sprintf("The model `%s` names the provider %s, which is not configured. "+
		"Add providers.%s (base_url, api_key, models) to the config file",
		model, quoteJSON(provider), provider)
	if variable != "" {
		ae.Message += ", or set " + variable + ", which configures it by itself"
	}
	ae.Message += "."
	return ae
}

// runNotFound is the 404 for a run id the tenant does not own, whether or
// not it exists.
func runNotFound(id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "run_not_found",
		Message: "No run " + quoteJSON(id) + " was found for this API key."}
}

// errRequestTimeout answers a client whose body did not arrive in time.
var errRequestTimeout = &apiError{Status: http.StatusRequestTimeout, Type: "invalid_request_error", Code: "request_timeout",
	Message: fmt.Sprintf("the request body did not arrive within %v; the connection is closed", bodyReadTimeout)}

// quoteJSON quotes s as a JSON string, for ids in messages: unlike Go's
// %q, it never writes escapes JSON does not have.
func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// errorFrom maps any error a handler meets to what the client is told. It
// is the one place where upstream failures become statuses: the client
// gets a safe message; the wrapped error goes to the log.
func errorFrom(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *openai.FieldError
	if errors.As(err, &fe) {
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: fe.Param, Message: fe.Message}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
			Message: fmt.Sprintf("the request body is larger than the proxy's limit of %d bytes", tooLarge.Limit)}
	}
	var limited *ratelimit.LimitError
	if errors.As(err, &limited) {
		return &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded",
			Message: limited.Error(), RetryAfter: max(limited.RetryAfter, time.Second)}
	}
	if errors.Is(err, upstream.ErrBreakerOpen) {
		var ue *upstream.Error
		retry := time.Second
		if errors.As(err, &ue) {
			retry = max(ue.RetryAfter, retry)
		}
		return &apiError{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Code: "service_unavailable",
			Message: upstreamMessage(err) + "; it failed repeatedly and is resting", RetryAfter: retry}
	}
	if errors.Is(err, context.Canceled) {
		return &apiError{Status: statusClientClosed, Type: "client_closed", Message: "the client closed the request"}
	}
	switch {
	case errors.Is(err, consortia.ErrAllTimedOut):
		return &apiError{Status: http.StatusGatewayTimeout, Type: "timeout", Code: "timeout", Message: err.Error()}
	case errors.Is(err, consortia.ErrTooFewAnswers), errors.Is(err, consortia.ErrArbiter), errors.Is(err, consortia.ErrNotJSON):
		return &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_error", Message: err.Error()}
	}
	if errors.Is(err, upstream.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return &apiError{Status: http.StatusGatewayTimeout, Type: "timeout", Code: "timeout", Message: upstreamMessage(err)}
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch ue.Status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			// The provider refused the request itself: the client's SDK
			// should raise its usual error with the provider's words.
			typ := ue.Type
			if typ == "" {
				typ = "invalid_request_error"
			}
			return &apiError{Status: ue.Status, Type: typ, Code: ue.Code, Message: ue.Message}
		case http.StatusTooManyRequests:
			return &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limit_exceeded",
				Message: upstreamMessage(err), RetryAfter: max(ue.RetryAfter, time.Second)}
		}
	}
	return &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_error", Message: upstreamMessage(err)}
}

// upstreamMessage says which upstream failed and how. Its words are
// upstream's own (Describe), which never carry the provider's key, even
// when a provider echoes it, and read "the provider refused the proxy's
// credentials" for a 401 or 403.
func upstreamMessage(err error) string {
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	switch {
	case ue.Status != 0, errors.Is(ue.Err, upstream.ErrTimeout), errors.Is(ue.Err, upstream.ErrBreakerOpen):
		return "upstream " + ue.Ref() + ": " + ue.Describe()
	}
	attempts := ""
	if ue.Attempts > 1 {
		attempts = fmt.Sprintf(" after %d attempts", ue.Attempts)
	}
	return fmt.Sprintf("upstream %s: no answer%s (%s)", ue.Ref(), attempts, connectionProblem(ue.Err))
}

// connectionProblem describes a transport failure without echoing URLs.
func connectionProblem(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "the connection timed out"
	case errors.Is(err, upstream.ErrMalformed):
		return err.Error()
	}
	return "the connection failed"
}

// writeError writes e as OpenAI's JSON error.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	status := e.Status
	if status == statusClientClosed {
		return // nobody is listening; the log has it
	}
	w.WriteHeader(status)
	w.Write(errorJSON(e))
}

// errorJSON encodes e in OpenAI's envelope.
func errorJSON(e *apiError) []byte {
	body := openai.ErrorResponse{Error: openai.Error{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		body.Error.Param = &e.Param
	}
	if e.Code != "" {
		body.Error.Code = &e.Code
	}
	b, _ := json.Marshal(body)
	return b
}
