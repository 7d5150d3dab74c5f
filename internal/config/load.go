package config

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problems is every problem found in a configuration, each with its key
// path. It is the error Load and Validate return.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(p), strings.Join(p, "\n  "))
}

// Lookup reads an environment variable; os.LookupEnv in production, a map in
// tests.
type Lookup func(name string) (string, bool)

// Path picks the configuration file as the command line describes: the -c
// flag, else $CONSORTIUM_CONFIG, else ./consortium.yaml if it exists, else
// "" for the built-in defaults.
func Path(flag string, env Lookup) string {
	if flag != "" {
		return flag
	}
	if p, ok := env("CONSORTIUM_CONFIG"); ok && p != "" {
		return p
	}
	if _, err := os.Stat("consortium.yaml"); err == nil {
		return "consortium.yaml"
	}
	return ""
}

// Load reads the file at path ("" for the built-in defaults), expands
// ${VAR} references, merges the providers the environment names, and
// validates the result. On error the Config is nil and the error is
// Problems (or a read error).
func Load(path string, env Lookup) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, err
		}
	}
	cfg, err := Parse(data, env)
	if err != nil {
		return nil, err
	}
	if path != "" {
		cfg.Source = path
	}
	return cfg, nil
}

// Parse decodes a configuration from YAML (empty data means the built-in
// defaults), merges environment providers and validates it. Every problem
// is reported at once: the file's unknown keys and wrong types along with
// what Validate finds in the rest.
func Parse(data []byte, env Lookup) (*Config, error) {
	cfg, problems := decode(data, env)
	if cfg == nil {
		return nil, problems
	}
	addEnvProviders(cfg, env)
	var invalid Problems
	if errors.As(cfg.Validate(), &invalid) {
		problems = append(problems, invalid...)
	}
	if len(problems) > 0 {
		// The root decode and the per-element decodes see the same nodes,
		// so one bad value would otherwise be reported more than once.
		return nil, dedupe(problems)
	}
	return cfg, nil
}

// decode turns YAML into a Config with defaults for every omitted key, and
// lists the problems it found. Keys with problems are left out, so the
// Config holds the rest of the file; it is nil when not even that could be
// read (a syntax error, or a file that is not a mapping).
func decode(data []byte, env Lookup) (*Config, Problems) {
	cfg := Defaults()
	cfg.present = map[string]bool{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{"yaml: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return cfg, nil
	}
	w := walker{env: env, present: cfg.present, lines: map[int]string{}}
	if !w.walk(root, reflect.TypeFor[Config](), "") {
		return nil, w.problems
	}
	problems := w.problems
	decodeInto := func(n *yaml.Node, v any) {
		if err := n.Decode(v); err != nil {
			problems = append(problems, w.explain(err)...)
		}
	}
	decodeInto(root, cfg)

	// Maps and lists of structs are decoded again element by element on top
	// of their defaults, since yaml fills a new element from zero values.
	cfg.Providers = map[string]*Provider{}
	cfg.Consortia = map[string]*Consortium{}
	for name, n := range pairs(field(root, "providers")) {
		p := providerDefaults()
		decodeInto(n, &p)
		p.Origin = "config file"
		cfg.Providers[name] = &p
		cfg.ProviderOrder = append(cfg.ProviderOrder, name)
	}
	for name, n := range pairs(field(root, "consortia")) {
		c := consortiumDefaults()
		decodeInto(n, &c)
		if members := field(n, "members"); members != nil && members.Kind == yaml.SequenceNode {
			c.Members = make([]Member, len(members.Content))
			for i, mn := range members.Content {
				m := memberDefaults()
				decodeInto(mn, &m)
				c.Members[i] = m
			}
		}
		cfg.Consortia[name] = &c
		cfg.ConsortiumOrder = append(cfg.ConsortiumOrder, name)
	}
	return cfg, problems
}

// dedupe drops repeated problems, keeping the first of each.
func dedupe(problems Problems) Problems {
	seen := map[string]bool{}
	out := problems[:0]
	for _, p := range problems {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// walker checks a YAML tree against the Go type it will decode into before
// anything is decoded: unknown keys and values of the wrong shape are
// reported with their path and removed (so that the rest decodes and is
// validated), null values are dropped (so they mean "the default"), ${VAR}
// references are expanded, and the keys present are recorded.
type walker struct {
	env      Lookup
	present  map[string]bool
	lines    map[int]string // line of a value → its key path, to explain decode errors
	problems Problems
}

// walk returns false when n cannot be decoded into t; the caller then drops
// it, and its default applies.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	w.lines[n.Line] = path
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.problems = append(w.problems, fmt.Sprintf("%s: expected a mapping, got %s", orRoot(path), kindName(n)))
			return false
		}
		w.dropNulls(n)
		fields := yamlFields(t)
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			p := join(path, key)
			f, ok := fields[key]
			if !ok {
				w.problems = append(w.problems, fmt.Sprintf("%s: unknown key%s", p, suggest(key, fields)))
				continue
			}
			if w.walk(val, f.Type, p) {
				w.present[p] = true
				kept = append(kept, n.Content[i], val)
			}
		}
		n.Content = kept
		return true
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.problems = append(w.problems, fmt.Sprintf("%s: expected a mapping, got %s", orRoot(path), kindName(n)))
			return false
		}
		if elem := t.Elem(); elem.Kind() == reflect.Struct || elem.Kind() == reflect.Pointer && elem.Elem().Kind() == reflect.Struct {
			// `providers: {ollama: }` names a provider with every default; dropping
			// it would accept the key and silently ignore it.
			for i := 1; i < len(n.Content); i += 2 {
				if v := n.Content[i]; v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					v.Kind, v.Tag, v.Value = yaml.MappingNode, "!!map", ""
				}
			}
		}
		w.dropNulls(n)
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(path, n.Content[i].Value)
			if w.walk(n.Content[i+1], t.Elem(), p) {
				w.present[p] = true
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
		return true
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.problems = append(w.problems, fmt.Sprintf("%s: expected a list, got %s", orRoot(path), kindName(n)))
			return false
		}
		// A bad element drops the whole list rather than shifting the
		// indices of the elements after it.
		ok := true
		for i, c := range n.Content {
			ok = w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)) && ok
		}
		return ok
	case reflect.Interface:
		w.expandAll(n)
		return true
	}
	if n.Kind != yaml.ScalarNode {
		w.problems = append(w.problems, fmt.Sprintf("%s: expected a single value, got %s", path, kindName(n)))
		return false
	}
	w.expand(n)
	switch {
	case n.ShortTag() == "!!null":
		// a variable that expanded to nothing: the default
	case t == reflect.TypeFor[ByteSize]():
		// yaml reports a TextUnmarshaler's error without a line, so the size
		// is checked here, where its path is known.
		if _, err := ParseByteSize(n.Value); err != nil {
			w.problems = append(w.problems, path+": "+err.Error())
			return false
		}
	case t.Kind() == reflect.Int && n.ShortTag() == "!!float":
		// yaml would truncate count: 1.5 to 1 without a word.
		w.problems = append(w.problems, fmt.Sprintf("%s: expected an integer, got %q", path, n.Value))
		return false
	}
	return true
}

// expand replaces ${VAR} and ${VAR:-default} in a scalar. The node stays a
// scalar whatever the value holds, so a variable can never change the
// file's structure; a value that was written quoted stays a string.
func (w *walker) expand(n *yaml.Node) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = varRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		if v, ok := w.env(m[1]); ok && v != "" {
			return v
		}
		return m[3] // the default, or "" as a shell would; Validate reports an empty required value
	})
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) != 0 {
		n.Tag = "!!str"
		return
	}
	// A plain scalar is resolved again from its new value, so that
	// `rpm: ${RPM:-60}` is a number.
	n.Tag = ""
}

// expandAll expands every scalar below n (free-form values such as params).
func (w *walker) expandAll(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		w.expand(n)
		return
	}
	for _, c := range n.Content {
		w.expandAll(c)
	}
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// dropNulls removes key: null pairs from a mapping, so an empty value means
// the default rather than the zero value.
func (w *walker) dropNulls(n *yaml.Node) {
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue
		}
		kept = append(kept, n.Content[i], v)
	}
	n.Content = kept
}

// explain rewrites yaml's "line N: ..." decode errors with key paths.
func (w *walker) explain(err error) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{err.Error()}
	}
	out := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		rest, ok := strings.CutPrefix(e, "line ")
		if num, msg, found := strings.Cut(rest, ": "); ok && found {
			if line, err := strconv.Atoi(num); err == nil {
				if p := w.lines[line]; p != "" {
					out = append(out, p+": "+simplify(msg))
					continue
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// simplify turns "cannot unmarshal !!str `abc` into int" into "expected an
// integer, got \"abc\"".
func simplify(msg string) string {
	m := unmarshalMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{
		"int": "an integer", "int64": "an integer", "float64": "a number", "bool": "true or false",
		"time.Duration": "a duration such as 30s or 2m", "string": "a string",
	}[m[2]]
	if want == "" {
		want = m[2]
	}
	return fmt.Sprintf("expected %s, got %q", want, m[1])
}

var unmarshalMsg = regexp.MustCompile("(?s)cannot unmarshal !!\\w+ `(.*)` into (\\S+)")

// yamlFields maps a struct's yaml keys to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f
	}
	return fields
}

// suggest names a known key close to an unknown one.
func suggest(key string, fields map[string]reflect.StructField) string {
	var names []string
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	best, bestDist := "", 3 // only names at most 2 edits away are suggested
	for _, name := range names {
		if d := distance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

// pairs iterates a mapping node's key/value pairs in file order; nothing
// when n is not a mapping.
func pairs(n *yaml.Node) iter.Seq2[string, *yaml.Node] {
	return func(yield func(string, *yaml.Node) bool) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !yield(n.Content[i].Value, n.Content[i+1]) {
				return
			}
		}
	}
}

// field returns the value node of key in a mapping node, or nil.
func field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
