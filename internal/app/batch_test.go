package app

import (
	"context"
	"slices"
	"testing"

	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestBatchAccessors: the batch commands get the engines and providers New
// built, and Solo engines that answer with one member alone, as
// configured.
func TestBatchAccessors(t *testing.T) {
	fake := upstreamtest.NewServer()
	defer fake.Close()
	a, _, _ := serve(t, fake, `
providers:
  f: {base_url: "{{FAKE}}", models: [a, b, c]}
consortia:
  pair:
    strategy: vote
    system: be brief
    members:
      - {model: f/a, count: 2, system: "you are a", params: {temperature: 0.3}}
      - {model: f/b}
  tiered:
    strategy: cascade
    tiers: [pair, f/c]
`)
	if e, ok := a.Engine("pair"); !ok || e.Name() != "pair" {
		t.Fatalf("Engine(pair): %v, %v", e, ok)
	}
	if _, ok := a.Engine("f/a"); ok {
		t.Error("Engine(f/a): a model is not a consortium")
	}
	if p, ok := a.Provider("f"); !ok || p.Name() != "f" {
		t.Errorf("Provider(f): %v, %v", p, ok)
	}
	if _, err := a.Solo("nope"); err == nil {
		t.Error("Solo(nope): no error")
	}

	solo, err := a.Solo("pair")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range solo {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"f/a", "f/b"}) {
		t.Fatalf("Solo(pair): %v; want one engine per distinct member", names)
	}
	res, err := solo[0].Run(context.Background(), &openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: openai.TextContent("hi")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.RequestsFor("a")
	if len(reqs) != 1 || res.Run.Iterations != 1 {
		t.Fatalf("%d calls to f/a; want one instance alone", len(reqs))
	}
	chat := reqs[0].Chat
	if chat.Messages[0].Content.String() != "be brief\n\nyou are a" || chat.Temperature == nil || *chat.Temperature != 0.3 {
		t.Errorf("the member alone was not asked as configured: %+v", chat)
	}

	tiers, err := a.Solo("tiered")
	if err != nil {
		t.Fatal(err)
	}
	if len(tiers) != 2 || tiers[0].Name() != "pair" || tiers[1].Name() != "f/c" {
		t.Errorf("Solo(tiered): %v", tiers)
	}
}
