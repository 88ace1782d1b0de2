package okta

import (
	"fmt"
	"strings"
)

// Assignment explains one membership: Okta does not say how a user got
// into a group, so okproxy evaluates the group rules that target it.
type Assignment struct {
	// Rule is the ACTIVE group rule that assigns the membership, or nil
	// when no rule matches (assigned directly, by an admin or an app).
	Rule *GroupRule `json:"rule,omitempty"`
	// Evaluated is false when the rule targets the group but its
	// expression uses Okta Expression Language okproxy does not evaluate.
	Evaluated bool `json:"evaluated"`
}

// Explain returns how u came to be in groupID: each ACTIVE rule targeting
// the group whose expression matches u (or cannot be evaluated here), or a
// single direct assignment. memberOf maps the user's group ids to names,
// for isMemberOf… conditions.
func Explain(u User, groupID string, memberOf map[string]string, rules []GroupRule) []Assignment {
	var out []Assignment
	for i := range rules {
		r := &rules[i]
		if r.Status != "ACTIVE" || !contains(r.GroupIDs, groupID) {
			continue
		}
		ok, err := Evaluate(r.Expression, u, memberOf)
		switch {
		case err != nil:
			out = append(out, Assignment{Rule: r})
		case ok:
			out = append(out, Assignment{Rule: r, Evaluated: true})
		}
	}
	if len(out) == 0 {
		out = append(out, Assignment{})
	}
	return out
}

// Describe renders an assignment for humans, e.g.
// `Developers ← rule "dev-title": user.title == "Developer"`.
func (a Assignment) Describe(groupName string) string {
	switch {
	case a.Rule == nil:
		return groupName + " (assigned directly in Okta)"
	case !a.Evaluated:
		return fmt.Sprintf("%s ← rule %q, if it matches: %s", groupName, a.Rule.Name, a.Rule.Expression)
	}
	return fmt.Sprintf("%s ← rule %q: %s", groupName, a.Rule.Name, a.Rule.Expression)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Evaluate evaluates the subset of Okta Expression Language group rules
// commonly use: user.<attribute> compared with == or != to string
// literals, String.stringContains/startsWith/endsWith, isMemberOfGroup,
// isMemberOfAnyGroup, isMemberOfGroupName(StartsWith|Contains), with
// && / || / AND / OR, ! and parentheses. Anything else is an error, and
// the caller says the rule could not be evaluated.
func Evaluate(expr string, u User, memberOf map[string]string) (bool, error) {
	toks, err := lexEL(expr)
	if err != nil {
		return false, err
	}
	e := &elEval{toks: toks, u: u, memberOf: memberOf}
	v, err := e.or()
	if err != nil {
		return false, err
	}
	if e.pos != len(e.toks) {
		return false, fmt.Errorf("unexpected %q", e.toks[e.pos].s)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("expression is not a condition")
	}
	return b, nil
}

type elTok struct {
	s   string
	str bool // a string literal
}

func lexEL(s string) ([]elTok, error) {
	var out []elTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			out = append(out, elTok{s: b.String(), str: true})
			i = j + 1
		case strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!=") || strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||"):
			out = append(out, elTok{s: s[i : i+2]})
			i += 2
		case strings.ContainsRune("()!,", rune(c)):
			out = append(out, elTok{s: string(c)})
			i++
		default:
			j := i
			for j < len(s) && (isIdent(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q", string(c))
			}
			out = append(out, elTok{s: s[i:j]})
			i = j
		}
	}
	return out, nil
}

func isIdent(c byte) bool {
	return c == '.' || c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

type elEval struct {
	toks     []elTok
	pos      int
	u        User
	memberOf map[string]string
}

func (e *elEval) peek(s string) bool {
	return e.pos < len(e.toks) && !e.toks[e.pos].str && e.toks[e.pos].s == s
}

func (e *elEval) or() (any, error) {
	l, err := e.and()
	if err != nil {
		return nil, err
	}
	for e.peek("||") || e.peek("OR") || e.peek("or") {
		e.pos++
		r, err := e.and()
		if err != nil {
			return nil, err
		}
		lb, ok1 := l.(bool)
		rb, ok2 := r.(bool)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("|| needs conditions")
		}
		l = lb || rb
	}
	return l, nil
}

func (e *elEval) and() (any, error) {
	l, err := e.cmp()
	if err != nil {
		return nil, err
	}
	for e.peek("&&") || e.peek("AND") || e.peek("and") {
		e.pos++
		r, err := e.cmp()
		if err != nil {
			return nil, err
		}
		lb, ok1 := l.(bool)
		rb, ok2 := r.(bool)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("&& needs conditions")
		}
		l = lb && rb
	}
	return l, nil
}

func (e *elEval) cmp() (any, error) {
	l, err := e.unary()
	if err != nil {
		return nil, err
	}
	if e.peek("==") || e.peek("!=") {
		op := e.toks[e.pos].s
		e.pos++
		r, err := e.unary()
		if err != nil {
			return nil, err
		}
		eq := fmt.Sprint(l) == fmt.Sprint(r)
		return eq == (op == "=="), nil
	}
	return l, nil
}

func (e *elEval) unary() (any, error) {
	if e.peek("!") {
		e.pos++
		v, err := e.unary()
		if err != nil {
			return nil, err
		}
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("! needs a condition")
		}
		return !b, nil
	}
	return e.primary()
}

func (e *elEval) primary() (any, error) {
	if e.pos >= len(e.toks) {
		return nil, fmt.Errorf("expression ends early")
	}
	t := e.toks[e.pos]
	e.pos++
	switch {
	case t.str:
		return t.s, nil
	case t.s == "(":
		v, err := e.or()
		if err != nil {
			return nil, err
		}
		if !e.peek(")") {
			return nil, fmt.Errorf("missing )")
		}
		e.pos++
		return v, nil
	case t.s == "true" || t.s == "false":
		return t.s == "true", nil
	case e.peek("("):
		args, err := e.args()
		if err != nil {
			return nil, err
		}
		return e.call(t.s, args)
	case strings.HasPrefix(t.s, "user."):
		return e.attr(strings.TrimPrefix(t.s, "user."))
	}
	return nil, fmt.Errorf("unsupported %q", t.s)
}

func (e *elEval) args() ([]any, error) {
	e.pos++ // (
	var out []any
	for !e.peek(")") {
		v, err := e.or()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if e.peek(",") {
			e.pos++
		} else if !e.peek(")") {
			return nil, fmt.Errorf("expected , or )")
		}
	}
	e.pos++ // )
	return out, nil
}

func (e *elEval) attr(name string) (any, error) {
	u := e.u
	switch name {
	case "login":
		return u.Login, nil
	case "email":
		return u.Email, nil
	case "firstName":
		return u.FirstName, nil
	case "lastName":
		return u.LastName, nil
	case "department":
		return u.Department, nil
	case "title":
		return u.Title, nil
	}
	return nil, fmt.Errorf("user.%s is not synced", name)
}

func (e *elEval) call(fn string, args []any) (any, error) {
	strs := make([]string, len(args))
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("%s: argument %d is not a string", fn, i+1)
		}
		strs[i] = s
	}
	need := func(n int) error {
		if len(strs) != n {
			return fmt.Errorf("%s takes %d arguments", fn, n)
		}
		return nil
	}
	switch fn {
	case "String.stringContains", "String.startsWith", "String.endsWith":
		if err := need(2); err != nil {
			return nil, err
		}
		switch fn {
		case "String.stringContains":
			return strings.Contains(strs[0], strs[1]), nil
		case "String.startsWith":
			return strings.HasPrefix(strs[0], strs[1]), nil
		}
		return strings.HasSuffix(strs[0], strs[1]), nil
	case "isMemberOfGroup", "isMemberOfAnyGroup":
		for _, id := range strs {
			if _, ok := e.memberOf[id]; ok {
				return true, nil
			}
		}
		return false, nil
	case "isMemberOfGroupName", "isMemberOfGroupNameStartsWith", "isMemberOfGroupNameContains":
		if err := need(1); err != nil {
			return nil, err
		}
		for _, n := range e.memberOf {
			switch {
			case fn == "isMemberOfGroupName" && n == strs[0],
				fn == "isMemberOfGroupNameStartsWith" && strings.HasPrefix(n, strs[0]),
				fn == "isMemberOfGroupNameContains" && strings.Contains(n, strs[0]):
				return true, nil
			}
		}
		return false, nil
	}
	return nil, fmt.Errorf("function %s is not evaluated", fn)
}
