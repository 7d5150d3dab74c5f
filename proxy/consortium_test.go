package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/consortium-dev/consortium/internal/app"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// startCouncil runs a proxy with one consortium, "council", over the fake
// provider; body is the consortium's YAML (members, arbiter ...).
func startCouncil(t *testing.T, body string, options ...func(*app.Options)) *env {
	t.Helper()
	return start(t, councilConfig(body), options...)
}

// councilConfig is the proxy's configuration with one consortium,
// "council", over the fake provider; body is the consortium's YAML
// (members, arbiter ...).
func councilConfig(body string) string {
	var y strings.Builder
	// No retries: a member's failure is what the fake scripted, at once.
	y.WriteString("providers:\n  fake:\n    base_url: {{FAKE}}\n    timeout: 5s\n    idle_timeout: 5s\n    max_retries: 0\n    models: [m1]\n")
	y.WriteString("consortia:\n  council:\n    description: the test council\n")
	for _, line := range strings.Split(strings.Trim(body, "\n"), "\n") {
		y.WriteString("    " + line + "\n")
	}
	return y.String()
}

// councilYAML is a consortium of two instances of alpha and one of beta,
// judged by judge, in one round.
const councilYAML = `
members:
  - model: fake/alpha
    count: 2
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 1
`

// scriptCouncil scripts councilYAML's models with distinct usage figures
// and returns the usage the client must be told: the sum of every call.
func scriptCouncil(fake *upstreamtest.Server, synthesis string) wire.Usage {
	fake.Script("alpha", upstreamtest.Reply{Content: "alpha's answer", Usage: &wire.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}})
	fake.Script("beta", upstreamtest.Reply{Content: "beta's answer", Usage: &wire.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}})
	fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", synthesis), Usage: &wire.Usage{PromptTokens: 100, CompletionTokens: 200, TotalTokens: 300}})
	return wire.Usage{PromptTokens: 2*1 + 10 + 100, CompletionTokens: 2*2 + 20 + 200, TotalTokens: 2*3 + 30 + 300}
}

// verdict is an arbiter reply in the default order.
func verdict(confidence, synthesis string) string {
	return "<analysis>The answers agree.</analysis>\n<dissent>none</dissent>\n<confidence>" + confidence +
		"</confidence>\n<needs_iteration>false</needs_iteration>\n<refinement_areas>none</refinement_areas>\n" +
		"<ranking>A</ranking>\n<synthesis>" + synthesis + "</synthesis>"
}

var roundRe = regexp.MustCompile(`\(round (\d+) of at most \d+\)`)

// byRound answers the arbiter of round n, as its prompt says, with
// replies[n-1]; the last reply serves every later round.
func byRound(replies ...upstreamtest.Reply) upstreamtest.Responder {
	return func(r *upstreamtest.Request) upstreamtest.Reply {
		n := 1
		if m := roundRe.FindStringSubmatch(r.LastUserText()); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		return replies[min(n, len(replies))-1]
	}
}

// summary is the consortium object of a response.
type summary struct {
	RunID      string   `json:"run_id"`
	Strategy   string   `json:"strategy"`
	Iterations int      `json:"iterations"`
	Confidence *float64 `json:"confidence"`
	Members    []struct {
		Model     string `json:"model"`
		Instance  int    `json:"instance"`
		Status    string `json:"status"`
		LatencyMs *int64 `json:"latency_ms"`
		Error     string `json:"error"`
	} `json:"members"`
}

func (s *summary) statuses() []string {
	var out []string
	for _, m := range s.Members {
		out = append(out, fmt.Sprintf("%s#%d:%s", m.Model, m.Instance, m.Status))
	}
	return out
}

// completion is a consortium's JSON answer.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage      *wire.Usage `json:"usage"`
	Consortium *summary    `json:"consortium"`
}

func decodeCompletion(t *testing.T, resp *http.Response, body []byte) completion {
	t.Helper()
	var c completion
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) != 1 || c.Consortium == nil {
		t.Fatalf("not a consortium completion: %s (%v)", body, err)
	}
	return c
}

func streamBody(body string) string {
	return strings.Replace(body, `{`, `{"stream":true,`, 1)
}

const councilBody = `{"model":"council","messages":[{"role":"user","content":"what is the answer?"}]}`

func TestConsortiumAnswer(t *testing.T) {
	e := startCouncil(t, councilYAML)
	usage := scriptCouncil(e.fake, "the panel's synthesis")
	resp, body := e.post("/v1/chat/completions", councilBody)
	c := decodeCompletion(t, resp, body)

	if c.Object != "chat.completion" || c.Model != "council" || c.Choices[0].Message.Role != "assistant" ||
		c.Choices[0].Message.Content != "the panel's synthesis" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("completion %s", body)
	}
	if c.Usage == nil || *c.Usage != usage {
		t.Errorf("usage %+v, want the sum of every call %+v", c.Usage, usage)
	}
	s := c.Consortium
	if want := []string{"fake/alpha#1:ok", "fake/alpha#2:ok", "fake/beta#1:ok"}; !slices.Equal(s.statuses(), want) {
		t.Errorf("members %v, want %v", s.statuses(), want)
	}
	if !strings.HasPrefix(s.RunID, "run_") || s.Strategy != "synthesize" || s.Iterations != 1 || s.Confidence == nil || *s.Confidence != 0.9 {
		t.Errorf("consortium %s", body)
	}
	if got := resp.Header.Get("X-Consortium-Run-Id"); got != s.RunID {
		t.Errorf("X-Consortium-Run-Id %q, consortium.run_id %q", got, s.RunID)
	}
	if ms, err := strconv.ParseFloat(resp.Header.Get("X-Consortium-Overhead-Ms"), 64); err != nil || ms < 0 {
		t.Errorf("X-Consortium-Overhead-Ms %q", resp.Header.Get("X-Consortium-Overhead-Ms"))
	}
	for model, want := range map[string]int{"alpha": 2, "beta": 1, "judge": 1} {
		if n := len(e.fake.RequestsFor(model)); n != want {
			t.Errorf("%d calls to %s, want %d", n, model, want)
		}
	}
}

func TestConsortiumStream(t *testing.T) {
	for _, includeUsage := range []bool{true, false} {
		t.Run(fmt.Sprintf("include_usage=%v", includeUsage), func(t *testing.T) {
			e := startCouncil(t, councilYAML)
			usage := scriptCouncil(e.fake, "the panel's streamed synthesis")
			body := fmt.Sprintf(`{"model":"council","stream":true,"stream_options":{"include_usage":%v},"messages":[{"role":"user","content":"hi"}]}`, includeUsage)
			resp, got := e.post("/v1/chat/completions", body)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || resp.Header.Get("X-Accel-Buffering") != "no" {
				t.Fatalf("status %d, headers %v: %s", resp.StatusCode, resp.Header, got)
			}
			frames := readFrames(t, got)
			if text(frames) != "the panel's streamed synthesis" {
				t.Errorf("text %q", text(frames))
			}
			first := frames[0]
			if len(first.Choices) != 1 || first.Choices[0].Delta.Role != "assistant" {
				t.Errorf("the first frame is not the role chunk: %+v", first)
			}
			finish := -1
			for i, f := range frames {
				if f.Object != "chat.completion.chunk" || f.Model != "council" || f.ID != first.ID || f.ID == "" {
					t.Errorf("frame %d: %+v", i, f)
				}
				if len(f.Choices) == 0 {
					if !includeUsage || i != len(frames)-1 || f.Usage == nil {
						t.Errorf("frame %d has no choices and is not the last, usage frame", i)
					}
					continue
				}
				if f.Choices[0].FinishReason != nil {
					if finish >= 0 {
						t.Errorf("two frames with finish_reason")
					}
					finish = i
					if *f.Choices[0].FinishReason != "stop" || f.Consortium == nil {
						t.Errorf("finish frame %+v", f)
					}
				} else if f.Consortium != nil {
					t.Errorf("frame %d carries the consortium object without finish_reason", i)
				}
			}
			if finish < 0 {
				t.Fatal("no frame with finish_reason")
			}
			s := frames[finish].Consortium
			if want := []string{"fake/alpha#1:ok", "fake/alpha#2:ok", "fake/beta#1:ok"}; !strings.HasPrefix(s.RunID, "run_") || !slices.Equal(s.statuses(), want) {
				t.Errorf("consortium %+v", s)
			}
			last := frames[len(frames)-1]
			switch {
			case includeUsage && (len(last.Choices) != 0 || last.Usage == nil || *last.Usage != usage || finish != len(frames)-2):
				t.Errorf("last frame %+v, want choices [] and usage %+v after the finish frame", last, usage)
			case !includeUsage && finish != len(frames)-1:
				t.Errorf("frames after the finish frame without include_usage: %+v", frames[finish+1:])
			}
		})
	}
}

func TestConsortiumStreamRunIDHeader(t *testing.T) {
	e := startCouncil(t, councilYAML)
	scriptCouncil(e.fake, "ok")
	resp, got := e.post("/v1/chat/completions", streamBody(councilBody))
	frames := readFrames(t, got)
	s := frames[len(frames)-1].Consortium
	if s == nil || resp.Header.Get("X-Consortium-Run-Id") != s.RunID {
		t.Errorf("X-Consortium-Run-Id %q, consortium %+v", resp.Header.Get("X-Consortium-Run-Id"), s)
	}
}

// filler is prose a slow arbiter would go on writing, so that a call that
// was not cancelled is still running long after it was needed.
func filler(first ...string) []string {
	out := append([]string(nil), first...)
	for range 40 {
		out = append(out, " more")
	}
	return out
}

func TestConsortiumCancelledRoundNeverLeaks(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			inBubble(t, councilConfig("members: [{model: fake/alpha}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 2"), func(t *testing.T, e *memEnv) {
				e.fake.Handle("judge", byRound(
					upstreamtest.Reply{Chunks: filler("<dissent>d</dissent><confidence>0.3</confidence><needs_iteration>true</needs_iteration>"+
						"<refinement_areas>r</refinement_areas>", "<synthesis>", "SECRET-", "ROUND-1"), ChunkDelay: time.Second},
					upstreamtest.Reply{Content: verdict("0.9", "the final answer")}))
				body := councilBody
				if stream {
					body = streamBody(body)
				}
				resp, got := e.post(body)
				if resp.StatusCode != 200 || bytes.Contains(got, []byte("SECRET")) || bytes.Contains(got, []byte("ROUND-1")) {
					t.Fatalf("status %d: the cancelled round reached the client:\n%s", resp.StatusCode, got)
				}
				var content string
				var s *summary
				if stream {
					frames := readFrames(t, got)
					content, s = text(frames), frames[len(frames)-1].Consortium
				} else {
					c := decodeCompletion(t, resp, got)
					content, s = c.Choices[0].Message.Content, c.Consortium
				}
				if content != "the final answer" || s == nil || s.Iterations != 2 {
					t.Errorf("content %q, consortium %+v", content, s)
				}
				// In memory the arbiter cannot run ahead of the proxy
				// reading it: its round-1 call is still writing, a second a
				// chunk in fake time, when the synthesis opens, and the
				// cancellation must reach it.
				waitIdle(t, e.fake)
				if judge := e.fake.RequestsFor("judge"); len(judge) != 2 || !judge[0].Cancelled {
					t.Errorf("the round-1 arbiter call was not cancelled (%d calls)", len(judge))
				}
			})
		})
	}
}

func waitIdle(t *testing.T, fake *upstreamtest.Server) {
	t.Helper()
	ctx := within(t, 5*time.Second)
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatalf("%d upstream calls still in flight: %v", fake.InFlight(), err)
	}
}

func TestConsortiumBoundsTheSynthesis(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		chunks       []string
		want, finish string
	}{
		{"max_tokens", `"max_tokens":3`, []string{"<synthesis>abcdefgh", "ijklmnopqrstuvwxyz</synthesis>"}, "abcdefghijkl", "length"},
		{"stop split across chunks", `"stop":["STOP"]`, []string{"<synthesis>before S", "T", "OP after</synthesis>"}, "before ", "stop"},
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				e := startCouncil(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
				e.fake.Script("judge", upstreamtest.Reply{Chunks: append([]string{"<confidence>0.9</confidence>"}, tc.chunks...)})
				body := `{"model":"council",` + tc.params + `,"messages":[{"role":"user","content":"hi"}]}`
				if stream {
					body = streamBody(body)
				}
				resp, got := e.post("/v1/chat/completions", body)
				var content, finish string
				if stream {
					frames := readFrames(t, got)
					content = text(frames)
					for _, f := range frames {
						if len(f.Choices) > 0 && f.Choices[0].FinishReason != nil {
							finish = *f.Choices[0].FinishReason
						}
					}
				} else {
					c := decodeCompletion(t, resp, got)
					content, finish = c.Choices[0].Message.Content, c.Choices[0].FinishReason
				}
				if content != tc.want || finish != tc.finish {
					t.Errorf("content %q (%s), want %q (%s)", content, finish, tc.want, tc.finish)
				}
				if bytes.Contains(got, []byte("STOP")) || bytes.Contains(got, []byte("OP after")) || bytes.Contains(got, []byte("mnop")) {
					t.Errorf("text past the client's bound was sent:\n%s", got)
				}
				if judge := e.fake.RequestsFor("judge")[0]; judge.Chat.MaxTokens != nil || judge.Chat.Stop != nil {
					t.Errorf("the client's bound reached the arbiter: %s", judge.Body)
				}
			})
		}
	}
}

func TestConsortiumJSONOutput(t *testing.T) {
	e := startCouncil(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
	e.fake.Script("alpha", upstreamtest.Reply{Content: `{"answer": 42}`})
	e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "```json\n{\"answer\": 42}\n```")})
	const body = `{"model":"council","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"json please"}]}`
	for _, stream := range []bool{false, true} {
		b := body
		if stream {
			b = streamBody(body)
		}
		resp, got := e.post("/v1/chat/completions", b)
		content := ""
		if stream {
			content = text(readFrames(t, got))
		} else {
			content = decodeCompletion(t, resp, got).Choices[0].Message.Content
		}
		if content != `{"answer": 42}` {
			t.Errorf("stream=%v: content %q", stream, content)
		}
	}
	if rf := e.fake.RequestsFor("alpha")[0].Chat.ResponseFormat; rf == nil || rf.Type != "json_object" {
		t.Errorf("the member did not get response_format: %s", e.fake.RequestsFor("alpha")[0].Body)
	}
}

func TestConsortiumMemberStatuses(t *testing.T) {
	const council = `
members: [{model: fake/fast}, {model: fake/slow}, {model: fake/bad}]
arbiter: {model: fake/judge}
max_iterations: 1
member_timeout: 300ms
`
	inBubble(t, councilConfig(council), func(t *testing.T, e *memEnv) {
		e.fake.Script("fast", upstreamtest.Reply{Content: "in time"})
		e.fake.Script("slow", upstreamtest.Reply{Content: "too late", Delay: time.Minute})
		e.fake.Script("bad", upstreamtest.Reply{Status: 503, Error: "overloaded right now"})
		e.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "from the fast one")})
		resp, body := e.post(councilBody)
		c := decodeCompletion(t, resp, body)
		if want := []string{"fake/fast#1:ok", "fake/slow#1:timeout", "fake/bad#1:error"}; !slices.Equal(c.Consortium.statuses(), want) {
			t.Errorf("members %v, want %v", c.Consortium.statuses(), want)
		}
		if msg := c.Consortium.Members[2].Error; !strings.Contains(msg, "503") || !strings.Contains(msg, "overloaded right now") {
			t.Errorf("the failed member's error %q", msg)
		}
		if c.Choices[0].Message.Content != "from the fast one" {
			t.Errorf("content %q", c.Choices[0].Message.Content)
		}
		// member_timeout cancelled the slow call, in fake time, before its
		// minute was up.
		synctest.Wait()
		if slow := e.fake.RequestsFor("slow"); len(slow) != 1 || !slow[0].Cancelled || e.fake.InFlight() != 0 {
			t.Errorf("the slow member's call was not cancelled: %+v", slow)
		}
	})
}

func TestConsortiumErrors(t *testing.T) {
	const members = "members: [{model: fake/good}, {model: fake/bad}]\narbiter: {model: fake/judge}\n"
	for _, tc := range []struct {
		name, config, body string
		scripts            map[string]upstreamtest.Reply
		status             int
		typ, param         string
		mentions           []string
	}{
		{name: "too few answers", config: members + "min_answers: 2", body: councilBody,
			scripts: map[string]upstreamtest.Reply{"good": {Content: "fine"}, "bad": {Status: 503, Error: "overloaded right now"}},
			status:  502, typ: "upstream_error", mentions: []string{"fake/bad", "503", "overloaded right now"}},
		{name: "every member timed out", config: members + "member_timeout: 100ms", body: councilBody,
			scripts: map[string]upstreamtest.Reply{"good": {Delay: time.Minute}, "bad": {Hang: true}},
			status:  504, typ: "timeout", mentions: []string{"fake/good", "fake/bad"}},
		{name: "arbiter fails", config: members, body: councilBody,
			scripts: map[string]upstreamtest.Reply{"judge": {Status: 500, Error: "the judge fell over"}},
			status:  502, typ: "upstream_error", mentions: []string{"fake/judge", "500", "the judge fell over"}},
		{name: "synthesis not JSON", config: members, body: `{"model":"council","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}`,
			scripts: map[string]upstreamtest.Reply{"judge": {Content: verdict("0.9", "not json at all")}},
			status:  502, typ: "upstream_error", mentions: []string{"JSON"}},
		{name: "n", config: members, body: `{"model":"council","n":2,"messages":[{"role":"user","content":"hi"}]}`,
			status: 400, typ: "invalid_request_error", param: "n"},
		{name: "tools", config: members, body: `{"model":"council","tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"messages":[{"role":"user","content":"hi"}]}`,
			status: 400, typ: "invalid_request_error", param: "tools", mentions: []string{"tools"}},
		{name: "no user message", config: members, body: `{"model":"council","messages":[{"role":"system","content":"be brief"}]}`,
			status: 400, typ: "invalid_request_error", param: "messages"},
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				inBubble(t, councilConfig(tc.config), func(t *testing.T, e *memEnv) {
					scripts := map[string]upstreamtest.Reply{
						"good": {Content: "fine"}, "bad": {Content: "also fine"}, "judge": {Content: verdict("0.9", "ok")},
					}
					maps.Copy(scripts, tc.scripts)
					for model, r := range scripts {
						e.fake.Script(model, r)
					}
					body := tc.body
					if stream {
						body = streamBody(body)
					}
					resp, got := e.post(body)
					var msg, typ string
					if stream && tc.status != 400 {
						// The stream had begun: the role chunk, then an error
						// event, then [DONE].
						frames := readFrames(t, got)
						if resp.StatusCode != 200 || len(frames) != 2 || len(frames[0].Choices) != 1 || frames[0].Choices[0].Delta.Role != "assistant" || frames[1].Error == nil {
							t.Fatalf("status %d, want the role chunk, an error event and [DONE]:\n%s", resp.StatusCode, got)
						}
						msg, typ = frames[1].Error.Message, frames[1].Error.Type
					} else {
						if resp.StatusCode != tc.status {
							t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
						}
						ae := decodeError(t, got)
						msg, typ = ae.Error.Message, ae.Error.Type
						if tc.param != "" && (ae.Error.Param == nil || *ae.Error.Param != tc.param) {
							t.Errorf("param %v, want %s", ae.Error.Param, tc.param)
						}
					}
					if typ != tc.typ {
						t.Errorf("type %q, want %q (%s)", typ, tc.typ, msg)
					}
					for _, s := range tc.mentions {
						if !strings.Contains(msg, s) {
							t.Errorf("message %q does not mention %q", msg, s)
						}
					}
					if tc.status == 400 && len(e.fake.Requests()) != 0 {
						t.Errorf("%d upstream calls for a request the consortium refuses", len(e.fake.Requests()))
					}
					waitIdle(t, e.fake)
				})
			})
		}
	}
}

func TestConsortiumClientDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream bool
		judge  upstreamtest.Reply
		member upstreamtest.Reply
		calls  int      // upstream calls made when the client leaves
		cut    []string // the models whose calls are under way then, and must be cancelled
	}{
		{"while members work", false, upstreamtest.Reply{}, upstreamtest.Reply{Hang: true}, 3, []string{"alpha", "beta"}},
		{"while the arbiter writes", true, upstreamtest.Reply{Chunks: filler("<analysis>"), ChunkDelay: time.Second / 4}, upstreamtest.Reply{Content: "fine"}, 4, []string{"judge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, councilConfig(councilYAML), func(t *testing.T, e *memEnv) {
				e.fake.Script("alpha", tc.member)
				e.fake.Script("beta", tc.member)
				e.fake.Script("judge", tc.judge)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				body := councilBody
				if tc.stream {
					body = streamBody(body)
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					if resp, err := e.send(ctx, http.MethodPost, "/v1/chat/completions", "", body); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
				synctest.Wait()
				under := 0
				for _, model := range tc.cut {
					under += len(e.fake.RequestsFor(model))
				}
				if n, m := len(e.fake.Requests()), e.fake.InFlight(); n != tc.calls || m != under {
					t.Fatalf("%d upstream calls, %d in flight; want %d, those of %v in flight", n, m, tc.calls, tc.cut)
				}
				cancel()
				<-done
				synctest.Wait()
				if n := e.fake.InFlight(); n != 0 {
					t.Fatalf("%d upstream calls still in flight after the client left", n)
				}
				for _, model := range tc.cut {
					for _, r := range e.fake.RequestsFor(model) {
						if !r.Cancelled {
							t.Errorf("a call to %s went on after the client left", model)
						}
					}
				}
			})
		})
	}
}

func TestConsortiumInModels(t *testing.T) {
	e := startCouncil(t, councilYAML)
	resp, body := e.do(http.MethodGet, "/v1/models", "", "")
	var list struct {
		Data []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || len(list.Data) != 2 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if d := list.Data[0]; d.ID != "council" || d.OwnedBy != "consortium" {
		t.Errorf("first model %+v, want the consortium", d)
	}
	if d := list.Data[1]; d.ID != "fake/m1" || d.OwnedBy != "fake" {
		t.Errorf("second model %+v", d)
	}
	resp, body = e.do(http.MethodGet, "/v1/models/council", "", "")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"owned_by":"consortium"`)) {
		t.Errorf("GET /v1/models/council: %d %s", resp.StatusCode, body)
	}
}

func TestConsortiumOpenAIGoClient(t *testing.T) {
	e := startCouncil(t, councilYAML)
	usage := scriptCouncil(e.fake, "a synthesis, streamed to the SDK")
	ctx := within(t, 10*time.Second)
	client := sdkClient(e, "any")
	acc := streamHi(t, ctx, client, "council")
	if acc.Choices[0].Message.Content != "a synthesis, streamed to the SDK" || acc.Model != "council" || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("accumulated %q from %s (%s)", acc.Choices[0].Message.Content, acc.Model, acc.Choices[0].FinishReason)
	}
	if acc.Usage.TotalTokens != int64(usage.TotalTokens) || acc.Usage.PromptTokens != int64(usage.PromptTokens) {
		t.Errorf("usage %+v, want %+v", acc.Usage, usage)
	}

	cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "council",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	if err != nil || cc.Choices[0].Message.Content != "a synthesis, streamed to the SDK" || cc.Usage.TotalTokens != int64(usage.TotalTokens) {
		t.Errorf("completion %+v, %v", cc, err)
	}
}

// TestConsortiumStreamsAtOnce checks that a stream begins before the
// members answer, and that the synthesis reaches the client while the
// arbiter is still writing.
func TestConsortiumStreamsAtOnce(t *testing.T) {
	inBubble(t, councilConfig("members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1"), func(t *testing.T, e *memEnv) {
		release := make(chan struct{})
		e.fake.Handle("alpha", func(*upstreamtest.Request) upstreamtest.Reply {
			select {
			case <-release:
				return upstreamtest.Reply{Content: "fine"}
			case <-time.After(5 * time.Second):
				return upstreamtest.Reply{Status: 500, Error: "the client never saw the role chunk"}
			}
		})
		e.fake.Script("judge", upstreamtest.Reply{
			Chunks:     filler("<confidence>0.9</confidence><synthesis>", "EARLY", "</synthesis>"),
			ChunkDelay: 5 * time.Millisecond,
		})
		resp := e.open(context.Background(), streamBody(councilBody))
		events := newSSEReader(resp.Body)
		next := func() frame {
			t.Helper()
			f, done := events.nextFrame(t)
			if done {
				t.Fatal("[DONE] before the synthesis")
			}
			return f
		}
		// The member has not answered: the role chunk came at once.
		began := time.Now()
		if f := next(); len(f.Choices) != 1 || f.Choices[0].Delta.Role != "assistant" {
			t.Fatalf("first frame %+v", f)
		}
		if took := time.Since(began); took != 0 {
			t.Errorf("the role chunk came after %v, want at once", took)
		}
		close(release)
		f := next()
		if len(f.Choices) != 1 || f.Choices[0].Delta.Content == nil || *f.Choices[0].Delta.Content != "EARLY" {
			t.Fatalf("frame %+v, want the synthesis", f)
		}
		if e.fake.InFlight() < 1 {
			t.Error("the synthesis came after the arbiter's reply had ended")
		}
		for {
			f, done := events.nextFrame(t)
			if done {
				break
			}
			if len(f.Choices) > 0 && f.Choices[0].Delta.Content != nil {
				t.Errorf("content after the synthesis: %+v", f)
			}
		}
	})
}

// TestConsortiumKeepAlive checks that a stream whose members are still
// working gets ": keep-alive" comments, and that the stream is still well
// formed around them.
func TestConsortiumKeepAlive(t *testing.T) {
	keepAlive := func(o *app.Options) { o.KeepAlive = 5 * time.Millisecond }
	inBubble(t, councilConfig(councilYAML), func(t *testing.T, e *memEnv) {
		scriptCouncil(e.fake, "done")
		release := make(chan struct{})
		e.fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply {
			<-release
			return upstreamtest.Reply{Content: "beta's answer"}
		})
		e.fake.Script("beta") // the handler answers beta, not the script

		resp := e.open(context.Background(), streamBody(councilBody))
		events := newSSEReader(resp.Body)
		began := time.Now()
		for comments := 0; comments < 2; {
			ev, err := events.next()
			if err != nil {
				t.Fatalf("stream ended before two keep-alives: %v", err)
			}
			if ev.comment == "keep-alive" {
				comments++
			}
		}
		// One every KeepAlive, in fake time.
		if took := time.Since(began); took != 2*5*time.Millisecond {
			t.Errorf("two keep-alives after %v, want 10ms", took)
		}
		close(release)
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if frames := readFrames(t, rest); text(frames) != "done" {
			t.Fatalf("after the keep-alives: %q", text(frames))
		}
	}, keepAlive)
}

// lastFlush records what a handler had written at each of its flushes.
type lastFlush struct {
	*httptest.ResponseRecorder
	flushed []string
}

func (f *lastFlush) Flush() { f.flushed = append(f.flushed, f.Body.String()) }

// TestStreamEndsWithTheBody: a stream's last events are not flushed by the
// handler but left for its return, when net/http sends them with the end
// of the body in one write: a consortium's finish and [DONE] always, and a
// passthrough's last bytes when they came with the provider's end.
func TestStreamEndsWithTheBody(t *testing.T) {
	whole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer whole.Close()
	fake := upstreamtest.NewServer()
	defer fake.Close()
	scriptCouncil(fake, "the synthesis")
	h := newProxy(t, fake, strings.Replace(councilConfig(councilYAML), "providers:\n", "providers:\n  whole: {base_url: "+whole.URL+", models: [m]}\n", 1))
	for _, tc := range []struct{ name, body string }{
		{"consortium", streamBody(councilBody)},
		{"passthrough", `{"model":"whole/m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &lastFlush{ResponseRecorder: httptest.NewRecorder()}
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(tc.body)))
			if !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
				t.Fatalf("status %d, body %q", rec.Code, rec.Body)
			}
			for _, f := range rec.flushed {
				if strings.Contains(f, "[DONE]") {
					t.Errorf("the handler flushed [DONE] itself: %q", f)
				}
			}
		})
	}
}
