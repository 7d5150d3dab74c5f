package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/bench"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestArbiterBodyIsTheProxys: the direct critical path's arbiter call
// asks what the harness's council asks its arbiter, prompt for prompt.
func TestArbiterBodyIsTheProxys(t *testing.T) {
	fake := upstreamtest.NewInMemory()
	defer fake.Close()
	fake.Handle("member", func(*upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: bench.FakeContent(0)}
	})
	var mu sync.Mutex
	var asked *openai.ChatRequest
	fake.Handle("arbiter", func(r *upstreamtest.Request) upstreamtest.Reply {
		mu.Lock()
		defer mu.Unlock()
		asked = r.Chat
		return upstreamtest.Reply{Content: "<confidence>0.9</confidence><synthesis>ok</synthesis>"}
	})
	p, err := upstream.New(upstream.Config{Name: "slow", Type: "openai", BaseURL: fake.URL,
		Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Transport: fake.RoundTripper()})
	if err != nil {
		t.Fatal(err)
	}
	// The harness's council (setUp's configuration).
	e, err := consortia.New("council", consortia.Config{
		Members:       []consortia.Member{{Model: "slow/member", Count: 3, Weight: 1}},
		MemberTimeout: time.Minute, MinAnswers: 1,
		Synthesize: consortia.Synthesize{Arbiter: consortia.Arbiter{Model: "slow/arbiter"},
			ConfidenceThreshold: 0.8, MinIterations: 1, MaxIterations: 1},
	}, map[string]consortia.Caller{"slow": p})
	if err != nil {
		t.Fatal(err)
	}
	req, err := openai.ParseChatRequest(bench.ChatBody("council", true, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}

	var direct struct {
		Messages []struct{ Content string }
		Stream   bool
	}
	if err := json.Unmarshal(arbiterBody("m", 3), &direct); err != nil || len(direct.Messages) != 1 || !direct.Stream {
		t.Fatalf("arbiterBody: %+v, %v", direct, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked == nil || len(asked.Messages) != 1 {
		t.Fatalf("the arbiter was asked %+v", asked)
	}
	if got := asked.Messages[0].Content.String(); got != direct.Messages[0].Content {
		t.Errorf("the proxy's arbiter prompt:\n%s\n\narbiterBody's:\n%s", got, direct.Messages[0].Content)
	}
}
