package main

import (
	"strings"
	"testing"
)

func TestGrouped(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1,000"}, {9500, "9,500"}, {20000, "20,000"}, {1234567, "1,234,567"}, {-1234, "-1,234"},
	} {
		if got := grouped(tc.n); got != tc.want {
			t.Errorf("grouped(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestStreamsMarkdown: the open-streams section says how the proxy reaches
// the upstream and what a plain-HTTP/1.1 upstream would cost under the
// machine's hard limit, and shows the connections the proxy held.
func TestStreamsMarkdown(t *testing.T) {
	mem := &memoryFigures{streams: 10000, open: 10000, before: 16 << 20, during: 616 << 20, goroutinesBefore: 10, goroutinesDuring: 30010, upstreamConns: 40}
	for _, tc := range []struct {
		hard     uint64
		want     []string
		unwanted string
	}{
		{20000, []string{"HTTPS with HTTP/2", "one socket per client stream plus a few multiplexed connections upstream",
			"two sockets a stream, and this machine's hard limit of 20,000 open files would cap that at about 9,500 streams",
			"| 10000 | 0 | 16.0 MiB | 616.0 MiB | 61.4 KiB | 3.0 | 40 |"}, ""},
		{1 << 20, []string{"two sockets a stream. "}, "would cap"},
	} {
		text := (&report{only: true, hardLimit: tc.hard, mem: mem}).markdown()
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("hard limit %d: no %q in\n%s", tc.hard, w, text)
			}
		}
		if tc.unwanted != "" && strings.Contains(text, tc.unwanted) {
			t.Errorf("hard limit %d: %q in\n%s", tc.hard, tc.unwanted, text)
		}
	}
}
