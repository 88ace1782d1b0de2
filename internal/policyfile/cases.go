package policyfile

import (
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/okproxy/okproxy/internal/policy"
)

// CasesKind is the kind of a test-case file.
const CasesKind = "PolicyTest"

// Caller is who a test case asks as. No field set (or anonymous: true) is
// the anonymous caller; scopes alone are an authenticated caller in no group.
type Caller struct {
	User      string   `json:"user,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	Anonymous bool     `json:"anonymous,omitempty"`
}

// IsAnonymous reports whether the caller has no identity at all.
func (c Caller) IsAnonymous() bool {
	return c.Anonymous || c.User == "" && len(c.Groups) == 0 && len(c.Scopes) == 0
}

// Case is one access test: a request, who makes it, and what must happen.
type Case struct {
	Name   string `json:"name"`
	Caller Caller `json:"caller"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Host   string `json:"host,omitempty"`
	Expect string `json:"expect"`           // allow or deny
	Reason string `json:"reason,omitempty"` // optional reason code, e.g. forbidden
	Line   int    `json:"line"`
}

// Label names the case in messages as the parser does: by name, or by
// position ("case #3") when it has none.
func (c Case) Label() string {
	if strings.HasPrefix(c.Name, "#") {
		return "case " + c.Name
	}
	return "case " + strconv.Quote(c.Name)
}

// CaseFile is a parsed table of access tests (`okproxy rules test --file`).
type CaseFile struct {
	Name  string
	Cases []Case
}

var (
	caseRootFields   = []string{"apiVersion", "kind", "cases"}
	caseFieldNames   = []string{"name", "caller", "method", "path", "host", "expect", "reason"}
	callerFieldNames = []string{"user", "groups", "scopes", "anonymous"}
)

// decidable are the reason codes a policy decision can carry, plus
// user_inactive which `rules test` adds for deprovisioned users.
var decidable = []policy.Reason{policy.ReasonOK, policy.ReasonUnauthorized, policy.ReasonForbidden,
	policy.ReasonInsufficientScope, policy.ReasonUserInactive, policy.ReasonBadRequest}

// LoadCases parses and validates a test-case file, reporting every problem
// with its line.
func LoadCases(name string, data []byte) (*CaseFile, error) {
	root, err := parseYAML(data)
	if err != nil {
		if p, ok := err.(Problem); ok {
			p.File = name
			return nil, Problems{p}
		}
		return nil, err
	}
	d := &decoder{file: name}
	cf := &CaseFile{Name: name}
	hasCases := false
	d.mapping(root, "", caseRootFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "apiVersion":
			if s := d.str(v, "", key); s != APIVersion {
				d.addf(v, "", key, strconv.Quote(s)+" is not supported (want "+APIVersion+")")
			}
		case "kind":
			if s := d.str(v, "", key); s != CasesKind {
				d.addf(v, "", key, strconv.Quote(s)+" is not "+CasesKind)
			}
		case "cases":
			hasCases = true
			before := len(d.problems)
			items := d.seq(v, "", key)
			if len(items) == 0 && len(d.problems) == before {
				// A file that tests nothing passes, and a CI gate built on
				// it would pass whatever the policy became.
				d.addf(k, "", key, "has no cases: a test file must test something")
			}
			for i, item := range items {
				cf.Cases = append(cf.Cases, d.testCase(item, i))
			}
		}
	})
	d.uniqueCaseNames(cf.Cases)
	if !hasCases && len(d.problems) == 0 {
		d.addf(root, "", "cases", "is required: a list of cases")
	}
	if len(d.problems) > 0 {
		return nil, d.problems.sorted()
	}
	return cf, nil
}

// uniqueCaseNames refuses a name given to two cases: results and failures
// are reported by name, and a copied case whose name was not changed is
// usually one whose request was not changed either.
func (d *decoder) uniqueCaseNames(cases []Case) {
	first := map[string]int{}
	for _, c := range cases {
		if c.Name == "" || strings.HasPrefix(c.Name, "#") {
			continue // unnamed: labelled by position
		}
		if line, dup := first[c.Name]; dup {
			d.addf(&yaml.Node{Line: c.Line}, c.Label(), "name", strconv.Quote(c.Name)+" is also the name of the case on line "+strconv.Itoa(line)+"; give each case its own name")
			continue
		}
		first[c.Name] = c.Line
	}
}

func (d *decoder) testCase(n *yaml.Node, i int) Case {
	c := Case{Method: "GET", Line: deref(n).Line}
	obj := objectName("case", n, i)
	fieldLine := map[string]int{}
	d.mapping(n, obj, caseFieldNames, func(key string, k, v *yaml.Node) {
		fieldLine[key] = k.Line
		switch key {
		case "name":
			c.Name = d.str(v, obj, key)
		case "method":
			c.Method = strings.ToUpper(strings.TrimSpace(d.str(v, obj, key)))
		case "path":
			c.Path = d.str(v, obj, key)
		case "host":
			c.Host = d.str(v, obj, key)
		case "expect":
			c.Expect = strings.ToLower(strings.TrimSpace(d.str(v, obj, key)))
		case "reason":
			c.Reason = strings.TrimSpace(d.str(v, obj, key))
		case "caller":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				return
			}
			d.mapping(v, obj, callerFieldNames, func(ck string, _, cv *yaml.Node) {
				// An empty user, group or scope (a template that rendered
				// nothing) would quietly make the caller anonymous or
				// scope-less, and the case pass for the wrong reason.
				switch ck {
				case "user":
					if c.Caller.User = d.str(cv, obj, "caller."+ck); strings.TrimSpace(c.Caller.User) == "" {
						d.addf(cv, obj, "caller.user", "is empty; leave it out (or write anonymous: true) for an anonymous caller")
					}
				case "groups":
					c.Caller.Groups = d.strList(cv, obj, "caller."+ck)
					if len(c.Caller.Groups) == 0 || slices.ContainsFunc(c.Caller.Groups, func(g string) bool { return strings.TrimSpace(g) == "" }) {
						d.addf(cv, obj, "caller.groups", "holds an empty group name, or none")
					}
				case "scopes":
					c.Caller.Scopes = d.strList(cv, obj, "caller."+ck)
					if len(c.Caller.Scopes) == 0 || slices.ContainsFunc(c.Caller.Scopes, func(g string) bool { return strings.TrimSpace(g) == "" }) {
						d.addf(cv, obj, "caller.scopes", "holds an empty scope, or none")
					}
				case "anonymous":
					c.Caller.Anonymous = d.boolean(cv, obj, "caller."+ck)
				}
			})
		}
	})
	if c.Name == "" {
		c.Name = "#" + strconv.Itoa(i+1)
	}
	at := func(field string) *yaml.Node {
		if l, ok := fieldLine[field]; ok {
			return &yaml.Node{Line: l}
		}
		return &yaml.Node{Line: c.Line}
	}
	switch {
	case c.Path == "":
		d.addf(at("path"), obj, "path", "is required")
	case !strings.HasPrefix(c.Path, "/"):
		d.addf(at("path"), obj, "path", strconv.Quote(c.Path)+" must start with /")
	}
	if c.Method == "" || strings.ContainsAny(c.Method, " \t/") {
		d.addf(at("method"), obj, "method", strconv.Quote(c.Method)+" is not an HTTP method")
	}
	switch c.Expect {
	case "allow", "deny":
	case "":
		d.addf(at("expect"), obj, "expect", "is required: allow or deny")
	default:
		d.addf(at("expect"), obj, "expect", strconv.Quote(c.Expect)+" is not allow or deny")
	}
	if c.Reason != "" {
		r := policy.Reason(c.Reason)
		switch {
		case !slices.Contains(decidable, r):
			names := make([]string, len(decidable))
			for i, x := range decidable {
				names[i] = string(x)
			}
			d.addf(at("reason"), obj, "reason", strconv.Quote(c.Reason)+" is not one of "+strings.Join(names, ", "))
		case (r == policy.ReasonOK) != (c.Expect == "allow") && c.Expect != "":
			d.addf(at("reason"), obj, "reason", strconv.Quote(c.Reason)+" contradicts expect: "+c.Expect)
		}
	}
	if c.Caller.Anonymous && (c.Caller.User != "" || len(c.Caller.Groups) > 0 || len(c.Caller.Scopes) > 0) {
		d.addf(at("caller"), obj, "caller", "anonymous: true cannot be combined with user, groups or scopes")
	}
	return c
}
