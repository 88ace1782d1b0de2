package policyfile

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with (or worth a warning about) a file, located
// as precisely as the file allows.
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Object  string `json:"object,omitempty"` // `rule "billing-read"`, `quota "dev-tier"`, `rule #3`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Object != "" {
		b.WriteString(p.Object + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found, in file order. As an error it prints one
// problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// sorted orders problems by line, keeping discovery order within a line.
func (ps Problems) sorted() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
	return ps
}

// File is a parsed policy file: the document, which top-level sections it
// has, and the line of every rule, quota and field.
type File struct {
	Name string
	Doc  Document
	// HasRules and HasQuotas say whether the file has a rules: or quotas:
	// section. A missing section is left alone by apply, so a file that only
	// manages rules cannot delete quotas by omission, even with --prune.
	HasRules, HasQuotas bool

	header map[string]int
	rules  []position
	quotas []position
}

// position is where an object and each of its fields start. Group list
// items are filed as "allow[0]", "deny[1]".
type position struct {
	line   int
	fields map[string]int
	// broken: the object had structural problems, already reported; its
	// values are not validated, which would only repeat them in other words.
	broken bool
}

// RuleLine is the line of field of the i-th rule (the rule's own line when
// the field is not in the file).
func (f *File) RuleLine(i int, field string) int { return lineOf(f.rules, i, field) }

// QuotaLine is the line of field of the i-th quota.
func (f *File) QuotaLine(i int, field string) int { return lineOf(f.quotas, i, field) }

func lineOf(ps []position, i int, field string) int {
	if i < 0 || i >= len(ps) {
		return 0
	}
	if l, ok := ps[i].fields[field]; ok {
		return l
	}
	return ps[i].line
}

var (
	rootFieldNames  = []string{"apiVersion", "kind", "rules", "quotas"}
	ruleFieldNames  = []string{"name", "description", "path", "methods", "hosts", "allow", "allow_authenticated", "public", "deny", "scopes", "mode", "enabled"}
	quotaFieldNames = []string{"name", "group", "limit", "window", "path", "methods", "per"}
	groupFieldNames = []string{"name", "id"}
)

// Parse reads a policy document in YAML or JSON (JSON is YAML). Unknown
// fields are errors, not ignored: a misspelt "alow" would otherwise silently
// drop a grant. It reports every structural problem it finds as Problems,
// and still returns what it could read (nil only when the text is not YAML)
// so that Validate can report value problems in the same run; Load does both.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Name: name}
	d := &decoder{file: name}
	root, err := parseYAML(data)
	if err != nil {
		var p Problem
		if errors.As(err, &p) {
			p.File = name
			return nil, Problems{p}
		}
		return nil, err
	}
	f.header = map[string]int{}
	if deref(root).Kind != yaml.MappingNode {
		d.addf(root, "", "", "the document must be a mapping (apiVersion, kind, rules, quotas), not "+kindName(deref(root)))
		return nil, d.problems
	}
	d.mapping(root, "", rootFieldNames, func(key string, k, v *yaml.Node) {
		f.header[key] = k.Line
		switch key {
		case "apiVersion":
			f.Doc.APIVersion = d.str(v, "", key)
		case "kind":
			f.Doc.Kind = d.str(v, "", key)
		case "rules":
			f.HasRules = true
			if d.nullSection(k, v) {
				return
			}
			for i, item := range d.seq(v, "", key) {
				r, pos := d.rule(item, i)
				f.Doc.Rules = append(f.Doc.Rules, r)
				f.rules = append(f.rules, pos)
			}
		case "quotas":
			f.HasQuotas = true
			if d.nullSection(k, v) {
				return
			}
			for i, item := range d.seq(v, "", key) {
				q, pos := d.quota(item, i)
				f.Doc.Quotas = append(f.Doc.Quotas, q)
				f.quotas = append(f.quotas, pos)
			}
		}
	})
	if len(d.problems) > 0 {
		return f, d.problems.sorted()
	}
	return f, nil
}

// nullSection refuses a top-level section written with no value ("rules:",
// "rules: ~", JSON null). Read as an empty list it would say "no rules",
// and with --prune delete every stored one, when the likelier story is an
// unfinished edit or a templating variable that came out empty; "[]" says
// "none" on purpose.
func (d *decoder) nullSection(k, v *yaml.Node) bool {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!null" {
		return false
	}
	d.addf(k, "", k.Value, "is empty; write `"+k.Value+": []` to mean no "+k.Value)
	return true
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the single document's root node.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problem{Line: 1, Message: "the file is empty"}
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, Problem{Line: line, Message: "not valid YAML or JSON: " + m[2]}
		}
		return nil, Problem{Line: 1, Message: "not valid YAML or JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = 0
		}
		return nil, Problem{Line: line, Message: "more than one YAML document (---); put the whole policy in one"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if n := findAlias(root); n != nil {
		// Following aliases would let a few lines expand exponentially
		// (a "billion laughs"); a reviewable policy spells its values out.
		return nil, Problem{Line: n.Line, Message: "anchors and aliases (&name, *name, <<) are not supported: write the values out"}
	}
	return root, nil
}

// findAlias returns the first alias or anchored node, without following
// aliases, so it runs in time linear in the text.
func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// decoder walks yaml.Nodes, collecting problems instead of stopping at the
// first, so that one run of apply reports everything wrong with a file.
type decoder struct {
	file     string
	problems Problems
}

func (d *decoder) addf(n *yaml.Node, obj, field, msg string) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Object: obj, Field: field, Message: msg})
}

// deref is the identity now that parseYAML refuses aliases; it stays as
// the one place to change should aliases ever be allowed (with a budget).
func deref(n *yaml.Node) *yaml.Node { return n }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a scalar"
}

// mapping calls fn for each key of n in order, refusing unknown and
// repeated keys.
func (d *decoder) mapping(n *yaml.Node, obj string, allowed []string, fn func(key string, k, v *yaml.Node)) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		what := "the document"
		if obj != "" {
			what = obj
		}
		d.addf(n, obj, "", what+" must be a mapping (key: value), not "+kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		key := k.Value
		if first, dup := seen[key]; dup {
			d.addf(k, obj, key, "repeated key (first on line "+strconv.Itoa(first)+")")
			continue
		}
		seen[key] = k.Line
		if !slices.Contains(allowed, key) {
			d.addf(k, obj, "", "unknown field "+strconv.Quote(key)+" (known: "+strings.Join(allowed, ", ")+")")
			continue
		}
		fn(key, k, v)
	}
}

func (d *decoder) seq(n *yaml.Node, obj, field string) []*yaml.Node {
	n = deref(n)
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil
	case n.Kind != yaml.SequenceNode:
		d.addf(n, obj, field, "must be a list, not "+kindName(n))
		return nil
	}
	return n.Content
}

// str reads a scalar as text, whatever YAML would have resolved it to: a
// rule named 2024 is the name "2024", not a number.
func (d *decoder) str(n *yaml.Node, obj, field string) string {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		d.addf(n, obj, field, "must be a string, not "+kindName(n))
		return ""
	}
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

func (d *decoder) boolean(n *yaml.Node, obj, field string) bool {
	var b bool
	if n = deref(n); n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.addf(n, obj, field, "must be true or false")
	}
	return b
}

func (d *decoder) integer(n *yaml.Node, obj, field string) int64 {
	var i int64
	if n = deref(n); n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.addf(n, obj, field, "must be a whole number")
	}
	return i
}

// strList accepts a list of scalars, or one scalar for a one-item list.
func (d *decoder) strList(n *yaml.Node, obj, field string) []string {
	if n = deref(n); n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return nil
		}
		return []string{n.Value}
	}
	var out []string
	for _, item := range d.seq(n, obj, field) {
		out = append(out, d.str(item, obj, field))
	}
	return out
}

// group accepts "Finance", "00g…" or {name: Finance, id: 00g…}.
func (d *decoder) group(n *yaml.Node, obj, field string) Group {
	n = deref(n)
	if n.Kind == yaml.ScalarNode {
		return Group{Name: d.str(n, obj, field)}
	}
	var g Group
	d.mapping(n, obj, groupFieldNames, func(key string, _, v *yaml.Node) {
		if key == "name" {
			g.Name = d.str(v, obj, field+"."+key)
		} else {
			g.ID = d.str(v, obj, field+"."+key)
		}
	})
	return g
}

func (d *decoder) groups(n *yaml.Node, obj, field string, pos position) []Group {
	if n = deref(n); n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		pos.fields[field+"[0]"] = n.Line
		return []Group{d.group(n, obj, field)}
	}
	var out []Group
	for i, item := range d.seq(n, obj, field) {
		pos.fields[field+"["+strconv.Itoa(i)+"]"] = item.Line
		out = append(out, d.group(item, obj, field))
	}
	return out
}

// objectName names the i-th rule or quota for messages before its name is
// known to be valid: by name when it has one, else by position.
func objectName(kind string, n *yaml.Node, i int) string {
	if n = deref(n); n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if v := deref(n.Content[j+1]); n.Content[j].Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
				return kind + " " + strconv.Quote(v.Value)
			}
		}
	}
	return kind + " #" + strconv.Itoa(i+1)
}

func (d *decoder) rule(n *yaml.Node, i int) (r Rule, pos position) {
	obj := objectName("rule", n, i)
	pos = position{line: deref(n).Line, fields: map[string]int{}}
	r = Rule{Enabled: true}
	before := len(d.problems)
	defer func() { pos.broken = len(d.problems) > before }()
	d.mapping(n, obj, ruleFieldNames, func(key string, k, v *yaml.Node) {
		pos.fields[key] = k.Line
		switch key {
		case "name":
			r.Name = d.str(v, obj, key)
		case "description":
			r.Description = d.str(v, obj, key)
		case "path":
			r.Path = d.str(v, obj, key)
		case "methods":
			r.Methods = d.strList(v, obj, key)
		case "hosts":
			r.Hosts = d.strList(v, obj, key)
		case "scopes":
			r.Scopes = d.strList(v, obj, key)
		case "allow":
			r.Allow = d.groups(v, obj, key, pos)
		case "deny":
			r.Deny = d.groups(v, obj, key, pos)
		case "allow_authenticated":
			r.AllowAuthenticated = d.boolean(v, obj, key)
		case "public":
			r.Public = d.boolean(v, obj, key)
		case "mode":
			r.Mode = d.str(v, obj, key)
		case "enabled":
			r.Enabled = d.boolean(v, obj, key)
		}
	})
	return r, pos
}

func (d *decoder) quota(n *yaml.Node, i int) (q Quota, pos position) {
	obj := objectName("quota", n, i)
	pos = position{line: deref(n).Line, fields: map[string]int{}}
	before := len(d.problems)
	defer func() { pos.broken = len(d.problems) > before }()
	d.mapping(n, obj, quotaFieldNames, func(key string, k, v *yaml.Node) {
		pos.fields[key] = k.Line
		switch key {
		case "name":
			q.Name = d.str(v, obj, key)
		case "group":
			q.Group = d.group(v, obj, key)
		case "limit":
			q.Limit = d.integer(v, obj, key)
		case "window":
			q.Window = d.str(v, obj, key)
		case "path":
			q.Path = d.str(v, obj, key)
		case "methods":
			q.Methods = d.strList(v, obj, key)
		case "per":
			q.Per = d.str(v, obj, key)
		}
	})
	return q, pos
}
