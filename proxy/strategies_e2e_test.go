package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/app"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// The strategies end to end (DESIGN.md, "Strategies", "Responses",
// "Streaming", "Conversation state"): the real server built from YAML in
// front of the fake provider, every strategy asked as JSON and as a
// stream, its usage summed over every upstream call (members, judges,
// arbiter, tiers), its run record read back, its conversation continued.

// strategiesYAML holds one consortium per strategy and variant. The
// models are the fake's: members alpha, beta, gamma (and q1..q3 for the
// cascade's cheap tier, big for its last), judges judge1 and judge2, and
// arbiter.
const strategiesYAML = `
providers:
  fake:
    base_url: {{FAKE}}
    timeout: 5s
    idle_timeout: 5s
    max_retries: 0
consortia:
  ranked:
    strategy: rank
    members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
    judges: [{model: fake/judge1}, {model: fake/judge2, weight: 3}]
  distilled:
    strategy: rank
    then: synthesize
    members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
    judges: [{model: fake/judge1}, {model: fake/judge2}]
    arbiter: {model: fake/arbiter}
  voted:
    strategy: vote
    members: [{model: fake/alpha}, {model: fake/beta}, {model: fake/gamma}]
  tied:
    strategy: vote
    tie_break: judge
    members: [{model: fake/alpha}, {model: fake/beta}]
    judges: [{model: fake/judge1}]
  tied-arbiter:
    strategy: vote
    tie_break: judge
    members: [{model: fake/alpha}, {model: fake/beta}]
    arbiter: {model: fake/arbiter}
  council:
    members: [{model: fake/alpha}]
    arbiter: {model: fake/arbiter}
    max_iterations: 1
  quick:
    strategy: vote
    members: [{model: fake/q1}, {model: fake/q2}, {model: fake/q3}]
  panel:
    strategy: rank
    members: [{model: fake/alpha}, {model: fake/beta}]
    judges: [{model: fake/judge1}, {model: fake/judge2}]
  tiered:
    strategy: cascade
    tiers: [quick, panel, fake/big]
    escalate_below: 0.8
  ladder:
    strategy: cascade
    tiers: [council, ranked]
    escalate_below: 0.8
`

// tokens gives each fake model a usage of its own (prompt k, completion
// 2k, total 3k), powers of two so that a sum tells which calls it holds.
var tokens = map[string]int{
	"alpha": 1, "beta": 2, "gamma": 4, "judge1": 8, "judge2": 16, "arbiter": 32,
	"q1": 64, "q2": 128, "q3": 256, "big": 512,
}

func usageOf(model string) *wire.Usage {
	k := tokens[model]
	return &wire.Usage{PromptTokens: k, CompletionTokens: 2 * k, TotalTokens: 3 * k}
}

// members are the fake models that answer as members (or a cascade's
// model tier); the others judge or arbitrate.
var memberModels = []string{"alpha", "beta", "gamma", "q1", "q2", "q3", "big"}

// stratEnv is a proxy serving strategiesYAML, whose fake models answer
// through handlers that report usageOf and can be held.
type stratEnv struct {
	*env
	mu      sync.Mutex
	gates   map[string]chan struct{}
	failing map[string]bool // models that answer 500, without usage
}

func startStrategies(t *testing.T) *stratEnv {
	t.Helper()
	e := start(t, strategiesYAML, func(o *app.Options) { o.KeepAlive = 5 * time.Millisecond })
	return &stratEnv{env: e, gates: map[string]chan struct{}{}, failing: map[string]bool{}}
}

// answer makes model answer with fn's reply, carrying the model's usage
// unless it is an error.
func (s *stratEnv) answer(model string, fn upstreamtest.Responder) {
	s.fake.Handle(model, func(r *upstreamtest.Request) upstreamtest.Reply {
		s.mu.Lock()
		gate := s.gates[model]
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		reply := fn(r)
		if reply.Status < 400 {
			reply.Usage = usageOf(model)
		}
		return reply
	})
}

// says makes each model (name, text, name, text ...) answer with its
// text.
func (s *stratEnv) says(pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		content := pairs[i+1]
		s.answer(pairs[i], func(*upstreamtest.Request) upstreamtest.Reply { return upstreamtest.Reply{Content: content} })
	}
}

// fail makes each model answer 500, reporting no usage.
func (s *stratEnv) fail(models ...string) {
	for _, m := range models {
		s.mu.Lock()
		s.failing[m] = true
		s.mu.Unlock()
		s.answer(m, func(*upstreamtest.Request) upstreamtest.Reply {
			return upstreamtest.Reply{Status: http.StatusInternalServerError, Error: m + " is down"}
		})
	}
}

// hold makes model's calls wait until the returned release is called
// (or the test ends).
func (s *stratEnv) hold(t *testing.T, model string) (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gates[model] = gate
	s.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.gates, model)
			s.mu.Unlock()
			close(gate)
		})
	}
	t.Cleanup(release) // runs before the fake's Close, which waits for held calls
	return release
}

// judgeBy is a judge that ranks the answers it is shown in the order of
// prefs (answer texts, best first; texts it does not know last), whatever
// labels and order the proxy gave it. It keeps its replies and prompts.
type judgeBy struct {
	name    string
	prefs   []string
	mu      sync.Mutex
	replies []string
	prompts []string
}

// shownRe finds the answers of a judge or arbiter prompt: "### Response
// B" (with a weight, for the arbiter, when weights differ), a blank line,
// the answer.
var shownRe = regexp.MustCompile(`(?m)^### Response ([A-Z]+)[^\n]*\n\n(.*)$`)

// shown maps each label of a prompt to the answer it stands for.
func shown(prompt string) map[string]string {
	out := map[string]string{}
	for _, m := range shownRe.FindAllStringSubmatch(prompt, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func (j *judgeBy) reply(r *upstreamtest.Request) upstreamtest.Reply {
	// The prompt is the first message: a judge asked again has its reply
	// and the re-ask after it.
	prompt := r.Chat.Messages[0].Content.String()
	answers := shown(prompt)
	labels := make([]string, 0, len(answers))
	for l := range answers {
		labels = append(labels, l)
	}
	rank := func(l string) int {
		if i := slices.Index(j.prefs, answers[l]); i >= 0 {
			return i
		}
		return len(j.prefs)
	}
	slices.SortFunc(labels, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	reply := fmt.Sprintf("<critique>%s compared %d answers</critique>\n<ranking>%s</ranking>", j.name, len(labels), strings.Join(labels, " > "))
	j.mu.Lock()
	j.replies = append(j.replies, reply)
	j.prompts = append(j.prompts, prompt)
	j.mu.Unlock()
	return upstreamtest.Reply{Content: reply}
}

func (j *judgeBy) sent(reply string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Contains(j.replies, reply)
}

// judges makes model judge by prefs.
func (s *stratEnv) judges(model string, prefs ...string) *judgeBy {
	j := &judgeBy{name: model, prefs: prefs}
	s.answer(model, j.reply)
	return j
}

// outcome is the consortium object with every strategy's fields.
type outcome struct {
	RunID          string   `json:"run_id"`
	ConversationID string   `json:"conversation_id"`
	Strategy       string   `json:"strategy"`
	Iterations     int      `json:"iterations"`
	Confidence     *float64 `json:"confidence"`
	Scores         []struct {
		Model    string  `json:"model"`
		Instance int     `json:"instance"`
		Score    float64 `json:"score"`
		Place    int     `json:"place"`
	} `json:"scores"`
	Votes []struct {
		Answer  string   `json:"answer"`
		Weight  float64  `json:"weight"`
		Members []string `json:"members"`
	} `json:"votes"`
	Agreement *float64 `json:"agreement"`
	Tiers     []struct {
		Tier       string   `json:"tier"`
		Confidence *float64 `json:"confidence"`
		Escalated  bool     `json:"escalated"`
	} `json:"tiers"`
	Members []struct {
		Model    string `json:"model"`
		Instance int    `json:"instance"`
		Status   string `json:"status"`
	} `json:"members"`
}

// tierList is the tiers as "name:confidence:escalated".
func (o *outcome) tierList() []string {
	var out []string
	for _, t := range o.Tiers {
		c := "null"
		if t.Confidence != nil {
			c = fmt.Sprintf("%.3f", *t.Confidence)
		}
		out = append(out, fmt.Sprintf("%s:%s:%v", t.Tier, c, t.Escalated))
	}
	return out
}

// runRecord is the run record GET /v1/consortium/runs/{id} returns, as
// far as these tests read it.
type runRecord struct {
	RunID          string     `json:"run_id"`
	Consortium     string     `json:"consortium"`
	ConversationID string     `json:"conversation_id"`
	Strategy       string     `json:"strategy"`
	Usage          wire.Usage `json:"usage"`
	Rounds         []struct {
		Members []struct {
			Model   string `json:"model"`
			Content string `json:"content"`
			Status  string `json:"status"`
		} `json:"members"`
		Arbiter *struct {
			Model string `json:"model"`
			Reply string `json:"reply"`
		} `json:"arbiter"`
		Judges []struct {
			Model         string      `json:"model"`
			Group         string      `json:"group"`
			Reply         string      `json:"reply"`
			Rejected      string      `json:"rejected"`
			Retries       int         `json:"retries"`
			RankedMembers []string    `json:"ranked_members"`
			Error         string      `json:"error"`
			Usage         *wire.Usage `json:"usage"`
		} `json:"judges"`
		Tiers []tierRecord `json:"tiers"`
	} `json:"rounds"`
}

// tierRecord is one tier a cascade tried, in its run record: the tier's
// own run, or its provider/model call.
type tierRecord struct {
	Tier      string     `json:"tier"`
	Escalated bool       `json:"escalated"`
	Error     string     `json:"error"`
	Run       *runRecord `json:"run"`
	Call      *struct {
		Model   string `json:"model"`
		Content string `json:"content"`
	} `json:"call"`
}

// asked is one request to a consortium and what came of it.
type asked struct {
	content string
	usage   wire.Usage
	outcome outcome
	conv    string // X-Consortium-Conversation
	// calls counts the upstream calls the request made, per model, and
	// spent sums their usage, as the fake reported it.
	calls map[string]int
	spent wire.Usage
	// upstream are those calls.
	upstream []upstreamtest.Request
}

// ask sends messages (a JSON array) to the consortium model, as JSON or,
// with stream, as a stream asking for usage; conv, when set, is the
// conversation header. A stream is checked frame by frame (see
// checkStream); hold, when set, is a member model held until the role
// chunk and a keep-alive have arrived, so that they are shown to go out
// at once.
func (s *stratEnv) ask(t *testing.T, model, messages string, stream bool, conv, hold string) asked {
	t.Helper()
	before := len(s.fake.Requests())
	body := fmt.Sprintf(`{"model":%q,"messages":%s}`, model, messages)
	if stream {
		body = fmt.Sprintf(`{"model":%q,"stream":true,"stream_options":{"include_usage":true},"messages":%s}`, model, messages)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if conv != "" {
		req.Header.Set("X-Consortium-Conversation", conv)
	}
	release := func() {}
	if hold != "" {
		release = s.hold(t, hold)
		// A proxy that sends nothing while a member works fails the test
		// (checkStream sees no keep-alive) rather than hanging it.
		defer time.AfterFunc(2*time.Second, release).Stop()
	}
	defer release()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a asked
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: status %d: %s", model, resp.StatusCode, b)
	}
	a.conv = resp.Header.Get("X-Consortium-Conversation")
	var raw json.RawMessage
	if stream {
		a.content, a.usage, raw = checkStream(t, resp, model, hold != "", release)
	} else {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		c := decodeCompletion(t, resp, b)
		var whole struct {
			Consortium json.RawMessage `json:"consortium"`
		}
		if err := json.Unmarshal(b, &whole); err != nil || c.Object != "chat.completion" || c.Model != model ||
			c.Choices[0].Message.Role != "assistant" || c.Choices[0].FinishReason != "stop" || c.Usage == nil {
			t.Fatalf("%s: not a consortium completion: %s (%v)", model, b, err)
		}
		a.content, a.usage, raw = c.Choices[0].Message.Content, *c.Usage, whole.Consortium
	}
	if err := json.Unmarshal(raw, &a.outcome); err != nil || a.outcome.RunID == "" {
		t.Fatalf("%s: consortium object %s (%v)", model, raw, err)
	}
	if got := resp.Header.Get("X-Consortium-Run-Id"); got != a.outcome.RunID {
		t.Errorf("%s: X-Consortium-Run-Id %q, consortium.run_id %q", model, got, a.outcome.RunID)
	}
	a.upstream = s.fake.Requests()[before:]
	a.calls = map[string]int{}
	s.mu.Lock()
	for _, r := range a.upstream {
		a.calls[r.Model]++
		if !s.failing[r.Model] {
			a.spent.Add(*usageOf(r.Model))
		}
	}
	s.mu.Unlock()
	if a.usage != a.spent {
		t.Errorf("%s: usage %+v, want the sum of every upstream call %+v (calls %v)", model, a.usage, a.spent, a.calls)
	}
	return a
}

// checkStream reads a consortium stream as it arrives and checks its
// frames in order (DESIGN, "Streaming" and "Responses"): the role chunk
// first (before any member answered, with a keep-alive after it, when
// held: release is called then), content chunks, the finish chunk with
// the consortium object, the usage chunk with "choices": [], [DONE] and
// nothing after. Every chunk has the stream's id and the consortium's
// name; none but the usage chunk has empty choices. It returns the
// content, the usage and the consortium object.
func checkStream(t *testing.T, resp *http.Response, model string, held bool, release func()) (string, wire.Usage, json.RawMessage) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("%s: Content-Type %q", model, ct)
	}
	r := newSSEReader(resp.Body)
	var (
		shape    []string // each data frame: role, content, finish, usage, DONE
		content  strings.Builder
		usage    wire.Usage
		summary  json.RawMessage
		id       string
		released = !held
	)
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v after %v", model, err, shape)
		}
		if ev.comment == "keep-alive" && !released && len(shape) == 1 {
			// The role chunk and a keep-alive are out while a member is
			// still held.
			released = true
			release()
		}
		if ev.data == "" {
			continue
		}
		if len(shape) > 0 && shape[len(shape)-1] == "DONE" {
			t.Fatalf("%s: %q after [DONE]", model, ev.data)
		}
		if ev.data == "[DONE]" {
			shape = append(shape, "DONE")
			continue
		}
		// The frame, and its consortium object as sent, with every
		// strategy's fields.
		var c frame
		var raw struct {
			Consortium json.RawMessage `json:"consortium"`
		}
		if err := errors.Join(json.Unmarshal([]byte(ev.data), &c), json.Unmarshal([]byte(ev.data), &raw)); err != nil {
			t.Fatalf("%s: bad frame %q: %v", model, ev.data, err)
		}
		if id == "" {
			id = c.ID
		}
		if c.ID != id || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion.chunk" || c.Model != model {
			t.Errorf("%s: frame %s: id, object or model differ from the stream's", model, ev.data)
		}
		if len(c.Choices) == 0 {
			if c.Usage == nil || !strings.Contains(ev.data, `"choices":[]`) || raw.Consortium != nil || c.Error != nil {
				t.Errorf("%s: a frame with empty choices that is not the usage chunk: %s", model, ev.data)
			}
			usage = *c.Usage
			shape = append(shape, "usage")
			continue
		}
		if len(c.Choices) != 1 || c.Choices[0].Index != 0 || c.Usage != nil {
			t.Errorf("%s: frame %s", model, ev.data)
		}
		ch := c.Choices[0]
		switch {
		case ch.Delta.Role == "assistant" && ch.FinishReason == nil && (ch.Delta.Content == nil || *ch.Delta.Content == ""):
			shape = append(shape, "role")
		case ch.Delta.Role == "" && ch.FinishReason == nil && ch.Delta.Content != nil && *ch.Delta.Content != "":
			content.WriteString(*ch.Delta.Content)
			shape = append(shape, "content")
		case ch.Delta.Role == "" && ch.FinishReason != nil && *ch.FinishReason == "stop" && (ch.Delta.Content == nil || *ch.Delta.Content == ""):
			shape = append(shape, "finish")
			summary = raw.Consortium
		default:
			shape = append(shape, "odd: "+ev.data)
		}
		if (raw.Consortium != nil) != (shape[len(shape)-1] == "finish") {
			t.Errorf("%s: consortium object on %s: the finish chunk carries it, and only it", model, ev.data)
		}
	}
	if !released {
		t.Errorf("%s: no keep-alive came right after the role chunk while a member was held", model)
	}
	// role, content..., finish, usage, DONE
	compact := slices.Compact(slices.Clone(shape))
	if !slices.Equal(compact, []string{"role", "content", "finish", "usage", "DONE"}) {
		t.Errorf("%s: frames %q, want role, content chunks, finish, usage, [DONE]", model, shape)
	}
	if n := len(shape); n < 2 || slices.Index(shape, "role") != 0 || strings.Count(strings.Join(shape, ","), "role") != 1 {
		t.Errorf("%s: frames %q: the role chunk first, once", model, shape)
	}
	return content.String(), usage, summary
}

// record fetches the run record of id.
func (s *stratEnv) record(t *testing.T, id string) runRecord {
	t.Helper()
	resp, body := s.do(http.MethodGet, "/v1/consortium/runs/"+id, "", "")
	var rec runRecord
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("run %s: status %d: %s", id, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &rec); err != nil || rec.RunID != id || len(rec.Rounds) == 0 {
		t.Fatalf("run %s: %s (%v)", id, body, err)
	}
	return rec
}

func near(p *float64, want float64) bool { return p != nil && math.Abs(*p-want) < 1e-9 }

func wantCalls(t *testing.T, a asked, want map[string]int) {
	t.Helper()
	for m, n := range want {
		if a.calls[m] != n {
			t.Errorf("%d calls to %s, want %d (calls %v)", a.calls[m], m, n, a.calls)
		}
	}
	for m := range a.calls {
		if _, ok := want[m]; !ok {
			t.Errorf("%s was called (calls %v)", m, a.calls)
		}
	}
}

// heldIf is model for a stream, whose member it holds to show the role
// chunk and keep-alives go out at once, and "" for JSON.
func heldIf(stream bool, model string) string {
	if stream {
		return model
	}
	return ""
}

// modes runs f as JSON and as a stream.
func modes(t *testing.T, f func(t *testing.T, stream bool)) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "json", true: "stream"}[stream], func(t *testing.T) { f(t, stream) })
	}
}

const question = `[{"role":"user","content":"which answer?"}]`

// TestStrategyRankE2E: rank with then: winner. Two judges, the second of
// weight 3, disagree; the weighted Borda means decide (gamma .75, beta
// .625, alpha .125), the winner is returned verbatim, the confidence is the
// weighted share of judges that put it first, and usage counts both
// judges. The run record holds each judge's raw reply and ranking.
func TestStrategyRankE2E(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		s := startStrategies(t)
		s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
		j1 := s.judges("judge1", "beta's answer", "alpha's answer", "gamma's answer")
		j2 := s.judges("judge2", "gamma's answer", "beta's answer", "alpha's answer")
		a := s.ask(t, "ranked", question, stream, "", heldIf(stream, "beta"))

		if a.content != "gamma's answer" {
			t.Errorf("content %q, want the winner's answer verbatim", a.content)
		}
		wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1, "judge1": 1, "judge2": 1})
		o := a.outcome
		if o.Strategy != "rank" || !near(o.Confidence, 0.75) || len(o.Scores) != 3 {
			t.Fatalf("consortium object %+v", o)
		}
		want := []struct {
			model string
			score float64
		}{{"fake/gamma", 0.75}, {"fake/beta", 0.625}, {"fake/alpha", 0.125}}
		for i, w := range want {
			sc := o.Scores[i]
			if sc.Model != w.model || sc.Instance != 1 || sc.Place != i+1 || math.Abs(sc.Score-w.score) > 1e-9 {
				t.Errorf("scores[%d] = %+v, want %s score %v place %d", i, sc, w.model, w.score, i+1)
			}
		}

		rec := s.record(t, o.RunID)
		if rec.Strategy != "rank" || rec.Usage != a.spent || len(rec.Rounds[0].Judges) != 2 {
			t.Fatalf("run record %+v", rec)
		}
		for _, jr := range rec.Rounds[0].Judges {
			j, order := j1, []string{"fake/beta#1", "fake/alpha#1", "fake/gamma#1"}
			if jr.Model == "fake/judge2" {
				j, order = j2, []string{"fake/gamma#1", "fake/beta#1", "fake/alpha#1"}
			}
			if !j.sent(jr.Reply) || !slices.Equal(jr.RankedMembers, order) || jr.Error != "" || jr.Usage == nil || *jr.Usage != *usageOf(strings.TrimPrefix(jr.Model, "fake/")) {
				t.Errorf("judge %s in the run record: %+v, want its raw reply and ranking %v", jr.Model, jr, order)
			}
		}
	})
}

// TestStrategyRankJudgeAskedAgainE2E: a judge whose first ranking is not
// a permutation of the labels is asked again (its two calls both in
// usage), and the run record keeps the rejected reply and the retry.
func TestStrategyRankJudgeAskedAgainE2E(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		s := startStrategies(t)
		s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
		j1 := &judgeBy{name: "judge1", prefs: []string{"alpha's answer", "gamma's answer"}}
		s.answer("judge1", func(r *upstreamtest.Request) upstreamtest.Reply {
			if len(r.Chat.Messages) == 1 {
				return upstreamtest.Reply{Content: "<critique>only one</critique><ranking>A</ranking>"}
			}
			return j1.reply(r)
		})
		s.judges("judge2", "alpha's answer")
		a := s.ask(t, "ranked", question, stream, "", "")
		if a.content != "alpha's answer" {
			t.Errorf("content %q", a.content)
		}
		wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1, "judge1": 2, "judge2": 1})
		var retried bool
		for _, jr := range s.record(t, a.outcome.RunID).Rounds[0].Judges {
			if jr.Model == "fake/judge1" {
				retried = jr.Retries == 1 && jr.Rejected == "<critique>only one</critique><ranking>A</ranking>" && j1.sent(jr.Reply) &&
					jr.Usage != nil && jr.Usage.TotalTokens == 2*usageOf("judge1").TotalTokens &&
					slices.Equal(jr.RankedMembers, []string{"fake/alpha#1", "fake/gamma#1", "fake/beta#1"})
			}
		}
		if !retried {
			t.Errorf("judge1's retry is not in the run record: %+v", s.record(t, a.outcome.RunID).Rounds[0].Judges)
		}
	})
}

// TestStrategyRankStreamWithoutUsage: a rank stream that does not ask for
// usage has no frame with empty choices at all.
func TestStrategyRankStreamWithoutUsage(t *testing.T) {
	s := startStrategies(t)
	s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
	s.judges("judge1", "alpha's answer")
	s.judges("judge2", "alpha's answer")
	resp, body := s.post("/v1/chat/completions", `{"model":"ranked","stream":true,"messages":`+question+`}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	frames := readFrames(t, body)
	for i, f := range frames {
		if len(f.Choices) == 0 || f.Usage != nil {
			t.Errorf("frame %d: %+v: no usage was asked for", i, f)
		}
	}
	if text(frames) != "alpha's answer" || frames[len(frames)-1].Consortium == nil {
		t.Errorf("content %q, last frame %+v", text(frames), frames[len(frames)-1])
	}
}

// TestStrategyRankSynthesizeE2E: rank with then: synthesize. The arbiter
// writes the answer (streamed as it writes), given the judges' places;
// usage counts members, judges and arbiter.
func TestStrategyRankSynthesizeE2E(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		s := startStrategies(t)
		s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
		s.judges("judge1", "beta's answer", "gamma's answer", "alpha's answer")
		s.judges("judge2", "beta's answer", "alpha's answer", "gamma's answer")
		synthesis := "the arbiter writes the best of beta and more"
		s.says("arbiter", verdict("0.9", synthesis))
		a := s.ask(t, "distilled", question, stream, "", heldIf(stream, "gamma"))

		if a.content != synthesis {
			t.Errorf("content %q, want the arbiter's synthesis", a.content)
		}
		wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1, "judge1": 1, "judge2": 1, "arbiter": 1})
		o := a.outcome
		if o.Strategy != "rank" || len(o.Scores) != 3 || o.Scores[0].Model != "fake/beta" || o.Scores[0].Place != 1 || o.Scores[0].Score != 1 {
			t.Errorf("consortium object %+v", o)
		}
		// The arbiter saw the judges' places under its own labels.
		var prompt string
		for _, r := range a.upstream {
			if r.Model == "arbiter" {
				prompt = r.LastUserText()
			}
		}
		var beta string
		for l, text := range shown(prompt) {
			if text == "beta's answer" {
				beta = l
			}
		}
		if beta == "" || !strings.Contains(prompt, "## The judges' ranking") || !strings.Contains(prompt, "- Response "+beta+": place 1, score 1.00") {
			t.Errorf("the arbiter's prompt lacks the judges' ranking (beta is %q):\n%s", beta, prompt)
		}
		rec := s.record(t, o.RunID)
		if r := rec.Rounds[0]; r.Arbiter == nil || r.Arbiter.Reply != verdict("0.9", synthesis) || len(r.Judges) != 2 || rec.Usage != a.spent {
			t.Errorf("run record %+v", rec)
		}
	})
}

// TestStrategyVoteE2E: vote without a tie. "Paris." and "paris" agree;
// the first full answer of the winning group is the answer.
func TestStrategyVoteE2E(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		s := startStrategies(t)
		s.says("alpha", "Paris.", "beta", "paris", "gamma", "Lyon")
		a := s.ask(t, "voted", question, stream, "", heldIf(stream, "gamma"))
		if a.content != "Paris." {
			t.Errorf("content %q", a.content)
		}
		wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1})
		o := a.outcome
		if o.Strategy != "vote" || !near(o.Agreement, 2.0/3) || !near(o.Confidence, 2.0/3) || len(o.Votes) != 2 ||
			o.Votes[0].Answer != "paris" || o.Votes[0].Weight != 2 || !slices.Equal(o.Votes[0].Members, []string{"fake/alpha#1", "fake/beta#1"}) ||
			o.Votes[1].Answer != "lyon" || o.Votes[1].Weight != 1 || !slices.Equal(o.Votes[1].Members, []string{"fake/gamma#1"}) {
			t.Errorf("consortium object %+v", o)
		}
		if rec := s.record(t, o.RunID); rec.Strategy != "vote" || rec.Usage != a.spent || len(rec.Rounds[0].Members) != 3 {
			t.Errorf("run record %+v", rec)
		}
	})
}

// TestStrategyVoteTieJudgeE2E: vote with tie_break: judge, by its judges
// (tied) or, without judges, by its arbiter asked as the one judge
// (tied-arbiter). Two answers tie; the judge, whose usage counts, picks
// the second.
func TestStrategyVoteTieJudgeE2E(t *testing.T) {
	for _, c := range []struct{ consortium, judge string }{{"tied", "judge1"}, {"tied-arbiter", "arbiter"}} {
		t.Run(c.consortium, func(t *testing.T) {
			modes(t, func(t *testing.T, stream bool) {
				s := startStrategies(t)
				s.says("alpha", "Paris", "beta", "Lyon")
				j := s.judges(c.judge, "Lyon", "Paris")
				a := s.ask(t, c.consortium, question, stream, "", heldIf(stream, "alpha"))
				if a.content != "Lyon" {
					t.Errorf("content %q, want the judge's pick", a.content)
				}
				wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, c.judge: 1})
				o := a.outcome
				if o.Strategy != "vote" || !near(o.Agreement, 0.5) || len(o.Votes) != 2 || o.Votes[0].Weight != 1 || o.Votes[1].Weight != 1 {
					t.Errorf("consortium object %+v", o)
				}
				rec := s.record(t, o.RunID)
				if js := rec.Rounds[0].Judges; len(js) != 1 || js[0].Model != "fake/"+c.judge || js[0].Group != "tie" || !j.sent(js[0].Reply) ||
					!slices.Equal(js[0].RankedMembers, []string{"fake/beta#1", "fake/alpha#1"}) || rec.Usage != a.spent {
					t.Errorf("run record %+v", rec)
				}
			})
		})
	}
}

// TestStrategyCascadeLastTierFailsE2E: when every tier escalated and the
// last fails, the request fails, 502 naming it; a stream that began ends
// with the error event and [DONE], no tier's held answer in it.
func TestStrategyCascadeLastTierFailsE2E(t *testing.T) {
	s := startStrategies(t)
	s.says("q1", "41", "q2", "42", "q3", "43", "alpha", "alpha's answer", "beta", "beta's answer")
	s.judges("judge1", "alpha's answer")
	s.judges("judge2", "beta's answer")
	s.fail("big")
	resp, body := s.post("/v1/chat/completions", `{"model":"tiered","messages":`+question+`}`)
	if e := decodeError(t, body); resp.StatusCode != http.StatusBadGateway || !strings.Contains(e.Error.Message, "fake/big") {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
	resp, body = s.post("/v1/chat/completions", `{"model":"tiered","stream":true,"stream_options":{"include_usage":true},"messages":`+question+`}`)
	frames := readFrames(t, body)
	if resp.StatusCode != http.StatusOK || len(frames) < 2 || frames[0].Choices[0].Delta.Role != "assistant" ||
		streamError(frames) != &frames[len(frames)-1] || text(frames) != "" {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}

// TestStrategyCascadeE2E: the cascade tiered, quick (vote) → panel
// (rank) → fake/big, and the cascade ladder, council (synthesize) →
// ranked. A tier answers when its confidence (agreement, the judges'
// share for the winner, the arbiter's) reaches escalate_below, or when it
// is the last; one that fails escalates. Only the answering tier's text
// reaches the client, streamed from it (a model tier's as it comes);
// usage counts every tier tried; the run record holds each tier's run or
// call.
func TestStrategyCascadeE2E(t *testing.T) {
	quickSplits := func(s *stratEnv) { s.says("q1", "41", "q2", "42", "q3", "43") }
	// panel's members answer, and its judges put first1 and first2 first.
	panel := func(s *stratEnv, first1, first2 string) {
		s.says("alpha", "alpha's answer", "beta", "beta's answer")
		s.judges("judge1", first1)
		s.judges("judge2", first2)
	}
	for _, tc := range []struct {
		name     string
		cascade  string
		first    string // a member of the first tier, held in a stream
		script   func(s *stratEnv)
		content  string
		tiers    []string
		conf     *float64
		calls    map[string]int
		recorded func(t *testing.T, tiers []tierRecord)
	}{{
		name:    "quick answers",
		cascade: "tiered",
		first:   "q1",
		script:  func(s *stratEnv) { s.says("q1", "42", "q2", "42.", "q3", "42") },
		content: "42",
		tiers:   []string{"quick:1.000:false"},
		conf:    new(1.0),
		calls:   map[string]int{"q1": 1, "q2": 1, "q3": 1},
		recorded: func(t *testing.T, tiers []tierRecord) {
			if r := tiers[0].Run; r == nil || r.Strategy != "vote" || len(r.Rounds[0].Members) != 3 {
				t.Errorf("the quick tier's run in the record: %+v", r)
			}
		},
	}, {
		name:    "panel answers",
		cascade: "tiered",
		first:   "q1",
		script: func(s *stratEnv) {
			quickSplits(s)
			panel(s, "beta's answer", "beta's answer")
		},
		content: "beta's answer",
		tiers:   []string{"quick:0.333:true", "panel:1.000:false"},
		conf:    new(1.0),
		calls:   map[string]int{"q1": 1, "q2": 1, "q3": 1, "alpha": 1, "beta": 1, "judge1": 1, "judge2": 1},
		recorded: func(t *testing.T, tiers []tierRecord) {
			if r := tiers[1].Run; r == nil || r.Strategy != "rank" || len(r.Rounds[0].Judges) != 2 || !strings.Contains(r.Rounds[0].Judges[0].Reply, "<ranking>") {
				t.Errorf("the panel tier's run in the record, with its judges' replies: %+v", r)
			}
		},
	}, {
		name:    "big answers",
		cascade: "tiered",
		first:   "q1",
		script: func(s *stratEnv) {
			quickSplits(s)
			panel(s, "alpha's answer", "beta's answer")
			s.says("big", "the big model's considered answer")
		},
		content: "the big model's considered answer",
		tiers:   []string{"quick:0.333:true", "panel:0.500:true", "fake/big:null:false"},
		calls:   map[string]int{"q1": 1, "q2": 1, "q3": 1, "alpha": 1, "beta": 1, "judge1": 1, "judge2": 1, "big": 1},
		recorded: func(t *testing.T, tiers []tierRecord) {
			if c := tiers[2].Call; c == nil || c.Content != "the big model's considered answer" {
				t.Errorf("the model tier's call in the record: %+v", c)
			}
		},
	}, {
		name:    "a failed tier escalates",
		cascade: "tiered",
		first:   "q1",
		script: func(s *stratEnv) {
			s.fail("q1", "q2", "q3")
			panel(s, "alpha's answer", "alpha's answer")
		},
		content: "alpha's answer",
		tiers:   []string{"quick:null:true", "panel:1.000:false"},
		conf:    new(1.0),
		calls:   map[string]int{"q1": 1, "q2": 1, "q3": 1, "alpha": 1, "beta": 1, "judge1": 1, "judge2": 1},
		recorded: func(t *testing.T, tiers []tierRecord) {
			if !strings.Contains(tiers[0].Error, "q1 is down") {
				t.Errorf("the failed tier's error in the record: %q", tiers[0].Error)
			}
		},
	}, {
		name:    "council answers",
		cascade: "ladder",
		first:   "alpha",
		script: func(s *stratEnv) {
			s.says("alpha", "alpha's answer", "arbiter", verdict("0.9", "the council's sure synthesis"))
		},
		content: "the council's sure synthesis",
		tiers:   []string{"council:0.900:false"},
		conf:    new(0.9),
		calls:   map[string]int{"alpha": 1, "arbiter": 1},
		recorded: func(t *testing.T, tiers []tierRecord) {
			if r := tiers[0].Run; r == nil || r.Rounds[0].Arbiter == nil || r.Rounds[0].Arbiter.Reply != verdict("0.9", "the council's sure synthesis") {
				t.Errorf("the council tier's run in the record, with its arbiter's reply: %+v", r)
			}
		},
	}, {
		name:    "unsure council escalates",
		cascade: "ladder",
		first:   "alpha",
		script: func(s *stratEnv) {
			s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer",
				"arbiter", verdict("0.5", "the council's HELD synthesis"))
			s.judges("judge1", "gamma's answer")
			s.judges("judge2", "gamma's answer")
		},
		content: "gamma's answer",
		tiers:   []string{"council:0.500:true", "ranked:1.000:false"},
		conf:    new(1.0),
		calls:   map[string]int{"alpha": 2, "beta": 1, "gamma": 1, "arbiter": 1, "judge1": 1, "judge2": 1},
	}, {
		name:    "untagged council escalates",
		cascade: "ladder",
		first:   "alpha",
		script: func(s *stratEnv) {
			s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer",
				"arbiter", "an untagged HELD reply")
			s.judges("judge1", "beta's answer")
			s.judges("judge2", "beta's answer")
		},
		content: "beta's answer",
		tiers:   []string{"council:null:true", "ranked:1.000:false"},
		conf:    new(1.0),
		calls:   map[string]int{"alpha": 2, "beta": 1, "gamma": 1, "arbiter": 1, "judge1": 1, "judge2": 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			modes(t, func(t *testing.T, stream bool) {
				s := startStrategies(t)
				tc.script(s)
				a := s.ask(t, tc.cascade, question, stream, "", heldIf(stream, tc.first))
				if a.content != tc.content {
					t.Errorf("content %q, want %q (only the answering tier's)", a.content, tc.content)
				}
				wantCalls(t, a, tc.calls)
				o := a.outcome
				if o.Strategy != "cascade" || !slices.Equal(o.tierList(), tc.tiers) || (tc.conf == nil) != (o.Confidence == nil) ||
					(tc.conf != nil && !near(o.Confidence, *tc.conf)) || len(o.Members) != 0 {
					t.Errorf("consortium object %+v: tiers %v, want %v, confidence %v", o, o.tierList(), tc.tiers, tc.conf)
				}
				rec := s.record(t, o.RunID)
				tiers := rec.Rounds[0].Tiers
				if rec.Strategy != "cascade" || rec.Usage != a.spent || len(tiers) != len(tc.tiers) {
					t.Fatalf("run record %+v", rec)
				}
				for i, tier := range tiers {
					if tier.Escalated != (i < len(tiers)-1) {
						t.Errorf("tier %s in the record: escalated %v", tier.Tier, tier.Escalated)
					}
				}
				if tc.recorded != nil {
					tc.recorded(t, tiers)
				}
			})
		})
	}
}

// TestStrategyContinuationE2E: every strategy continues a conversation,
// by X-Consortium-Conversation (streamed) and by resending the
// transcript: the members see the first turn's question and the answer
// the user received, and the judges and the arbiter see them in their
// prompts.
func TestStrategyContinuationE2E(t *testing.T) {
	for _, tc := range []struct {
		model  string
		script func(s *stratEnv)
	}{
		{"ranked", func(s *stratEnv) {
			s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
			s.judges("judge1", "gamma's answer")
			s.judges("judge2", "gamma's answer")
		}},
		{"distilled", func(s *stratEnv) {
			s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer", "arbiter", verdict("0.9", "the distilled answer"))
			s.judges("judge1", "beta's answer")
			s.judges("judge2", "beta's answer")
		}},
		{"voted", func(s *stratEnv) { s.says("alpha", "yes", "beta", "Yes.", "gamma", "no") }},
		{"tied", func(s *stratEnv) {
			s.says("alpha", "yes", "beta", "no")
			s.judges("judge1", "no")
		}},
		{"tiered", func(s *stratEnv) {
			s.says("q1", "41", "q2", "42", "q3", "43", "alpha", "alpha's answer", "beta", "beta's answer")
			s.judges("judge1", "alpha's answer")
			s.judges("judge2", "alpha's answer")
		}},
	} {
		t.Run(tc.model, func(t *testing.T) {
			s := startStrategies(t)
			tc.script(s)
			first := s.ask(t, tc.model, `[{"role":"user","content":"first question"}]`, false, "", "")
			if !strings.HasPrefix(first.conv, "conv_") || first.outcome.ConversationID != first.conv {
				t.Fatalf("first turn: conversation %q, consortium %+v", first.conv, first.outcome)
			}
			a1 := first.content

			second := s.ask(t, tc.model, `[{"role":"user","content":"second question"}]`, true, first.conv, "")
			if second.conv != first.conv || second.outcome.ConversationID != first.conv {
				t.Errorf("second turn: conversation %q, consortium's %q, want %q", second.conv, second.outcome.ConversationID, first.conv)
			}
			saw(t, second, []string{"user: first question", "assistant: " + a1, "user: second question"})

			third := s.ask(t, tc.model, mustJSON(t, []map[string]string{
				{"role": "user", "content": "first question"}, {"role": "assistant", "content": a1},
				{"role": "user", "content": "second question"}, {"role": "assistant", "content": second.content},
				{"role": "user", "content": "third question"},
			}), false, "", "")
			if third.conv != first.conv || third.outcome.ConversationID != first.conv {
				t.Errorf("third turn (transcript resent): conversation %q, consortium's %q, want %q", third.conv, third.outcome.ConversationID, first.conv)
			}
			saw(t, third, []string{"user: first question", "assistant: " + a1, "user: second question", "assistant: " + second.content, "user: third question"})
		})
	}
}

// saw checks what the upstream calls of a turn were given: each member
// exactly the conversation (messages as "role: text"), each judge and
// arbiter the conversation before the latest request, and that request.
func saw(t *testing.T, a asked, conversation []string) {
	t.Helper()
	judged := false
	for _, r := range a.upstream {
		if slices.Contains(memberModels, r.Model) {
			var got []string
			for _, m := range r.Chat.Messages {
				got = append(got, m.Role+": "+m.Content.String())
			}
			if !slices.Equal(got, conversation) {
				t.Errorf("member %s saw\n%q\nwant\n%q", r.Model, got, conversation)
			}
			continue
		}
		judged = true
		prompt := r.LastUserText()
		last := conversation[len(conversation)-1]
		if !strings.Contains(prompt, "## The user's latest request\n\n"+strings.TrimPrefix(last, "user: ")) {
			t.Errorf("%s was not given the latest request %q:\n%s", r.Model, last, prompt)
		}
		for _, turn := range conversation[:len(conversation)-1] {
			role, content, _ := strings.Cut(turn, ": ")
			if !strings.Contains(prompt, "["+role+"]\n"+content+"\n") {
				t.Errorf("%s was not shown the turn %q:\n%s", r.Model, turn, prompt)
			}
		}
	}
	if n := a.calls["judge1"] + a.calls["judge2"] + a.calls["arbiter"]; judged != (n > 0) {
		t.Errorf("calls %v", a.calls)
	}
}

// TestStrategyChoicesRefusedE2E: n above the member instances (rank), and
// n > 1 where the strategy writes one answer (rank with then: synthesize,
// synthesize, vote, cascade), are 400 naming n, as JSON and for a
// stream, before any upstream call.
func TestStrategyChoicesRefusedE2E(t *testing.T) {
	s := startStrategies(t)
	s.fake.SetDefault(func(*upstreamtest.Request) upstreamtest.Reply {
		return upstreamtest.Reply{Content: "<ranking>A > B > C</ranking><synthesis>x</synthesis>"}
	})
	for _, c := range []struct {
		model string
		n     int
	}{{"ranked", 4}, {"distilled", 2}, {"council", 2}, {"voted", 2}, {"tied", 2}, {"tied-arbiter", 2}, {"tiered", 2}, {"ladder", 2}} {
		for _, stream := range []bool{false, true} {
			body := fmt.Sprintf(`{"model":%q,"n":%d,"stream":%v,"messages":%s}`, c.model, c.n, stream, question)
			resp, got := s.post("/v1/chat/completions", body)
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s: status %d %s: %s", body, resp.StatusCode, resp.Header.Get("Content-Type"), got)
				continue
			}
			if e := decodeError(t, got); e.Error.Param == nil || *e.Error.Param != "n" || e.Error.Type != "invalid_request_error" {
				t.Errorf("%s: %s, want an invalid_request_error naming n", body, got)
			}
		}
	}
	if reqs := s.fake.Requests(); len(reqs) != 0 {
		t.Errorf("%d upstream calls for refused requests, first to %s", len(reqs), reqs[0].Model)
	}
}

// TestStrategyCascadeMaxTokensE2E: an answer cut by the client's
// max_tokens finishes with "length" whichever tier wrote it, as the same
// consortium asked directly does; streamed too. (A consortium tier's run
// cuts its answer at the bound and reports "length"; the cascade's own
// bound then finds nothing over it.)
func TestStrategyCascadeMaxTokensE2E(t *testing.T) {
	s := startStrategies(t)
	s.says("alpha", "alpha's answer", "arbiter", verdict("0.9", "the council's sure synthesis"))
	for _, model := range []string{"council", "ladder"} {
		for _, stream := range []bool{false, true} {
			body := fmt.Sprintf(`{"model":%q,"max_tokens":2,"stream":%v,"messages":%s}`, model, stream, question)
			resp, got := s.post("/v1/chat/completions", body)
			content, finish := "", ""
			if stream {
				frames := readFrames(t, got)
				for _, f := range frames {
					for _, c := range f.Choices {
						if c.FinishReason != nil {
							finish = *c.FinishReason
						}
					}
				}
				content = text(frames)
			} else {
				c := decodeCompletion(t, resp, got)
				content, finish = c.Choices[0].Message.Content, c.Choices[0].FinishReason
			}
			if content != "the coun" || finish != "length" {
				t.Errorf("%s: content %q finishing %q, want %q finishing length", body, content, finish, "the coun")
			}
		}
	}
}

// TestStrategyClientGoneE2E: a client that goes away while judges (rank,
// vote's tie-break) or a cascade's tier work cancels those calls.
func TestStrategyClientGoneE2E(t *testing.T) {
	for _, tc := range []struct {
		consortium string
		script     func(s *stratEnv)
		hung       []string // the models whose calls are in flight when the client goes
		calls      int      // every call made by then
	}{
		{"ranked", func(s *stratEnv) {
			s.says("alpha", "a", "beta", "b", "gamma", "c")
			s.fake.Script("judge1", upstreamtest.Reply{Hang: true})
			s.fake.Script("judge2", upstreamtest.Reply{Hang: true})
		}, []string{"judge1", "judge2"}, 5},
		{"tied", func(s *stratEnv) {
			s.says("alpha", "Paris", "beta", "Lyon")
			s.fake.Script("judge1", upstreamtest.Reply{Hang: true})
		}, []string{"judge1"}, 3},
		{"tiered", func(s *stratEnv) {
			s.says("q1", "41", "q2", "42", "q3", "43")
			s.fake.Script("alpha", upstreamtest.Reply{Hang: true})
			s.fake.Script("beta", upstreamtest.Reply{Hang: true})
		}, []string{"alpha", "beta"}, 5},
	} {
		t.Run(tc.consortium, func(t *testing.T) {
			s := startStrategies(t)
			tc.script(s)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/chat/completions",
				strings.NewReader(fmt.Sprintf(`{"model":%q,"stream":true,"messages":%s}`, tc.consortium, question)))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if f, _ := newSSEReader(resp.Body).nextFrame(t); len(f.Choices) != 1 || f.Choices[0].Delta.Role != "assistant" {
				t.Fatalf("first frame %+v", f)
			}
			if err := s.fake.WaitRequests(within(t, 5*time.Second), tc.calls); err != nil {
				t.Fatalf("%d upstream calls, want %d: %v", len(s.fake.Requests()), tc.calls, err)
			}
			cancel()
			waitIdle(t, s.fake)
			for _, m := range tc.hung {
				if r := s.fake.RequestsFor(m); len(r) != 1 || !r[0].Cancelled {
					t.Errorf("%s: %d calls, not cancelled when the client went away", m, len(r))
				}
			}
		})
	}
}

// TestStrategyRankFewAnswersE2E: a rank run with one answer calls no
// judge and returns it; fewer answers than n is 502 (an error event in a
// stream); n = 2 streamed counts the judges in its usage chunk.
func TestStrategyRankFewAnswersE2E(t *testing.T) {
	s := startStrategies(t)
	s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer")
	s.judges("judge1", "beta's answer", "alpha's answer")
	s.judges("judge2", "beta's answer", "alpha's answer")

	mark := len(s.fake.Requests())
	resp, body := s.post("/v1/chat/completions", `{"model":"ranked","n":2,"stream":true,"stream_options":{"include_usage":true},"messages":`+question+`}`)
	frames := readFrames(t, body)
	var spent wire.Usage
	for _, r := range s.fake.Requests()[mark:] {
		spent.Add(*usageOf(r.Model))
	}
	if last := frames[len(frames)-1]; resp.StatusCode != http.StatusOK || len(last.Choices) != 0 || last.Usage == nil || *last.Usage != spent || spent.TotalTokens != 3*(1+2+4+8+16) {
		t.Errorf("n=2 stream: usage chunk %+v, want the sum of every call %+v:\n%s", last, spent, body)
	}

	s.fail("beta", "gamma")
	a := s.ask(t, "ranked", question, false, "", "")
	if a.content != "alpha's answer" || len(a.outcome.Scores) != 1 || a.outcome.Scores[0].Place != 1 {
		t.Errorf("one answer: %q, consortium %+v", a.content, a.outcome)
	}
	wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1})

	for _, stream := range []bool{false, true} {
		resp, body := s.post("/v1/chat/completions", fmt.Sprintf(`{"model":"ranked","n":2,"stream":%v,"messages":%s}`, stream, question))
		switch {
		case !stream && resp.StatusCode != http.StatusBadGateway:
			t.Errorf("fewer answers than n: status %d: %s", resp.StatusCode, body)
		case stream && (resp.StatusCode != http.StatusOK || streamError(readFrames(t, body)) == nil):
			t.Errorf("fewer answers than n, streamed: status %d: %s", resp.StatusCode, body)
		}
	}
}

// TestStrategyRankSynthesizeFallbackE2E: with then: synthesize, an
// arbiter reply without a synthesis leaves the judges' winner as the
// answer, and the run record says so.
func TestStrategyRankSynthesizeFallbackE2E(t *testing.T) {
	modes(t, func(t *testing.T, stream bool) {
		s := startStrategies(t)
		s.says("alpha", "alpha's answer", "beta", "beta's answer", "gamma", "gamma's answer",
			"arbiter", "<analysis>fine</analysis><confidence>0.9</confidence><needs_iteration>false</needs_iteration>")
		s.judges("judge1", "gamma's answer")
		s.judges("judge2", "gamma's answer")
		a := s.ask(t, "distilled", question, stream, "", "")
		if a.content != "gamma's answer" {
			t.Errorf("content %q, want the judges' winner", a.content)
		}
		wantCalls(t, a, map[string]int{"alpha": 1, "beta": 1, "gamma": 1, "judge1": 1, "judge2": 1, "arbiter": 1})
		_, raw := s.do(http.MethodGet, "/v1/consortium/runs/"+a.outcome.RunID, "", "")
		var rec struct {
			Fallback string `json:"fallback"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil || rec.Fallback == "" {
			t.Errorf("the run record does not say the winner was used: %s", raw)
		}
	})
}
