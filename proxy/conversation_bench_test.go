package proxy

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/openai"
)

// BenchmarkSaveTurn measures what saving a consortium answer costs the
// request: encoding the run record, indexing the run and storing the
// turn, in memory and in one Redis server on loopback (whose time is
// mostly the round trip; its allocations are the proxy's own).
func BenchmarkSaveTurn(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchmarkSaveTurn(b, cache.NewMemory(time.Hour, 0))
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		client := srv.Client(time.Second)
		b.Cleanup(func() { client.Close() })
		// A long timeout: a busy machine must slow the benchmark, not fail it.
		benchmarkSaveTurn(b, cache.NewRedis(client, cache.RedisConfig{TTL: time.Hour, Timeout: 10 * time.Second}))
	})
}

func benchmarkSaveTurn(b *testing.B, store cache.Store) {
	s, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Conversations: cache.NewConversations(store)})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	msgs := []openai.Message{{Role: "user", Content: openai.TextContent("What is the best way to index runs?")}}
	p, err := s.store.Place(r.Context(), anonymous, "council", "", msgs)
	if err != nil || p.ID == "" {
		b.Fatalf("place: %+v, %v", p, err)
	}
	t := &turn{id: p.ID, messages: p.Messages, placement: p}
	res := &consortia.Result{Synthesis: strings.Repeat("the synthesis, ", 200), Run: benchRun()}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		res.Run.ID = "run_" + strconv.Itoa(n) // each run its own record and index line
		if !s.saveTurn(httptest.NewRecorder(), r, t, res) {
			b.Fatal("not saved")
		}
	}
}

// benchRun is a synthesize run of two rounds of three members (2 KB
// answers) and a 4 KB arbiter reply each, priced.
func benchRun() *consortia.Run {
	answer := strings.Repeat("a member's answer, ", 100)
	confidence, cost := 0.86, 0.0123
	usage := func(in, out int) *openai.Usage {
		return &openai.Usage{PromptTokens: in, CompletionTokens: out, TotalTokens: in + out}
	}
	run := &consortia.Run{
		ID: "run_1", Consortium: "council", Strategy: "synthesize",
		Created: time.Date(2026, 12, 6, 4, 30, 0, 123456789, time.UTC), Iterations: 2,
		Outcome:    consortia.Outcome{Confidence: &confidence},
		Usage:      openai.Usage{PromptTokens: 9000, CompletionTokens: 3400, TotalTokens: 12400, CostUSD: &cost},
		DurationMs: 8421,
	}
	for n := 1; n <= 2; n++ {
		rd := consortia.Round{Number: n}
		for i, m := range []string{"openai/gpt-5", "anthropic/claude-sonnet-4-5", "google/gemini-2.5-pro"} {
			rd.Members = append(rd.Members, consortia.MemberAnswer{Model: m, Label: string(rune('A' + i)), Status: consortia.StatusOK,
				LatencyMs: 2100, StartMs: 3, Content: answer, Usage: usage(1200, 500)})
		}
		needs := n == 1
		rd.Arbiter = &consortia.ArbiterReply{Model: "openai/gpt-5", Reply: answer + answer, Confidence: &confidence,
			NeedsIteration: &needs, Iterate: needs, LatencyMs: 1900, StartMs: 2110, Usage: usage(4000, 1000)}
		run.Rounds = append(run.Rounds, rd)
	}
	return run
}
