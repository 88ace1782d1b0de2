package policyfile

import (
	"errors"
	"github.com/okproxy/okproxy/internal/duration"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// Load parses and validates data: every problem of both steps, in line
// order, or the file when there are none.
func Load(name string, data []byte) (*File, error) {
	f, err := Parse(name, data)
	var ps Problems
	if err != nil && (f == nil || !errors.As(err, &ps)) {
		return nil, err
	}
	ps = append(ps, f.Validate()...)
	if len(ps) > 0 {
		return nil, ps.sorted()
	}
	return f, nil
}

// Validate checks the header, every rule (with the same checks as `rules
// add`, see policy.Rule.Validate) and every quota, and that names are unique.
// It reports the first problem of each rule and quota, and all of them
// across the file.
func (f *File) Validate() Problems {
	var ps Problems
	add := func(line int, obj, field, msg string) {
		ps = append(ps, Problem{File: f.Name, Line: line, Object: obj, Field: field, Message: msg})
	}
	headerLine := func(field string) int { return max(f.header[field], 1) }
	switch f.Doc.APIVersion {
	case APIVersion:
	case "":
		add(1, "", "apiVersion", "is required: start the file with apiVersion: "+APIVersion)
	default:
		add(headerLine("apiVersion"), "", "apiVersion", strconv.Quote(f.Doc.APIVersion)+" is not supported (want "+APIVersion+")")
	}
	switch f.Doc.Kind {
	case Kind:
	case "":
		add(1, "", "kind", "is required: kind: "+Kind)
	default:
		add(headerLine("kind"), "", "kind", strconv.Quote(f.Doc.Kind)+" is not "+Kind)
	}
	if !f.HasRules && !f.HasQuotas {
		add(1, "", "", "the file has neither a rules: nor a quotas: section")
	}

	seen := map[string]int{}
	for i, r := range f.Doc.Rules {
		p := r.Policy()
		p.Normalize()
		obj := objectLabel("rule", p.Name, i)
		if i < len(f.rules) && f.rules[i].broken {
			// already reported by Parse
		} else if err := p.Validate(); err != nil {
			var ve *policy.ValidationError
			field := ""
			msg := err.Error()
			if errors.As(err, &ve) {
				field, msg = ve.Field, ve.Message
			}
			add(f.RuleLine(i, field), obj, field, msg)
		}
		if p.Name == "" {
			continue
		}
		if first, dup := seen[p.Name]; dup {
			add(f.RuleLine(i, "name"), obj, "name", "duplicate rule name (first defined on line "+strconv.Itoa(first)+")")
		} else {
			seen[p.Name] = f.RuleLine(i, "name")
		}
	}

	seen = map[string]int{}
	for i, q := range f.Doc.Quotas {
		name := strings.TrimSpace(q.Name)
		obj := objectLabel("quota", name, i)
		if i < len(f.quotas) && f.quotas[i].broken {
			// already reported by Parse
		} else if field, msg := validateQuota(q); field != "" {
			add(f.QuotaLine(i, field), obj, field, msg)
		}
		if name == "" {
			continue
		}
		if first, dup := seen[name]; dup {
			add(f.QuotaLine(i, "name"), obj, "name", "duplicate quota name (first defined on line "+strconv.Itoa(first)+")")
		} else {
			seen[name] = f.QuotaLine(i, "name")
		}
	}
	return ps.sorted()
}

func objectLabel(kind, name string, i int) string {
	if name == "" {
		return kind + " #" + strconv.Itoa(i+1)
	}
	return kind + " " + strconv.Quote(name)
}

// validObjectName is the rule for stored rule and quota names (migrations 00001, 00003).
var validObjectName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// maxWindow matches quota.MaxWindow: windows beyond it would overflow the
// limiter's arithmetic.
const maxWindow = 366 * 24 * time.Hour

// validateQuota returns the first bad field of q and why, or "", "".
func validateQuota(q Quota) (field, msg string) {
	name := strings.TrimSpace(q.Name)
	switch {
	case name == "":
		return "name", "is required"
	case !validObjectName.MatchString(name):
		return "name", strconv.Quote(name) + " must be 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
	}
	if msg := checkGroup(q.Group); msg != "" {
		return "group", msg
	}
	if q.Limit <= 0 {
		return "limit", "must be a positive whole number of requests"
	}
	if strings.TrimSpace(q.Window) == "" {
		return "window", "is required (e.g. 1h, 15m, 1d)"
	}
	d, err := duration.Parse(q.Window)
	switch {
	case err != nil:
		return "window", err.Error()
	case d < time.Second:
		return "window", "must be at least 1s"
	case d%time.Second != 0:
		return "window", "must be a whole number of seconds"
	case d > maxWindow:
		return "window", "must be at most 366d"
	}
	if p := strings.TrimSpace(q.Path); p != "" {
		if _, err := policy.ParsePattern(p); err != nil {
			return "path", err.Error()
		}
	}
	for _, m := range q.Methods {
		if !slices.Contains(policy.KnownMethods(), strings.ToUpper(strings.TrimSpace(m))) {
			return "methods", "unknown method " + strconv.Quote(m) + " (want one of " + strings.Join(policy.KnownMethods(), ", ") + ")"
		}
	}
	switch strings.ToLower(strings.TrimSpace(q.Per)) {
	case "", PerUser, PerGroup:
	default:
		return "per", strconv.Quote(q.Per) + " must be user or group"
	}
	return "", ""
}

// checkGroup applies policy's group-reference checks to one group.
func checkGroup(g Group) string {
	if strings.TrimSpace(g.Name) == "" && strings.TrimSpace(g.ID) == "" {
		return "is required (a group name or 00g… id)"
	}
	r := policy.Rule{Name: "q", Path: "/", Allow: []policy.GroupRef{toRef(g)}}
	var ve *policy.ValidationError
	if err := r.Validate(); errors.As(err, &ve) && ve.Field == "allow" {
		return ve.Message
	}
	return ""
}
