package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/template"

	"github.com/consortium-dev/consortium/bench"
	"github.com/consortium-dev/consortium/consortia"
)

// overhead is a consortium measured through the proxy and, in the same
// rounds, its critical path made straight to the 50 ms fake: what the
// proxy adds to a consortium's run is the difference.
type overhead struct {
	name     string // as -only names it
	strategy string
	members  string // who answers, for the report: "(3 members + arbiter)"
	model    string // the consortium, in the harness's configuration
	about    string // its calls and its critical path's, for the report
	fanout   int    // member calls, at once
	judges   int    // then judge calls at once (rank); 0: one streamed arbiter call
	proxy    []*bench.Result
	plain    []*bench.Result // through the proxy recording no scores
	direct   []*bench.Result
}

// overheads are the consortia of the harness's configuration (setUp),
// with their critical paths: the members at once, then the arbiter, or
// then the judges at once. The proxy always streams the arbiter's call
// (consortia/synthesize.go) and asks each judge for one JSON answer
// (consortia/judge.go), members too; the direct paths do the same.
func overheads() []*overhead {
	return []*overhead{
		{name: "consortium", strategy: "synthesize", members: "(3 members + arbiter)", model: "council", fanout: 3,
			about: "3 member instances at once, then the arbiter. The direct critical path is three member calls at once, " +
				"then the streamed arbiter call as the proxy makes it, with the default arbiter prompt over three answers."},
		{name: "rank", strategy: "rank", members: "(3 members + 2 judges)", model: "ranked", fanout: 3, judges: 2,
			about: "3 member instances at once, then 2 judges at once (`then: winner`). The direct critical path is three member calls at once, " +
				"then two judge calls at once, JSON as the proxy makes them, each with the default judge prompt over three answers; " +
				"the fake answers a judge prompt with a ranking of the labels it shows, through the proxy and directly alike."},
	}
}

// over is the median over rounds of the proxy's median latency minus the
// direct critical path's, in ms.
func (o *overhead) over() float64 { return medianP50(o.proxy) - medianP50(o.direct) }

// consortiaNamed returns the overheads -only names (comma-separated), or
// all of them for "".
func consortiaNamed(only string) ([]*overhead, error) {
	all := overheads()
	if only == "" {
		return all, nil
	}
	var out []*overhead
	var names []string
	for _, o := range all {
		names = append(names, strconv.Quote(o.name))
	}
next:
	for _, name := range strings.Split(only, ",") {
		for _, o := range all {
			if o.name == strings.TrimSpace(name) {
				out = append(out, o)
				continue next
			}
		}
		return nil, fmt.Errorf("-only %q: %q is none of %s", only, name, strings.Join(names, ", "))
	}
	return out, nil
}

// criticalPath is one measured request made straight to t: fanout JSON
// calls at once, then judges JSON judge calls at once, or, with no
// judges, one streamed arbiter call. The later calls are the proxy's:
// the default prompt showing fanout answers of the fake's.
func criticalPath(t target, fanout, judges, size int) *bench.Request {
	req := t.request(false, size)
	req.Fanout = fanout
	if judges == 0 {
		req.Then = &bench.Request{URL: t.base + "/v1/chat/completions", Body: arbiterBody(t.model, fanout), Header: t.hdr, Stream: true}
		return req
	}
	req.Then = &bench.Request{URL: t.base + "/v1/chat/completions", Body: judgeBody(t.model, fanout), Header: t.hdr, Fanout: judges}
	return req
}

// arbiterBody is a synthesize arbiter's request as the proxy sends it,
// streamed: the default arbiter prompt showing n answers of the fake's, in
// the one round of the harness's council.
func arbiterBody(model string, n int) []byte {
	d := consortia.PromptData{Consortium: "council", Request: bench.Prompt(0), Round: 1, MaxRounds: 1, Threshold: 0.8}
	var labels []string
	d.Responses, labels = fakeAnswers(n, 1)
	d.RankingExample = strings.Join(labels, ", ")
	return promptBody(consortia.DefaultPrompt, d, map[string]any{
		"model": model, "stream": true, "stream_options": map[string]bool{"include_usage": true},
	})
}

// judgeBody is a judge's request as the proxy sends it: the default judge
// prompt showing n answers of the fake's (so that the fake answers it
// with a ranking, as it answers the proxy's judges), at temperature 0.
func judgeBody(model string, n int) []byte {
	d := consortia.JudgeData{Consortium: "ranked", Request: bench.Prompt(0)}
	var labels []string
	d.Responses, labels = fakeAnswers(n, 0)
	d.RankingExample = strings.Join(labels, " > ")
	return promptBody(consortia.DefaultJudgePrompt, d, map[string]any{"model": model, "temperature": 0})
}

// fakeAnswers are n answers of the fake's, labelled A, B, ... as the
// proxy labels them, each of weight (0 for none).
func fakeAnswers(n int, weight float64) (answers []consortia.Response, labels []string) {
	for i := range n {
		l := string(rune('A' + i))
		labels = append(labels, l)
		answers = append(answers, consortia.Response{Label: l, Text: bench.FakeContent(0), Weight: weight})
	}
	return answers, labels
}

// promptBody is body (a request's fields) with one user message: the
// prompt tmpl renders from data.
func promptBody(tmpl string, data any, body map[string]any) []byte {
	var prompt bytes.Buffer
	template.Must(template.New("prompt").Parse(tmpl)).Execute(&prompt, data)
	body["messages"] = []map[string]string{{"role": "user", "content": prompt.String()}}
	b, _ := json.Marshal(body)
	return b
}
