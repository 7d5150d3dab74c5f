package batch

import (
	"context"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// Consortium answers a request with a consortium: *consortia.Engine
// satisfies it. Runs made through it feed the scores as any run does
// (the engine's OnRun).
type Consortium interface {
	Name() string
	Run(ctx context.Context, req *openai.ChatRequest, deltas func(string)) (*consortia.Result, error)
}

// Generate answers every item with a consortium (dataset generate).
type Generate struct {
	Job
	// Consortium answers.
	Consortium Consortium
	// OpenAI writes only {"messages": [...]}, the fine-tuning format,
	// keeping the finished ids in <out>.progress; otherwise each line is
	// {"id", "messages", "consortium"}.
	OpenAI bool
}

// generated is a native output line.
type generated struct {
	ID         string           `json:"id,omitempty"`
	Messages   []openai.Message `json:"messages"`
	Consortium *runSummary      `json:"consortium,omitempty"`
}

// runSummary is what an output line keeps of a run: the consortium
// object (winner, scores, votes, members), the last round's judges, and
// the usage.
type runSummary struct {
	consortia.Summary
	Judges []judgeSummary `json:"judges,omitempty"`
	Usage  openai.Usage   `json:"usage"`
}

// judgeSummary is one judge's ranking, as members.
type judgeSummary struct {
	Model         string   `json:"model"`
	Group         string   `json:"group,omitempty"`
	RankedMembers []string `json:"ranked_members,omitempty"`
	Dropped       []string `json:"dropped,omitempty"`
	Error         string   `json:"error,omitempty"`
}

func summarize(run *consortia.Run) *runSummary {
	s := &runSummary{Summary: run.Summary(), Usage: run.Usage}
	if n := len(run.Rounds); n > 0 {
		for _, j := range run.Rounds[n-1].Judges {
			s.Judges = append(s.Judges, judgeSummary{Model: j.Model, Group: j.Group, RankedMembers: j.RankedMembers, Dropped: j.Dropped, Error: j.Error})
		}
	}
	return s
}

// Run answers the items out has not finished and appends a line for each.
func (g *Generate) Run(ctx context.Context, items []Item, out *Output) (*Report, error) {
	return g.run(ctx, "generate", items, out, func(ctx context.Context, it Item) (any, error) {
		res, err := g.Consortium.Run(ctx, &openai.ChatRequest{Model: g.Consortium.Name(), Messages: it.Messages}, nil)
		if err != nil {
			return nil, err
		}
		msgs := append(append([]openai.Message(nil), it.Messages...), openai.Message{Role: "assistant", Content: openai.TextContent(res.Synthesis)})
		if g.OpenAI {
			return generated{Messages: msgs}, nil
		}
		return generated{ID: it.ID, Messages: msgs, Consortium: summarize(res.Run)}, nil
	})
}
