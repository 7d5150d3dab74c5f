package consortia_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestEvents: a run under WithEvents tells each member answer as it
// lands, then its round's decision, round by round; and the record
// places every call on the run's timeline (StartMs).
func TestEvents(t *testing.T) {
	const council = `
members:
  - model: fake/alpha
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 2
`
	inBubble(t, council, func(t *testing.T, f *fixture) {
		f.fake.Handle("alpha", func(r *upstreamtest.Request) upstreamtest.Reply {
			return upstreamtest.Reply{Content: "alpha says <script>", Delay: 10 * time.Millisecond}
		})
		f.fake.Handle("beta", func(r *upstreamtest.Request) upstreamtest.Reply {
			return upstreamtest.Reply{Status: 500, Error: "down"}
		})
		f.fake.Script("judge",
			upstreamtest.Reply{Content: "<confidence>0.4</confidence><refinement_areas>be precise</refinement_areas>"},
			upstreamtest.Reply{Content: verdict("0.9", "the synthesis")})

		var mu sync.Mutex
		var got []string
		ctx := consortia.WithEvents(context.Background(), func(ev consortia.Event) {
			mu.Lock()
			defer mu.Unlock()
			s := ev.Kind + "@" + string(rune('0'+ev.Round))
			switch ev.Kind {
			case consortia.EventMember:
				s += ":" + ev.Member.Model + ":" + ev.Member.Status
			case consortia.EventRound:
				if ev.Iterate {
					s += ":iterate"
				}
			}
			if ev.More {
				s += ":more"
			}
			got = append(got, s)
		})
		req, err := openai.ParseChatRequest([]byte(hello))
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.engine.Run(ctx, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		// beta fails at once, alpha after its delay (so no answer waits
		// behind another: no member event has More). The last round's
		// event is followed at once by the run's end.
		want := []string{
			"member@1:fake/beta:error", "member@1:fake/alpha:ok", "round@1:iterate",
			"member@2:fake/beta:error", "member@2:fake/alpha:ok", "round@2:more",
		}
		if len(got) != len(want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("events %q, want %q", got, want)
			}
		}
		r2 := res.Run.Rounds[1]
		if r2.Members[0].StartMs < 10 || r2.Arbiter.StartMs < r2.Members[0].StartMs+10 {
			t.Errorf("round 2 starts: member %dms, arbiter %dms; want them after round 1's 10ms and the member's 10ms",
				r2.Members[0].StartMs, r2.Arbiter.StartMs)
		}
	})
}

// TestNoEventsWithoutWithEvents: a run without an event function runs as
// ever (the hooks cost nothing then).
func TestNoEventsWithoutWithEvents(t *testing.T) {
	inBubble(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\n", func(t *testing.T, f *fixture) {
		f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
		if res, _ := f.mustRun(t, hello); res.Synthesis != "ok" {
			t.Errorf("synthesis %q", res.Synthesis)
		}
	})
}
