package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/openai"
)

// The request validate --estimate estimates: one user message of
// estimateChars characters, and max_tokens.
const (
	estimateChars     = 2000
	estimateMaxTokens = 1000
)

// estimateRequest is validate --estimate's representative request, for
// the consortium model.
func estimateRequest(model string) *openai.ChatRequest {
	n := estimateMaxTokens
	return &openai.ChatRequest{
		Model:     model,
		MaxTokens: &n,
		Messages:  []openai.Message{{Role: "user", Content: openai.TextContent(strings.Repeat("x", estimateChars))}},
	}
}

// printEstimates prints each consortium's estimate of the representative
// request, as POST /v1/consortium/estimate would answer it, in a few
// lines each.
func printEstimates(w io.Writer, cfg *config.Config) error {
	if len(cfg.ConsortiumOrder) == 0 {
		return nil
	}
	ests, err := app.Estimates(cfg, estimateRequest(""))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "estimates for one user message of %d characters with max_tokens %d (tokens ≈ bytes / 4; no provider called):\n", estimateChars, estimateMaxTokens)
	for _, name := range cfg.ConsortiumOrder {
		est := ests[name]
		fmt.Fprintf(w, "estimate %s: %s, %s\n", name, est.Tokens, estimateCost(cfg, est))
		for _, c := range est.Calls {
			line := fmt.Sprintf("  %s %s ×%d, rounds %s", c.Role, c.Model, c.Count, span(c.Rounds))
			if c.Tier != "" {
				line += ", tier " + c.Tier
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// estimateCost says an estimate's cost, or why it is unknown.
func estimateCost(cfg *config.Config, est *consortia.Estimate) string {
	if est.CostUSD != nil {
		return fmt.Sprintf("$%.6f–$%.6f", est.CostUSD[0], est.CostUSD[1])
	}
	var unpriced []string
	for _, c := range est.Calls {
		if _, ok := cfg.Pricing[c.Model]; !ok && !contains(unpriced, c.Model) {
			unpriced = append(unpriced, c.Model)
		}
	}
	switch {
	case len(unpriced) > 0:
		return "cost unknown (no price for " + strings.Join(unpriced, ", ") + ")"
	case est.Tokens.Output == nil:
		return "cost unknown (an arbiter's or judge's output has no bound: set its params' max_tokens)"
	}
	return "cost unknown"
}

func span(r [2]int) string {
	if r[0] == r[1] {
		return fmt.Sprint(r[0])
	}
	return fmt.Sprintf("%d–%d", r[0], r[1])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
