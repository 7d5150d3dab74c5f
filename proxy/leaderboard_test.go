package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// leaderboardYAML is a consortium whose arbiter ranks beta above alpha.
const leaderboardYAML = `
auth:
  keys: [{name: alice, key: alice-key}]
  admin_key: admin-key
providers:
  fake: {base_url: "{{FAKE}}", timeout: 5s, idle_timeout: 5s, max_retries: 0, models: [m1]}
pricing:
  fake/beta: {input: 1000, output: 2000}
consortia:
  council:
    members: [{model: fake/alpha}, {model: fake/beta}]
    arbiter: {model: fake/judge}
    max_iterations: 1
  other:
    members: [{model: fake/alpha}]
    arbiter: {model: fake/judge}
    max_iterations: 1
`

// scriptRanking has the arbiter rank every round's answers by the
// members' names, beta first, whatever labels they got.
func scriptRanking(fake *upstreamtest.Server) {
	fake.Handle("alpha", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Content: "alpha says 4"} })
	fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Content: "beta says 4"} })
	fake.Handle("judge", func(r *upstreamtest.Request) upstreamtest.Reply {
		prompt := r.Chat.Messages[len(r.Chat.Messages)-1].Content.String()
		// The arbiter sees "Response X" before each answer.
		labelOf := func(answer string) string {
			i := strings.Index(prompt, answer)
			j := strings.LastIndex(prompt[:i], "Response ")
			return prompt[j+len("Response ") : j+len("Response ")+1]
		}
		return upstreamtest.Reply{Content: "<confidence>0.9</confidence><ranking>" + labelOf("beta says") + ", " + labelOf("alpha says") +
			"</ranking><synthesis>4</synthesis>"}
	})
}

// leaderboard is the leaderboard's JSON.
type leaderboard struct {
	Consortia []struct {
		Name   string           `json:"name"`
		Models []map[string]any `json:"models"`
	} `json:"consortia"`
}

func getLeaderboard(t *testing.T, e *env, query, key string) (*http.Response, leaderboard, []byte) {
	t.Helper()
	resp, body := e.do("GET", "/v1/consortium/leaderboard"+query, key, "")
	var lb leaderboard
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &lb); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}
	return resp, lb, body
}

func TestLeaderboard(t *testing.T) {
	e := start(t, leaderboardYAML)
	scriptRanking(e.fake)
	for range 5 {
		resp, body := e.do("POST", "/v1/chat/completions", "alice-key", `{"model":"council","messages":[{"role":"user","content":"2+2?"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("run: %d %s", resp.StatusCode, body)
		}
	}
	// Scores are written after the answer, off its path: wait for them.
	var lb leaderboard
	deadline := time.Now().Add(5 * time.Second)
	for {
		var resp *http.Response
		var body []byte
		resp, lb, body = getLeaderboard(t, e, "?consortium=council", "admin-key")
		if resp.StatusCode != 200 {
			t.Fatalf("admin: %d %s", resp.StatusCode, body)
		}
		if len(lb.Consortia[0].Models) == 2 && lb.Consortia[0].Models[0]["runs"] == 5.0 && lb.Consortia[0].Models[1]["runs"] == 5.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runs never showed: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rows := lb.Consortia[0].Models
	if rows[0]["model"] != "fake/beta" || rows[0]["first_places"] != 5.0 || rows[0]["win_rate"] != 1.0 || rows[1]["win_rate"] != 0.0 {
		t.Errorf("rows: %v", rows)
	}
	if rows[0]["rating"].(float64) <= rows[1]["rating"].(float64) || rows[0]["tokens"] == nil {
		t.Errorf("rows: %v", rows)
	}

	// beta is priced: each of its calls, 5 × 1000 in and 5 × 2000 out
	// per million (the fake's usage); alpha is not: unknown, never 0.
	if cost, ok := rows[0]["cost_usd"].(float64); !ok || cost <= 0 || rows[1]["cost_usd"] != nil {
		t.Errorf("costs: beta %v, alpha %v", rows[0]["cost_usd"], rows[1]["cost_usd"])
	}

	// A client key sees no volume columns; every consortium without a
	// query, in the configuration's order.
	resp, lb, body := getLeaderboard(t, e, "", "alice-key")
	if resp.StatusCode != 200 || len(lb.Consortia) != 2 || lb.Consortia[0].Name != "council" || lb.Consortia[1].Name != "other" {
		t.Fatalf("client: %d %s", resp.StatusCode, body)
	}
	for _, col := range []string{"runs", "tokens", "cost_usd"} {
		if _, ok := lb.Consortia[0].Models[0][col]; ok {
			t.Errorf("a client key sees %s: %s", col, body)
		}
	}
	if _, ok := lb.Consortia[0].Models[0]["rating_ci95"]; !ok {
		t.Errorf("no interval: %s", body)
	}

	resp, _, body = getLeaderboard(t, e, "?consortium=nope", "alice-key")
	ae := decodeError(t, body)
	if resp.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "model_not_found" || !strings.Contains(ae.Error.Message, "nope") {
		t.Errorf("unknown consortium: %d %s", resp.StatusCode, body)
	}
	if resp, _, body = getLeaderboard(t, e, "", ""); resp.StatusCode != 401 {
		t.Errorf("no key: %d %s", resp.StatusCode, body)
	}
	if resp, _, body = getLeaderboard(t, e, "", "wrong"); resp.StatusCode != 401 {
		t.Errorf("wrong key: %d %s", resp.StatusCode, body)
	}
}

// TestLeaderboardOpen: with neither client keys nor an admin key there is
// one tenant, who sees the volume columns.
func TestLeaderboardOpen(t *testing.T) {
	yaml := strings.Replace(leaderboardYAML, "auth:\n  keys: [{name: alice, key: alice-key}]\n  admin_key: admin-key\n", "", 1)
	e := start(t, yaml)
	resp, lb, body := getLeaderboard(t, e, "?consortium=council", "")
	if resp.StatusCode != 200 || len(lb.Consortia) != 1 || len(lb.Consortia[0].Models) != 0 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"models":[]`) {
		t.Errorf("no models is an empty list: %s", body)
	}
}

// TestLeaderboardStoreDown: with Redis down the leaderboard is 503 with
// the reason, and runs are still served (their scores skipped and
// counted).
func TestLeaderboardStoreDown(t *testing.T) {
	redis := redistest.Start(t)
	e := start(t, leaderboardYAML+"store: {backend: redis, url: \""+redis.URL()+"\"}\n")
	scriptRanking(e.fake)
	redis.Stop()
	resp, body := e.do("POST", "/v1/chat/completions", "alice-key", `{"model":"council","messages":[{"role":"user","content":"2+2?"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("run with the store down: %d %s", resp.StatusCode, body)
	}
	resp, _, body = getLeaderboard(t, e, "", "alice-key")
	ae := decodeError(t, body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(ae.Error.Message, "store unavailable") {
		t.Errorf("store down: %d %s", resp.StatusCode, body)
	}
	// Any client key reads the leaderboard: the reason it gets is safe,
	// never the store client's own error, which may name the store's
	// address (the log has it).
	if u, _ := url.Parse(redis.URL()); strings.Contains(ae.Error.Message, u.Port()) || strings.Contains(ae.Error.Message, "dial") ||
		strings.Contains(ae.Error.Message, "deadline exceeded") || strings.Contains(ae.Error.Message, "refused") {
		t.Errorf("the message shows the store's internals: %s", ae.Error.Message)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, metrics := e.do("GET", "/metrics", "admin-key", "")
		if strings.Contains(string(metrics), `consortium_scores_skipped_total{reason="store"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the skipped scores were not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaderboardWithoutScores: a server that records no scores says so.
func TestLeaderboardWithoutScores(t *testing.T) {
	e := start(t, leaderboardYAML, func(o *app.Options) { o.NoScores = true })
	scriptRanking(e.fake)
	resp, body := e.do("POST", "/v1/chat/completions", "alice-key", `{"model":"council","messages":[{"role":"user","content":"2+2?"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("run: %d %s", resp.StatusCode, body)
	}
	if resp, _, body := getLeaderboard(t, e, "", "alice-key"); resp.StatusCode != 503 || !strings.Contains(string(body), "keeps no scores") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}

// TestLeaderboardOnEachBackend: two replicas on one Redis (a single
// server, a Cluster, Sentinels) feed one consortium; either replica's
// leaderboard holds the runs of both.
func TestLeaderboardOnEachBackend(t *testing.T) {
	for _, backend := range redistest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			yaml := leaderboardYAML + "store: " + backend.Store() + "\n"
			a, b := start(t, yaml), start(t, yaml)
			for _, e := range []*env{a, b} {
				scriptRanking(e.fake)
				for range 3 {
					resp, body := e.do("POST", "/v1/chat/completions", "alice-key", `{"model":"council","messages":[{"role":"user","content":"2+2?"}]}`)
					if resp.StatusCode != 200 {
						t.Fatalf("run: %d %s", resp.StatusCode, body)
					}
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, lb, body := getLeaderboard(t, b, "?consortium=council", "admin-key")
				if resp.StatusCode != 200 {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				if rows := lb.Consortia[0].Models; len(rows) == 2 && rows[0]["model"] == "fake/beta" && rows[0]["runs"] == 6.0 && rows[1]["runs"] == 6.0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the six runs never showed: %s", body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
