package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/consortium-dev/consortium/openai"
)

// Item is one input item: a prompt, or a conversation, with its id.
type Item struct {
	// ID is the line's "id" (a string, or a number written as its text),
	// or else its line number.
	ID string
	// Line is the line number in the input file, from 1.
	Line int
	// Messages is the conversation to answer: the line's messages, or one
	// user message holding its prompt.
	Messages []openai.Message
	// Reference is the line's "reference" answer (eval), nil when absent.
	Reference *string
	// Raw is the input line as read (a .txt line as {"id","prompt"}), so
	// outputs can carry the caller's own fields on.
	Raw json.RawMessage
	// Repeats is how many later lines repeated this one byte for byte,
	// id and all: exact duplicates, which Read drops.
	Repeats int
}

// Text is the item's text as embeddings and duplicate checks see it: the
// prompt, or each message's text on a line of its own.
func (it *Item) Text() string {
	if len(it.Messages) == 1 {
		return it.Messages[0].Content.String()
	}
	var b strings.Builder
	for i, m := range it.Messages {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Role + ": " + m.Content.String())
	}
	return b.String()
}

// InputError is an input file that cannot be used: every problem found,
// each with its line number. A file with any problem is refused as a
// whole, before any call, so nothing is half-done.
type InputError struct {
	Path     string
	Problems []string
}

// maxProblems bounds the problems an InputError lists.
const maxProblems = 20

func (e *InputError) Error() string {
	s := fmt.Sprintf("%s: %d problem(s), nothing was done:", e.Path, len(e.Problems))
	for i, p := range e.Problems {
		if i == maxProblems {
			s += fmt.Sprintf("\n  ... and %d more", len(e.Problems)-maxProblems)
			break
		}
		s += "\n  " + p
	}
	return s
}

// inputLine is an input line of a .jsonl file.
type inputLine struct {
	ID        json.RawMessage  `json:"id"`
	Prompt    *string          `json:"prompt"`
	Messages  []openai.Message `json:"messages"`
	Reference json.RawMessage  `json:"reference"`
}

// ReadFile reads an input file: .txt is one prompt per line, anything
// else is JSON lines of {"id", "prompt"} or {"id", "messages"}, with an
// optional "reference". Blank lines are skipped. A malformed line, an
// empty prompt, a line with both or neither of prompt and messages, or an
// id given twice refuses the whole file with an *InputError listing each
// line's problem; a line that repeats an earlier one byte for byte is an
// exact duplicate, dropped (and counted in the earlier item's Repeats).
func ReadFile(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path, strings.EqualFold(filepath.Ext(path), ".txt"))
}

// Read reads input lines from r, as ReadFile reads a file named name.
func Read(r io.Reader, name string, text bool) ([]Item, error) {
	var (
		items    []Item
		problems []string
		seen     = map[string]int{} // id: its item's index + 1
	)
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if n == 1 {
			// Windows editors start a UTF-8 file with a byte order mark.
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		if len(line) > 0 {
			it, problem := parseLine(bytes.TrimRight(line, "\r\n"), n, text)
			switch {
			case problem != "":
				problems = append(problems, fmt.Sprintf("line %d: %s", n, problem))
			case it == nil: // blank
			case seen[it.ID] > 0:
				first := &items[seen[it.ID]-1]
				if bytes.Equal(first.Raw, it.Raw) {
					first.Repeats++
					break
				}
				problems = append(problems, fmt.Sprintf("line %d: id %q is also on line %d", n, it.ID, first.Line))
			default:
				items = append(items, *it)
				seen[it.ID] = len(items)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(problems) > 0 {
		return nil, &InputError{Path: name, Problems: problems}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no items (the file is empty)", name)
	}
	return items, nil
}

// parseLine reads line n; a blank line is (nil, "").
func parseLine(line []byte, n int, text bool) (*Item, string) {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, ""
	}
	id := strconv.Itoa(n)
	if text {
		prompt := string(line)
		raw, _ := json.Marshal(map[string]string{"id": id, "prompt": prompt})
		return &Item{ID: id, Line: n, Messages: []openai.Message{{Role: "user", Content: openai.TextContent(prompt)}}, Raw: raw}, ""
	}
	var in inputLine
	if err := json.Unmarshal(line, &in); err != nil {
		var fe *openai.FieldError
		if errors.As(err, &fe) {
			return nil, "malformed: " + fe.Error()
		}
		return nil, "malformed JSON: " + err.Error()
	}
	it := &Item{ID: id, Line: n, Raw: json.RawMessage(bytes.Clone(line))}
	if len(in.ID) > 0 && string(in.ID) != "null" {
		var s string
		var f json.Number
		switch {
		case json.Unmarshal(in.ID, &s) == nil && s != "":
			it.ID = s
		case json.Unmarshal(in.ID, &f) == nil:
			it.ID = f.String()
		default:
			return nil, "id must be a non-empty string or a number"
		}
	}
	switch {
	case in.Prompt != nil && in.Messages != nil:
		return nil, "both prompt and messages: give one"
	case in.Prompt != nil:
		if strings.TrimSpace(*in.Prompt) == "" {
			return nil, "empty prompt"
		}
		it.Messages = []openai.Message{{Role: "user", Content: openai.TextContent(*in.Prompt)}}
	case in.Messages != nil:
		if len(in.Messages) == 0 {
			return nil, "empty messages"
		}
		user := false
		for _, m := range in.Messages {
			user = user || m.Role == "user" && strings.TrimSpace(m.Content.String()) != ""
		}
		if !user {
			return nil, "messages have no user message with text"
		}
		it.Messages = in.Messages
	default:
		return nil, `neither "prompt" nor "messages"`
	}
	if len(in.Reference) > 0 && string(in.Reference) != "null" {
		var s string
		var f json.Number
		switch {
		case json.Unmarshal(in.Reference, &s) == nil:
			it.Reference = &s
		case json.Unmarshal(in.Reference, &f) == nil:
			r := f.String()
			it.Reference = &r
		default:
			return nil, "reference must be a string or a number"
		}
	}
	return it, ""
}
