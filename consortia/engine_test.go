package consortia_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

const hello = `{"model":"council","messages":[{"role":"user","content":"what is the answer?"}]}`

// verdict is an arbiter reply in the default order with the given
// confidence and synthesis.
func verdict(confidence, synthesis string) string {
	return "<analysis>The answers agree.</analysis>\n<dissent>none</dissent>\n<confidence>" + confidence +
		"</confidence>\n<needs_iteration>false</needs_iteration>\n<refinement_areas>none</refinement_areas>\n" +
		"<ranking>A</ranking>\n<synthesis>" + synthesis + "</synthesis>"
}

// roles counts the messages of a request with role.
func roles(r upstreamtest.Request, role string) int {
	n := 0
	for _, m := range r.Chat.Messages {
		if m.Role == role {
			n++
		}
	}
	return n
}

// statuses lists the consortium object's members as "model#instance:status".
func statuses(s consortia.Summary) []string {
	var out []string
	for _, m := range s.Members {
		out = append(out, fmt.Sprintf("%s#%d:%s", m.Model, m.Instance, m.Status))
	}
	return out
}

func TestFanOutCountsAndUsage(t *testing.T) {
	const council = `
members:
  - model: fake/alpha
    count: 2
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 2
`
	inBubble(t, council, func(t *testing.T, f *fixture) {
		// Round-1 members answer only once all three have asked, so the test
		// fails at the (fake) deadline unless the instances run at once.
		member := func(u openai.Usage) upstreamtest.Responder {
			return func(r *upstreamtest.Request) upstreamtest.Reply {
				if roles(*r, "assistant") == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := f.fake.WaitRequests(ctx, 3); err != nil {
						return upstreamtest.Reply{Status: 500, Error: "the members were not asked at once"}
					}
				}
				return upstreamtest.Reply{Content: "an answer from " + r.Model, Usage: &u}
			}
		}
		f.fake.Handle("alpha", member(openai.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}))
		f.fake.Handle("beta", member(openai.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}))
		judgeUsage := &openai.Usage{PromptTokens: 100, CompletionTokens: 200, TotalTokens: 300}
		// Round 1 writes no synthesis, so its reply is read to the end and its
		// usage counts.
		f.fake.Script("judge",
			upstreamtest.Reply{Content: "<confidence>0.4</confidence><refinement_areas>be precise</refinement_areas>", Usage: judgeUsage},
			upstreamtest.Reply{Content: verdict("0.9", "the synthesis"), Usage: judgeUsage})

		res, _ := f.mustRun(t, hello)
		if res.Synthesis != "the synthesis" {
			t.Errorf("synthesis %q", res.Synthesis)
		}
		for model, perRound := range map[string]int{"alpha": 2, "beta": 1} {
			var rounds [2]int
			for _, r := range f.fake.RequestsFor(model) {
				rounds[min(roles(r, "assistant"), 1)]++
			}
			if rounds != [2]int{perRound, perRound} {
				t.Errorf("%s got %v calls in rounds 1 and 2, want %d each", model, rounds, perRound)
			}
		}
		if n := len(f.fake.RequestsFor("judge")); n != 2 {
			t.Errorf("%d arbiter calls, want 2", n)
		}
		s := res.Run.Summary()
		if want := []string{"fake/alpha#1:ok", "fake/alpha#2:ok", "fake/beta#1:ok"}; !slices.Equal(statuses(s), want) {
			t.Errorf("members %v, want %v", statuses(s), want)
		}
		if s.Iterations != 2 || !strings.HasPrefix(s.RunID, "run_") || s.Strategy != "synthesize" {
			t.Errorf("summary %+v", s)
		}
		// Two rounds of 2 alpha + 1 beta, and two arbiter replies.
		want := openai.Usage{PromptTokens: 2 * (2*1 + 10 + 100), CompletionTokens: 2 * (2*2 + 20 + 200), TotalTokens: 2 * (2*3 + 30 + 300)}
		if res.Usage != want || res.Run.Usage != want {
			t.Errorf("usage %+v (run %+v), want %+v", res.Usage, res.Run.Usage, want)
		}
	})
}

func TestSystemPrompts(t *testing.T) {
	f := newFixture(t, `
system: CONSORTIUM-SYS
members:
  - model: fake/alpha
    system: ALPHA-SYS
  - model: fake/beta
arbiter: {model: fake/judge}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	const body = `{"model":"council","messages":[{"role":"system","content":"CLIENT-SYS"},{"role":"user","content":"hi"},` +
		`{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`
	f.mustRun(t, body)
	client, _ := openai.ParseChatRequest([]byte(body))
	for model, want := range map[string][]string{"alpha": {"CONSORTIUM-SYS", "ALPHA-SYS"}, "beta": {"CONSORTIUM-SYS"}} {
		msgs := f.fake.RequestsFor(model)[0].Chat.Messages
		// The member's system prompts come first; the client's messages
		// follow, all of them, unchanged.
		n := len(msgs) - len(client.Messages)
		if n < 1 {
			t.Fatalf("%s got %d messages: %+v", model, len(msgs), msgs)
		}
		got, _ := json.Marshal(msgs[n:])
		wantClient, _ := json.Marshal(client.Messages)
		if !bytes.Equal(got, wantClient) {
			t.Errorf("%s: the client's messages became %s", model, got)
		}
		var text strings.Builder
		for _, m := range msgs[:n] {
			if m.Role != "system" {
				t.Errorf("%s: a %s message before the client's", model, m.Role)
			}
			text.WriteString(m.Content.String() + "\n")
		}
		prev := -1
		for _, s := range want {
			i := strings.Index(text.String(), s)
			if i <= prev {
				t.Errorf("%s: system prompts %q, want %q in that order", model, text.String(), want)
			}
			prev = i
		}
		if model == "beta" && strings.Contains(text.String(), "ALPHA-SYS") {
			t.Errorf("beta got alpha's system prompt")
		}
	}
}

func TestNoSystemPromptLeavesTheConversationAlone(t *testing.T) {
	f := newFixture(t, `
members: [{model: fake/alpha}]
arbiter: {model: fake/judge}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	f.mustRun(t, hello)
	var sent struct{ Messages json.RawMessage }
	json.Unmarshal(f.fake.RequestsFor("alpha")[0].Body, &sent)
	if want := `[{"role":"user","content":"what is the answer?"}]`; string(sent.Messages) != want {
		t.Errorf("messages %s, want %s", sent.Messages, want)
	}
}

func TestQuorum(t *testing.T) {
	const council = `
members: [{model: fake/fast1}, {model: fake/slow}, {model: fake/fast2}]
arbiter: {model: fake/judge}
max_iterations: 1
quorum: 2
`
	inBubble(t, council, func(t *testing.T, f *fixture) {
		// The fast members answer only once the slow one's call has reached the
		// provider: else the quorum could cancel it before it was sent, and
		// there would be no call to see cancelled.
		fast := func(content string) upstreamtest.Responder {
			return func(*upstreamtest.Request) upstreamtest.Reply {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				f.fake.WaitRequests(ctx, 3)
				return upstreamtest.Reply{Content: content}
			}
		}
		f.fake.Handle("fast1", fast("fast answer one"))
		f.fake.Handle("fast2", fast("fast answer two"))
		f.fake.Script("slow", upstreamtest.Reply{Hang: true})
		f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "from two")})
		res, _ := f.mustRun(t, hello)
		if res.Synthesis != "from two" {
			t.Errorf("synthesis %q", res.Synthesis)
		}
		if want := []string{"fake/fast1#1:ok", "fake/slow#1:cancelled", "fake/fast2#1:ok"}; !slices.Equal(statuses(res.Run.Summary()), want) {
			t.Errorf("members %v, want %v", statuses(res.Run.Summary()), want)
		}
		prompt := f.fake.RequestsFor("judge")[0].LastUserText()
		if !strings.Contains(prompt, "Response B") || strings.Contains(prompt, "Response C") {
			t.Errorf("the arbiter did not start with the two answers:\n%s", prompt)
		}
		// The quorum cancels the slow call at once: in fake time, it has
		// reached the provider by the time everything is blocked again.
		synctest.Wait()
		if slow := f.fake.RequestsFor("slow"); len(slow) != 1 || !slow[0].Cancelled {
			t.Errorf("the slow member's call was not cancelled: %+v", slow)
		}
	})
}

func TestMemberTimeout(t *testing.T) {
	t.Run("some members", func(t *testing.T) {
		const council = `
members: [{model: fake/fast}, {model: fake/slow}]
arbiter: {model: fake/judge}
max_iterations: 1
member_timeout: 300ms
`
		inBubble(t, council, func(t *testing.T, f *fixture) {
			// The slow member would answer an hour later, in fake time.
			f.fake.Script("fast", upstreamtest.Reply{Content: "in time"})
			f.fake.Script("slow", upstreamtest.Reply{Content: "too late", Delay: time.Hour})
			f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "from the fast one")})
			start := time.Now()
			res, _ := f.mustRun(t, hello)
			// The bubble's clock: the arbiter started when member_timeout
			// passed, not when the slow member would have answered.
			if took := time.Since(start); took != 300*time.Millisecond {
				t.Errorf("the run took %v, want member_timeout (300ms)", took)
			}
			s := res.Run.Summary()
			if want := []string{"fake/fast#1:ok", "fake/slow#1:timeout"}; !slices.Equal(statuses(s), want) {
				t.Errorf("members %v, want %v", statuses(s), want)
			}
			if !strings.Contains(s.Members[1].Error, "member_timeout") || s.Members[1].LatencyMs != 300 {
				t.Errorf("timed-out member %+v", s.Members[1])
			}
			if res.Synthesis != "from the fast one" {
				t.Errorf("synthesis %q", res.Synthesis)
			}
			if prompt := f.fake.RequestsFor("judge")[0].LastUserText(); strings.Contains(prompt, "too late") || strings.Contains(prompt, "Response B") {
				t.Errorf("the arbiter saw more than the answer in time:\n%s", prompt)
			}
			// The slow member's call was cancelled, not left to run its hour.
			synctest.Wait()
			if slow := f.fake.RequestsFor("slow"); len(slow) != 1 || !slow[0].Cancelled || f.fake.InFlight() != 0 {
				t.Errorf("the slow member's call was not cancelled: %+v", slow)
			}
		})
	})
	t.Run("every member", func(t *testing.T) {
		const council = `
members: [{model: fake/slow1}, {model: fake/slow2}]
arbiter: {model: fake/judge}
member_timeout: 100ms
`
		inBubble(t, council, func(t *testing.T, f *fixture) {
			f.fake.Script("slow1", upstreamtest.Reply{Hang: true})
			f.fake.Script("slow2", upstreamtest.Reply{Content: "too late", Delay: time.Hour})
			start := time.Now()
			_, deltas, err := f.run(t, hello)
			if !errors.Is(err, consortia.ErrAllTimedOut) || len(deltas) > 0 {
				t.Fatalf("err %v, deltas %q; want ErrAllTimedOut", err, deltas)
			}
			if took := time.Since(start); took != 100*time.Millisecond {
				t.Errorf("the run failed after %v, want member_timeout (100ms)", took)
			}
			for _, s := range []string{"fake/slow1", "fake/slow2"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not name %s", err, s)
				}
			}
			if n := len(f.fake.RequestsFor("judge")); n != 0 {
				t.Errorf("the arbiter was called %d times", n)
			}
		})
	})
}

func TestMinAnswers(t *testing.T) {
	f := newFixture(t, `
members: [{model: fake/good}, {model: fake/bad}, {model: fake/gone}]
arbiter: {model: fake/judge}
min_answers: 2
`)
	f.fake.Script("good", upstreamtest.Reply{Content: "fine"})
	f.fake.Script("bad", upstreamtest.Reply{Status: 503, Error: "overloaded right now"})
	f.fake.Script("gone", upstreamtest.Reply{Drop: true})
	_, _, err := f.run(t, hello)
	if !errors.Is(err, consortia.ErrTooFewAnswers) || errors.Is(err, consortia.ErrAllTimedOut) {
		t.Fatalf("err %v, want ErrTooFewAnswers", err)
	}
	for _, s := range []string{"fake/bad", "503", "overloaded right now", "fake/gone", "1 of 3", "2 needed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "fake/good") {
		t.Errorf("%q names the member that answered", err)
	}
	// The run record as far as it went comes with the error, for the
	// caller's log line and run store.
	var re *consortia.RunError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Run.ID, "run_") || re.Run.Consortium != "council" || re.Run.Iterations != 1 {
		t.Fatalf("err %v carries no run record", err)
	}
	if got, want := statuses(re.Run.Summary()), []string{"fake/good#1:ok", "fake/bad#1:error", "fake/gone#1:error"}; !slices.Equal(got, want) {
		t.Errorf("the record's members %v, want %v", got, want)
	}
	if n := len(f.fake.RequestsFor("judge")); n != 0 {
		t.Errorf("the arbiter was called %d times", n)
	}
}

func TestSynthesisBounds(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		chunks       []string
		want, finish string
	}{
		{"max_tokens cuts", `"max_tokens":2`, []string{"<synthesis>abcdef", "ghijklmnop</synthesis>"}, "abcdefgh", "length"},
		{"max_completion_tokens cuts", `"max_completion_tokens":1`, []string{"<synthesis>abcdefgh</synthesis>"}, "abcd", "length"},
		{"max_tokens leaves room", `"max_tokens":100`, []string{"<synthesis>short</synthesis>"}, "short", "stop"},
		// 4*(2^62+1) wraps to 4: a huge limit must bound nothing, not four characters.
		{"max_tokens past int", `"max_tokens":4611686018427387905`, []string{"<synthesis>abcdefgh</synthesis>"}, "abcdefgh", "stop"},
		{"max_tokens cuts multi-byte runes", `"max_tokens":1`, strings.Split("<synthesis>日本語日本語</synthesis>", ""), "日本語日", "length"},
		{"multi-byte stop", `"stop":"。"`, strings.Split("<synthesis>日本語。後</synthesis>", ""), "日本語", "stop"},
		{"stop", `"stop":"STOP"`, []string{"<synthesis>before STOP after</synthesis>"}, "before ", "stop"},
		{"stop split across chunks", `"stop":["zzz","STOP"]`, []string{"<synthesis>before ST", "OP after</synthesis>"}, "before ", "stop"},
		{"stop one byte at a time", `"stop":"STOP"`, strings.Split("<synthesis>before STOP after</synthesis>", ""), "before ", "stop"},
		{"stop near miss", `"stop":"STOP"`, []string{"<synthesis>ST", "OOP then ST", "</synthesis>"}, "STOOP then ST", "stop"},
		{"earliest stop wins", `"stop":["\n\n","END"]`, []string{"<synthesis>line one E", "ND\n\nline two</synthesis>"}, "line one ", "stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}\nmax_iterations: 1")
			f.fake.Script("judge", upstreamtest.Reply{Chunks: append([]string{"<confidence>0.9</confidence>"}, tc.chunks...)})
			res, deltas := f.mustRun(t, `{"model":"council",`+tc.params+`,"messages":[{"role":"user","content":"hi"}]}`)
			if res.Synthesis != tc.want || res.FinishReason != tc.finish {
				t.Errorf("synthesis %q (%s), want %q (%s); deltas %q", res.Synthesis, res.FinishReason, tc.want, tc.finish, deltas)
			}
			// The client's bounds are the synthesis's, never the
			// arbiter's: its analysis must not be cut.
			judge := f.fake.RequestsFor("judge")[0]
			if judge.Chat.MaxTokens != nil || judge.Chat.MaxCompletionTokens != nil || judge.Chat.Stop != nil {
				t.Errorf("the client's bounds reached the arbiter: %s", judge.Body)
			}
			if member := f.fake.RequestsFor("alpha")[0]; !bytes.Contains(member.Body, []byte(strings.SplitN(tc.params, ":", 2)[0])) {
				t.Errorf("the members did not get %s: %s", tc.params, member.Body)
			}
		})
	}
}

func TestParams(t *testing.T) {
	f := newFixture(t, `
members:
  - model: fake/cold
    params: {temperature: 0.1, top_p: 0.5}
  - model: fake/warm
arbiter:
  model: fake/judge
  params: {temperature: 0, max_tokens: 4000}
max_iterations: 1
`)
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	f.mustRun(t, `{"model":"council","temperature":0.9,"max_tokens":50,"seed":7,"messages":[{"role":"user","content":"hi"}]}`)
	get := func(model string) *openai.ChatRequest { return f.fake.RequestsFor(model)[0].Chat }
	cold, warm, judge := get("cold"), get("warm"), get("judge")
	if cold.Temperature == nil || *cold.Temperature != 0.1 || cold.TopP == nil || *cold.TopP != 0.5 {
		t.Errorf("cold member: %s", f.fake.RequestsFor("cold")[0].Body)
	}
	if warm.Temperature == nil || *warm.Temperature != 0.9 || warm.TopP != nil {
		t.Errorf("warm member: %s", f.fake.RequestsFor("warm")[0].Body)
	}
	for _, m := range []*openai.ChatRequest{cold, warm} {
		if m.MaxTokens == nil || *m.MaxTokens != 50 || m.Seed == nil || *m.Seed != 7 {
			t.Errorf("a member lost the client's max_tokens or seed: %+v", m)
		}
	}
	if judge.Temperature == nil || *judge.Temperature != 0 || judge.MaxTokens == nil || *judge.MaxTokens != 4000 || judge.Seed != nil {
		t.Errorf("arbiter: %s", f.fake.RequestsFor("judge")[0].Body)
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t, "members: [{model: fake/alpha}]\narbiter: {model: fake/judge}")
	f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.9", "ok")})
	for _, tc := range []struct{ name, body, param string }{
		{"n", `{"model":"council","n":2,"messages":[{"role":"user","content":"hi"}]}`, "n"},
		{"tools", `{"model":"council","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, "tools"},
		{"no user message", `{"model":"council","messages":[{"role":"system","content":"be nice"}]}`, "messages"},
		// A bound below one token is the client's mistake: members must
		// not be asked with it (issue 14, item 7).
		{"max_tokens zero", `{"model":"council","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"max_tokens negative", `{"model":"council","max_tokens":-5,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"max_completion_tokens zero", `{"model":"council","max_completion_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_completion_tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.run(t, tc.body)
			var fe *openai.FieldError
			if !errors.As(err, &fe) || fe.Param != tc.param || fe.Message == "" {
				t.Errorf("err %v, want a FieldError for %s", err, tc.param)
			}
		})
	}
	if n := len(f.fake.Requests()); n != 0 {
		t.Errorf("%d upstream calls for requests the consortium cannot serve", n)
	}
	for _, body := range []string{
		`{"model":"council","n":1,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"council","max_tokens":1,"max_completion_tokens":1,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		if _, _, err := f.run(t, body); err != nil {
			t.Errorf("%s refused: %v", body, err)
		}
	}
}

func TestClientCancelStopsEveryCall(t *testing.T) {
	inBubble(t, "members: [{model: fake/alpha, count: 2}, {model: fake/beta}]\narbiter: {model: fake/judge}", func(t *testing.T, f *fixture) {
		f.fake.Script("alpha", upstreamtest.Reply{Hang: true})
		f.fake.Script("beta", upstreamtest.Reply{Hang: true})
		req, _ := openai.ParseChatRequest([]byte(hello))
		ctx, cancel := context.WithCancel(context.Background())
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err = f.engine.Run(ctx, req, nil)
		}()
		// Every call has reached the provider, and hangs there.
		synctest.Wait()
		if n := f.fake.InFlight(); n != 3 {
			t.Fatalf("%d calls in flight, want 3", n)
		}
		cancel()
		<-done
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		synctest.Wait()
		if n := f.fake.InFlight(); n != 0 {
			t.Errorf("%d calls still in flight after the client left", n)
		}
		for _, r := range f.fake.Requests() {
			if !r.Cancelled {
				t.Errorf("%s call not cancelled", r.Model)
			}
		}
	})
}

func TestSummary(t *testing.T) {
	// On the bubble's clock the members answer in no time: latency_ms is
	// 0, and must still be there (issue 14, item 13).
	inBubble(t, "members: [{model: fake/alpha, count: 2}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 1", func(t *testing.T, f *fixture) {
		f.fake.Script("beta", upstreamtest.Reply{Status: 400, Error: "no"})
		f.fake.Script("judge", upstreamtest.Reply{Content: verdict("0.75", "ok")})
		res, _ := f.mustRun(t, hello)
		b, err := json.Marshal(res.Run.Summary())
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			RunID      string   `json:"run_id"`
			Strategy   string   `json:"strategy"`
			Iterations int      `json:"iterations"`
			Confidence *float64 `json:"confidence"`
			Members    []map[string]any
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.RunID != res.Run.ID || got.Strategy != "synthesize" || got.Iterations != 1 || got.Confidence == nil || *got.Confidence != 0.75 {
			t.Errorf("consortium object %s", b)
		}
		if len(got.Members) != 3 {
			t.Fatalf("members %s", b)
		}
		for _, m := range got.Members {
			if l, ok := m["latency_ms"]; !ok || l != 0.0 {
				t.Errorf("member %v: latency_ms missing or not 0 in %s", m, b)
			}
		}
		if s := got.Members[2]; s["status"] != "error" || s["error"] == "" {
			t.Errorf("the failed member reads %v", s)
		}
	})
}

// roleCaller records the role (upstream.RoleOf) of each call it passes on.
type roleCaller struct {
	consortia.Caller
	mu    sync.Mutex
	roles map[string][]string // by model
}

func (c *roleCaller) note(ctx context.Context, model string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roles[model] = append(c.roles[model], upstream.RoleOf(ctx))
}

func (c *roleCaller) Chat(ctx context.Context, model string, req *openai.ChatRequest) (*openai.ChatCompletion, error) {
	c.note(ctx, model)
	return c.Caller.Chat(ctx, model, req)
}

func (c *roleCaller) ChatStream(ctx context.Context, model string, req *openai.ChatRequest) iter.Seq2[*openai.ChatCompletionChunk, error] {
	c.note(ctx, model)
	return c.Caller.ChatStream(ctx, model, req)
}

func TestCallsCarryTheirRole(t *testing.T) {
	fake := upstreamtest.NewServer()
	t.Cleanup(fake.Close)
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	rc := &roleCaller{Caller: p, roles: map[string][]string{}}
	cfg := consortiumConfig(t, "members: [{model: fake/alpha, fallbacks: [fake/spare]}, {model: fake/beta}]\narbiter: {model: fake/judge}\nmax_iterations: 2")
	e, err := consortia.New("council", cfg, map[string]consortia.Caller{"fake": rc})
	if err != nil {
		t.Fatal(err)
	}
	fake.Script("alpha", upstreamtest.Reply{Status: 400, Error: "no"})
	fake.Script("judge", upstreamtest.Reply{Content: verdict("0.1", "S1")}, upstreamtest.Reply{Content: verdict("0.9", "S2")})
	req, _ := openai.ParseChatRequest([]byte(hello))
	if _, err := e.Run(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"alpha": {"member", "member"}, "spare": {"member", "member"}, "beta": {"member", "member"},
		"judge": {"arbiter", "arbiter"},
	}
	if !reflect.DeepEqual(rc.roles, want) {
		t.Errorf("roles %v, want %v", rc.roles, want)
	}
}

func TestNewRefuses(t *testing.T) {
	p, err := upstream.New(upstream.Config{Name: "fake", Type: "openai", BaseURL: "http://fake.invalid/v1"})
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]consortia.Caller{"fake": p}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown strategy", "strategy: ballot\nmembers: [{model: fake/a}]\narbiter: {model: fake/j}", `strategy "ballot" is not built (built: cascade, rank, synthesize, vote)`},
		{"synthesize without an arbiter", "members: [{model: fake/a}]", "needs members and an arbiter"},
		{"synthesize without members", "arbiter: {model: fake/j}", "needs members and an arbiter"},
		{"a member of an unknown provider", "members: [{model: nope/a}]\narbiter: {model: fake/j}", `"nope/a" names no configured provider`},
		{"an arbiter of an unknown provider", "members: [{model: fake/a}]\narbiter: {model: nope/j}", `"nope/j" names no configured provider`},
		{"an arbiter prompt that names no field", "members: [{model: fake/a}]\narbiter: {model: fake/j, prompt: '{{.Question}}'}", "arbiter.prompt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consortia.New("council", consortiumConfig(t, tc.body), callers)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "council") {
				t.Errorf("New: %v, want an error naming council and %q", err, tc.want)
			}
		})
	}
	if _, err := consortia.New("council", consortiumConfig(t, "strategy: synthesize\nmembers: [{model: fake/a}]\narbiter: {model: fake/j}"), callers); err != nil {
		t.Errorf("strategy synthesize refused: %v", err)
	}
}
