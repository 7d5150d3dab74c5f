package consortia

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
)

// Causes of a member call's cancellation, read back with context.Cause to
// report its status.
var (
	errQuorum        = errors.New("quorum reached")
	errMemberTimeout = errors.New("member_timeout passed")
)

// fanOut runs one round: every instance answers its own thread at once. It
// returns when every instance is done, or when quorum answers are in or
// member_timeout passes, cancelling the rest. The answers are in
// instance order.
func (e *Engine) fanOut(ctx context.Context, req *openai.ChatRequest, threads [][]openai.Message) []MemberAnswer {
	ctx, cancel := context.WithCancelCause(upstream.WithRole(ctx, "member"))
	defer cancel(nil)
	if e.cfg.MemberTimeout > 0 {
		timer := time.AfterFunc(e.cfg.MemberTimeout, func() { cancel(errMemberTimeout) })
		defer timer.Stop()
	}

	// Each call writes its answer in place and sends only its index (the
	// send orders the write before the read below), so that neither the
	// answers nor the instances are copied for each call.
	answers := make([]MemberAnswer, len(e.instances))
	done := make(chan int, len(e.instances))
	var wg sync.WaitGroup
	for i := range e.instances {
		wg.Go(func() {
			answers[i] = e.ask(ctx, e.instances[i], req, threads[i])
			done <- i
		})
	}
	ok := 0
	for range e.instances {
		i := <-done
		notify(ctx, Event{Kind: EventMember, Member: &answers[i], More: len(done) > 0})
		if answers[i].Status == StatusOK {
			ok++
			if e.cfg.Quorum > 0 && ok == e.cfg.Quorum {
				cancel(errQuorum)
			}
		}
	}
	wg.Wait()
	return answers
}

// ask calls one member instance, then its fallbacks in order while the
// calls fail, and reports what happened.
func (e *Engine) ask(ctx context.Context, in instance, req *openai.ChatRequest, thread []openai.Message) MemberAnswer {
	start := time.Now()
	a := MemberAnswer{Model: in.ref, Instance: in.number, StartMs: startMs(ctx, start)}
	var (
		cc       *openai.ChatCompletion
		err      error
		failures []string
	)
	for i, t := range append([]target{in.target}, in.fallbacks...) {
		if i > 0 {
			if ctx.Err() != nil {
				break
			}
			a.Fallback = t.ref
		}
		cc, err = t.caller.Chat(ctx, t.model, memberRequest(req, thread, t.params))
		if err == nil {
			break
		}
		failures = append(failures, t.ref+": "+describe(err))
	}
	a.LatencyMs = time.Since(start).Milliseconds()
	if err != nil {
		switch cause := context.Cause(ctx); {
		case ctx.Err() != nil && errors.Is(cause, errQuorum):
			a.Status = StatusCancelled
		case ctx.Err() != nil && errors.Is(cause, errMemberTimeout):
			a.Status, a.Error = StatusTimeout, fmt.Sprintf("no answer within member_timeout (%s)", e.cfg.MemberTimeout)
		case errors.Is(err, upstream.ErrTimeout) && len(failures) == 1:
			a.Status, a.Error = StatusTimeout, describe(err)
		case len(failures) == 1:
			a.Status, a.Error = StatusError, describe(err)
		default:
			a.Status, a.Error = StatusError, strings.Join(failures, "; ")
		}
		return a
	}
	a.Status = StatusOK
	if len(cc.Choices) > 0 && cc.Choices[0].Message.Content != nil {
		a.Content = *cc.Choices[0].Message.Content
	}
	a.Usage = cc.Usage
	return a
}

// describe says what went wrong with an upstream call without the
// provider's internals: (*upstream.Error).Describe covers every failure of
// a call (its status and message, a timeout, an open breaker, a limit, a
// refused key, a connection that failed).
func describe(err error) string {
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return ue.Describe()
	}
	return err.Error()
}

// nextThreads continues each instance's own thread: its answer stays as an
// assistant turn and its feedback comes as the next user turn. Earlier
// turns are untouched, so the prefix stays byte-identical and providers'
// prompt caches apply. An instance that failed asks its previous thread
// again.
func nextThreads(threads [][]openai.Message, answers []MemberAnswer, feedback []string) [][]openai.Message {
	next := make([][]openai.Message, len(threads))
	for i, t := range threads {
		if answers[i].Status != StatusOK {
			next[i] = t
			continue
		}
		n := make([]openai.Message, len(t), len(t)+2)
		copy(n, t)
		next[i] = append(n,
			openai.Message{Role: "assistant", Content: openai.TextContent(answers[i].Content)},
			openai.Message{Role: "user", Content: openai.TextContent(feedback[i])})
	}
	return next
}

// withSystem puts a system prompt before a conversation.
func withSystem(system string, msgs []openai.Message) []openai.Message {
	if system == "" {
		return msgs
	}
	out := make([]openai.Message, 0, len(msgs)+1)
	out = append(out, openai.Message{Role: "system", Content: openai.TextContent(system)})
	return append(out, msgs...)
}

// memberRequest is the request one member gets: the client's sampling
// params under the member's own overrides.
func memberRequest(req *openai.ChatRequest, thread []openai.Message, params map[string]any) *openai.ChatRequest {
	r := &openai.ChatRequest{
		Messages:            thread,
		Temperature:         req.Temperature,
		TopP:                req.TopP,
		MaxTokens:           req.MaxTokens,
		MaxCompletionTokens: req.MaxCompletionTokens,
		PresencePenalty:     req.PresencePenalty,
		FrequencyPenalty:    req.FrequencyPenalty,
		Stop:                req.Stop,
		Seed:                req.Seed,
		ResponseFormat:      req.ResponseFormat,
	}
	r.Extra = params
	return r
}
