package config

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"os"
	"reflect"
	"regexp"
	"slices"
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

// An Option changes how Load and Parse read a configuration.
type Option func(*options)

type options struct {
	demo             bool
	checkPrompt      func(string) error
	checkJudgePrompt func(string) error
}

// WithDemo adds what --demo adds, before validation so that the file may
// name demo/alpha: a provider "demo" of type demo (unless the file has
// one) and a consortium over it per strategy: "demo" (synthesize),
// "demo-rank", "demo-vote" and "demo-cascade" (see addDemo).
func WithDemo() Option { return func(o *options) { o.demo = true } }

// WithPromptCheck makes Validate check every arbiter prompt with check
// (consortia.CheckPrompt, which this package may not import): a template
// that does not parse or names a field the engine lacks is a problem with
// its key path.
func WithPromptCheck(check func(text string) error) Option {
	return func(o *options) { o.checkPrompt = check }
}

// WithJudgePromptCheck makes Validate check every judge_prompt with check
// (consortia.CheckJudgePrompt), as WithPromptCheck does arbiter prompts.
func WithJudgePromptCheck(check func(text string) error) Option {
	return func(o *options) { o.checkJudgePrompt = check }
}

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
// Problems (or a read error). A YAML syntax error names the file and line.
func Load(path string, env Lookup, opts ...Option) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, err
		}
	}
	cfg, err := parse(data, env, path, opts)
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
func Parse(data []byte, env Lookup, opts ...Option) (*Config, error) {
	return parse(data, env, "", opts)
}

func parse(data []byte, env Lookup, name string, opts []Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, problems, bad := decode(data, env)
	if cfg == nil {
		if name != "" {
			// yaml says "yaml: line 3: ..."; an editor jumps to "file:3: ...".
			problems[0] = syntaxLine.ReplaceAllString(problems[0], name+":$1: ")
		}
		return nil, problems
	}
	cfg.checkPrompt, cfg.checkJudgePrompt = o.checkPrompt, o.checkJudgePrompt
	addEnvProviders(cfg, env)
	if o.demo {
		problems = append(problems, cfg.addDemo()...)
	}
	var invalid Problems
	if errors.As(cfg.Validate(), &invalid) {
		// A value that could not be decoded was reported as such; what
		// Validate says of the default left in its place would only
		// confuse.
		for _, p := range invalid {
			if !below(p, bad) {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	cfg.Warnings = append(cfg.Warnings, cfg.warnings()...)
	return cfg, nil
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// below reports whether problem's key path is one of paths or lies below
// one of them.
func below(problem string, paths map[string]bool) bool {
	p, _, _ := strings.Cut(problem, ": ")
	for {
		if paths[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// decode turns YAML into a Config with defaults for every omitted key, and
// lists the problems it found, and the key paths of the values that could
// not be decoded. Such a value keeps its default, so the Config holds the
// rest of the file; it is nil only for a syntax error.
//
// yaml.v3 does most of the work: Decode finds values of the wrong shape or
// type (time.Duration included) and ByteSize.UnmarshalYAML bad sizes, each
// going on past the first, and null means "keep the default". What it
// cannot do is done by one walk over the node tree, beside the Go types:
// ${VAR} expansion before the types are read, unknown keys with their
// paths and suggestions (yaml's KnownFields is not available to
// Node.Decode, and gives only a line), the position of every key path (to
// put paths on yaml's line-numbered errors), the keys present (so that an
// omitted key means its default and an unbuilt key is refused), and a
// float given for an integer (which yaml truncates without a word).
func decode(data []byte, env Lookup) (*Config, Problems, map[string]bool) {
	cfg := Defaults()
	cfg.present, cfg.unset = map[string]bool{}, map[string][]string{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{err.Error()}, nil
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		return cfg, nil, nil // an empty file
	}
	root := doc.Content[0]
	d := &decoder{env: env, cfg: cfg, bad: map[string]bool{}}
	d.walk(root, reflect.TypeFor[Config](), "")
	d.decode(root, cfg)

	// Maps and lists of structs are decoded again element by element on top
	// of their defaults, since yaml fills a new element from zero values.
	// (An UnmarshalYAML that starts from the defaults would not do: yaml
	// drops a whole element for one bad value in it, and that would hide
	// the element's other problems.)
	cfg.Providers = map[string]*Provider{}
	cfg.Consortia = map[string]*Consortium{}
	for name, n := range pairs(field(root, "providers")) {
		p := providerDefaults()
		d.decode(n, &p)
		p.Origin = "config file"
		if p.Type == TypeDemo {
			cfg.demoDefaults(name, &p)
		}
		cfg.Providers[name] = &p
		cfg.ProviderOrder = append(cfg.ProviderOrder, name)
	}
	for name, n := range pairs(field(root, "consortia")) {
		c := consortiumDefaults()
		d.decode(n, &c)
		c.Members = decodeList(d, field(n, "members"), c.Members, memberDefaults)
		c.Judges = decodeList(d, field(n, "judges"), c.Judges, judgeDefaults)
		cfg.Consortia[name] = &c
		cfg.ConsortiumOrder = append(cfg.ConsortiumOrder, name)
	}
	return cfg, d.sorted(), d.bad
}

// decodeList decodes a list of structs element by element on top of
// their defaults; it returns decoded as it is when n is not a list.
func decodeList[T any](d *decoder, n *yaml.Node, decoded []T, defaults func() T) []T {
	if n == nil || n.Kind != yaml.SequenceNode {
		return decoded
	}
	out := make([]T, len(n.Content))
	for i, en := range n.Content {
		out[i] = defaults()
		d.decode(en, &out[i])
	}
	return out
}

// decoder holds what one decode found.
type decoder struct {
	env      Lookup
	cfg      *Config
	nodes    []located // every key and value, to name the path of a line
	problems []problem
	bad      map[string]bool // paths of values that could not be decoded
}

// located is a node of the file with its key path.
type located struct {
	node *yaml.Node
	path string
	key  bool // the key of a mapping pair, not its value
}

// problem is a problem of the file, kept with its position so that the
// problems of several passes come out in file order.
type problem struct {
	line, column int
	text         string
}

func (d *decoder) add(n *yaml.Node, path, msg string) {
	d.problems = append(d.problems, problem{n.Line, n.Column, orRoot(path) + ": " + msg})
}

// sorted returns the problems in file order, each once: the root decode
// and the per-element decodes see the same nodes.
func (d *decoder) sorted() Problems {
	slices.SortStableFunc(d.problems, func(a, b problem) int {
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.column, b.column))
	})
	var out Problems
	for _, p := range d.problems {
		if !slices.Contains(out, p.text) {
			out = append(out, p.text)
		}
	}
	return out
}

// walk expands the scalars below n, which decodes into t (nil when the
// Go side is free-form), records the keys present and the position of
// every node, and reports floats given for integers.
func (d *decoder) walk(n *yaml.Node, t reflect.Type, path string) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	d.nodes = append(d.nodes, located{node: n, path: path})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			d.nodes = append(d.nodes, located{node: k, path: p, key: true})
			var vt reflect.Type
			if t != nil && t.Kind() == reflect.Struct {
				// What yaml's KnownFields does, with the key's path.
				f, ok := yamlFields(t)[k.Value]
				if !ok {
					d.add(k, p, "unknown key"+suggest(k.Value, t))
					continue
				}
				vt = f.Type
			} else if t != nil && t.Kind() == reflect.Map {
				vt = t.Elem()
			}
			d.walk(v, vt, p)
			if v.ShortTag() != "!!null" {
				d.cfg.present[p] = true
			}
		}
	case yaml.SequenceNode:
		var et reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			et = t.Elem()
		}
		for i, c := range n.Content {
			d.walk(c, et, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.ScalarNode:
		if t != nil && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map || t.Kind() == reflect.Slice) {
			return // a scalar where a section belongs stays as written, for its message
		}
		d.expand(n, path)
		if t != nil && t.Kind() == reflect.Int && n.ShortTag() == "!!float" {
			d.add(n, path, fmt.Sprintf("expected an integer, got %q", n.Value))
			d.bad[path] = true
		}
	}
}

// expand replaces ${VAR} and ${VAR:-default} in a scalar. The node stays a
// scalar whatever the value holds, so a variable can never change the
// file's structure; a value that was written quoted stays a string.
func (d *decoder) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	var unset []string
	n.Value = varRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		if v, ok := d.env(m[1]); ok && v != "" {
			return v
		}
		unset = append(unset, m[1])
		return m[3] // the default, or "" as a shell would; Validate reports an empty required value
	})
	if n.Value == "" && len(unset) > 0 {
		d.cfg.unset[path] = unset
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) != 0 {
		n.Tag = "!!str"
		return
	}
	// A plain scalar is resolved again from its new value, so that
	// `rpm: ${RPM:-60}` is a number.
	n.Tag = ""
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// decode decodes n into v, turning yaml's errors into problems with key
// paths.
func (d *decoder) decode(n *yaml.Node, v any) {
	err := n.Decode(v)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if err != nil {
			d.add(n, "", err.Error())
		}
		return
	}
	for _, e := range te.Errors {
		d.explain(e)
	}
}

var (
	typeError = regexp.MustCompile(`(?s)^line (\d+)(?: column (\d+))?: (.*)$`)
	// yaml.v3's own words for a value of the wrong type; it cuts values
	// longer than ten bytes to seven and "...".
	unmarshalMsg = regexp.MustCompile("(?s)^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	duplicateKey = regexp.MustCompile(`^mapping key "(.*)" already defined`)
)

// explain turns one of yaml's "line N: ..." errors into a problem with a
// key path, found from the line (and column, which ByteSize gives), and
// for a wrong type, from the value yaml names.
func (d *decoder) explain(e string) {
	m := typeError.FindStringSubmatch(e)
	if m == nil {
		d.problems = append(d.problems, problem{text: e})
		return
	}
	line, _ := strconv.Atoi(m[1])
	column, _ := strconv.Atoi(m[2])
	msg := m[3]
	um := unmarshalMsg.FindStringSubmatch(msg)
	dk := duplicateKey.FindStringSubmatch(msg)
	at := func(l located) bool {
		n := l.node
		if n.Line != line || column != 0 && n.Column != column {
			return false
		}
		switch {
		case dk != nil:
			return l.key && n.Value == dk[1]
		case um == nil:
			return !l.key
		case um[1] == "!!map":
			return !l.key && n.Kind == yaml.MappingNode
		case um[1] == "!!seq":
			return !l.key && n.Kind == yaml.SequenceNode
		}
		cut, shortened := strings.CutSuffix(um[2], "...")
		return !l.key && n.Kind == yaml.ScalarNode && (n.Value == um[2] || shortened && len(um[2]) == 10 && strings.HasPrefix(n.Value, cut))
	}
	// Several nodes begin on a line (a section and its first key, a flow
	// mapping and its values): the one yaml means is the deepest, which
	// the walk met last.
	i := len(d.nodes) - 1
	for i >= 0 && !at(d.nodes[i]) {
		i--
	}
	if i < 0 {
		d.problems = append(d.problems, problem{line: line, column: column, text: e})
		return
	}
	l := d.nodes[i]
	if dk == nil {
		d.bad[l.path] = true
	}
	if um != nil {
		msg = fmt.Sprintf("expected %s, got %s", want(um[3], l.node), kindName(l.node))
	}
	d.add(l.node, l.path, msg)
}

// want says in words what a Go type takes.
func want(goType string, got *yaml.Node) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config.") && goType != "config.ByteSize":
		return "a mapping"
	case got.Kind != yaml.ScalarNode:
		return "a single value"
	}
	if w, ok := map[string]string{
		"int": "an integer", "int64": "an integer", "float64": "a number", "bool": "true or false",
		"time.Duration": "a duration such as 30s or 2m",
	}[goType]; ok {
		return w
	}
	return goType
}

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

// suggest names a known key of t close to an unknown one.
func suggest(key string, t reflect.Type) string {
	if t == nil {
		return ""
	}
	var names []string
	for name := range yamlFields(t) {
		names = append(names, name)
	}
	slices.Sort(names)
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
