package proxy_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// sdkClient is an openai-go client of the proxy e, with the client key
// key, that does not retry.
func sdkClient(e *env, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(e.URL+"/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// streamHi streams model's answer to "hi", usage included, through the
// SDK, and returns what its accumulator made of the stream.
func streamHi(t *testing.T, ctx context.Context, client openai.Client, model string) openai.ChatCompletionAccumulator {
	t.Helper()
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestOpenAIGoClient drives the proxy with the official openai-go client,
// as a user's program would.
func TestOpenAIGoClient(t *testing.T) {
	e := start(t, defaultYAML+`
auth:
  keys: [{name: alice, key: alice-key}]
`)
	ctx := within(t, 10*time.Second)
	client := sdkClient(e, "alice-key")

	e.fake.Script("m1", upstreamtest.Reply{Content: "hello from m1"})
	cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "fake/m1",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hi")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cc.Choices[0].Message.Content != "hello from m1" || cc.Usage.TotalTokens == 0 {
		t.Errorf("completion %+v", cc)
	}

	e.fake.Script("m2", upstreamtest.Reply{Content: "streamed answer here"})
	acc := streamHi(t, ctx, client, "fake/m2")
	if acc.Choices[0].Message.Content != "streamed answer here" || acc.Usage.TotalTokens == 0 {
		t.Errorf("stream gave %q, usage %+v", acc.Choices[0].Message.Content, acc.Usage)
	}

	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "fake/m1" {
		t.Errorf("models %+v", page.Data)
	}
	m, err := client.Models.Get(ctx, "fake/m2")
	if err != nil || m.ID != "fake/m2" {
		t.Errorf("model get: %+v, %v", m, err)
	}

	// The SDK raises its own typed errors with the proxy's message.
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "nope/m1", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
	bad := openai.NewClient(option.WithBaseURL(e.URL+"/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	_, err = bad.Models.List(ctx)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Type != "authentication_error" {
		t.Errorf("wrong key: %v", err)
	}

	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "fake/emb",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("text")},
	})
	if err != nil || len(emb.Data) != 1 || len(emb.Data[0].Embedding) == 0 {
		t.Errorf("embeddings: %+v, %v", emb, err)
	}
}
