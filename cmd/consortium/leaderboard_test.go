package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const sampleLeaderboard = `{"consortia":[{"name":"council","models":[
{"model":"openai/gpt-4o","runs":40,"answers":40,"failures":0,"first_places":30,"win_rate":0.75,"rating":1095.4,"rating_ci95":[1040.2,1150.9],"regret":0,"latency_ms_p50":812,"tokens":51234,"cost_usd":null},
{"model":"anthropic/claude-haiku-4-5","runs":40,"answers":38,"failures":2,"first_places":10,"win_rate":0.25,"rating":904.6,"rating_ci95":[849.1,959.8],"regret":0.05,"latency_ms_p50":640,"tokens":40211,"cost_usd":0.0123}]},
{"name":"empty","models":[]}]}`

func TestLeaderboardTable(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if r.Header.Get("Authorization") != "Bearer k1" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided.","type":"authentication_error"}}`)
			return
		}
		fmt.Fprint(w, sampleLeaderboard)
	}))
	defer srv.Close()

	t.Setenv("CONSORTIUM_KEY", "k1")
	code, out, errOut := runCmd("leaderboard", "--url", srv.URL+"/v1", "my council")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got.URL.Path != "/v1/consortium/leaderboard" || got.URL.Query().Get("consortium") != "my council" {
		t.Errorf("asked %s", got.URL)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"council\n", "rating", "openai/gpt-4o", "1095", "1040–1151", "75.0%", "cost $", "51234", "0.0123",
		"empty\n  no runs scored yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	// The unknown cost is a dash, not 0.
	if line := out[strings.Index(out, "openai/gpt-4o"):]; !strings.HasSuffix(strings.TrimSpace(line[:strings.Index(line, "\n")]), "-") {
		t.Errorf("unknown cost: %q", line[:strings.Index(line, "\n")])
	}

	code, _, errOut = runCmd("leaderboard", "--url", srv.URL, "--key", "wrong")
	if code != 1 || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "Incorrect API key") || !strings.Contains(errOut, "--key") {
		t.Errorf("wrong key: exit %d, and no word of what to do: %s", code, errOut)
	}
	// A URL without its scheme, as --listen takes an address.
	if code, _, errOut := runCmd("leaderboard", "--url", strings.TrimPrefix(srv.URL, "http://"), "--key", "k1"); code != 0 {
		t.Errorf("--url without http://: exit %d: %s", code, errOut)
	}
	t.Setenv("CONSORTIUM_KEY", "")
	code, _, errOut = runCmd("leaderboard", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, "CONSORTIUM_KEY") {
		t.Errorf("no key: exit %d: %s", code, errOut)
	}
	srv.Close()
	code, _, errOut = runCmd("leaderboard", "--url", srv.URL)
	if code != 1 || !strings.Contains(errOut, "consortium serve") {
		t.Errorf("nobody there: exit %d: %s", code, errOut)
	}
	if code, out, _ := runCmd("leaderboard", "--help"); code != 0 || !strings.Contains(out, "--url URL") {
		t.Errorf("help: exit %d: %s", code, out)
	}
	if code, _, errOut := runCmd("leaderboard", "a", "b"); code != 2 || !strings.Contains(errOut, `"b"`) {
		t.Errorf("two names: exit %d: %s", code, errOut)
	}
}

// TestLeaderboardTwoReplicas runs two real proxy processes on one real
// redis-server, feeding the same consortium at once, and checks that no
// count is lost: every run of both is in the leaderboard either serves.
func TestLeaderboardTwoReplicas(t *testing.T) {
	clean(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	redis := redistest.Start(t)
	fake := upstreamtest.NewServer()
	defer fake.Close()
	fake.Handle("alpha", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Content: "alpha says 4"} })
	fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Content: "beta says 4"} })
	fake.Handle("gamma", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Status: 400, Error: "no"} })
	fake.Handle("judge", func(r *upstreamtest.Request) upstreamtest.Reply {
		prompt := r.Chat.Messages[len(r.Chat.Messages)-1].Content.String()
		label := func(answer string) string {
			i := strings.LastIndex(prompt[:strings.Index(prompt, answer)], "Response ")
			return prompt[i+len("Response ") : i+len("Response ")+1]
		}
		return upstreamtest.Reply{Content: "<confidence>0.9</confidence><ranking>" + label("beta says") + " > " + label("alpha says") +
			"</ranking><synthesis>4</synthesis>"}
	})
	file := writeFile(t, fmt.Sprintf(`
auth:
  keys: [{name: alice, key: alice-key}]
  admin_key: admin-key
store: {backend: redis, url: %q}
providers:
  fake: {base_url: %q, max_retries: 0}
consortia:
  council:
    members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
    arbiter: {model: fake/judge}
    max_iterations: 1
`, redis.URL(), fake.URL))
	var bases []string
	var cmds []interface{ Signal() error }
	for range 2 {
		base, _, cmd := startServe(t, ctx, "-c", file, "--listen", "127.0.0.1:0")
		bases = append(bases, base)
		cmds = append(cmds, signaler{cmd.Process.Signal, cmd.Wait})
	}

	const perReplica, workers = 60, 6
	var wg sync.WaitGroup
	for _, base := range bases {
		for w := range workers {
			wg.Go(func() {
				for i := range perReplica / workers {
					body := fmt.Sprintf(`{"model":"council","messages":[{"role":"user","content":"question %d.%d"}]}`, w, i)
					req, _ := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer alice-key")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("run: %s", resp.Status)
					}
				}
			})
		}
	}
	wg.Wait()
	// Stopping a replica drains its scores: after both stop, every run is
	// written.
	for _, c := range cmds {
		if err := c.Signal(); err != nil {
			t.Fatal(err)
		}
	}
	base, _, _ := startServe(t, ctx, "-c", file, "--listen", "127.0.0.1:0")
	code, out, errOut := runCmd("leaderboard", "--url", base, "--key", "admin-key", "council")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Logf("\n%s", out)
	const total = 2 * perReplica
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.HasPrefix(f[1], "fake/") {
			rows[f[1]] = f
		}
	}
	// Columns: # model rating interval win answers failures first regret p50 runs tokens cost.
	check := func(model string, col int, want string) {
		t.Helper()
		if f := rows[model]; len(f) <= col || f[col] != want {
			t.Errorf("%s: column %d is %v, want %s", model, col, f, want)
		}
	}
	check("fake/beta", 0, "1")
	check("fake/beta", 5, fmt.Sprint(total))  // answers
	check("fake/beta", 7, fmt.Sprint(total))  // first places
	check("fake/beta", 10, fmt.Sprint(total)) // runs
	check("fake/alpha", 10, fmt.Sprint(total))
	check("fake/gamma", 6, fmt.Sprint(total)) // failures
	check("fake/gamma", 8, "2.00")            // regret: a loss to each of two answers, every run
	check("fake/beta", 4, "100.0%")
	check("fake/alpha", 4, "50.0%") // beats gamma's failure, loses to beta, every run
}

// signaler stops a serve process with SIGTERM and waits for it.
type signaler struct {
	signal func(os.Signal) error
	wait   func() error
}

func (s signaler) Signal() error {
	if err := s.signal(syscall.SIGTERM); err != nil {
		return err
	}
	return s.wait()
}
