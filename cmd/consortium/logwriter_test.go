package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	var out syncBuffer
	l := newLogWriter(&out)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(l, "g%d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	l.Close()
	fmt.Fprintf(l, "after close\n")

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2001 || lines[2000] != "after close" {
		t.Fatalf("%d lines, the last %q", len(lines), lines[len(lines)-1])
	}
	next := map[string]int{}
	for _, line := range lines[:2000] {
		var g string
		var i int
		if _, err := fmt.Sscanf(line, "%s line %d", &g, &i); err != nil {
			t.Fatalf("torn line %q", line)
		}
		if i != next[g] {
			t.Fatalf("%s: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
}

// stuck is a log reader that takes nothing until released.
type stuck struct {
	release chan struct{}
	syncBuffer
}

func (s *stuck) Write(p []byte) (int, error) {
	<-s.release
	return s.syncBuffer.Write(p)
}

func TestLogWriterWaitsForAStuckReader(t *testing.T) {
	out := &stuck{release: make(chan struct{})}
	l := newLogWriter(out)
	line := strings.Repeat("x", 1023) + "\n"
	wrote := make(chan int)
	go func() {
		n := 0
		for range 3 * logBacklog / len(line) {
			l.Write([]byte(line))
			n++
		}
		wrote <- n
	}()
	select {
	case n := <-wrote:
		t.Fatalf("%d lines taken by a log nobody reads", n)
	case <-time.After(100 * time.Millisecond):
	}
	close(out.release)
	<-wrote
	l.Close()
	if got, want := len(out.String()), 3*logBacklog/len(line)*len(line); got != want {
		t.Errorf("%d bytes written, want %d", got, want)
	}
}
