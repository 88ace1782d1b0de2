// Package policyfile is okproxy's policy-as-code format: the document that
// `okproxy rules export` writes and `okproxy rules apply` reads (rules and
// quotas), parsed with line numbers so every problem can be pointed at, its
// validation, its resolution against the synced directory, and the diff
// between two documents that apply prints and executes.
//
// The package is pure: no database, no network. internal/store reads and
// writes documents; internal/cli wires them to commands. The file format is a
// contract with users' git repositories, so it has its own types rather than
// reusing policy.Rule: internal types may change, the format only with a new
// apiVersion.
package policyfile

import (
	"bytes"
	"cmp"
	"encoding/json"
	"github.com/okproxy/okproxy/internal/duration"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/okproxy/okproxy/internal/policy"
)

// Header values of a policy document.
const (
	APIVersion = "okproxy/v1"
	Kind       = "Policy"
)

// Document is a whole policy: every rule and every quota.
type Document struct {
	APIVersion string  `json:"apiVersion" yaml:"apiVersion"`
	Kind       string  `json:"kind" yaml:"kind"`
	Rules      []Rule  `json:"rules" yaml:"rules"`
	Quotas     []Quota `json:"quotas" yaml:"quotas"`
}

// Group names an Okta group. Name is what humans read; ID, once the
// directory knows the group, is what the rule is bound to, so a rename in
// Okta does not change what a rule means.
type Group struct {
	Name string `json:"name" yaml:"name"`
	ID   string `json:"id,omitempty" yaml:"id,omitempty"`
}

// Rule is one access rule (SPEC §3) in file form. Field names are those of
// `rules list -o json`.
type Rule struct {
	Name               string   `json:"name" yaml:"name"`
	Description        string   `json:"description,omitempty" yaml:"description,omitempty"`
	Path               string   `json:"path" yaml:"path"`
	Methods            []string `json:"methods,omitempty" yaml:"methods,omitempty,flow"`
	Hosts              []string `json:"hosts,omitempty" yaml:"hosts,omitempty,flow"`
	Allow              []Group  `json:"allow,omitempty" yaml:"allow,omitempty"`
	AllowAuthenticated bool     `json:"allow_authenticated,omitempty" yaml:"allow_authenticated,omitempty"`
	Public             bool     `json:"public,omitempty" yaml:"public,omitempty"`
	Deny               []Group  `json:"deny,omitempty" yaml:"deny,omitempty"`
	Scopes             []string `json:"scopes,omitempty" yaml:"scopes,omitempty,flow"`
	Mode               string   `json:"mode" yaml:"mode"`
	Enabled            bool     `json:"enabled" yaml:"enabled"`
}

// Quota is one quota (SPEC §5) in file form. Window is a duration (Go syntax
// plus days, e.g. 90s, 1h, 7d).
type Quota struct {
	Name    string   `json:"name" yaml:"name"`
	Group   Group    `json:"group" yaml:"group"`
	Limit   int64    `json:"limit" yaml:"limit"`
	Window  string   `json:"window" yaml:"window"`
	Path    string   `json:"path" yaml:"path"`
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty,flow"`
	Per     string   `json:"per" yaml:"per"`
}

// Quota defaults, as `okproxy quotas add` has them.
const (
	DefaultQuotaPath = "/**"
	PerUser          = "user"
	PerGroup         = "group"
)

func toRef(g Group) policy.GroupRef   { return policy.GroupRef{ID: g.ID, Name: g.Name} }
func fromRef(g policy.GroupRef) Group { return Group{ID: g.ID, Name: g.Name} }

func toRefs(gs []Group) []policy.GroupRef {
	if len(gs) == 0 {
		return nil
	}
	out := make([]policy.GroupRef, len(gs))
	for i, g := range gs {
		out[i] = toRef(g)
	}
	return out
}

func fromRefs(gs []policy.GroupRef) []Group {
	if len(gs) == 0 {
		return nil
	}
	out := make([]Group, len(gs))
	for i, g := range gs {
		out[i] = fromRef(g)
	}
	return out
}

// Policy converts the file rule to the policy engine's rule (slices copied).
func (r Rule) Policy() policy.Rule {
	return policy.Rule{
		Name:               r.Name,
		Path:               r.Path,
		Methods:            slices.Clone(r.Methods),
		Hosts:              slices.Clone(r.Hosts),
		Allow:              toRefs(r.Allow),
		AllowAuthenticated: r.AllowAuthenticated,
		Public:             r.Public,
		Deny:               toRefs(r.Deny),
		Scopes:             slices.Clone(r.Scopes),
		Description:        r.Description,
		Enabled:            r.Enabled,
		Mode:               policy.Mode(r.Mode),
	}
}

// FromPolicy converts a policy engine rule to file form, normalised.
func FromPolicy(p policy.Rule) Rule {
	p = p.Clone()
	p.Normalize()
	return Rule{
		Name:               p.Name,
		Description:        p.Description,
		Path:               p.Path,
		Methods:            emptyNil(p.Methods),
		Hosts:              emptyNil(p.Hosts),
		Allow:              fromRefs(p.Allow),
		AllowAuthenticated: p.AllowAuthenticated,
		Public:             p.Public,
		Deny:               fromRefs(p.Deny),
		Scopes:             emptyNil(p.Scopes),
		Mode:               string(p.Mode),
		Enabled:            p.Enabled,
	}
}

func emptyNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// Normalize puts the rule into its canonical form (the one the store keeps
// and export writes): see policy.Rule.Normalize.
func (r *Rule) Normalize() { *r = FromPolicy(r.Policy()) }

// Normalize puts the quota into canonical form: trimmed, methods upper case,
// sorted and deduplicated, defaults filled in, window in its shortest form
// when it parses.
func (q *Quota) Normalize() {
	q.Name = strings.TrimSpace(q.Name)
	q.Group.Name = strings.TrimSpace(q.Group.Name)
	q.Group.ID = strings.TrimSpace(q.Group.ID)
	q.Path = cmp.Or(strings.TrimSpace(q.Path), DefaultQuotaPath)
	for i, m := range q.Methods {
		q.Methods[i] = strings.ToUpper(strings.TrimSpace(m))
	}
	slices.Sort(q.Methods)
	q.Methods = emptyNil(slices.Compact(q.Methods))
	q.Per = cmp.Or(strings.ToLower(strings.TrimSpace(q.Per)), PerUser)
	if d, err := duration.Parse(q.Window); err == nil {
		q.Window = duration.Format(d)
	}
}

// Normalize canonicalises every rule and quota and sorts both by name, so
// that two documents describing the same policy serialise identically.
func (d *Document) Normalize() {
	d.APIVersion = cmp.Or(d.APIVersion, APIVersion)
	d.Kind = cmp.Or(d.Kind, Kind)
	if d.Rules == nil {
		d.Rules = []Rule{}
	}
	if d.Quotas == nil {
		d.Quotas = []Quota{}
	}
	for i := range d.Rules {
		d.Rules[i].Normalize()
	}
	for i := range d.Quotas {
		d.Quotas[i].Normalize()
	}
	slices.SortStableFunc(d.Rules, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(d.Quotas, func(a, b Quota) int { return strings.Compare(a.Name, b.Name) })
}

// yamlHeader is written above every exported YAML document.
const yamlHeader = "# okproxy policy. Review changes with: okproxy rules apply -f FILE --dry-run\n"

// EncodeYAML renders the document (normalised first) as YAML. The output is
// a pure function of the policy: same policy, same bytes.
func (d Document) EncodeYAML() ([]byte, error) {
	d = d.clone()
	d.Normalize()
	var b bytes.Buffer
	b.WriteString(yamlHeader)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeJSON renders the document (normalised first) as indented JSON,
// without HTML escaping so that paths and descriptions stay readable.
func (d Document) EncodeJSON() ([]byte, error) {
	d = d.clone()
	d.Normalize()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// clone deep-copies the document so that normalising it leaves the
// caller's value alone.
func (d Document) clone() Document {
	out := d
	out.Rules = make([]Rule, len(d.Rules))
	for i, r := range d.Rules {
		r.Methods = slices.Clone(r.Methods)
		r.Hosts = slices.Clone(r.Hosts)
		r.Scopes = slices.Clone(r.Scopes)
		r.Allow = slices.Clone(r.Allow)
		r.Deny = slices.Clone(r.Deny)
		out.Rules[i] = r
	}
	out.Quotas = make([]Quota, len(d.Quotas))
	for i, q := range d.Quotas {
		q.Methods = slices.Clone(q.Methods)
		out.Quotas[i] = q
	}
	return out
}

// String names the group the way the CLI prints it: "Name (id)", or just
// the name while the group is unbound.
func (g Group) String() string {
	switch {
	case g.ID == "":
		return g.Name
	case g.Name == "" || g.Name == g.ID:
		return g.ID
	}
	return g.Name + " (" + g.ID + ")"
}

// key identifies the group for comparisons: its id when bound, otherwise
// its case-folded name (SPEC §3: group names compare case-insensitively).
func (g Group) key() string {
	if g.ID != "" {
		return "id:" + g.ID
	}
	return "name:" + strings.ToLower(g.Name)
}
