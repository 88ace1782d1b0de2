package policy

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Caller is an authenticated identity as policy sees it: a subject, its
// groups and its token's scopes. Build it once per verified token with
// NewCaller; a nil *Caller is the anonymous caller, who is in no group and
// holds no scope. A Caller is immutable and safe for concurrent use.
type Caller struct {
	subject string
	groups  []GroupRef
	scopes  []string

	// Lookup sets built once so that Decide does no per-group work beyond a
	// map probe: ids of groups that have one, folded names of all groups, and
	// folded names of groups without an id (from the token's claim).
	ids       map[string]struct{}
	names     map[string]struct{}
	nameOnly  map[string]struct{}
	exactOnly map[string]struct{} // exact names of groups without an id
	scopesSet map[string]struct{}
}

// NewCaller builds a Caller. Groups from the token's claim carry only a
// Name; groups from the synced directory carry the ID too.
func NewCaller(subject string, groups []GroupRef, scopes []string) *Caller {
	c := &Caller{
		subject:   subject,
		groups:    slices.Clone(groups),
		scopes:    slices.Clone(scopes),
		ids:       make(map[string]struct{}, len(groups)),
		names:     make(map[string]struct{}, len(groups)),
		nameOnly:  make(map[string]struct{}),
		exactOnly: make(map[string]struct{}),
		scopesSet: make(map[string]struct{}, len(scopes)),
	}
	for _, g := range groups {
		if g.ID != "" {
			c.ids[g.ID] = struct{}{}
		}
		if g.Name != "" {
			k := foldKey(g.Name)
			c.names[k] = struct{}{}
			if g.ID == "" {
				c.nameOnly[k] = struct{}{}
				c.exactOnly[g.Name] = struct{}{}
			}
		}
	}
	for _, s := range scopes {
		c.scopesSet[s] = struct{}{}
	}
	return c
}

// Subject returns the token's subject ("" for the anonymous caller).
func (c *Caller) Subject() string {
	if c == nil {
		return ""
	}
	return c.subject
}

// Groups returns a copy of the caller's groups as given to NewCaller.
func (c *Caller) Groups() []GroupRef {
	if c == nil {
		return nil
	}
	return slices.Clone(c.groups)
}

// Scopes returns a copy of the caller's scopes.
func (c *Caller) Scopes() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.scopes)
}

// HasScope reports whether the caller's token carries scope s (exact match).
func (c *Caller) HasScope(s string) bool {
	if c == nil {
		return false
	}
	_, ok := c.scopesSet[s]
	return ok
}

// InGroup reports whether the caller is in the group a rule names.
//
// A rule ref bound to an id (the directory has been synced) matches a
// directory group only by that id: another group that happens to share the
// name is a different group, and must not inherit its grants. Groups from a
// token's claim carry no id, so for them the ref's name (the directory's
// current name, compared case-insensitively) is all there is to go on. A ref
// without an id matches any caller group of that name, unless that name is
// ambiguous (GroupRef.IsAmbiguous): then it is the grant side's reading, and
// the caller is in no such group, as an allow by that name grants nobody.
func (c *Caller) InGroup(g GroupRef) bool {
	return c.inRef(newGroupKey(g))
}

// groupKey is a GroupRef prepared for matching at Compile time.
type groupKey struct {
	id        string
	fold      string   // foldKey(Name)
	exact     string   // Name
	name      string   // for DeniedGroup
	amb       []string // GroupRef.AmbiguousIDs of an id-less ref naming several groups
	nameMatch uint8    // GroupRef.nameMatch
}

func newGroupKey(g GroupRef) groupKey {
	return groupKey{id: g.ID, fold: foldKey(g.Name), exact: g.Name, name: g.String(), amb: g.AmbiguousIDs(), nameMatch: g.nameMatch}
}

// inRef is membership as an allow list (or a quota) reads it: an ambiguous
// name matches nobody.
func (c *Caller) inRef(k groupKey) bool {
	if c == nil || k.amb != nil {
		return false
	}
	return c.inKey(k, true)
}

// inAny is membership as a deny list reads it: an ambiguous name matches a
// member of any group it could mean, by id or by name.
func (c *Caller) inAny(k groupKey) bool {
	if c == nil {
		return false
	}
	for _, id := range k.amb {
		if _, ok := c.ids[id]; ok {
			return true
		}
	}
	return c.inKey(k, false)
}

// inKey: grant is true for an allow or quota, which a token's group name
// meets only as Groups.Mark allows; a deny compares names case-insensitively
// always, so a shared name denies rather than escapes.
func (c *Caller) inKey(k groupKey, grant bool) bool {
	if k.id != "" {
		if _, ok := c.ids[k.id]; ok {
			return true
		}
		if k.fold == "" {
			return false
		}
		if grant {
			switch k.nameMatch {
			case nameExact:
				_, ok := c.exactOnly[k.exact]
				return ok
			case nameNever:
				return false
			}
		}
		_, ok := c.nameOnly[k.fold]
		return ok
	}
	if k.fold == "" {
		return false
	}
	_, ok := c.names[k.fold]
	return ok
}

// FoldName is the form in which group names compare (foldKey): every part
// of okproxy that resolves a group name uses it, so a name matches the same
// groups in `rules add`, `rules apply`, serve and lint.
func FoldName(s string) string { return foldKey(s) }

// foldKey maps s to a canonical form such that foldKey(a) == foldKey(b)
// exactly when strings.EqualFold(a, b): every rune becomes one fixed member
// of its simple case-folding orbit (lower case for ASCII letters). Invalid
// bytes are kept as they are, so distinct invalid names stay distinct.
func foldKey(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(foldRune(r))
		}
		i += size
	}
	return b.String()
}

// foldRune picks the orbit's representative: its lower-case ASCII member if
// it has one (so ASCII names fold to the familiar lower case), else its
// smallest member.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	best := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return foldRune(f)
		}
		if f < best {
			best = f
		}
	}
	return best
}
