package consortia_test

import (
	"context"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// TestOnRun: OnRun gets every run's record once, when the run ends,
// answered or failed, after the last delta; not a run its caller
// cancelled.
func TestOnRun(t *testing.T) {
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL, Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := consortiumConfig(t, "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1\n")
	var runs []*consortia.Run
	var deltas []string
	cfg.OnRun = func(r *consortia.Run) {
		if len(deltas) == 0 && r.Rounds[0].Members[0].Status == consortia.StatusOK {
			t.Error("OnRun before the answer was written")
		}
		runs = append(runs, r)
	}
	e, err := consortia.New("council", cfg, map[string]consortia.Caller{"fake": p})
	if err != nil {
		t.Fatal(err)
	}
	fake.Handle("judge", func(*upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: verdict("0.9", "done")}
	})
	req, _ := openai.ParseChatRequest([]byte(hello))
	if _, err := e.Run(context.Background(), req, func(d string) { deltas = append(deltas, d) }); err != nil {
		t.Fatal(err)
	}
	fake.Handle("alpha", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Status: 400, Error: "no"} })
	fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Status: 400, Error: "no"} })
	if _, err := e.Run(context.Background(), req, nil); err == nil {
		t.Fatal("a run whose members all failed answered")
	}
	// A run whose caller went away is not reported.
	fake.Handle("alpha", func(*upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: "a", Delay: time.Minute}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := e.Run(ctx, req, nil); err == nil {
		t.Fatal("a cancelled run answered")
	}
	if len(runs) != 2 || runs[0].Consortium != "council" || runs[0].DurationMs < 0 || runs[1].Rounds[0].Members[0].Status != consortia.StatusError {
		t.Fatalf("OnRun got %d runs: %+v", len(runs), runs)
	}
}
