package proxy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// namedStream reads a whole SSE body into its events: name ("" for a data
// frame) and data.
func namedStream(t *testing.T, body io.Reader) (names []string, data []string) {
	t.Helper()
	br := bufio.NewReader(body)
	name, d := "", ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return names, data
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if d != "" || name != "" {
				names, data = append(names, name), append(data, d)
			}
			name, d = "", ""
		case strings.HasPrefix(line, "event:"):
			name = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			d += strings.TrimPrefix(line[len("data:"):], " ")
		}
	}
}

func askEvents(t *testing.T, s *stratEnv, model string, header bool) (names, data []string) {
	t.Helper()
	body := `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"q"}]}`
	req, _ := http.NewRequest("POST", s.URL+"/chat/completions", strings.NewReader(body))
	if header {
		req.Header.Set("X-Consortium-Events", "true")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return namedStream(t, resp.Body)
}

// TestProgressEvents: a stream asked with X-Consortium-Events: true gets
// consortium.member, consortium.judge and consortium.round events, each
// member's before the synthesis; without the header, no event line.
func TestProgressEvents(t *testing.T) {
	s := startStrategies(t)
	s.says("alpha", "alpha's <script>alert(1)</script>", "beta", "beta's answer", "gamma", "gamma's answer")
	s.judges("judge1", "beta's answer", "alpha's answer", "gamma's answer")
	s.judges("judge2", "gamma's answer", "beta's answer", "alpha's answer")

	names, data := askEvents(t, s, "ranked", true)
	count := map[string]int{}
	firstContent := -1
	lastMember := -1
	for i, n := range names {
		count[n]++
		switch n {
		case "consortium.member":
			lastMember = i
			var m struct {
				Round    int    `json:"round"`
				Model    string `json:"model"`
				Instance int    `json:"instance"`
				Status   string `json:"status"`
				Content  string `json:"content"`
			}
			if err := json.Unmarshal([]byte(data[i]), &m); err != nil || m.Round != 1 || m.Status != "ok" || m.Instance != 1 || !strings.HasPrefix(m.Model, "fake/") {
				t.Errorf("member event %s: %+v %v", data[i], m, err)
			}
		case "consortium.judge":
			var j struct {
				Model   string   `json:"model"`
				Ranking []string `json:"ranking"`
			}
			if err := json.Unmarshal([]byte(data[i]), &j); err != nil || len(j.Ranking) != 3 {
				t.Errorf("judge event %s: %v", data[i], err)
			}
		case "consortium.round":
			var r struct {
				Round      int      `json:"round"`
				Confidence *float64 `json:"confidence"`
				Iterate    bool     `json:"iterate"`
			}
			if err := json.Unmarshal([]byte(data[i]), &r); err != nil || r.Round != 1 || r.Iterate || r.Confidence == nil {
				t.Errorf("round event %s: %v", data[i], err)
			}
		case "":
			if firstContent < 0 && strings.Contains(data[i], `"content":"gamma`) {
				firstContent = i
			}
		default:
			t.Errorf("unexpected event %q", n)
		}
	}
	if count["consortium.member"] != 3 || count["consortium.judge"] != 2 || count["consortium.round"] != 1 {
		t.Errorf("events %v, want 3 member, 2 judge, 1 round", count)
	}
	if firstContent < 0 || lastMember > firstContent {
		t.Errorf("the last member event (%d) comes after the synthesis (%d)", lastMember, firstContent)
	}

	names, _ = askEvents(t, s, "ranked", false)
	for _, n := range names {
		if n != "" {
			t.Fatalf("an event %q without X-Consortium-Events", n)
		}
	}
	if len(names) == 0 {
		t.Fatal("no frames")
	}
}

// TestNoProgressEventsOnOtherAPIs: the Responses and Messages APIs'
// streams of a consortium never carry a consortium.* event, with the
// header or without it (their own named events are theirs), and still
// end as their API says.
func TestNoProgressEventsOnOtherAPIs(t *testing.T) {
	s := startStrategies(t)
	s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
	s.judges("judge1", "beta's answer", "alpha's answer", "gamma's answer")
	s.judges("judge2", "gamma's answer", "beta's answer", "alpha's answer")
	for _, tc := range []struct{ path, body, end string }{
		{"/responses", `{"model":"ranked","stream":true,"input":"q"}`, "response.completed"},
		{"/messages", `{"model":"ranked","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"q"}]}`, "message_stop"},
	} {
		for _, header := range []bool{false, true} {
			req, _ := http.NewRequest("POST", s.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if header {
				req.Header.Set("X-Consortium-Events", "true")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.Contains(string(body), "consortium.") || !strings.Contains(string(body), tc.end) {
				t.Errorf("%s (header %v): %d\n%s", tc.path, header, resp.StatusCode, body)
			}
		}
	}
}
