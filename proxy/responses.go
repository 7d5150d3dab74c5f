package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/openai"
)

// The Responses API (POST /v1/responses) is translated at the edge: the
// request becomes a chat completion request that serveChat answers, for
// consortiums and passthrough alike, and a responseWriter turns the chat
// completion it writes (JSON or SSE) into a response object or the
// Responses event stream. Stored responses are turns: each keeps its whole
// history, so previous_response_id continues from exactly that turn.

// noStoreKey marks a request whose turn must not be stored.
type noStoreKey struct{}

// withoutStore marks ctx's request as store: false: saveTurn then stores
// neither its turn nor its run record.
func withoutStore(ctx context.Context) context.Context {
	return context.WithValue(ctx, noStoreKey{}, true)
}

// storing reports whether ctx's request may be stored.
func storing(ctx context.Context) bool {
	no, _ := ctx.Value(noStoreKey{}).(bool)
	return !no
}

// maxChatAnswer bounds what a responseWriter holds of the chat answer it
// translates: a JSON answer, or one event of a stream. Upstream bounds
// what providers send by the same figure.
const maxChatAnswer = 32 << 20

// createResponse serves POST /v1/responses.
func (s *Server) createResponse(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	buf, err := s.readBody(w, r)
	defer buffers.Put(buf)
	var req *openai.ResponseRequest
	if err == nil {
		req, err = openai.ParseResponseRequest(buf.Bytes())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	info(ctx).model = req.Model
	id := cache.NewID("resp_")
	t := &responseTurn{id: id, item: cache.ItemID(id), req: req, created: start.Unix()}
	if req.PreviousResponseID != "" {
		prev, err := s.store.Response(ctx, info(ctx).tenant, req.PreviousResponseID)
		if err != nil {
			s.fail(w, r, s.storedResponseError(req.PreviousResponseID, "previous_response_id", err))
			return
		}
		t.history = prev.History
	}
	t.input, err = req.Messages(s.itemResolver(ctx))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	chat, err := t.chatRequest()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := chat.AppendJSON(nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !req.Stored() {
		r = r.WithContext(withoutStore(ctx))
	}
	rw := &responseWriter{s: s, w: w, r: r, t: t, header: http.Header{}}
	s.serveChat(rw, r, start, openai.ChatSummary{Model: req.Model, Stream: req.Stream}, body, chat)
	rw.end()
}

// getResponse serves GET /v1/responses/{response_id}: a stored response,
// to its own tenant only.
func (s *Server) getResponse(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "response_id")
	resp, err := s.store.Response(r.Context(), info(r.Context()).tenant, id)
	if err != nil {
		s.fail(w, r, s.storedResponseError(id, "", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(resp.Object)
}

// deleteResponse serves DELETE /v1/responses/{response_id}: it removes
// that response only; the ones that continued from it keep their history.
func (s *Server) deleteResponse(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "response_id")
	if err := s.store.DeleteResponse(r.Context(), info(r.Context()).tenant, id); err != nil {
		s.fail(w, r, s.storedResponseError(id, "", err))
		return
	}
	writeJSON(w, http.StatusOK, openai.DeletedResponse{ID: id, Object: "response", Deleted: true})
}

// storedResponseError is the answer to a failure to read or delete the
// stored response id: 404 when the tenant has none, 503 when the store
// does not answer. param names the field that carried the id, if any.
func (s *Server) storedResponseError(id, param string, err error) *apiError {
	if errors.Is(err, cache.ErrNotFound) {
		return responseNotFound(id, param)
	}
	s.storeFailed("response", err)
	ae := *storeDown(err)
	ae.Message = "The conversation store is unavailable, so stored responses cannot be read now. " +
		"Send the whole conversation as input without previous_response_id, or retry later."
	if strings.HasPrefix(param, "input") {
		ae.Message = "The conversation store is unavailable, so stored responses cannot be read now. " +
			"Send earlier answers as message items rather than item references, or retry later."
	}
	return &ae
}

// itemResolver resolves the item references of a request of ctx's tenant.
// An item reference names the output message item of one of the tenant's
// stored responses (its id is cache.ItemID of the response's) and becomes
// that assistant message, as the response's history holds it. An id that
// names none of the tenant's (unknown, another tenant's, deleted, expired,
// or of a store: false response) is a 404 naming the item, as OpenAI
// answers; a store that does not answer is a 503. A response named twice
// is read once.
func (s *Server) itemResolver(ctx context.Context) openai.ItemResolver {
	tenant := info(ctx).tenant
	seen := map[string]openai.Message{}
	return func(param, id string) (openai.Message, error) {
		respID, ok := cache.ItemResponse(id)
		if !ok {
			return openai.Message{}, itemNotFound(id, param)
		}
		if m, ok := seen[respID]; ok {
			return m, nil
		}
		resp, err := s.store.Response(ctx, tenant, respID)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				return openai.Message{}, itemNotFound(id, param)
			}
			return openai.Message{}, s.storedResponseError(respID, param, err)
		}
		n := len(resp.History)
		if n == 0 || resp.History[n-1].Role != "assistant" {
			return openai.Message{}, itemNotFound(id, param)
		}
		seen[respID] = resp.History[n-1]
		return resp.History[n-1], nil
	}
}

// itemNotFound is the 404 for an item reference that names no output
// message of the tenant's stored responses, whether or not it exists.
func itemNotFound(id, param string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "run_not_found", Param: param,
		Message: "Item with id " + quoteJSON(id) + " not found for this API key. Item references name the output message of a " +
			"response stored with store: true; send the message itself instead, or remove this item from your input."}
}

// responseNotFound is the 404 for a response id the tenant does not own,
// whether or not it exists; param names the field that carried it, if any.
func responseNotFound(id, param string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "run_not_found", Param: param,
		Message: "No response " + quoteJSON(id) + " was found for this API key."}
}

// responseTurn is one Responses API request on its way through serveChat.
type responseTurn struct {
	id, item string // the response's id and its output message's
	req      *openai.ResponseRequest
	created  int64
	history  []openai.Message // the previous response's, if any
	input    []openai.Message // the request's input
}

// chatRequest translates the request: instructions as the system message,
// then the previous response's history, then the input.
func (t *responseTurn) chatRequest() (*openai.ChatRequest, error) {
	req := t.req
	msgs := make([]openai.Message, 0, 1+len(t.history)+len(t.input))
	if req.Instructions != nil && *req.Instructions != "" {
		msgs = append(msgs, openai.Message{Role: "system", Content: openai.TextContent(*req.Instructions)})
	}
	msgs = append(append(msgs, t.history...), t.input...)
	chat := &openai.ChatRequest{
		Model:       req.Model,
		Messages:    msgs,
		Stream:      req.Stream,
		Temperature: req.Temperature,
		TopP:        req.TopP,
		MaxTokens:   req.MaxOutputTokens,
		User:        req.User,
	}
	if req.Stream {
		chat.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	if req.Text != nil {
		rf, err := req.Text.Format.ResponseFormat()
		if err != nil {
			return nil, err
		}
		chat.ResponseFormat = rf
	}
	return chat, nil
}

// object returns the response object with status, before any output.
func (t *responseTurn) object(status string) *openai.Response {
	req := t.req
	resp := &openai.Response{
		ID:                t.id,
		Object:            "response",
		CreatedAt:         t.created,
		Status:            status,
		Instructions:      req.Instructions,
		MaxOutputTokens:   req.MaxOutputTokens,
		Model:             req.Model,
		Output:            []openai.OutputItem{},
		ParallelToolCalls: true,
		Store:             req.Stored(),
		Temperature:       req.Temperature,
		Text:              openai.TextConfig{Format: &openai.TextFormat{Type: "text"}},
		ToolChoice:        "auto",
		Tools:             []json.RawMessage{},
		TopP:              req.TopP,
		Truncation:        "disabled",
		Metadata:          req.Metadata,
	}
	if req.Text != nil && req.Text.Format != nil {
		resp.Text.Format = req.Text.Format
	}
	if req.PreviousResponseID != "" {
		resp.PreviousResponseID = &req.PreviousResponseID
	}
	if req.User != "" {
		resp.User = &req.User
	}
	if resp.Metadata == nil {
		resp.Metadata = map[string]string{}
	}
	return resp
}

// message returns the output message item holding text.
func (t *responseTurn) message(status, text string) openai.OutputItem {
	return openai.OutputItem{Type: "message", ID: t.item, Status: status, Role: "assistant",
		Content: []openai.OutputText{outputText(text)}}
}

func outputText(text string) openai.OutputText {
	return openai.OutputText{Type: "output_text", Text: text, Annotations: []json.RawMessage{}}
}

// done returns the finished response object: its output text, the chat
// answer's finish_reason, usage and consortium object.
func (t *responseTurn) done(text, finish string, usage *openai.Usage, consortium json.RawMessage) *openai.Response {
	resp := t.object("completed")
	switch finish {
	case "length":
		resp.Status, resp.IncompleteDetails = "incomplete", &openai.IncompleteDetails{Reason: "max_output_tokens"}
	case "content_filter":
		resp.Status, resp.IncompleteDetails = "incomplete", &openai.IncompleteDetails{Reason: "content_filter"}
	}
	resp.Output = []openai.OutputItem{t.message(resp.Status, text)}
	resp.Usage = openai.UsageOf(usage)
	resp.Consortium = consortium
	return resp
}

// responseWriter is the http.ResponseWriter serveChat answers a Responses
// request through: it reads the chat completion written to it and writes
// the Responses API's shape to the client. A JSON answer is held whole
// and translated at the end; a stream is translated event by event as it
// comes, each chat chunk's content becoming an output_text delta at once.
// An error answer (OpenAI's shape, which the Responses API shares) passes
// with its status. Writes come from one goroutine at a time, but a
// consortium's keep-alive ticker is another goroutine than its deltas', so
// a mutex orders them all the same.
type responseWriter struct {
	s      *Server
	w      http.ResponseWriter // the client's
	r      *http.Request
	t      *responseTurn
	header http.Header // what serveChat sets

	mu     sync.Mutex
	status int  // 0 until the chat answer's headers
	stream bool // the chat answer is an event stream
	body   bytes.Buffer
	ew     *openai.EventWriter
	seq    int
	ended  bool  // the stream's last event is out
	werr   error // the client's connection failed

	// A stream's unfinished line and the data of its current event.
	line  []byte
	data  []byte
	named bool // the current event has a name: no chat chunk

	text       strings.Builder
	finish     string
	usage      *openai.Usage
	consortium json.RawMessage
}

func (rw *responseWriter) Header() http.Header { return rw.header }

func (rw *responseWriter) WriteHeader(status int) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.writeHeaderLocked(status)
}

func (rw *responseWriter) writeHeaderLocked(status int) {
	if rw.status != 0 {
		return
	}
	rw.status = status
	if status != http.StatusOK || !strings.HasPrefix(rw.header.Get("Content-Type"), "text/event-stream") {
		return
	}
	rw.stream = true
	rw.copyHeaders()
	rw.w.WriteHeader(http.StatusOK)
	rw.ew = openai.NewEventWriter(unflushed{rw.w})
	resp := rw.t.object("in_progress")
	rw.event(&openai.ResponseEvent{Type: "response.created", Response: resp})
	rw.event(&openai.ResponseEvent{Type: "response.in_progress", Response: resp})
	item := rw.t.message("in_progress", "")
	item.Content = []openai.OutputText{}
	rw.event(&openai.ResponseEvent{Type: "response.output_item.added", OutputIndex: new(0), Item: &item})
	part := outputText("")
	rw.event(&openai.ResponseEvent{Type: "response.content_part.added", ItemID: rw.t.item, OutputIndex: new(0), ContentIndex: new(0), Part: &part})
}

// copyHeaders sets the client's headers: the chat answer's
// (X-Consortium-*, Retry-After ...) but its content type and length, and
// without a conversation that store: false did not keep.
func (rw *responseWriter) copyHeaders() {
	h := rw.w.Header()
	for k, v := range rw.header {
		switch k {
		case "Content-Type", "Content-Length":
			continue
		case conversationHeader:
			if !rw.t.req.Stored() {
				continue
			}
		}
		h[k] = v
	}
	h.Set("Content-Type", rw.header.Get("Content-Type"))
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.writeHeaderLocked(http.StatusOK)
	if !rw.stream {
		if rw.body.Len()+len(p) > maxChatAnswer {
			return 0, errors.New("the chat answer is larger than the proxy translates")
		}
		rw.body.Write(p)
		return len(p), nil
	}
	rw.feed(p)
	if rw.werr != nil {
		return 0, rw.werr
	}
	return len(p), nil
}

// FlushError flushes a stream to the client, as http.ResponseController
// asks of the writers it flushes.
func (rw *responseWriter) FlushError() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if !rw.stream {
		return nil
	}
	if err := http.NewResponseController(rw.w).Flush(); err != nil {
		rw.werr = err
	}
	return rw.werr
}

// feed reads SSE lines of any length from p, dispatching each event at
// its blank line.
func (rw *responseWriter) feed(p []byte) {
	for len(p) > 0 && !rw.ended {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			rw.line = append(rw.line, p...)
			if len(rw.line)+len(rw.data) > maxChatAnswer {
				rw.fail(&apiError{Type: "upstream_error", Code: "upstream_error", Message: "an event of the answer is larger than the proxy translates"})
			}
			return
		}
		line := append(rw.line, p[:i]...)
		p = p[i+1:]
		rw.line = rw.line[:0]
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case len(line) == 0:
			if len(rw.data) > 0 && !rw.named {
				rw.dispatch(rw.data)
			}
			rw.data, rw.named = rw.data[:0], false
		case line[0] == ':':
			// A keep-alive: the Responses stream keeps the same comment.
			rw.ew.Comment(strings.TrimSpace(string(line[1:])))
		case bytes.HasPrefix(line, []byte("data:")):
			if len(rw.data) > 0 {
				rw.data = append(rw.data, '\n')
			}
			rw.data = append(rw.data, bytes.TrimPrefix(line[5:], []byte(" "))...)
			if len(rw.data) > maxChatAnswer {
				rw.fail(&apiError{Type: "upstream_error", Code: "upstream_error", Message: "an event of the answer is larger than the proxy translates"})
			}
		case bytes.HasPrefix(line, []byte("event:")):
			rw.named = true // the playground's consortium.* events
		}
	}
}

// dispatch translates one chat stream event.
func (rw *responseWriter) dispatch(data []byte) {
	if string(data) == "[DONE]" {
		rw.complete()
		return
	}
	c, errorEvent, err := openai.DecodeChunk(data)
	if errorEvent {
		e, _ := openai.ParseError(data)
		ae := &apiError{Type: e.Type, Message: e.Message}
		if e.Code != nil {
			ae.Code = *e.Code
		}
		rw.fail(ae)
		return
	}
	if err != nil {
		rw.fail(&apiError{Type: "upstream_error", Code: "upstream_error", Message: "the answer's stream held an event that is not a chat completion chunk"})
		return
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		if d := ch.Delta.Content; d != nil && *d != "" {
			rw.text.WriteString(*d)
			rw.event(&openai.ResponseEvent{Type: "response.output_text.delta", ItemID: rw.t.item, OutputIndex: new(0), ContentIndex: new(0),
				Delta: d, Logprobs: json.RawMessage("[]")})
		}
		if ch.FinishReason != nil {
			rw.finish = *ch.FinishReason
		}
	}
	if c.Usage != nil {
		rw.usage = c.Usage
	}
	if len(c.Consortium) > 0 {
		rw.consortium = c.Consortium
	}
}

// complete ends a stream that finished: the done events, then the
// response is stored, then response.completed, its last event.
func (rw *responseWriter) complete() {
	text := rw.text.String()
	resp := rw.t.done(text, rw.finish, rw.usage, rw.consortium)
	rw.event(&openai.ResponseEvent{Type: "response.output_text.done", ItemID: rw.t.item, OutputIndex: new(0), ContentIndex: new(0),
		Text: &text, Logprobs: json.RawMessage("[]")})
	part := outputText(text)
	rw.event(&openai.ResponseEvent{Type: "response.content_part.done", ItemID: rw.t.item, OutputIndex: new(0), ContentIndex: new(0), Part: &part})
	rw.event(&openai.ResponseEvent{Type: "response.output_item.done", OutputIndex: new(0), Item: &resp.Output[0]})
	rw.save(resp, text)
	rw.event(&openai.ResponseEvent{Type: "response.completed", Response: resp})
	rw.ended = true
}

// fail ends a stream that failed after it began with response.failed.
func (rw *responseWriter) fail(ae *apiError) {
	if rw.ended {
		return
	}
	resp := rw.t.object("failed")
	code := ae.Code
	if code == "" {
		code = ae.Type
	}
	if code == "" {
		code = "server_error"
	}
	resp.Error = &openai.ResponseError{Code: code, Message: ae.Message}
	rw.event(&openai.ResponseEvent{Type: "response.failed", Response: resp})
	rw.ended = true
}

// event sends one Responses event, numbered.
func (rw *responseWriter) event(e *openai.ResponseEvent) {
	e.SequenceNumber = rw.seq
	rw.seq++
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	if err := rw.ew.Event(e.Type, data); err != nil && rw.werr == nil {
		rw.werr = err
	}
}

// end finishes the translation once serveChat has returned: a JSON answer
// is translated and sent, an error passed on, and a stream that stopped
// without its end is ended as failed (unless the client is gone).
func (rw *responseWriter) end() {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	ctx := rw.r.Context()
	switch {
	case rw.stream:
		if !rw.ended && ctx.Err() == nil {
			rw.fail(&apiError{Type: "upstream_error", Code: "upstream_error", Message: "the answer ended before it was complete"})
		}
		return
	case rw.status == 0:
		return // nothing to say: the client went away
	case rw.status != http.StatusOK:
		rw.copyHeaders()
		rw.w.WriteHeader(rw.status)
		rw.w.Write(rw.body.Bytes())
		return
	}
	cc, err := openai.DecodeCompletion(rw.body.Bytes())
	if err != nil || len(cc.Choices) == 0 {
		rw.s.fail(rw.w, rw.r, &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Code: "upstream_error",
			Message: "the answer could not be read as a chat completion"})
		return
	}
	var text string
	if c := cc.Choices[0].Message.Content; c != nil {
		text = *c
	}
	resp := rw.t.done(text, cc.Choices[0].FinishReason, cc.Usage, cc.Consortium)
	if !rw.save(resp, text) && rw.t.req.Stored() {
		rw.header.Set(warningHeader, "the response store is unavailable: this response was not saved, so previous_response_id cannot name it")
	}
	body, err := json.Marshal(resp)
	if err != nil {
		rw.s.fail(rw.w, rw.r, err)
		return
	}
	rw.header.Set("Content-Type", "application/json")
	rw.copyHeaders()
	rw.w.WriteHeader(http.StatusOK)
	rw.w.Write(body)
}

// save stores the finished response, unless store is false, before its
// last frame or its body leaves, so that a previous_response_id sent right
// after it finds it from any replica. It reports whether it did.
func (rw *responseWriter) save(resp *openai.Response, text string) bool {
	t := rw.t
	if !t.req.Stored() {
		return false
	}
	object, err := json.Marshal(resp)
	if err != nil {
		return false
	}
	history := make([]openai.Message, 0, len(t.history)+len(t.input)+1)
	history = append(append(history, t.history...), t.input...)
	history = append(history, openai.Message{Role: "assistant", Content: openai.TextContent(text)})
	ctx := rw.r.Context()
	err = rw.s.store.SaveResponse(ctx, info(ctx).tenant, &cache.Response{ID: t.id, Model: t.req.Model, History: history, Object: object})
	if err != nil {
		rw.s.storeFailed("response", err)
		rw.s.log.Warn("response store: the response was not saved", "request_id", info(ctx).id, "response_id", t.id, "error", err)
		return false
	}
	return true
}
