package batch

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress shows how far a job is: a bar with rate and ETA on a
// terminal, else a plain line every Every. The zero Progress shows
// nothing.
type Progress struct {
	// W receives the bar or the lines; nil shows nothing.
	W io.Writer
	// TTY says W is a terminal.
	TTY bool
	// Every is how often a plain line is written. If zero, 5s.
	Every time.Duration
}

// meter counts one job's items.
type meter struct {
	label string
	total int // the items this run does (finished ones excluded)
	w     io.Writer
	bar   *progressbar.ProgressBar
	start time.Time

	mu           sync.Mutex
	done, failed int
	stop         chan struct{}
	stopped      sync.WaitGroup
}

// start begins showing a job of total items.
func (p Progress) start(label string, total int) *meter {
	m := &meter{label: label, total: total, w: p.W, start: time.Now(), stop: make(chan struct{})}
	switch {
	case p.W == nil:
	case p.TTY:
		m.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.W),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("items"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
		)
	default:
		every := p.Every
		if every <= 0 {
			every = 5 * time.Second
		}
		m.stopped.Add(1)
		go func() {
			defer m.stopped.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-m.stop:
					return
				case <-t.C:
					m.line()
				}
			}
		}()
	}
	return m
}

// add counts one item done, or failed.
func (m *meter) add(ok bool) {
	m.mu.Lock()
	m.done++
	if !ok {
		m.failed++
	}
	m.mu.Unlock()
	if m.bar != nil {
		_ = m.bar.Add(1)
	}
}

// line writes a plain progress line.
func (m *meter) line() {
	m.mu.Lock()
	done, failed := m.done, m.failed
	m.mu.Unlock()
	elapsed := time.Since(m.start)
	rate := float64(done) / elapsed.Seconds()
	s := fmt.Sprintf("%s: %d/%d", m.label, done, m.total)
	if m.total > 0 {
		s += fmt.Sprintf(" (%d%%)", done*100/m.total)
	}
	s += fmt.Sprintf(", %.1f/s", rate)
	if rate > 0 && done < m.total {
		s += ", " + time.Duration(float64(m.total-done)/rate*float64(time.Second)).Round(time.Second).String() + " left"
	}
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	fmt.Fprintln(m.w, s)
}

// finish stops the display, with a last line when plain.
func (m *meter) finish() {
	close(m.stop)
	m.stopped.Wait()
	switch {
	case m.bar != nil:
		_ = m.bar.Finish()
	case m.w != nil:
		m.line()
	}
}
