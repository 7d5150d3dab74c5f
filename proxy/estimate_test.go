package proxy_test

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// pricedYAML is councilYAML's consortium with every model priced, the
// arbiter's output bounded, and the fake's m1 unpriced.
const pricedYAML = `
pricing:
  "fake/alpha": {input: 1, output: 2}
  "fake/beta": {input: 10, output: 20}
  "fake/judge": {input: 100, output: 200, cached_input: 50}
providers:
  fake:
    base_url: {{FAKE}}
    timeout: 5s
    idle_timeout: 5s
    max_retries: 0
    models: [m1]
consortia:
  council:
    members:
      - model: fake/alpha
        count: 2
      - model: fake/beta
    arbiter: {model: fake/judge, params: {max_tokens: 500}}
    max_iterations: 1
  loose:
    members: [{model: fake/m1}]
    arbiter: {model: fake/judge}
    max_iterations: 2
`

// councilCost is what scriptCouncil's calls cost at pricedYAML's prices.
const councilCost = (2*(1*1+2*2) + (10*10 + 20*20) + (100*100 + 200*200)) / 1e6

func TestCostInUsage(t *testing.T) {
	e := start(t, pricedYAML)

	t.Run("json and the run record", func(t *testing.T) {
		scriptCouncil(e.fake, "priced")
		resp, body := e.post("/v1/chat/completions", councilBody)
		c := decodeCompletion(t, resp, body)
		if c.Usage == nil || c.Usage.CostUSD == nil || math.Abs(*c.Usage.CostUSD-councilCost) > 1e-12 {
			t.Fatalf("usage %s, want cost_usd %v", body, councilCost)
		}
		resp, raw := e.do("GET", "/v1/consortium/runs/"+c.Consortium.RunID, "", "")
		var run struct {
			Usage wire.Usage `json:"usage"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(raw, &run) != nil || run.Usage.CostUSD == nil || *run.Usage.CostUSD != *c.Usage.CostUSD {
			t.Errorf("run record %d: %s", resp.StatusCode, raw)
		}
	})

	t.Run("the stream's usage chunk", func(t *testing.T) {
		scriptCouncil(e.fake, "priced")
		resp, got := e.post("/v1/chat/completions", `{"model":"council","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		frames := readFrames(t, got)
		last := frames[len(frames)-1]
		if last.Usage == nil || last.Usage.CostUSD == nil || math.Abs(*last.Usage.CostUSD-councilCost) > 1e-12 {
			t.Errorf("usage chunk %+v", last)
		}
	})

	t.Run("responses and messages", func(t *testing.T) {
		scriptCouncil(e.fake, "priced")
		_, body := e.post("/v1/responses", `{"model":"council","input":"hi"}`)
		var r struct {
			Usage struct {
				CostUSD *float64 `json:"cost_usd"`
			} `json:"usage"`
		}
		if json.Unmarshal(body, &r) != nil || r.Usage.CostUSD == nil || math.Abs(*r.Usage.CostUSD-councilCost) > 1e-12 {
			t.Errorf("response %s", body)
		}
		scriptCouncil(e.fake, "priced")
		_, body = e.post("/v1/messages", `{"model":"council","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`)
		r.Usage.CostUSD = nil
		if json.Unmarshal(body, &r) != nil || r.Usage.CostUSD == nil || math.Abs(*r.Usage.CostUSD-councilCost) > 1e-12 {
			t.Errorf("message %s", body)
		}
	})

	t.Run("an unpriced model leaves it out", func(t *testing.T) {
		e.fake.Script("m1", upstreamReply("m1's", 3, 4))
		e.fake.Script("judge", upstreamReply(verdict("0.9", "loose"), 5, 6))
		_, body := e.post("/v1/chat/completions", strings.Replace(councilBody, "council", "loose", 1))
		if strings.Contains(string(body), "cost_usd") || !strings.Contains(string(body), `"total_tokens":18`) {
			t.Errorf("answer %s", body)
		}
	})
}

func TestEstimateEndpoint(t *testing.T) {
	e := start(t, pricedYAML)

	resp, body := e.post("/v1/consortium/estimate", `{"model":"council","max_tokens":100,"messages":[{"role":"user","content":"what is the answer?"}]}`)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var est struct {
		Calls []struct {
			Role   string `json:"role"`
			Model  string `json:"model"`
			Count  int    `json:"count"`
			Rounds [2]int `json:"rounds"`
		} `json:"calls"`
		Tokens struct {
			Input  [2]int  `json:"input"`
			Output *[2]int `json:"output"`
		} `json:"tokens"`
		CostUSD *[2]float64 `json:"cost_usd"`
	}
	if err := json.Unmarshal(body, &est); err != nil {
		t.Fatal(err)
	}
	if len(est.Calls) != 3 || est.Calls[0].Model != "fake/alpha" || est.Calls[0].Count != 2 || est.Calls[0].Rounds != [2]int{1, 1} ||
		est.Calls[2].Role != "arbiter" || est.Calls[2].Model != "fake/judge" {
		t.Errorf("calls %s", body)
	}
	if est.Tokens.Output == nil || *est.Tokens.Output != [2]int{4, 3*100 + 500} || est.Tokens.Input[0] <= 0 || est.Tokens.Input[1] < est.Tokens.Input[0] {
		t.Errorf("tokens %s", body)
	}
	if est.CostUSD == nil || est.CostUSD[0] <= 0 || est.CostUSD[1] <= est.CostUSD[0] {
		t.Errorf("cost %s", body)
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("the estimate called the provider %d times", n)
	}

	// No bound on the arbiter, and an unpriced member: both null.
	_, body = e.post("/v1/consortium/estimate", `{"model":"loose","messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(string(body), `"output":null},"cost_usd":null}`) || !strings.Contains(string(body), `"rounds":[1,2]`) {
		t.Errorf("loose: %s", body)
	}

	for _, tc := range []struct {
		name, body string
		status     int
		param      string
	}{
		{"an unknown model", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model"},
		{"a passthrough model", `{"model":"fake/m1","messages":[{"role":"user","content":"hi"}]}`, 404, "model"},
		{"not JSON", `{"model":`, 400, ""},
		{"no messages", `{"model":"council","messages":[]}`, 400, "messages"},
		{"no user message", `{"model":"council","messages":[{"role":"system","content":"x"}]}`, 400, "messages"},
		{"tools", `{"model":"council","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, 400, "tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post("/v1/consortium/estimate", tc.body)
			ae := decodeError(t, body)
			if resp.StatusCode != tc.status || tc.param != "" && (ae.Error.Param == nil || *ae.Error.Param != tc.param) {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		})
	}
	if resp, body := e.do("GET", "/v1/consortium/estimate", "", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %s", resp.StatusCode, body)
	}
}

// upstreamReply is an answer with fixed usage.
func upstreamReply(content string, prompt, completion int) upstreamtest.Reply {
	return upstreamtest.Reply{Content: content, Usage: &wire.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}}
}
