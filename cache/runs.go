package cache

import (
	"context"
	"time"
)

// RunsPerTenant bounds the index of recent runs each tenant keeps: Save
// adds a run's summary, and the oldest beyond this many are dropped.
const RunsPerTenant = 200

// RunRecord is a run as Save stores it: its record, and its line in the
// tenant's index of recent runs.
type RunRecord struct {
	// JSON is the run record, what GET /v1/consortium/runs/{run_id}
	// serves. The store keeps it as it is and never reads it.
	JSON []byte
	// Summary is the run's line in the index, filled by the caller from
	// the run it encoded into JSON: the store does not decode a record
	// of many kilobytes again on the request path to find a few fields.
	// One without a RunID is not indexed.
	Summary RunSummary
}

// RunSummary is one line of a tenant's index of recent runs, what a list
// of runs shows. Its fields are the run record's own, under the same
// names but for Rounds (the record's iterations) and TotalTokens and
// CostUSD (its usage's).
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
