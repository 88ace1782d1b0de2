package oktaorg

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// expr is a parsed Okta filter or search expression (SCIM-like: attribute
// operator "value", joined with and/or, grouped with parentheses).
type expr interface {
	eval(get func(attr string) (any, bool)) bool
}

type andExpr struct{ l, r expr }
type orExpr struct{ l, r expr }
type cmpExpr struct {
	attr, op string
	value    string
}

func (e andExpr) eval(get func(string) (any, bool)) bool { return e.l.eval(get) && e.r.eval(get) }
func (e orExpr) eval(get func(string) (any, bool)) bool  { return e.l.eval(get) || e.r.eval(get) }

func (e cmpExpr) eval(get func(string) (any, bool)) bool {
	v, ok := get(e.attr)
	if e.op == "pr" {
		return ok && v != "" && v != nil
	}
	if !ok {
		return false
	}
	switch v := v.(type) {
	case time.Time:
		want, err := parseOktaTime(e.value)
		if err != nil {
			return false
		}
		c := v.Compare(want)
		switch e.op {
		case "eq":
			return c == 0
		case "gt":
			return c > 0
		case "ge":
			return c >= 0
		case "lt":
			return c < 0
		case "le":
			return c <= 0
		}
		return false
	case string:
		// Okta compares string values case-insensitively.
		a, b := strings.ToLower(v), strings.ToLower(e.value)
		switch e.op {
		case "eq":
			return a == b
		case "sw":
			return strings.HasPrefix(a, b)
		case "co":
			return strings.Contains(a, b)
		case "gt":
			return a > b
		case "ge":
			return a >= b
		case "lt":
			return a < b
		case "le":
			return a <= b
		}
	}
	return false
}

func parseOktaTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.000Z07:00", time.RFC3339Nano, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid date %q", s)
}

var errSyntax = errors.New("invalid search criteria")

// parseExpr parses s, allowing only the attributes in allowed (nil: any).
func parseExpr(s string, allowed map[string]bool) (expr, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, allowed: allowed}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q", errSyntax, p.toks[p.pos].s)
	}
	return e, nil
}

type token struct {
	s      string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var out []token
	rs := []rune(s)
	for i := 0; i < len(rs); {
		switch c := rs[i]; {
		case unicode.IsSpace(c):
			i++
		case c == '(' || c == ')':
			out = append(out, token{s: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) {
					j++
				}
				b.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("%w: unterminated string", errSyntax)
			}
			out = append(out, token{s: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && rs[j] != '(' && rs[j] != ')' && rs[j] != '"' {
				j++
			}
			out = append(out, token{s: string(rs[i:j])})
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks    []token
	pos     int
	allowed map[string]bool
}

func (p *parser) peekWord(w string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].quoted && strings.EqualFold(p.toks[p.pos].s, w)
}

func (p *parser) or() (expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *parser) and() (expr, error) {
	l, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		r, err := p.primary()
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

var operators = map[string]bool{"eq": true, "sw": true, "co": true, "gt": true, "ge": true, "lt": true, "le": true, "pr": true}

func (p *parser) primary() (expr, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("%w: expression ends early", errSyntax)
	}
	if p.peekWord("(") {
		p.pos++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peekWord(")") {
			return nil, fmt.Errorf("%w: missing )", errSyntax)
		}
		p.pos++
		return e, nil
	}
	attr := p.toks[p.pos]
	if attr.quoted {
		return nil, fmt.Errorf("%w: expected an attribute, got %q", errSyntax, attr.s)
	}
	if p.allowed != nil && !p.allowed[attr.s] {
		return nil, fmt.Errorf("%w: attribute %q is not supported here", errSyntax, attr.s)
	}
	p.pos++
	if p.pos >= len(p.toks) || p.toks[p.pos].quoted || !operators[strings.ToLower(p.toks[p.pos].s)] {
		return nil, fmt.Errorf("%w: expected an operator after %q", errSyntax, attr.s)
	}
	op := strings.ToLower(p.toks[p.pos].s)
	p.pos++
	if op == "pr" {
		return cmpExpr{attr: attr.s, op: op}, nil
	}
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("%w: expected a value after %q %s", errSyntax, attr.s, op)
	}
	v := p.toks[p.pos]
	if !v.quoted && v.s != "true" && v.s != "false" && !isNumber(v.s) {
		return nil, fmt.Errorf("%w: value %q must be quoted", errSyntax, v.s)
	}
	p.pos++
	return cmpExpr{attr: attr.s, op: op, value: v.s}, nil
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// groupFilterAttrs are the only attributes Okta's groups `filter` accepts.
var groupFilterAttrs = map[string]bool{"id": true, "type": true, "lastUpdated": true, "lastMembershipUpdated": true}

func groupAttr(g *Group) func(string) (any, bool) {
	return func(attr string) (any, bool) {
		switch attr {
		case "id":
			return g.ID, true
		case "type":
			return g.Type, true
		case "created":
			return g.Created, true
		case "lastUpdated":
			return g.LastUpdated, true
		case "lastMembershipUpdated":
			return g.LastMembershipUpdated, true
		case "profile.name":
			return g.Profile.Name, true
		case "profile.description":
			return g.Profile.Description, true
		}
		return nil, false
	}
}

func userAttr(u *User) func(string) (any, bool) {
	return func(attr string) (any, bool) {
		switch attr {
		case "id":
			return u.ID, true
		case "status":
			return u.Status, true
		case "created":
			return u.Created, true
		case "lastUpdated":
			return u.LastUpdated, true
		case "statusChanged":
			if u.StatusChanged == nil {
				return nil, false
			}
			return *u.StatusChanged, true
		case "profile.login":
			return u.Profile.Login, true
		case "profile.email":
			return u.Profile.Email, true
		case "profile.firstName":
			return u.Profile.FirstName, true
		case "profile.lastName":
			return u.Profile.LastName, true
		case "profile.department":
			return u.Profile.Department, true
		case "profile.title":
			return u.Profile.Title, true
		}
		return nil, false
	}
}
