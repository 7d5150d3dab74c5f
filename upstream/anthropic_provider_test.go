package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// newAnthropic returns an anthropic provider named "claude" in front of
// fake's Messages API, with cfg's settings.
func newAnthropic(t *testing.T, fake *upstreamtest.Server, cfg Config) *Provider {
	t.Helper()
	cfg.Type = "anthropic"
	if cfg.APIKey == "" {
		cfg.APIKey = "sk-ant-test"
	}
	p := newProvider(t, fake, cfg)
	p.name = "claude"
	return p
}

// ask is a chat request with a system prompt and one user turn.
func ask(text string) *openai.ChatRequest {
	return &openai.ChatRequest{Messages: []openai.Message{
		{Role: "system", Content: openai.TextContent("Be brief.")},
		{Role: "user", Content: openai.TextContent(text)},
	}}
}

func TestAnthropicProviderWire(t *testing.T) {
	fake := newFake(t)
	root := strings.TrimSuffix(fake.URL, "/v1")
	for _, tc := range []struct {
		name    string
		baseURL string
		headers map[string]string
		version string
	}{
		{"base URL without /v1", root, nil, "2023-06-01"},
		{"base URL with /v1", fake.URL + "/", map[string]string{"X-Team": "blue"}, "2023-06-01"},
		{"anthropic-version from the headers", root, map[string]string{"anthropic-version": "2099-01-01", "anthropic-beta": "b1"}, "2099-01-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.Reset()
			p, err := New(Config{Name: "claude", Type: "anthropic", BaseURL: tc.baseURL, APIKey: "sk-ant-1", Headers: tc.headers})
			if err != nil {
				t.Fatal(err)
			}
			defer closeIdle(p)
			fake.Script("claude-haiku-4-5", upstreamtest.Reply{Content: "hi"})
			cc, err := p.Chat(context.Background(), "claude-haiku-4-5", ask("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if *cc.Choices[0].Message.Content != "hi" {
				t.Errorf("content %q", *cc.Choices[0].Message.Content)
			}
			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/v1/messages" || r.Model != "claude-haiku-4-5" || r.Anthropic == nil || r.Chat != nil {
				t.Errorf("request %s %s model %q", r.Method, r.Path, r.Model)
			}
			h := r.Header
			if h.Get("X-Api-Key") != "sk-ant-1" || h.Get("Authorization") != "" || h.Get("Anthropic-Version") != tc.version {
				t.Errorf("headers %v", h)
			}
			for k, v := range tc.headers {
				if h.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
				}
			}
			if r.Anthropic.SystemText() != "Be brief." || r.LastUserText() != "hello" || *r.Anthropic.MaxTokens != 4096 {
				t.Errorf("body %s", r.Body)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		p, err := New(Config{Name: "anthropic", Type: "anthropic"})
		if err != nil {
			t.Fatal(err)
		}
		if p.baseURL+p.dialect.(*anthropicDialect).messagesPath != "https://api.anthropic.com/v1/messages" || p.header.Get("X-Api-Key") != "" {
			t.Errorf("endpoint %s, headers %v", p.baseURL, p.header)
		}
		if _, err := New(Config{Name: "x", Type: "grpc", BaseURL: "http://h"}); err == nil {
			t.Error("an unknown type was accepted")
		}
	})
}

func TestAnthropicProviderChat(t *testing.T) {
	fake := newFake(t)
	p := newAnthropic(t, fake, Config{})
	for _, tc := range []struct {
		name   string
		reply  upstreamtest.Reply
		finish string
		usage  openai.Usage
	}{
		{"usage with cache tokens", upstreamtest.Reply{Content: "four", Usage: &openai.Usage{PromptTokens: 5, CompletionTokens: 3},
			CacheReadTokens: 1000, CacheCreationTokens: 20}, "stop", openai.Usage{PromptTokens: 1025, CompletionTokens: 3, TotalTokens: 1028,
			PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: 1000}}},
		{"computed usage", upstreamtest.Reply{Content: "one two three"}, "stop", openai.Usage{PromptTokens: 5, CompletionTokens: 3, TotalTokens: 8}},
		{"max_tokens", upstreamtest.Reply{Content: "cut", FinishReason: "length"}, "length", openai.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}},
		{"stop_sequence", upstreamtest.Reply{Content: "x", FinishReason: "stop_sequence"}, "stop", openai.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.Script("c", tc.reply)
			cc, err := p.Chat(context.Background(), "c", ask("two plus two"))
			if err != nil {
				t.Fatal(err)
			}
			if *cc.Choices[0].Message.Content != tc.reply.Content || cc.Choices[0].FinishReason != tc.finish {
				t.Errorf("choice %+v", cc.Choices[0])
			}
			if cc.Usage == nil || !reflect.DeepEqual(*cc.Usage, tc.usage) {
				t.Errorf("usage %+v, want %+v", cc.Usage, tc.usage)
			}
			if cc.Object != "chat.completion" || cc.Model != "c" || !strings.HasPrefix(cc.ID, "msg_") {
				t.Errorf("completion %+v", cc)
			}
		})
	}

	t.Run("no usage is not invented", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Content: "x", NoUsage: true})
		cc, err := p.Chat(context.Background(), "c", ask("hi"))
		if err != nil || cc.Usage != nil {
			t.Errorf("usage %+v, %v", cc.Usage, err)
		}
	})

	t.Run("tool calls", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{ToolCalls: []upstreamtest.ToolCall{{ID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}})
		resp, err := p.Do(context.Background(), &Request{Model: "c", Path: "/chat/completions", Body: []byte(
			`{"model":"c","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather"}}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		var cc struct {
			Choices []struct {
				Message struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						ID       string `json:"id"`
						Type     string `json:"type"`
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(resp.Data, &cc); err != nil {
			t.Fatal(err)
		}
		c := cc.Choices[0]
		if c.Message.Content != nil || c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 ||
			c.Message.ToolCalls[0].ID != "toolu_1" || c.Message.ToolCalls[0].Function.Name != "get_weather" ||
			c.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
			t.Errorf("answer %s", resp.Data)
		}
	})
}

// streamText reads a stream's content and usage through Chunks, as the
// engine does.
func streamText(t *testing.T, s *chunkStream) (string, *openai.Usage, error) {
	t.Helper()
	defer s.Close()
	var b strings.Builder
	var u *openai.Usage
	for c, err := range s.Chunks() {
		if err != nil {
			return b.String(), u, err
		}
		if c.Usage != nil {
			u = c.Usage
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
		}
	}
	return b.String(), u, nil
}

func TestAnthropicProviderStream(t *testing.T) {
	fake := newFake(t)
	p := newAnthropic(t, fake, Config{})

	t.Run("chunks split at awkward places", func(t *testing.T) {
		chunks := []string{"<anal", "ysis>", "ok</analysis>\n<synth", "esis>", "héllo ", "😀", "\"", "</synthesis>"}
		fake.Script("c", upstreamtest.Reply{Chunks: chunks, Usage: &openai.Usage{PromptTokens: 7, CompletionTokens: 9}, CacheReadTokens: 100})
		s, err := p.openStream(context.Background(), "c", ask("hi"))
		if err != nil {
			t.Fatal(err)
		}
		text, u, err := streamText(t, s)
		if err != nil || text != strings.Join(chunks, "") {
			t.Errorf("text %q, %v", text, err)
		}
		if want := (openai.Usage{PromptTokens: 107, CompletionTokens: 9, TotalTokens: 116,
			PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: 100}}); u == nil || !reflect.DeepEqual(*u, want) {
			t.Errorf("usage %+v", u)
		}
		if r := fake.RequestsFor("c"); !r[len(r)-1].Stream || !strings.Contains(string(r[len(r)-1].Body), `"stream":true`) {
			t.Errorf("request %s", r[len(r)-1].Body)
		}
	})

	t.Run("no usage is not invented", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Content: "a b", NoUsage: true})
		s, err := p.openStream(context.Background(), "c", ask("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if text, u, err := streamText(t, s); text != "a b" || u != nil || err != nil {
			t.Errorf("text %q, usage %+v, %v", text, u, err)
		}
	})

	t.Run("raw stream without include_usage", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Content: "a b", ToolCalls: []upstreamtest.ToolCall{{ID: "t1", Name: "f", Arguments: `{"q":"ünï"}`}}})
		resp, err := p.Do(context.Background(), &Request{Model: "c", Path: "/chat/completions", Stream: true,
			Body: []byte(`{"model":"c","stream":true,"messages":[{"role":"user","content":"hi"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentType != "text/event-stream" || resp.Data != nil {
			t.Errorf("content type %q", resp.ContentType)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		chunks := checkChunks(t, string(b), true)
		var args strings.Builder
		var finish string
		for _, c := range chunks {
			if c.Usage != nil {
				t.Errorf("a usage chunk nobody asked for: %+v", c)
			}
			if len(c.Choices) > 0 && c.Choices[0].FinishReason != nil {
				finish = *c.Choices[0].FinishReason
			}
			if len(c.Choices) > 0 && c.Choices[0].Delta.ToolCalls != nil {
				var calls []openai.ToolCall
				json.Unmarshal(c.Choices[0].Delta.ToolCalls, &calls)
				args.WriteString(calls[0].Function.Arguments)
			}
		}
		if args.String() != `{"q":"ünï"}` || finish != "tool_calls" {
			t.Errorf("arguments %q, finish %q in\n%s", args.String(), finish, b)
		}
	})

	t.Run("error event mid-stream", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Chunks: []string{"a", "b"}, StreamError: "Overloaded"})
		s, err := p.openStream(context.Background(), "c", ask("hi"))
		if err != nil {
			t.Fatal(err)
		}
		text, _, err := streamText(t, s)
		e := upstreamError(t, err)
		if text != "ab" || e.Message != "Overloaded" {
			t.Errorf("text %q, error %v", text, err)
		}
	})

	t.Run("cut mid-stream", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Chunks: []string{"a", "b", "c"}, CutAfter: 2})
		s, err := p.openStream(context.Background(), "c", ask("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if text, _, err := streamText(t, s); text != "ab" || err == nil {
			t.Errorf("text %q, error %v", text, err)
		}
	})

	t.Run("ended without message_stop", func(t *testing.T) {
		fake.Script("c", upstreamtest.Reply{Content: "a b", NoDone: true})
		s, err := p.openStream(context.Background(), "c", ask("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if text, _, err := streamText(t, s); text != "a b" || !errors.Is(err, ErrMalformed) {
			t.Errorf("text %q, error %v", text, err)
		}
	})
}

func TestAnthropicProviderErrors(t *testing.T) {
	fake := newFake(t)
	p := newAnthropic(t, fake, Config{MaxRetries: 2, Breaker: BreakerSettings{Failures: 100}})

	t.Run("overloaded is retried", func(t *testing.T) {
		fake.Script("o", upstreamtest.Reply{Status: 529, Error: "Overloaded"})
		_, err := p.Chat(context.Background(), "o", ask("hi"))
		e := upstreamError(t, err)
		if e.Status != 529 || e.Type != "overloaded_error" || e.Message != "Overloaded" || e.Attempts != 3 || calls(fake, "o") != 3 {
			t.Errorf("error %+v after %d calls", e, calls(fake, "o"))
		}
	})

	t.Run("rate limit waits out retry-after", func(t *testing.T) {
		inBubble(t, func(t *testing.T, fake *upstreamtest.Server) {
			p := newAnthropic(t, fake, Config{MaxRetries: 2, Backoff: time.Hour})
			fake.Script("r", upstreamtest.Reply{Status: 429, Error: "Number of request tokens has exceeded your per-minute rate limit",
				Header: http.Header{"Retry-After": {"0.05"}}}, upstreamtest.Reply{Content: "at last"})
			start := time.Now()
			cc, err := p.Chat(context.Background(), "r", ask("hi"))
			if err != nil || *cc.Choices[0].Message.Content != "at last" || time.Since(start) != 50*time.Millisecond {
				t.Errorf("%v after %v", err, time.Since(start))
			}
		})
	})

	t.Run("invalid request is not retried", func(t *testing.T) {
		fake.Script("i", upstreamtest.Reply{Status: 400, Error: "messages.0.content: bad"})
		_, err := p.Chat(context.Background(), "i", ask("hi"))
		e := upstreamError(t, err)
		if e.Status != 400 || e.Type != "invalid_request_error" || e.Message != "messages.0.content: bad" || e.Attempts != 1 {
			t.Errorf("error %+v", e)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		_, err := p.Do(context.Background(), &Request{Model: "e", Path: "/embeddings", Body: []byte(`{"model":"e","input":"x"}`)})
		e := upstreamError(t, err)
		if e.Status != 404 || !strings.Contains(e.Message, "no embeddings") || calls(fake, "e") != 0 {
			t.Errorf("error %+v", e)
		}
	})

	t.Run("untranslatable request", func(t *testing.T) {
		_, err := p.Do(context.Background(), &Request{Model: "u", Path: "/chat/completions",
			Body: []byte(`{"model":"u","n":3,"messages":[{"role":"user","content":"hi"}]}`)})
		e := upstreamError(t, err)
		if e.Status != 400 || e.Type != "invalid_request_error" || !strings.HasPrefix(e.Message, "n: ") || calls(fake, "u") != 0 {
			t.Errorf("error %+v", e)
		}
	})

	t.Run("malformed answer", func(t *testing.T) {
		fake.Script("m", upstreamtest.Reply{Body: `{"id":"x","choices":[]}`})
		_, err := p.Chat(context.Background(), "m", ask("hi"))
		if !errors.Is(err, ErrMalformed) || calls(fake, "m") != 1 {
			t.Errorf("error %v after %d calls", err, calls(fake, "m"))
		}
	})

	t.Run("the fake refuses what Anthropic refuses", func(t *testing.T) {
		// A body sent as it is (no translation) breaks the rules, and the
		// fake says so in Anthropic's shape.
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		resp, err := client.Post(fake.URL+"/messages", "application/json", strings.NewReader(`{"model":"x","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"type":"error"`) || !strings.Contains(string(b), "max_tokens: Field required") {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
}

// TestAnthropicBreaker checks that Anthropic's failures count against the
// model's breaker as any provider's do: overloaded answers and error events
// mid-stream, but not rate limits.
func TestAnthropicBreaker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply upstreamtest.Reply
		opens bool
	}{
		{"overloaded", upstreamtest.Reply{Status: 529, Error: "Overloaded"}, true},
		{"error event", upstreamtest.Reply{Content: "a", StreamError: "Overloaded"}, true},
		{"malformed stream", upstreamtest.Reply{Content: "a", NoDone: true}, true},
		{"rate limited", upstreamtest.Reply{Status: 429, Error: "slow down"}, false},
		{"rate limit error event", upstreamtest.Reply{Content: "a", StreamError: "slow down", ErrorType: "rate_limit_error"}, false},
		{"invalid", upstreamtest.Reply{Status: 400, Error: "bad"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			p := newAnthropic(t, fake, Config{Breaker: BreakerSettings{Failures: 2, Cooldown: time.Minute}})
			fake.Script("c", tc.reply)
			for range 2 {
				if s, err := p.openStream(context.Background(), "c", ask("hi")); err == nil {
					streamText(t, s)
				}
			}
			s, err := p.openStream(context.Background(), "c", ask("hi"))
			if err == nil {
				s.Close()
			}
			if got := errors.Is(err, ErrBreakerOpen); got != tc.opens {
				t.Errorf("third call: %v; want the breaker open: %v", err, tc.opens)
			}
		})
	}
}

func TestAnthropicPromptCache(t *testing.T) {
	fake := newFake(t)
	thread := &openai.ChatRequest{Messages: []openai.Message{
		{Role: "system", Content: openai.TextContent("You are a member.")},
		{Role: "user", Content: openai.TextContent("What is 2+2?")},
		{Role: "assistant", Content: openai.TextContent("4")},
		{Role: "user", Content: openai.TextContent("Refine it.")},
	}}
	for _, on := range []bool{true, false} {
		p := newAnthropic(t, fake, Config{PromptCache: on})
		fake.Script("c", upstreamtest.Reply{Content: "ok"})
		if _, err := p.Chat(context.Background(), "c", thread); err != nil {
			t.Fatal(err)
		}
		r := fake.RequestsFor("c")
		body := string(r[len(r)-1].Body)
		want := 0
		if on {
			want = 2 // the system prompt, and the member's earlier answer
		}
		if n := strings.Count(body, `"cache_control":{"type":"ephemeral"}`); n != want {
			t.Errorf("prompt_cache %v: %d cache markers in %s", on, n, body)
		}
	}
}
