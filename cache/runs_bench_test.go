package cache

import (
	"encoding/json"
	"strings"
	"testing"
)

// BenchmarkSummarize measures what indexing costs a Save: reading the
// summary back from a run record of two rounds of three members (2 KB
// answers) and a 4 KB arbiter reply each.
func BenchmarkSummarize(b *testing.B) {
	data := benchRecord()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := summarize(data); !ok {
			b.Fatal("no summary")
		}
	}
}

// benchRecord is a run record of two rounds of three members (2 KB
// answers) and a 4 KB arbiter reply each.
func benchRecord() []byte {
	answer := strings.Repeat("a member's answer, ", 100)
	type member struct {
		Model   string `json:"model"`
		Status  string `json:"status"`
		Content string `json:"content"`
	}
	type round struct {
		Number  int      `json:"number"`
		Members []member `json:"members"`
		Arbiter struct {
			Reply string `json:"reply"`
		} `json:"arbiter"`
	}
	rec := struct {
		RunID      string  `json:"run_id"`
		Consortium string  `json:"consortium"`
		Iterations int     `json:"iterations"`
		Rounds     []round `json:"rounds"`
		Usage      struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}{RunID: "run_1", Consortium: "council", Iterations: 2}
	for n := 1; n <= 2; n++ {
		r := round{Number: n, Members: []member{{"a/x", "ok", answer}, {"b/y", "ok", answer}, {"c/z", "ok", answer}}}
		r.Arbiter.Reply = answer + answer
		rec.Rounds = append(rec.Rounds, r)
	}
	data, _ := json.Marshal(rec)
	return data
}
