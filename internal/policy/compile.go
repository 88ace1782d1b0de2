package policy

import (
	"slices"
	"strconv"
	"strings"
)

// Policy is a compiled, immutable rule set. Decide is safe for concurrent
// use, so a replica can swap a new *Policy in atomically while requests are
// being decided against the old one.
type Policy struct {
	rules []compiled // every rule, disabled ones too, sorted by name
	root  *node      // enabled rules only, indexed by path segment
}

// compiled is a rule prepared for Decide. Its index in Policy.rules is its
// rank in name order, which is what makes "first by name" a min over ints.
type compiled struct {
	name      string
	enabled   bool
	report    bool
	methods   methodMask
	hosts     []string // exact hosts, lower case
	suffixes  []string // from *.example.com: ".example.com"
	anyHost   bool
	public    bool
	authn     bool
	allow     []groupKey
	deny      []groupKey
	scopes    []string
	rule      Rule // normalised copy, for Rules()
	grantsAny bool
}

// node is one path segment level of the trie. A rule sits in exactly one
// node's exact or rest list, so each matching rule is found once.
type node struct {
	lit   map[string]*node
	star  *node   // child for a "*" segment
	exact []int32 // rules whose pattern ends here
	rest  []int32 // rules whose pattern ends here with /**
}

// methodMask has one bit per known method; methodOther stands for any method
// outside knownMethods, which only rules without a method list match.
type methodMask uint16

const (
	methodOther methodMask = 1 << 15
	methodAll   methodMask = 0xffff
)

func methodBit(m string) methodMask {
	// ASCII case-insensitive: methods are case-sensitive in HTTP, but an
	// upstream that upper-cases "delete" must not turn it into a DELETE our
	// deny rules never saw.
	for i, k := range knownMethods {
		if len(m) == len(k) && strings.EqualFold(m, k) {
			return 1 << i
		}
	}
	return methodOther
}

// Compile validates rules (each normalised first, on a copy) and builds a
// Policy. The error names the offending rule and wraps a *ValidationError.
// Disabled rules are validated and counted by Len but never match.
func Compile(rules []Rule) (*Policy, error) {
	norm := make([]Rule, len(rules))
	for i, r := range rules {
		r = r.Clone()
		r.Normalize()
		if err := r.Validate(); err != nil {
			name := r.Name
			if name == "" {
				name = "#" + strconv.Itoa(i+1)
			}
			return nil, &RuleError{Rule: name, Err: err}
		}
		norm[i] = r
	}
	slices.SortFunc(norm, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	p := &Policy{rules: make([]compiled, len(norm)), root: &node{}}
	for i, r := range norm {
		if i > 0 && norm[i-1].Name == r.Name {
			return nil, &RuleError{Rule: r.Name, Err: &ValidationError{Field: "name", Message: "duplicate rule name"}}
		}
		pat, _ := ParsePattern(r.Path) // validated above
		p.rules[i] = compileRule(r)
		if r.Enabled {
			p.root.insert(pat, int32(i))
		}
	}
	return p, nil
}

func compileRule(r Rule) compiled {
	c := compiled{
		name:    r.Name,
		enabled: r.Enabled,
		report:  r.Mode == ModeReport,
		anyHost: len(r.Hosts) == 0,
		public:  r.Public,
		authn:   r.AllowAuthenticated,
		scopes:  r.Scopes,
		rule:    r,
	}
	c.grantsAny = c.public || c.authn || len(r.Allow) > 0
	if len(r.Methods) == 0 {
		c.methods = methodAll
	}
	for _, m := range r.Methods {
		c.methods |= methodBit(m)
		if m == "GET" {
			c.methods |= methodBit("HEAD")
		}
	}
	for _, h := range r.Hosts {
		if rest, ok := strings.CutPrefix(h, "*"); ok {
			c.suffixes = append(c.suffixes, rest)
		} else {
			c.hosts = append(c.hosts, h)
		}
	}
	for _, g := range r.Allow {
		c.allow = append(c.allow, newGroupKey(g))
	}
	for _, g := range r.Deny {
		c.deny = append(c.deny, newGroupKey(g))
	}
	return c
}

func (n *node) insert(p Pattern, rule int32) {
	for _, seg := range p.segs {
		if seg == "*" {
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
			continue
		}
		child := n.lit[seg]
		if child == nil {
			if n.lit == nil {
				n.lit = make(map[string]*node)
			}
			child = &node{}
			n.lit[seg] = child
		}
		n = child
	}
	if p.rest {
		n.rest = append(n.rest, rule)
	} else {
		n.exact = append(n.exact, rule)
	}
}

// Len is the number of rules compiled, disabled ones included.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// Rules returns the normalised rules in name order, disabled ones included,
// so that callers such as `rules lint` see exactly what was compiled.
func (p *Policy) Rules() []Rule {
	if p == nil {
		return nil
	}
	out := make([]Rule, len(p.rules))
	for i := range p.rules {
		// Deep copy: the compiled rule shares its slices.
		out[i] = p.rules[i].rule.Clone()
	}
	return out
}

// matchesHost reports whether the rule applies to host, which Decide has
// already stripped of a port and trailing dot; case is ignored.
func (c *compiled) matchesHost(host string) bool {
	if c.anyHost {
		return true
	}
	for _, h := range c.hosts {
		if len(h) == len(host) && strings.EqualFold(h, host) {
			return true
		}
	}
	for _, s := range c.suffixes {
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}
