package policy

import (
	"slices"
	"strings"
)

// Decide evaluates req for caller c (nil: anonymous) as SPEC §3 says:
// allowed if and only if some enabled, matching, enforced rule grants it and
// none denies the caller. Report-only rules never change the result; when any
// of them match, Shadow tells what enforcing them would have done.
//
// req.Path must be canonical (CanonicalPath); a path that is not is refused
// with ReasonBadRequest rather than matched, so a missed canonicalisation
// fails closed. A nil *Policy decides like an empty one: nothing is allowed.
//
// Decide only looks at the rules filed under the request path's segments,
// and allocates at most the Matched slice and the Shadow.
func (p *Policy) Decide(req Request, c *Caller) Decision {
	if checkDecoded(req.Path) != "" {
		return Decision{Effect: Deny, Reason: ReasonBadRequest}
	}
	var buf [32]int32
	var cand []int32
	if p != nil {
		cand = p.collect(req.Path, methodBit(req.Method), hostKey(req.Host), buf[:0])
		slices.Sort(cand) // ranks are name order
	}

	enforced, all := newOutcome(), newOutcome()
	nEnforced, nReport := 0, 0
	for _, i := range cand {
		r := &p.rules[i]
		deniedBy, denies := r.denies(c)
		grants, scopeBlocked, amb := r.grants(c)
		all.add(i, denies, deniedBy, grants, scopeBlocked, amb)
		if r.report {
			nReport++
			continue
		}
		nEnforced++
		enforced.add(i, denies, deniedBy, grants, scopeBlocked, amb)
	}

	d := Decision{}
	d.Effect, d.Reason = enforced.result(c)
	d.Granted, d.Denied, d.DeniedGroup = p.names(enforced)
	if enforced.granted < 0 && enforced.denied < 0 && enforced.ambRule >= 0 {
		r := &p.rules[enforced.ambRule]
		k := &r.allow[enforced.ambGroup]
		d.AmbiguousRule, d.AmbiguousGroup, d.AmbiguousIDs = r.name, k.name, k.amb
	}
	if nEnforced > 0 {
		d.Matched = make([]string, 0, nEnforced)
		for _, i := range cand {
			if !p.rules[i].report {
				d.Matched = append(d.Matched, p.rules[i].name)
			}
		}
	}
	if nReport > 0 {
		d.Shadow = p.shadow(cand, nReport, all, c, d.Effect)
	}
	return d
}

// shadowBox lets the Shadow and a short Matched list share one allocation.
type shadowBox struct {
	s     Shadow
	names [4]string
}

func (p *Policy) shadow(cand []int32, nReport int, o outcome, c *Caller, real Effect) *Shadow {
	box := &shadowBox{}
	s := &box.s
	if nReport <= len(box.names) {
		s.Matched = box.names[:0:nReport]
	} else {
		s.Matched = make([]string, 0, nReport)
	}
	for _, i := range cand {
		if p.rules[i].report {
			s.Matched = append(s.Matched, p.rules[i].name)
		}
	}
	s.Effect, s.Reason = o.result(c)
	s.Granted, s.Denied, s.DeniedGroup = p.names(o)
	s.Changed = s.Effect != real
	return s
}

// outcome accumulates the combining algorithm over rules visited in name
// order, so the first rule recorded is the first by name.
type outcome struct {
	granted, denied int32 // rule ranks, -1 for none
	deniedGroup     string
	scopeBlocked    bool // some rule would grant but for a missing scope
	// ambRule is the first rule (-1: none) whose allow group ambGroup, an
	// ambiguous name, is all that kept it from granting the caller.
	ambRule  int32
	ambGroup int
}

func newOutcome() outcome { return outcome{granted: -1, denied: -1, ambRule: -1} }

func (o *outcome) add(rank int32, denies bool, deniedBy string, grants, scopeBlocked bool, amb int) {
	if denies && o.denied < 0 {
		o.denied, o.deniedGroup = rank, deniedBy
	}
	if grants && o.granted < 0 {
		o.granted = rank
	}
	if amb >= 0 && o.ambRule < 0 {
		o.ambRule, o.ambGroup = rank, amb
	}
	o.scopeBlocked = o.scopeBlocked || scopeBlocked
}

func (o *outcome) result(c *Caller) (Effect, Reason) {
	switch {
	case o.denied >= 0:
		return Deny, ReasonForbidden // an explicit deny wins, even over public
	case o.granted >= 0:
		return Allow, ReasonOK
	case c == nil:
		return Deny, ReasonUnauthorized // a token might help; say so with 401
	case o.scopeBlocked:
		return Deny, ReasonInsufficientScope
	default:
		return Deny, ReasonForbidden
	}
}

// names turns an outcome into rule names; a denial leaves Granted empty
// because nothing granted the request.
func (p *Policy) names(o outcome) (granted, denied, deniedGroup string) {
	if o.denied >= 0 {
		return "", p.rules[o.denied].name, o.deniedGroup
	}
	if o.granted >= 0 {
		return p.rules[o.granted].name, "", ""
	}
	return "", "", ""
}

// denies returns the first of the rule's deny groups the caller is in.
// Scopes play no part: a deny applies whatever the token carries.
func (r *compiled) denies(c *Caller) (string, bool) {
	if c == nil {
		return "", false
	}
	for _, g := range r.deny {
		if c.inAny(g) {
			return g.name, true
		}
	}
	return "", false
}

// grants reports whether the rule grants to c, or would but for a scope the
// token lacks. When it does not grant, amb is the index of the first allow
// group that names the caller's group only by an ambiguous name (-1: none):
// such a group grants nobody, and the decision says so.
func (r *compiled) grants(c *Caller) (grants, scopeBlocked bool, amb int) {
	amb = -1
	if r.public {
		return true, false, amb
	}
	if c == nil || !r.grantsAny {
		return false, false, amb
	}
	member := r.authn
	for i := 0; !member && i < len(r.allow); i++ {
		member = c.inRef(r.allow[i])
		if !member && amb < 0 && r.allow[i].amb != nil && c.inAny(r.allow[i]) {
			amb = i
		}
	}
	if !member {
		return false, false, amb
	}
	for _, s := range r.scopes {
		if _, ok := c.scopesSet[s]; !ok {
			return false, true, -1
		}
	}
	return true, false, -1
}

// collect appends the enabled rules whose pattern, methods and host match.
// It walks the trie depth-first; every trie node sits at one depth and is
// reached through one sequence of segments, so it is visited at most once.
func (p *Policy) collect(path string, method methodMask, host string, out []int32) []int32 {
	path, _ = matchPath(path)
	type frame struct {
		n   *node
		pos int
	}
	var stackBuf [16]frame
	stack := append(stackBuf[:0], frame{p.root, 1})
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = p.filter(out, f.n.rest, method, host)
		if f.pos > len(path) {
			out = p.filter(out, f.n.exact, method, host)
			continue
		}
		seg, next := nextSegment(path, f.pos)
		if child := f.n.lit[seg]; child != nil {
			stack = append(stack, frame{child, next})
		}
		if f.n.star != nil && seg != "" {
			stack = append(stack, frame{f.n.star, next})
		}
	}
	return out
}

func (p *Policy) filter(out, rules []int32, method methodMask, host string) []int32 {
	for _, i := range rules {
		r := &p.rules[i]
		if r.methods&method != 0 && r.matchesHost(host) {
			out = append(out, i)
		}
	}
	return out
}

// hostKey strips a port and one trailing dot so that neither can be used to
// step around a host-scoped rule; case is ignored when comparing.
func hostKey(h string) string {
	if strings.HasPrefix(h, "[") {
		if end := strings.IndexByte(h, ']'); end >= 0 {
			h = h[:end+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	if len(h) > 1 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	return h
}
