package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// eventsHeader is the request header that asks a consortium stream for
// named progress events (DESIGN "Web pages"). Without it no `event:` line
// is ever sent, so OpenAI's clients see the stream they expect.
const eventsHeader = "X-Consortium-Events"

// The named events and their JSON data.
const (
	eventMember = "consortium.member"
	eventRound  = "consortium.round"
	eventJudge  = "consortium.judge"
)

// memberEvent is the data of a consortium.member event: one member
// answer as it lands.
type memberEvent struct {
	Round     int           `json:"round"`
	Model     string        `json:"model"`
	Instance  int           `json:"instance"`
	Fallback  string        `json:"fallback,omitempty"`
	Status    string        `json:"status"`
	Error     string        `json:"error,omitempty"`
	LatencyMs int64         `json:"latency_ms"`
	StartMs   int64         `json:"start_ms"`
	Content   string        `json:"content"`
	Usage     *openai.Usage `json:"usage,omitempty"`
}

// roundEvent is the data of a consortium.round event: a round decided.
type roundEvent struct {
	Round      int      `json:"round"`
	Confidence *float64 `json:"confidence"`
	Iterate    bool     `json:"iterate"`
}

// judgeEvent is the data of a consortium.judge event: one judge's
// ranking, best first, as "provider/model#instance".
type judgeEvent struct {
	Round     int      `json:"round"`
	Model     string   `json:"model"`
	Group     string   `json:"group,omitempty"`
	Ranking   []string `json:"ranking"`
	Dropped   []string `json:"dropped,omitempty"`
	Error     string   `json:"error,omitempty"`
	LatencyMs int64    `json:"latency_ms"`
}

// wantsEvents reports whether a request asked for named progress events.
func wantsEvents(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get(eventsHeader)), "true")
}

// withEvents returns ctx under which the run writes its progress to ew as
// named events, when the request asked for them; ctx otherwise.
func withEvents(ctx context.Context, r *http.Request, ew *openai.EventWriter) context.Context {
	if !wantsEvents(r) {
		return ctx
	}
	return consortia.WithEvents(ctx, func(ev consortia.Event) {
		name, data := progressEvent(ev)
		if name == "" {
			return
		}
		b, err := json.Marshal(data)
		if err != nil {
			return
		}
		// An event the engine says is followed at once leaves with
		// what follows it, in one write: another member's event, or,
		// for the last round's, the stream's end (after the turn is
		// saved, as the synthesis's last chunks are).
		if ev.More {
			ew.HoldEvent(name, b)
			return
		}
		ew.Event(name, b)
	})
}

// progressEvent is the SSE event of a run's step: its name and data; ""
// for a step that has none.
func progressEvent(ev consortia.Event) (string, any) {
	switch {
	case ev.Kind == consortia.EventMember && ev.Member != nil:
		m := ev.Member
		return eventMember, memberEvent{Round: ev.Round, Model: m.Model, Instance: m.Instance, Fallback: m.Fallback,
			Status: m.Status, Error: m.Error, LatencyMs: m.LatencyMs, StartMs: m.StartMs, Content: m.Content, Usage: m.Usage}
	case ev.Kind == consortia.EventRound:
		return eventRound, roundEvent{Round: ev.Round, Confidence: ev.Confidence, Iterate: ev.Iterate}
	case ev.Kind == consortia.EventJudge && ev.Judge != nil:
		j := ev.Judge
		ranking := j.RankedMembers
		if ranking == nil {
			ranking = []string{}
		}
		return eventJudge, judgeEvent{Round: ev.Round, Model: j.Model, Group: j.Group, Ranking: ranking,
			Dropped: j.Dropped, Error: j.Error, LatencyMs: j.LatencyMs}
	}
	return "", nil
}
