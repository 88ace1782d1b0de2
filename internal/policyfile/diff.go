package policyfile

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Op is what applying a document does to one object.
type Op string

const (
	OpAdd    Op = "add"
	OpChange Op = "change"
	OpRemove Op = "remove"
	// OpKeep: the object is stored but not in the file, and is kept because
	// --prune was not given.
	OpKeep Op = "not-in-file"
)

// FieldChange is one field of an object, before and after, as printed.
type FieldChange struct {
	Field  string `json:"field"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// RuleChange is what happens to one rule. Before is nil for an add, After
// for a remove.
type RuleChange struct {
	Op     Op            `json:"op"`
	Name   string        `json:"name"`
	Fields []FieldChange `json:"fields,omitempty"`
	Before *Rule         `json:"-"`
	After  *Rule         `json:"-"`
}

// QuotaChange is what happens to one quota.
type QuotaChange struct {
	Op     Op            `json:"op"`
	Name   string        `json:"name"`
	Fields []FieldChange `json:"fields,omitempty"`
	Before *Quota        `json:"-"`
	After  *Quota        `json:"-"`
}

// Counts summarises changes of one kind of object.
type Counts struct {
	Added     int `json:"added"`
	Changed   int `json:"changed"`
	Removed   int `json:"removed"`
	Unchanged int `json:"unchanged"`
	NotInFile int `json:"not_in_file"`
}

// Plan is the difference between the stored policy and a desired one: what
// apply prints, and then does in one transaction.
type Plan struct {
	Rules        []RuleChange  `json:"rules"`
	Quotas       []QuotaChange `json:"quotas"`
	RuleCounts   Counts        `json:"rule_counts"`
	QuotaCounts  Counts        `json:"quota_counts"`
	ManageRules  bool          `json:"manage_rules"`
	ManageQuotas bool          `json:"manage_quotas"`
}

// Empty reports whether applying the plan would write nothing.
func (p *Plan) Empty() bool {
	return p.RuleCounts.Added+p.RuleCounts.Changed+p.RuleCounts.Removed+
		p.QuotaCounts.Added+p.QuotaCounts.Changed+p.QuotaCounts.Removed == 0
}

// DiffOptions says what the desired document is authoritative for.
type DiffOptions struct {
	// Prune removes stored objects the document does not have; without it
	// they are kept and listed as OpKeep.
	Prune bool
	// Rules and Quotas say whether the document manages that kind of object
	// at all (File.HasRules, File.HasQuotas): a section that is absent is
	// left alone, --prune or not.
	Rules, Quotas bool
}

// Diff compares the stored policy with the desired one. Both are normalised
// on copies first; groups compare by id when bound, else by name ignoring
// case, so a group renamed in Okta is not a change.
func Diff(current, desired Document, o DiffOptions) Plan {
	current, desired = current.clone(), desired.clone()
	current.Normalize()
	desired.Normalize()
	p := Plan{Rules: []RuleChange{}, Quotas: []QuotaChange{}, ManageRules: o.Rules, ManageQuotas: o.Quotas}
	if o.Rules {
		p.Rules, p.RuleCounts = diffObjects(current.Rules, desired.Rules, o.Prune,
			func(r Rule) string { return r.Name }, ruleFields,
			func(op Op, name string, f []FieldChange, b, a *Rule) RuleChange {
				return RuleChange{Op: op, Name: name, Fields: f, Before: b, After: a}
			})
	}
	if o.Quotas {
		p.Quotas, p.QuotaCounts = diffObjects(current.Quotas, desired.Quotas, o.Prune,
			func(q Quota) string { return q.Name }, quotaFields,
			func(op Op, name string, f []FieldChange, b, a *Quota) QuotaChange {
				return QuotaChange{Op: op, Name: name, Fields: f, Before: b, After: a}
			})
	}
	return p
}

// diffObjects merges two name-sorted lists.
func diffObjects[T any, C any](cur, want []T, prune bool, name func(T) string,
	fields func(a, b *T) []FieldChange, mk func(Op, string, []FieldChange, *T, *T) C) ([]C, Counts) {
	out := []C{}
	var n Counts
	i, j := 0, 0
	for i < len(cur) || j < len(want) {
		switch {
		case j == len(want) || i < len(cur) && name(cur[i]) < name(want[j]):
			c := &cur[i]
			if prune {
				out = append(out, mk(OpRemove, name(*c), nil, c, nil))
				n.Removed++
			} else {
				out = append(out, mk(OpKeep, name(*c), nil, c, nil))
				n.NotInFile++
			}
			i++
		case i == len(cur) || name(want[j]) < name(cur[i]):
			w := &want[j]
			out = append(out, mk(OpAdd, name(*w), fields(nil, w), nil, w))
			n.Added++
			j++
		default:
			c, w := &cur[i], &want[j]
			if f := fields(c, w); len(f) > 0 {
				out = append(out, mk(OpChange, name(*w), f, c, w))
				n.Changed++
			} else {
				n.Unchanged++
			}
			i++
			j++
		}
	}
	return out, n
}

// field compares one field; a nil object contributes the empty value, so an
// add lists exactly the fields it sets.
type field[T any] struct {
	name   string
	render func(*T) string
	key    func(*T) string // comparison key when it differs from render
}

func compare[T any](a, b *T, fs []field[T]) []FieldChange {
	var out []FieldChange
	for _, f := range fs {
		get := func(x *T, fn func(*T) string) string {
			if x == nil || fn == nil {
				return ""
			}
			return fn(x)
		}
		keyFn := f.key
		if keyFn == nil {
			keyFn = f.render
		}
		if a != nil && get(a, keyFn) == get(b, keyFn) {
			continue
		}
		before, after := get(a, f.render), get(b, f.render)
		if a == nil && (after == "" || after == "[]" || after == "false") {
			continue
		}
		out = append(out, FieldChange{Field: f.name, Before: before, After: after})
	}
	return out
}

var ruleFieldList = []field[Rule]{
	{name: "description", render: func(r *Rule) string { return r.Description }},
	{name: "path", render: func(r *Rule) string { return r.Path }},
	{name: "methods", render: func(r *Rule) string { return list(r.Methods) }},
	{name: "hosts", render: func(r *Rule) string { return list(r.Hosts) }},
	{name: "allow", render: func(r *Rule) string { return groupList(r.Allow) }, key: func(r *Rule) string { return groupKeys(r.Allow) }},
	{name: "allow_authenticated", render: func(r *Rule) string { return strconv.FormatBool(r.AllowAuthenticated) }},
	{name: "public", render: func(r *Rule) string { return strconv.FormatBool(r.Public) }},
	{name: "deny", render: func(r *Rule) string { return groupList(r.Deny) }, key: func(r *Rule) string { return groupKeys(r.Deny) }},
	{name: "scopes", render: func(r *Rule) string { return list(r.Scopes) }},
	{name: "mode", render: func(r *Rule) string { return r.Mode }},
	{name: "enabled", render: func(r *Rule) string { return strconv.FormatBool(r.Enabled) }},
}

var quotaFieldList = []field[Quota]{
	{name: "group", render: func(q *Quota) string { return q.Group.String() }, key: func(q *Quota) string { return q.Group.key() }},
	{name: "limit", render: func(q *Quota) string { return strconv.FormatInt(q.Limit, 10) }},
	{name: "window", render: func(q *Quota) string { return q.Window }},
	{name: "path", render: func(q *Quota) string { return q.Path }},
	{name: "methods", render: func(q *Quota) string { return list(q.Methods) }},
	{name: "per", render: func(q *Quota) string { return q.Per }},
}

func ruleFields(a, b *Rule) []FieldChange   { return compare(a, b, ruleFieldList) }
func quotaFields(a, b *Quota) []FieldChange { return compare(a, b, quotaFieldList) }

func list(s []string) string { return "[" + strings.Join(s, ", ") + "]" }

func groupList(gs []Group) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	return list(s)
}

func groupKeys(gs []Group) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.key()
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), "\x00")
}

// WriteText prints the plan for humans: one block per object that changes,
// the fields that change within it, the objects kept because they are not
// in the file, and a summary line per kind.
func (p *Plan) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, c := range p.Rules {
		writeChange(ew, "rule", c.Op, c.Name, c.Fields)
	}
	for _, c := range p.Quotas {
		writeChange(ew, "quota", c.Op, c.Name, c.Fields)
	}
	if p.ManageRules {
		ew.printf("rules:  %s\n", p.RuleCounts)
	}
	if p.ManageQuotas {
		ew.printf("quotas: %s\n", p.QuotaCounts)
	}
	return ew.err
}

func (c Counts) String() string {
	s := fmt.Sprintf("%d added, %d changed, %d removed, %d unchanged", c.Added, c.Changed, c.Removed, c.Unchanged)
	if c.NotInFile > 0 {
		s += fmt.Sprintf(", %d not in file (kept; --prune removes them)", c.NotInFile)
	}
	return s
}

func writeChange(w *errWriter, kind string, op Op, name string, fields []FieldChange) {
	switch op {
	case OpAdd:
		w.printf("+ %s %s\n", kind, name)
		for _, f := range fields {
			w.printf("    %s: %s\n", f.Field, f.After)
		}
	case OpRemove:
		w.printf("- %s %s\n", kind, name)
	case OpKeep:
		w.printf("  %s %s: not in file (kept)\n", kind, name)
	case OpChange:
		w.printf("~ %s %s\n", kind, name)
		for _, f := range fields {
			w.printf("    %s: %s → %s\n", f.Field, quoteEmpty(f.Before), quoteEmpty(f.After))
		}
	}
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}
