package main

import (
	"io"
	"sync"
)

// logWriter writes the log in the background, so that a request's access
// line costs an append, not a system call on the request's path. Lines
// are written in order, as they came; under load the lines that gather
// while one write is under way go out together in the next. When more
// than logBacklog bytes wait (the log's reader is stuck), Write blocks, as
// a direct write would. Close writes what is left.
type logWriter struct {
	w io.Writer

	mu      sync.Mutex
	room    sync.Cond // signalled when the backlog has been taken
	pending []byte
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// logBacklog bounds the bytes waiting to be written.
const logBacklog = 1 << 20

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.room.L = &l.mu
	go l.run()
	return l
}

// Write takes a copy of p, one whole log line as slog writes it.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.pending) >= logBacklog && !l.closed {
		l.room.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		<-l.done // after the lines before it
		return l.w.Write(p)
	}
	l.pending = append(l.pending, p...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	var out []byte
	for range l.wake {
		l.mu.Lock()
		out, l.pending = l.pending, out[:0]
		closed := l.closed
		l.room.Broadcast()
		l.mu.Unlock()
		if len(out) > 0 {
			l.w.Write(out)
		}
		if closed {
			return
		}
	}
}

// Close writes the lines still waiting and ends the writer; later lines
// are written directly.
func (l *logWriter) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.room.Broadcast()
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
}
