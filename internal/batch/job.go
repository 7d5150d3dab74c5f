package batch

import (
	"context"
	"sync"
)

// Job is what the item-by-item jobs (generate, eval) share.
type Job struct {
	// Concurrency is how many items are in flight at once. If zero, 8.
	Concurrency int
	// Progress shows the job's progress.
	Progress Progress
	// Stop, once closed (the first Ctrl-C), ends the job: no new item is
	// started, and those in flight finish and are written. Cancel the
	// context given to Run to abandon them too. Nil never stops.
	Stop <-chan struct{}
}

// Report is what a job did in this run.
type Report struct {
	// Total is the number of input items; Skipped those finished by an
	// earlier run; Done those finished now.
	Total, Skipped, Done int
	// Failures are the items that failed, in the order they failed.
	Failures []Failure
	// Interrupted says Stop ended the job before every item was tried.
	Interrupted bool
}

// run calls do for every item out has not finished, at most Concurrency
// at once, and writes each line do returns (or its failure) to out.
func (j Job) run(ctx context.Context, label string, items []Item, out *Output, do func(context.Context, Item) (any, error)) (*Report, error) {
	rep := &Report{Total: len(items)}
	var todo []Item
	for _, it := range items {
		if out.Done(it.ID) {
			rep.Skipped++
			continue
		}
		todo = append(todo, it)
	}
	n := j.Concurrency
	if n <= 0 {
		n = 8
	}
	m := j.Progress.start(label, len(todo))
	feed := make(chan Item)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		writeErr error
	)
	for range min(n, max(len(todo), 1)) {
		wg.Go(func() {
			for it := range feed {
				line, err := do(ctx, it)
				if err != nil && ctx.Err() != nil {
					// Abandoned (the second Ctrl-C): not a failure of the
					// item; the next run does it.
					continue
				}
				if err == nil {
					if err = out.Write(it.ID, line); err != nil {
						// The output itself failed (disk full): stop.
						mu.Lock()
						writeErr = err
						mu.Unlock()
					}
				}
				if err != nil {
					if ferr := out.Fail(Failure{ID: it.ID, Line: it.Line, Error: err.Error()}); ferr != nil {
						mu.Lock()
						writeErr = ferr
						mu.Unlock()
					}
				}
				m.add(err == nil)
				mu.Lock()
				if err == nil {
					rep.Done++
				}
				mu.Unlock()
			}
		})
	}
feeding:
	for _, it := range todo {
		mu.Lock()
		failed := writeErr != nil
		mu.Unlock()
		if failed {
			break
		}
		select {
		case <-j.Stop:
			rep.Interrupted = true
			break feeding
		default:
		}
		select {
		case feed <- it:
		case <-j.Stop:
			rep.Interrupted = true
			break feeding
		case <-ctx.Done():
			rep.Interrupted = true
			break feeding
		}
	}
	close(feed)
	wg.Wait()
	m.finish()
	rep.Failures = out.Failures()
	return rep, writeErr
}
