package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// The Anthropic provider seen from outside: an OpenAI client in front of
// the proxy, the fake's Messages API behind it. The translation itself is
// tested in upstream; these tests check that proxy and consortiums use it
// without knowing it is there.

// claudeYAML has an anthropic provider "claude" and an OpenAI-compatible
// one "fake", both served by the fake.
const claudeYAML = `
providers:
  claude:
    type: anthropic
    base_url: {{FAKE}}
    api_key: ant-secret
    timeout: 2s
    idle_timeout: 2s
    max_retries: 2
    models: [claude-haiku-4-5]
  fake:
    base_url: {{FAKE}}
    timeout: 2s
    idle_timeout: 2s
`

// anthropicBody decodes a request the fake received on its Messages API.
type anthropicBody struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	Stream    bool   `json:"stream"`
	System    []struct {
		Text         string          `json:"text"`
		CacheControl json.RawMessage `json:"cache_control"`
	} `json:"system"`
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Type         string          `json:"type"`
			Text         string          `json:"text"`
			ID           string          `json:"id"`
			Name         string          `json:"name"`
			Input        json.RawMessage `json:"input"`
			ToolUseID    string          `json:"tool_use_id"`
			Source       json.RawMessage `json:"source"`
			CacheControl json.RawMessage `json:"cache_control"`
		} `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

// lastAnthropic decodes the last request for model.
func lastAnthropic(t *testing.T, fake *upstreamtest.Server, model string) (upstreamtest.Request, anthropicBody) {
	t.Helper()
	reqs := fake.RequestsFor(model)
	if len(reqs) == 0 {
		t.Fatalf("no request for %s", model)
	}
	r := reqs[len(reqs)-1]
	var b anthropicBody
	if r.Path != "/v1/messages" || json.Unmarshal(r.Body, &b) != nil {
		t.Fatalf("not a Messages request: %s %s", r.Path, r.Body)
	}
	return r, b
}

// cacheMarks counts the cache_control markers of a request.
func cacheMarks(b anthropicBody) int {
	n := 0
	for _, s := range b.System {
		if s.CacheControl != nil {
			n++
		}
	}
	for _, m := range b.Messages {
		for _, c := range m.Content {
			if c.CacheControl != nil {
				n++
			}
		}
	}
	return n
}

func claudeClient(e *env) openai.Client {
	return sdkClient(e, "client-key")
}

func TestAnthropicPassthroughSDK(t *testing.T) {
	e := start(t, claudeYAML)
	ctx := within(t, 10*time.Second)
	client := claudeClient(e)

	t.Run("json", func(t *testing.T) {
		e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Content: "Bonjour.", Usage: &wire.Usage{PromptTokens: 12, CompletionTokens: 2},
			CacheReadTokens: 300, CacheCreationTokens: 20})
		cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:       "claude/claude-haiku-4-5",
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Answer in French."), openai.UserMessage("Hello")},
			MaxTokens:   openai.Int(50),
			Temperature: openai.Float(1.5),
			Stop:        openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if cc.Choices[0].Message.Content != "Bonjour." || cc.Choices[0].FinishReason != "stop" || cc.Object != "chat.completion" {
			t.Errorf("completion %+v", cc)
		}
		if cc.Usage.PromptTokens != 332 || cc.Usage.CompletionTokens != 2 || cc.Usage.TotalTokens != 334 || cc.Usage.PromptTokensDetails.CachedTokens != 300 {
			t.Errorf("usage %+v", cc.Usage)
		}
		r, b := lastAnthropic(t, e.fake, "claude-haiku-4-5")
		if r.Header.Get("X-Api-Key") != "ant-secret" || r.Header.Get("Authorization") != "" || r.Header.Get("Anthropic-Version") != "2023-06-01" {
			t.Errorf("headers %v", r.Header)
		}
		if b.Model != "claude-haiku-4-5" || b.MaxTokens != 50 || len(b.System) != 1 || b.System[0].Text != "Answer in French." ||
			len(b.Messages) != 1 || b.Messages[0].Content[0].Text != "Hello" || !strings.Contains(string(r.Body), `"temperature":1,"stop_sequences":["END"]`) {
			t.Errorf("body %s", r.Body)
		}
	})

	t.Run("stream", func(t *testing.T) {
		e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Chunks: []string{"Stre", "amed ", "ré", "ponse"}, Usage: &wire.Usage{PromptTokens: 4, CompletionTokens: 4}})
		acc := streamHi(t, ctx, client, "claude/claude-haiku-4-5")
		if acc.Choices[0].Message.Content != "Streamed réponse" || acc.Choices[0].FinishReason != "stop" || acc.Usage.TotalTokens != 8 {
			t.Errorf("stream gave %q (%s), usage %+v", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, acc.Usage)
		}
		if _, b := lastAnthropic(t, e.fake, "claude-haiku-4-5"); !b.Stream {
			t.Error("the provider was not asked to stream")
		}
	})

	t.Run("image", func(t *testing.T) {
		e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Content: "A red pixel."})
		cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude/claude-haiku-4-5",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("What is this?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/a.png"}),
			})},
		})
		if err != nil || cc.Choices[0].Message.Content != "A red pixel." {
			t.Fatalf("%+v, %v", cc, err)
		}
		_, b := lastAnthropic(t, e.fake, "claude-haiku-4-5")
		c := b.Messages[0].Content
		if len(c) != 3 || c[1].Type != "image" || string(c[1].Source) != `{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}` ||
			string(c[2].Source) != `{"type":"url","url":"https://example.com/a.png"}` {
			t.Errorf("content %+v", c)
		}
	})

	t.Run("refused", func(t *testing.T) {
		e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Status: 400, Error: "messages.0.content.1.image.source: unsupported image"})
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude/claude-haiku-4-5", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Type != "invalid_request_error" || !strings.Contains(apiErr.Message, "unsupported image") {
			t.Errorf("error %v", err)
		}

		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude/claude-haiku-4-5", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, N: openai.Int(2),
		})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "" || !strings.Contains(apiErr.Message, "n must be 1") {
			t.Errorf("n=2: %v", err)
		}

		_, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "claude/claude-haiku-4-5", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("text")},
		})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(apiErr.Message, "no embeddings") {
			t.Errorf("embeddings: %v", err)
		}
	})

	models, err := client.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "claude/claude-haiku-4-5" {
		t.Errorf("models %+v, %v", models, err)
	}
}

// TestAnthropicToolsRoundTrip: a client's tools reach Claude, Claude's
// tool_use comes back as tool_calls (JSON and streamed), and the client's
// tool results go back as tool_result blocks matching the calls.
func TestAnthropicToolsRoundTrip(t *testing.T) {
	e := start(t, claudeYAML)
	ctx := within(t, 10*time.Second)
	client := claudeClient(e)
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("The weather in a city"),
		Parameters:  openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}
	question := openai.UserMessage("Weather in Paris and in Rome?")
	calls := []upstreamtest.ToolCall{{ID: "toolu_01", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "toolu_02", Name: "get_weather", Arguments: `{"city":"Rome"}`}}

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			e.fake.Script("claude-sonnet-4-5", upstreamtest.Reply{Content: "Checking both.", ToolCalls: calls})
			params := openai.ChatCompletionNewParams{
				Model: "claude/claude-sonnet-4-5", Messages: []openai.ChatCompletionMessageParamUnion{question},
				Tools: tools, ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
			}
			var msg openai.ChatCompletionMessage
			var finish string
			if stream {
				s := client.Chat.Completions.NewStreaming(ctx, params)
				var acc openai.ChatCompletionAccumulator
				for s.Next() {
					acc.AddChunk(s.Current())
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
			} else {
				cc, err := client.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				msg, finish = cc.Choices[0].Message, cc.Choices[0].FinishReason
			}
			if finish != "tool_calls" || msg.Content != "Checking both." || len(msg.ToolCalls) != 2 ||
				msg.ToolCalls[0].ID != "toolu_01" || msg.ToolCalls[0].Function.Name != "get_weather" || msg.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` ||
				msg.ToolCalls[1].ID != "toolu_02" || msg.ToolCalls[1].Function.Arguments != `{"city":"Rome"}` {
				t.Fatalf("finish %q, message %+v", finish, msg)
			}
			r, b := lastAnthropic(t, e.fake, "claude-sonnet-4-5")
			if len(b.Tools) != 1 || b.Tools[0].Name != "get_weather" || !strings.Contains(string(r.Body), `"tool_choice":{"type":"any"}`) {
				t.Errorf("tools not translated: %s", r.Body)
			}

			// The client runs the tools and sends the results back.
			e.fake.Reset()
			e.fake.Script("claude-sonnet-4-5", upstreamtest.Reply{Content: "Rome is warmer."})
			cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: "claude/claude-sonnet-4-5", Tools: tools,
				Messages: []openai.ChatCompletionMessageParamUnion{
					question, msg.ToParam(),
					openai.ToolMessage("18C", msg.ToolCalls[0].ID),
					openai.ToolMessage("24C", msg.ToolCalls[1].ID),
				},
			})
			if err != nil || cc.Choices[0].Message.Content != "Rome is warmer." {
				t.Fatalf("%+v, %v", cc, err)
			}
			_, b = lastAnthropic(t, e.fake, "claude-sonnet-4-5")
			if len(b.Messages) != 3 {
				t.Fatalf("messages %+v", b.Messages)
			}
			as, results := b.Messages[1], b.Messages[2]
			if as.Role != "assistant" || len(as.Content) != 3 || as.Content[0].Text != "Checking both." ||
				as.Content[1].Type != "tool_use" || as.Content[1].ID != "toolu_01" || string(as.Content[1].Input) != `{"city":"Paris"}` ||
				as.Content[2].ID != "toolu_02" {
				t.Errorf("assistant turn %+v", as)
			}
			if results.Role != "user" || len(results.Content) != 2 || results.Content[0].Type != "tool_result" ||
				results.Content[0].ToolUseID != "toolu_01" || results.Content[1].ToolUseID != "toolu_02" {
				t.Errorf("tool results %+v", results)
			}
		})
	}
}

// TestAnthropicStreamErrorEvent: an error event in the middle of Claude's
// stream reaches the client as OpenAI's error event, then [DONE].
func TestAnthropicStreamErrorEvent(t *testing.T) {
	e := start(t, claudeYAML)
	e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Chunks: []string{"Half ", "an "}, StreamError: "Overloaded"})
	resp, got := e.post("/v1/chat/completions", `{"model":"claude/claude-haiku-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	frames := readFrames(t, got) // ends with [DONE], nothing after it
	last := frames[len(frames)-1]
	if text(frames) != "Half an " || last.Error == nil || last.Error.Message != "Overloaded" || last.Error.Type != "overloaded_error" {
		t.Errorf("frames %s", got)
	}

	// The SDK raises it as an error of the stream.
	e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Chunks: []string{"Half ", "an "}, StreamError: "Overloaded"})
	client := claudeClient(e)
	s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude/claude-haiku-4-5", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	for s.Next() {
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "Overloaded") {
		t.Errorf("stream error %v", err)
	}
}

// TestAnthropicResilience: Anthropic's overloaded and rate-limited answers
// are retried, and its failures open the model's breaker.
func TestAnthropicResilience(t *testing.T) {
	e := start(t, claudeYAML)
	e.fake.Script("claude-haiku-4-5",
		upstreamtest.Reply{Status: 529, Error: "Overloaded"},
		upstreamtest.Reply{Status: 429, Error: "rate limited", Header: http.Header{"Retry-After": {"0"}}},
		upstreamtest.Reply{Content: "third time"})
	resp, got := e.post("/v1/chat/completions", `{"model":"claude/claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(string(got), "third time") || len(e.fake.Requests()) != 3 {
		t.Errorf("status %d after %d calls: %s", resp.StatusCode, len(e.fake.Requests()), got)
	}

	e = start(t, strings.Replace(claudeYAML, "max_retries: 2", "max_retries: 0\n    breaker: {failures: 2, cooldown: 1m}", 1))
	e.fake.Script("claude-haiku-4-5", upstreamtest.Reply{Status: 529, Error: "Overloaded"})
	body := `{"model":"claude/claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`
	for range 2 {
		if resp, got := e.post("/v1/chat/completions", body); resp.StatusCode != 502 || !strings.Contains(string(got), "status 529: Overloaded") {
			t.Errorf("status %d: %s", resp.StatusCode, got)
		}
	}
	resp, got = e.post("/v1/chat/completions", body)
	if resp.StatusCode != 503 || retryAfterSecs(resp) < 1 || len(e.fake.Requests()) != 2 {
		t.Errorf("status %d after %d calls: %s", resp.StatusCode, len(e.fake.Requests()), got)
	}
}

// claudeCouncil is a consortium with Claude as a member, beside an
// OpenAI-compatible one, and as the arbiter.
func claudeCouncil(promptCache bool, rounds int) string {
	return fmt.Sprintf(`
providers:
  claude:
    type: anthropic
    base_url: {{FAKE}}
    api_key: ant-secret
    timeout: 5s
    idle_timeout: 5s
    max_retries: 0
    prompt_cache: %v
  fake:
    base_url: {{FAKE}}
    timeout: 5s
    idle_timeout: 5s
    max_retries: 0
consortia:
  council:
    system: You are one of several experts.
    members:
      - model: fake/alpha
      - model: claude/claude-member
        system: Be precise.
    arbiter:
      model: claude/claude-judge
      params: {temperature: 0.2}
    max_iterations: %d
`, promptCache, rounds)
}

// pieces splits s into pieces of n bytes, cut wherever they fall.
func pieces(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestAnthropicConsortium(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			e := start(t, claudeCouncil(true, 1))
			e.fake.Script("alpha", upstreamtest.Reply{Content: "alpha's answer", Usage: &wire.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}})
			e.fake.Script("claude-member", upstreamtest.Reply{Content: "claude's answer", Usage: &wire.Usage{PromptTokens: 5, CompletionTokens: 3},
				CacheReadTokens: 40, CacheCreationTokens: 10})
			// Split every few bytes, so the tags arrive in pieces.
			e.fake.Script("claude-judge", upstreamtest.Reply{Chunks: pieces(verdict("0.9", "Claude's synthesis <b>&</b>"), 7),
				Usage: &wire.Usage{PromptTokens: 100, CompletionTokens: 10}})
			// The member's cache reads are reported as OpenAI reports them.
			want := wire.Usage{PromptTokens: 1 + 55 + 100, CompletionTokens: 2 + 3 + 10, TotalTokens: 3 + 58 + 110,
				PromptTokensDetails: &wire.PromptTokensDetails{CachedTokens: 40}}

			body := `{"model":"council","messages":[{"role":"user","content":"What is the answer?"}]}`
			var content string
			var usage *wire.Usage
			var s *summary
			if stream {
				resp, got := e.post("/v1/chat/completions", strings.Replace(body, `{`, `{"stream":true,"stream_options":{"include_usage":true},`, 1))
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, got)
				}
				frames := readFrames(t, got)
				content, usage = text(frames), frames[len(frames)-1].Usage
				for _, f := range frames {
					if f.Consortium != nil {
						s = f.Consortium
					}
				}
			} else {
				resp, got := e.post("/v1/chat/completions", body)
				c := decodeCompletion(t, resp, got)
				content, usage, s = c.Choices[0].Message.Content, c.Usage, c.Consortium
			}
			if content != "Claude's synthesis <b>&</b>" {
				t.Errorf("synthesis %q", content)
			}
			if usage == nil || !reflect.DeepEqual(*usage, want) {
				t.Errorf("usage %+v, want %+v", usage, want)
			}
			if s == nil || !slices.Equal(s.statuses(), []string{"fake/alpha#1:ok", "claude/claude-member#1:ok"}) {
				t.Errorf("consortium %+v", s)
			}

			_, member := lastAnthropic(t, e.fake, "claude-member")
			if member.Stream || len(member.System) != 1 || member.System[0].Text != "You are one of several experts.\n\nBe precise." ||
				len(member.Messages) != 1 || member.Messages[0].Content[0].Text != "What is the answer?" {
				t.Errorf("member request %+v", member)
			}
			jr, judge := lastAnthropic(t, e.fake, "claude-judge")
			if !judge.Stream || len(judge.Messages) != 1 || !strings.Contains(judge.Messages[0].Content[0].Text, "claude's answer") ||
				!strings.Contains(string(jr.Body), `"temperature":0.2`) || judge.MaxTokens != 4096 {
				t.Errorf("arbiter request %s", jr.Body)
			}
		})
	}
}

// TestAnthropicConsortiumRounds: in a later round, a Claude member
// continues its own thread, whose stable prefix (the system prompt and
// its earlier answer) carries cache markers unless prompt_cache is off.
func TestAnthropicConsortiumRounds(t *testing.T) {
	for _, cache := range []bool{true, false} {
		t.Run(fmt.Sprintf("prompt_cache=%v", cache), func(t *testing.T) {
			e := start(t, claudeCouncil(cache, 2))
			e.fake.Script("alpha", upstreamtest.Reply{Content: "alpha's answer"})
			e.fake.Script("claude-member", upstreamtest.Reply{Content: "first draft"}, upstreamtest.Reply{Content: "second draft", CacheReadTokens: 30})
			e.fake.Handle("claude-judge", byRound(
				upstreamtest.Reply{Chunks: pieces(verdict("0.3", "not yet"), 5)},
				upstreamtest.Reply{Chunks: pieces(verdict("0.95", "the final answer"), 5)}))
			resp, got := e.post("/v1/chat/completions", `{"model":"council","stream":true,"messages":[{"role":"user","content":"What is the answer?"}]}`)
			frames := readFrames(t, got)
			if resp.StatusCode != 200 || text(frames) != "the final answer" {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			reqs := e.fake.RequestsFor("claude-member")
			if len(reqs) != 2 {
				t.Fatalf("%d member calls", len(reqs))
			}
			var first, second anthropicBody
			json.Unmarshal(reqs[0].Body, &first)
			json.Unmarshal(reqs[1].Body, &second)
			roles := []string{}
			for _, m := range second.Messages {
				roles = append(roles, m.Role)
			}
			if !slices.Equal(roles, []string{"user", "assistant", "user"}) || second.Messages[1].Content[0].Text != "first draft" {
				t.Fatalf("second round thread %s", reqs[1].Body)
			}
			wantFirst, wantSecond := 0, 0
			if cache {
				wantFirst, wantSecond = 1, 2 // the system prompt; then also the earlier answer
			}
			if cacheMarks(first) != wantFirst || cacheMarks(second) != wantSecond ||
				cache && (second.System[0].CacheControl == nil || second.Messages[1].Content[0].CacheControl == nil) {
				t.Errorf("cache markers: %s\n%s", reqs[0].Body, reqs[1].Body)
			}
			// The first round's request is a byte-identical prefix of the
			// second's, so the cache applies.
			if prefix, ok := strings.CutSuffix(string(reqs[0].Body), "]}"); !ok || !strings.HasPrefix(string(reqs[1].Body), prefix+",") {
				t.Errorf("the prefix changed:\n%s\n%s", reqs[0].Body, reqs[1].Body)
			}
		})
	}
}
