package lint

import (
	"strings"

	"github.com/okproxy/okproxy/internal/policy"
)

// pattern is a path pattern as segments (policy.ParsePattern's grammar:
// literal or "*" segments, optionally ending in "**"). Rules reaching lint
// are valid, so it is parsed without re-checking.
type pattern struct {
	segs []string
	rest bool // ends in /**: zero or more further segments
}

func parsePattern(s string) pattern {
	if s == "/" || s == "" {
		return pattern{}
	}
	segs := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if segs[len(segs)-1] == "**" {
		return pattern{segs: segs[:len(segs)-1], rest: true}
	}
	return pattern{segs: segs}
}

// segCovers: every segment seg r matches, d matches too. Segments are
// never empty, so "*" covers any segment.
func segCovers(d, r string) bool { return d == "*" || d == r }

// segOverlaps: some segment matches both.
func segOverlaps(a, b string) bool { return a == "*" || b == "*" || a == b }

// covers reports whether every path r matches, d matches too.
func (d pattern) covers(r pattern) bool {
	if !d.rest && (r.rest || len(r.segs) != len(d.segs)) {
		return false
	}
	if len(r.segs) < len(d.segs) {
		return false
	}
	for i, s := range d.segs {
		if !segCovers(s, r.segs[i]) {
			return false
		}
	}
	return true
}

// overlaps reports whether some path matches both patterns.
func (a pattern) overlaps(b pattern) bool {
	n := min(len(a.segs), len(b.segs))
	for i := 0; i < n; i++ {
		if !segOverlaps(a.segs[i], b.segs[i]) {
			return false
		}
	}
	switch {
	case len(a.segs) == len(b.segs):
		return true
	case len(a.segs) < len(b.segs):
		return a.rest
	default:
		return b.rest
	}
}

// methodSet is the methods a rule matches; GET brings HEAD, as in Decide.
type methodSet struct {
	all bool
	set map[string]bool
}

func newMethodSet(ms []string) methodSet {
	if len(ms) == 0 {
		return methodSet{all: true}
	}
	s := methodSet{set: map[string]bool{}}
	for _, m := range ms {
		m = strings.ToUpper(m)
		s.set[m] = true
		if m == "GET" {
			s.set["HEAD"] = true
		}
	}
	return s
}

func (d methodSet) covers(r methodSet) bool {
	if d.all {
		return true
	}
	if r.all {
		return false
	}
	for m := range r.set {
		if !d.set[m] {
			return false
		}
	}
	return true
}

func (a methodSet) overlaps(b methodSet) bool {
	if a.all || b.all {
		return true
	}
	for m := range a.set {
		if b.set[m] {
			return true
		}
	}
	return false
}

// hostCovers: every host r matches, d matches too. "*.x.com" matches any
// subdomain of x.com at any depth but not x.com itself (policy.checkHost).
func hostCovers(d, r string) bool {
	if d == r {
		return true
	}
	suffix, ok := strings.CutPrefix(d, "*")
	if !ok {
		return false
	}
	if rs, wild := strings.CutPrefix(r, "*"); wild {
		return strings.HasSuffix(rs, suffix)
	}
	return len(r) > len(suffix) && strings.HasSuffix(r, suffix)
}

func hostOverlaps(a, b string) bool { return hostCovers(a, b) || hostCovers(b, a) }

// hostsCover: no host list means all hosts.
func hostsCover(d, r []string) bool {
	if len(d) == 0 {
		return true
	}
	if len(r) == 0 {
		return false
	}
	for _, rh := range r {
		ok := false
		for _, dh := range d {
			if hostCovers(dh, rh) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func hostsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if hostOverlaps(x, y) {
				return true
			}
		}
	}
	return false
}

// covers reports whether every request r matches, d matches too.
func (d rule) covers(r rule) bool {
	return d.path.covers(r.path) && d.methods.covers(r.methods) && hostsCover(d.hosts, r.hosts)
}

// overlaps reports whether some request matches both.
func (a rule) overlaps(b rule) bool {
	return a.path.overlaps(b.path) && a.methods.overlaps(b.methods) && hostsOverlap(a.hosts, b.hosts)
}

// grantsGroup reports whether the rule would admit members of g (scopes
// aside): public and allow_authenticated rules admit everyone; an allow
// group named by a name several synced groups share admits nobody.
func (l *linter) grantsGroup(r rule, g policy.GroupRef) bool {
	if r.Public || r.AllowAuthenticated {
		return true
	}
	for _, a := range r.Allow {
		if !l.ambiguous(a) && l.same(a, g) {
			return true
		}
	}
	return false
}
