package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// Output is a JSON lines file that a job appends whole lines to and that
// a rerun resumes. Each line is written with one write of the line and
// its newline to a file opened for appending, so a line is either all
// there or (after a crash mid-write) a torn tail that the next Open cuts
// off. Lines are written in the order items finish.
//
// An output whose lines carry no id (dataset generate --format openai)
// keeps the finished ids in a sibling <out>.progress file instead, one
// JSON string a line: the id is written there before its line, so a
// crash between the two leaves one id more than lines, which Open drops.
type Output struct {
	path string

	mu       sync.Mutex
	f        *os.File
	progress *os.File // nil when the lines carry their ids
	errs     *os.File
	failures []Failure
	done     map[string]bool
	// Lines are the whole lines the file held when opened, without their
	// newlines (eval reads its earlier scores back from them).
	Lines [][]byte
}

// Failure is an item that failed, as the errors file and the final
// report list it.
type Failure struct {
	ID    string `json:"id"`
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ProgressPath is where an output without ids keeps its finished ids.
func ProgressPath(out string) string { return out + ".progress" }

// ErrorsPath is where a job lists the items that failed in its last run.
func ErrorsPath(out string) string { return out + ".errors.jsonl" }

// OpenOutput opens path for a job, creating it if needed, cutting a torn
// last line, and reading the ids already finished: each line's "id", or
// with sideIDs those of the progress file. The errors file is started
// anew: it lists the failures of this run.
func OpenOutput(path string, sideIDs bool) (*Output, error) {
	o := &Output{path: path, done: map[string]bool{}}
	var err error
	if o.Lines, err = wholeLines(path); err != nil {
		return nil, err
	}
	if sideIDs {
		ids, err := wholeLines(ProgressPath(path))
		if err != nil {
			return nil, err
		}
		if len(ids) < len(o.Lines) {
			return nil, fmt.Errorf("%s has %d lines but %s records %d finished ids: it was not written by this command; move it away or choose another --out", path, len(o.Lines), ProgressPath(path), len(ids))
		}
		if len(ids) > len(o.Lines) {
			// The crash window: an id recorded whose line never made it.
			if err := truncateLines(ProgressPath(path), ids[:len(o.Lines)]); err != nil {
				return nil, err
			}
			ids = ids[:len(o.Lines)]
		}
		for _, id := range ids {
			o.done[progressID(id)] = true
		}
	} else {
		for n, line := range o.Lines {
			var v struct {
				ID *string `json:"id"`
			}
			if err := json.Unmarshal(line, &v); err != nil || v.ID == nil {
				return nil, fmt.Errorf("%s: line %d is not an output line of this command (no string id): move the file away or choose another --out", path, n+1)
			}
			o.done[*v.ID] = true
		}
	}
	if o.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	if sideIDs {
		if o.progress, err = os.OpenFile(ProgressPath(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			o.f.Close()
			return nil, err
		}
	}
	return o, nil
}

// wholeLines reads a file's whole lines, cutting a torn last line (one
// without its newline) from the file; a missing file has none.
func wholeLines(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	if end < len(data) {
		if err := os.Truncate(path, int64(end)); err != nil {
			return nil, fmt.Errorf("cutting the torn last line of %s: %w", path, err)
		}
	}
	var lines [][]byte
	for line := range bytes.Lines(data[:end]) {
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// progressID is the id a progress file's line records: a JSON string,
// or (as first written) the id itself.
func progressID(line []byte) string {
	var id string
	if json.Unmarshal(line, &id) == nil {
		return id
	}
	return string(line)
}

// truncateLines rewrites path as lines, through a temporary file renamed
// over it.
func truncateLines(path string, lines [][]byte) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return writeAtomic(path, b.Bytes())
}

// writeAtomic writes data to path through a temporary file beside it,
// renamed over it: a reader sees the old file or the new one whole.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Done reports whether id was finished by an earlier run.
func (o *Output) Done(id string) bool {
	if o == nil {
		return false
	}
	return o.done[id]
}

// Write appends v as one JSON line for the item id.
func (o *Output) Write(id string, v any) error {
	line, err := marshalLine(v)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	if o.progress != nil {
		// As a JSON string: an id may hold a line break.
		rec, _ := json.Marshal(id)
		if _, err := o.progress.Write(append(rec, '\n')); err != nil {
			return fmt.Errorf("%s: %w", ProgressPath(o.path), err)
		}
	}
	if _, err := o.f.Write(line); err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	o.done[id] = true
	return nil
}

// Fail records a failed item in the errors file (created on the first
// failure) and in Failures.
func (o *Output) Fail(f Failure) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures = append(o.failures, f)
	if o.path == "" {
		return nil
	}
	if o.errs == nil {
		var err error
		if o.errs, err = os.Create(ErrorsPath(o.path)); err != nil {
			return err
		}
	}
	line, err := marshalLine(f)
	if err != nil {
		return err
	}
	_, err = o.errs.Write(line)
	return err
}

// Failures returns the failures recorded so far, in the order they came.
func (o *Output) Failures() []Failure {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Failure(nil), o.failures...)
}

// Close closes the files. A run without failures removes the errors file
// an earlier run left.
func (o *Output) Close() error {
	var errs []error
	if o.f != nil {
		errs = append(errs, o.f.Close())
	}
	if o.progress != nil {
		errs = append(errs, o.progress.Close())
	}
	if o.errs != nil {
		errs = append(errs, o.errs.Close())
	} else if o.path != "" {
		if err := os.Remove(ErrorsPath(o.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newMemoryOutput is an Output that keeps failures only (eval without
// --out).
func newMemoryOutput() *Output { return &Output{done: map[string]bool{}} }

// marshalLine encodes v as one JSON line, newline included, without
// HTML escaping.
func marshalLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
