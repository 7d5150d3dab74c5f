package proxy_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/proxy"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// ranked is a consortium that answers every request with the same
// answers in rank order, as a rank consortium with then: winner does: the
// first, streamed word by word through deltas, is the synthesis; with
// n > 1 the first n are the choices. It keeps the messages of every
// request it was asked, so that a test can see what a conversation kept.
type ranked struct {
	answers []string
	finish  string // the synthesis's finish_reason
	mu      sync.Mutex
	asked   [][]wire.Message
}

func (c *ranked) Name() string { return "best" }

// Check lets n through up to the answers it has, as rank does.
func (c *ranked) Check(req *wire.ChatRequest) error {
	if req.N != nil && *req.N > len(c.answers) {
		return &wire.FieldError{Param: "n", Message: "n is more than the answers"}
	}
	return nil
}

func (c *ranked) Estimate(*wire.ChatRequest) (*consortia.Estimate, error) {
	return &consortia.Estimate{}, nil
}

func (c *ranked) Run(_ context.Context, req *wire.ChatRequest, deltas func(string)) (*consortia.Result, error) {
	c.mu.Lock()
	c.asked = append(c.asked, req.Messages)
	c.mu.Unlock()
	if deltas != nil {
		for _, w := range strings.SplitAfter(c.answers[0], " ") {
			deltas(w)
		}
	}
	res := &consortia.Result{
		Synthesis:    c.answers[0],
		FinishReason: c.finish,
		Usage:        wire.Usage{PromptTokens: 5, CompletionTokens: 7, TotalTokens: 12},
		Run:          &consortia.Run{ID: "run_ranked", Consortium: "best", Strategy: "rank", Iterations: 1, Created: time.Now()},
	}
	if req.N != nil && *req.N > 1 {
		res.Choices = c.answers[:*req.N]
	}
	return res, nil
}

// startRanked runs a proxy, built with proxy.New, whose one consortium is
// c.
func startRanked(t *testing.T, c *ranked) string {
	t.Helper()
	srv, err := proxy.New(proxy.Options{Consortia: map[string]proxy.Consortium{"best": c}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

func postTo(t *testing.T, url, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, got
}

// choicesCompletion is a JSON answer with n choices.
type choicesCompletion struct {
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Consortium *struct {
		Strategy string `json:"strategy"`
		Scores   []struct {
			Model string `json:"model"`
			Place int    `json:"place"`
		} `json:"scores"`
	} `json:"consortium"`
}

func decodeChoices(t *testing.T, resp *http.Response, body []byte) choicesCompletion {
	t.Helper()
	var c choicesCompletion
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &c); err != nil || c.Consortium == nil {
		t.Fatalf("not a consortium completion: %s (%v)", body, err)
	}
	return c
}

// TestChoicesJSON: with n > 1 the answer's choices are the answers in rank
// order, each with its index and finish_reason, the client's bound
// cutting only the synthesis; the conversation keeps choices[0].
func TestChoicesJSON(t *testing.T) {
	c := &ranked{answers: []string{"the best answer", "the second", "the third", "the fourth"}, finish: "length"}
	url := startRanked(t, c)
	resp, body := postTo(t, url, `{"model":"best","n":3,"messages":[{"role":"user","content":"which?"}]}`)
	got := decodeChoices(t, resp, body)
	if len(got.Choices) != 3 {
		t.Fatalf("%d choices, want 3: %s", len(got.Choices), body)
	}
	for i, ch := range got.Choices {
		wantFinish := "stop"
		if i == 0 {
			wantFinish = "length"
		}
		if ch.Index != i || ch.Message.Role != "assistant" || ch.Message.Content != c.answers[i] || ch.FinishReason != wantFinish {
			t.Errorf("choice %d: %+v, want %q finishing %s", i, ch, c.answers[i], wantFinish)
		}
	}
	conv := resp.Header.Get("X-Consortium-Conversation")
	if conv == "" || resp.Header.Get("X-Consortium-Run-Id") != "run_ranked" {
		t.Fatalf("headers %v", resp.Header)
	}
	resp, body = postTo(t, url, `{"model":"best","messages":[{"role":"user","content":"and then?"}]}`, "X-Consortium-Conversation", conv)
	decodeChoices(t, resp, body)
	c.mu.Lock()
	kept := c.asked[1]
	c.mu.Unlock()
	if len(kept) != 3 || kept[1].Role != "assistant" || kept[1].Content.String() != "the best answer" {
		t.Errorf("the conversation continued with %+v, want choices[0] as the assistant turn", kept)
	}
}

// TestChoicesStream: streamed with n > 1, each choice's role chunk goes
// out first, then the choices' content in rank order (choice 0 as it is
// written), then a finish chunk for each, the last carrying the
// consortium object, then usage; only the usage chunk has no choices.
func TestChoicesStream(t *testing.T) {
	c := &ranked{answers: []string{"the best answer", "the second", "the third"}, finish: "stop"}
	url := startRanked(t, c)
	resp, body := postTo(t, url, `{"model":"best","n":3,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"which?"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Consortium-Run-Id") == "" || resp.Header.Get("X-Consortium-Conversation") == "" {
		t.Fatalf("status %d, headers %v: %s", resp.StatusCode, resp.Header, body)
	}
	frames := readFrames(t, body)
	// Each frame as index:what, for one comparison.
	var shape []string
	for i, f := range frames {
		if len(f.Choices) == 0 {
			if i != len(frames)-1 || f.Usage == nil || f.Usage.TotalTokens != 12 {
				t.Errorf("frame %d has no choices and is not the usage frame: %+v", i, f)
			}
			shape = append(shape, "usage")
			continue
		}
		if len(f.Choices) != 1 {
			t.Errorf("frame %d has %d choices", i, len(f.Choices))
		}
		ch := f.Choices[0]
		switch {
		case ch.Delta.Role == "assistant":
			shape = append(shape, fmt.Sprintf("%d:role", ch.Index))
		case ch.FinishReason != nil:
			shape = append(shape, fmt.Sprintf("%d:%s", ch.Index, *ch.FinishReason))
		case ch.Delta.Content != nil:
			shape = append(shape, fmt.Sprintf("%d:%q", ch.Index, *ch.Delta.Content))
		}
		if (f.Consortium != nil) != (i == len(frames)-2) {
			t.Errorf("frame %d: consortium object %v; want it on the last finish chunk only", i, f.Consortium)
		}
	}
	want := []string{"0:role", "1:role", "2:role",
		`0:"the "`, `0:"best "`, `0:"answer"`, `1:"the second"`, `2:"the third"`,
		"0:stop", "1:stop", "2:stop", "usage"}
	if !slices.Equal(shape, want) {
		t.Errorf("frames\n%q\nwant\n%q", shape, want)
	}
	if s := frames[len(frames)-2].Consortium; s == nil || s.RunID != "run_ranked" || s.Strategy != "rank" {
		t.Errorf("consortium object %+v", s)
	}
}

// TestRankChoices runs a rank consortium end to end (DESIGN, "rank"):
// its judge ranks the three answers, whose labels it sees in an order of
// its own, and choices[0..n-1] are the answers in the order of the
// consortium object's places; n above the member instances is 400 before
// any call.
func TestRankChoices(t *testing.T) {
	e := startCouncil(t, "strategy: rank\nmembers: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]\njudges: [{model: fake/judge}]")
	answerOf := map[string]string{}
	for _, m := range []string{"alpha", "beta", "gamma"} {
		answerOf["fake/"+m] = m + "'s answer"
		e.fake.Script(m, upstreamtest.Reply{Content: m + "'s answer"})
	}
	e.fake.Script("judge", upstreamtest.Reply{Content: "<critique>C is best</critique><ranking>C > A > B</ranking>"})

	resp, body := e.post("/v1/chat/completions", `{"model":"council","n":2,"messages":[{"role":"user","content":"which?"}]}`)
	got := decodeChoices(t, resp, body)
	if len(got.Choices) != 2 || got.Consortium.Strategy != "rank" || len(got.Consortium.Scores) != 3 {
		t.Fatalf("answer %s", body)
	}
	byPlace := map[int]string{}
	for _, s := range got.Consortium.Scores {
		byPlace[s.Place] = answerOf[s.Model]
	}
	for i, ch := range got.Choices {
		if ch.Index != i || ch.Message.Content != byPlace[i+1] || ch.FinishReason != "stop" {
			t.Errorf("choice %d: %+v, want the answer placed %d: %q", i, ch, i+1, byPlace[i+1])
		}
	}

	resp, body = e.post("/v1/chat/completions", streamBody(`{"model":"council","n":2,"messages":[{"role":"user","content":"which?"}]}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	perChoice := map[int]string{}
	for _, f := range readFrames(t, body) {
		for _, ch := range f.Choices {
			if ch.Delta.Content != nil {
				perChoice[ch.Index] += *ch.Delta.Content
			}
		}
	}
	if len(perChoice) != 2 || perChoice[0] == perChoice[1] || !slices.Contains(slices.Collect(maps.Values(answerOf)), perChoice[1]) {
		t.Errorf("streamed choices %v", perChoice)
	}

	calls := len(e.fake.Requests())
	resp, body = e.post("/v1/chat/completions", `{"model":"council","n":4,"messages":[{"role":"user","content":"which?"}]}`)
	if resp.StatusCode != http.StatusBadRequest || decodeError(t, body).Error.Param == nil || *decodeError(t, body).Error.Param != "n" {
		t.Errorf("n above the instances: status %d: %s", resp.StatusCode, body)
	}
	if len(e.fake.Requests()) != calls {
		t.Errorf("n above the instances called a provider")
	}
}

// TestFailedRunLogsMembers: a run that ends without an answer logs its
// rounds and each member's status and latency, as a successful run does,
// and each member failure at warn.
func TestFailedRunLogsMembers(t *testing.T) {
	for _, body := range []string{councilBody, streamBody(councilBody)} {
		e := startCouncil(t, "members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
		e.fake.Script("alpha", upstreamtest.Reply{Content: "fine"})
		e.fake.Script("beta", upstreamtest.Reply{Status: 503, Error: "overloaded right now"})
		e.fake.Script("judge", upstreamtest.Reply{Status: 500, Error: "the judge fell over"})
		resp, got := e.post("/v1/chat/completions", body)
		if !strings.Contains(string(got), "the judge fell over") {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		// A stream announces its run id; a JSON failure does not.
		runID := cmp.Or(resp.Header.Get("X-Consortium-Run-Id"), "run_")
		e.logs.waitFor(t, `msg="consortium run failed"`)
		var failed, member string
		for _, line := range strings.Split(e.logs.String(), "\n") {
			switch {
			case strings.Contains(line, `msg="consortium run failed"`):
				failed = line
			case strings.Contains(line, `msg="consortium member failed"`):
				member = line
			}
		}
		for _, want := range []string{"level=WARN", "run_id=" + runID, "consortium=council", "rounds=1",
			`members.fake/alpha#1="ok `, `members.fake/beta#1="error `, "the judge fell over"} {
			if !strings.Contains(failed, want) {
				t.Errorf("the failed run's log line lacks %s: %s", want, failed)
			}
		}
		if !strings.Contains(member, "model=fake/beta") || !strings.Contains(member, "overloaded right now") {
			t.Errorf("the member failure's log line: %s", member)
		}
	}
}
