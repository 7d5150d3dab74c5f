package cache

import (
	"context"
	"encoding/json"
	"time"
)

// RunsPerTenant bounds the index of recent runs each tenant keeps: Save
// adds a run's summary, and the oldest beyond this many are dropped.
const RunsPerTenant = 200

// RunSummary is one line of a tenant's index of recent runs, what a list
// of runs shows. It is read from the run record's own fields (the JSON
// of GET /v1/consortium/runs/{run_id}), so the store needs to know no
// more of a run than its record says.
type RunSummary struct {
	RunID          string    `json:"run_id"`
	Consortium     string    `json:"consortium"`
	ConversationID string    `json:"conversation_id,omitempty"`
	Strategy       string    `json:"strategy"`
	Created        time.Time `json:"created"`
	Rounds         int       `json:"rounds"`
	Confidence     *float64  `json:"confidence"`
	DurationMs     int64     `json:"duration_ms"`
	TotalTokens    int       `json:"total_tokens"`
	// CostUSD is the run's cost when its usage has one (pricing set);
	// nil when unknown, never 0 for unknown.
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// summarize reads the summary of a run record; ok is false for a record
// without a run id.
func summarize(run []byte) (RunSummary, bool) {
	var r struct {
		RunID          string    `json:"run_id"`
		Consortium     string    `json:"consortium"`
		ConversationID string    `json:"conversation_id"`
		Strategy       string    `json:"strategy"`
		Created        time.Time `json:"created"`
		Iterations     int       `json:"iterations"`
		Confidence     *float64  `json:"confidence"`
		DurationMs     int64     `json:"duration_ms"`
		Usage          struct {
			TotalTokens int      `json:"total_tokens"`
			CostUSD     *float64 `json:"cost_usd"`
		} `json:"usage"`
	}
	if len(run) == 0 || json.Unmarshal(run, &r) != nil || r.RunID == "" {
		return RunSummary{}, false
	}
	return RunSummary{RunID: r.RunID, Consortium: r.Consortium, ConversationID: r.ConversationID, Strategy: r.Strategy,
		Created: r.Created, Rounds: r.Iterations, Confidence: r.Confidence, DurationMs: r.DurationMs,
		TotalTokens: r.Usage.TotalTokens, CostUSD: r.Usage.CostUSD}, true
}

func runsKey(tenant string) string {
	return "consortium:runs:" + tenantKey(tenant)
}

// Runs returns tenant's recent runs, newest first, at most limit of them
// (RunsPerTenant when limit is zero or more).
func (c *Conversations) Runs(ctx context.Context, tenant string, limit int) ([]RunSummary, error) {
	return c.store.Runs(ctx, tenant, limit)
}

// bound returns limit within 1..RunsPerTenant, RunsPerTenant for 0.
func bound(limit int) int {
	if limit <= 0 || limit > RunsPerTenant {
		return RunsPerTenant
	}
	return limit
}
