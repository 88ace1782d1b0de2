package policy

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValidationError names the rule field that is wrong and why. Field is the
// field's JSON/YAML name (name, path, methods, hosts, allow,
// allow_authenticated, public, deny, scopes, description, mode); Message
// names the bad value where there is one.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// RuleError ties an error to the rule it is about, so that Compile's caller
// can name the rule (and errors.As still finds the ValidationError).
type RuleError struct {
	Rule string // the rule's name, or "#N" (1-based position) when it has none
	Err  error
}

func (e *RuleError) Error() string { return "rule " + strconv.Quote(e.Rule) + ": " + e.Err.Error() }
func (e *RuleError) Unwrap() error { return e.Err }

// knownMethods are the HTTP methods a rule may name; a method's index is its
// bit in methodMask, which is why this is not an exported, mutable slice.
var knownMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

// KnownMethods returns the HTTP methods a rule may name, for help texts.
func KnownMethods() []string { return slices.Clone(knownMethods[:]) }

// String names the group the way a human would: by name, else by id.
func (g GroupRef) String() string {
	if g.Name != "" {
		return g.Name
	}
	return g.ID
}

// Clone returns a deep copy of r: its slices are its own, so normalising
// the copy leaves r as it was.
func (r Rule) Clone() Rule {
	r.Methods = slices.Clone(r.Methods)
	r.Hosts = slices.Clone(r.Hosts)
	r.Scopes = slices.Clone(r.Scopes)
	r.Allow = slices.Clone(r.Allow) // a GroupRef's ambiguity is never modified, only replaced
	r.Deny = slices.Clone(r.Deny)
	return r
}

// Normalize puts r into its stored form, rewriting r's slices in place: surrounding space trimmed, methods
// upper case, hosts lower case without a trailing dot, lists sorted and
// deduplicated, mode defaulted to enforce. Empty list entries are kept on
// purpose: dropping them could turn an empty --method flag into "all methods", so
// Validate reports them instead.
func (r *Rule) Normalize() {
	r.Name = strings.TrimSpace(r.Name)
	r.Path = strings.TrimSpace(r.Path)
	for i, m := range r.Methods {
		r.Methods[i] = strings.ToUpper(strings.TrimSpace(m))
	}
	r.Methods = sortDedupe(r.Methods)
	for i, h := range r.Hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if len(h) > 1 && h[len(h)-1] == '.' {
			h = h[:len(h)-1]
		}
		r.Hosts[i] = h
	}
	r.Hosts = sortDedupe(r.Hosts)
	for i, s := range r.Scopes {
		r.Scopes[i] = strings.TrimSpace(s) // scopes are case-sensitive (RFC 6749)
	}
	r.Scopes = sortDedupe(r.Scopes)
	r.Allow = normalizeRefs(r.Allow)
	r.Deny = normalizeRefs(r.Deny)
	r.Mode = Mode(strings.ToLower(strings.TrimSpace(string(r.Mode))))
	if r.Mode == "" {
		r.Mode = ModeEnforce
	}
}

func sortDedupe(s []string) []string {
	if len(s) == 0 {
		return s
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// normalizeRefs sorts refs by folded name then id, and drops refs to the same
// group: the same id, or, for refs without id, the same name.
func normalizeRefs(refs []GroupRef) []GroupRef {
	if len(refs) == 0 {
		return refs
	}
	for i := range refs {
		refs[i].ID = strings.TrimSpace(refs[i].ID)
		refs[i].Name = strings.TrimSpace(refs[i].Name)
	}
	key := func(g GroupRef) string {
		if g.ID != "" {
			return "id:" + g.ID
		}
		return "name:" + foldKey(g.Name)
	}
	slices.SortStableFunc(refs, func(a, b GroupRef) int {
		if c := strings.Compare(foldKey(a.Name), foldKey(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	seen := make(map[string]bool, len(refs))
	out := refs[:0]
	for _, g := range refs {
		if k := key(g); !seen[k] {
			seen[k] = true
			out = append(out, g)
		}
	}
	return out
}

// Validate reports the first problem with r as a *ValidationError, or nil.
// It accepts methods and hosts in any case (Normalize fixes that) but
// requires rule names to be lower case, because names identify rules in the
// CLI and the audit log and must not differ by case alone.
func (r Rule) Validate() error {
	bad := func(field, msg string) error { return &ValidationError{Field: field, Message: msg} }
	if r.Name == "" {
		return bad("name", "is required")
	}
	if !validName(r.Name) {
		return bad("name", strconv.Quote(r.Name)+" must be 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if r.Path == "" {
		return bad("path", "is required")
	}
	if _, err := ParsePattern(r.Path); err != nil {
		return bad("path", err.Error())
	}
	for _, m := range r.Methods {
		if !slices.Contains(knownMethods[:], strings.ToUpper(strings.TrimSpace(m))) {
			return bad("methods", "unknown method "+strconv.Quote(m)+" (want one of "+strings.Join(knownMethods[:], ", ")+")")
		}
	}
	for _, h := range r.Hosts {
		if msg := checkHost(h); msg != "" {
			return bad("hosts", strconv.Quote(h)+": "+msg)
		}
	}
	grants := r.Public || r.AllowAuthenticated || len(r.Allow) > 0
	switch {
	case !grants && len(r.Deny) == 0:
		return bad("allow", "a rule must grant something (allow, allow_authenticated or public) or deny something (deny)")
	case r.Public && len(r.Allow) > 0:
		return bad("public", "cannot be combined with allow groups")
	case r.Public && r.AllowAuthenticated:
		return bad("public", "cannot be combined with allow_authenticated")
	case r.Public && len(r.Scopes) > 0:
		return bad("public", "cannot be combined with scopes (a public request may carry no token)")
	case !grants && len(r.Scopes) > 0:
		return bad("scopes", "only restrict grants, and this rule grants nothing (deny applies regardless of scopes)")
	}
	if msg := checkRefs(r.Allow); msg != "" {
		return bad("allow", msg)
	}
	if msg := checkRefs(r.Deny); msg != "" {
		return bad("deny", msg)
	}
	for _, s := range r.Scopes {
		if msg := checkScope(s); msg != "" {
			return bad("scopes", msg)
		}
	}
	if !utf8.ValidString(r.Description) {
		return bad("description", "is not valid UTF-8")
	}
	for _, c := range r.Description {
		// Descriptions are printed in terminals; escape sequences have no place there.
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			return bad("description", "contains a control character")
		}
	}
	switch r.Mode {
	case "", ModeEnforce, ModeReport:
	default:
		return bad("mode", strconv.Quote(string(r.Mode))+" must be enforce or report")
	}
	return nil
}

// validName implements ^[a-z0-9][a-z0-9._-]{0,62}$.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// checkHost accepts a DNS name or IPv4 address, optionally with a leading
// "*." label meaning "any subdomain, at any depth, but not the name itself"
// (as nginx and Envoy read it). Ports, schemes and paths are refused rather
// than stripped so that the stored rule says exactly what it matches.
func checkHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case h == "":
		return "is empty"
	case strings.Contains(h, "://"):
		return "must not include a scheme"
	case strings.ContainsAny(h, "/?#"):
		return "must not include a path"
	case strings.Contains(h, ":"):
		return "must not include a port"
	}
	h = strings.TrimSuffix(h, ".")
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h = rest
	}
	if strings.Contains(h, "*") {
		return "a wildcard is only allowed as the whole first label (*.example.com)"
	}
	if len(h) > 253 {
		return "is longer than 253 characters"
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "has an empty label or one longer than 63 characters"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "has a label starting or ending with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "may only hold letters, digits, '-', '_' and '.' (and a leading *.)"
			}
		}
	}
	return ""
}

func checkRefs(refs []GroupRef) string {
	for _, g := range refs {
		name, id := strings.TrimSpace(g.Name), strings.TrimSpace(g.ID)
		if name == "" && id == "" {
			return "empty group name"
		}
		// A ref bound to an id carries the directory's current name for
		// display, whatever Okta holds; only a name typed by someone is
		// checked. Refusing it would let one renamed Okta group stop every
		// replica's policy from compiling.
		if id != "" {
			name = ""
		}
		if !utf8.ValidString(name) {
			return "group name is not valid UTF-8"
		}
		for _, c := range name {
			if c < 0x20 || c == 0x7f {
				return "group name " + strconv.Quote(name) + " contains a control character"
			}
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return "group id " + strconv.Quote(id) + " must be letters and digits (an Okta id such as 00g1abcd)"
			}
		}
	}
	return ""
}

// checkScope follows RFC 6749 §3.3: scope tokens are printable ASCII other
// than space, '"' and '\'.
func checkScope(s string) string {
	if strings.TrimSpace(s) == "" {
		return "empty scope"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return "scope " + strconv.Quote(s) + " may not contain spaces, quotes, backslashes or non-ASCII characters"
		}
	}
	return ""
}
