package policy

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Pattern is a parsed rule path pattern (SPEC §3). The zero Pattern matches
// nothing, so a forgotten ParsePattern fails closed.
//
// Patterns are matched against canonical, percent-decoded request paths (see
// CanonicalPath). A single trailing slash on the request path is ignored when
// matching: /admin/ matches exactly the patterns /admin matches. Without that,
// a deny on /admin could be sidestepped by asking for /admin/ whenever a
// broader rule grants it.
type Pattern struct {
	raw  string
	segs []string // literal segments, or "*" for any one non-empty segment
	rest bool     // the pattern ended in /**: zero or more further segments
}

// PatternError says why a string is not a valid path pattern.
type PatternError struct {
	Pattern string
	Message string
}

func (e *PatternError) Error() string {
	return "pattern " + strconv.Quote(e.Pattern) + ": " + e.Message
}

// ParsePattern parses a rule path pattern: it must start with /; * matches
// exactly one non-empty segment; ** may only be the last segment and matches
// zero or more segments; everything else is literal and case-sensitive.
//
// Characters that can never appear in a canonical request path (control
// characters, \, ;) are rejected, as is %: patterns match decoded paths, so a
// %-escape in a pattern would be compared literally and silently never match
// what its author meant. ? and # are rejected because patterns never see the
// query string or fragment. A pattern may not end in / (except / itself)
// because request trailing slashes are ignored when matching.
func ParsePattern(s string) (Pattern, error) {
	fail := func(msg string) (Pattern, error) {
		return Pattern{}, &PatternError{Pattern: s, Message: msg}
	}
	if s == "" {
		return fail("is empty; a pattern must start with /")
	}
	if strings.TrimSpace(s) != s {
		// Almost certainly a copy-paste slip; Rule.Normalize trims it.
		return fail("has leading or trailing white space")
	}
	if s[0] != '/' {
		return fail("must start with /")
	}
	if !utf8.ValidString(s) {
		return fail("is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return fail("contains a control character")
		case c == '\\':
			return fail(`contains a backslash (\), which request paths may not contain`)
		case c == ';':
			return fail("contains ';', which request paths may not contain")
		case c == '%':
			return fail("contains '%': patterns match decoded paths, so write the character itself, not a %-escape")
		case c == '?' || c == '#':
			return fail("contains '" + string(c) + "': patterns match the path only, never the query string or fragment")
		}
	}
	if s == "/" {
		return Pattern{raw: s}, nil
	}
	if strings.HasSuffix(s, "/") && !strings.HasSuffix(s, "//") {
		return fail("must not end with / (a trailing slash on the request is ignored, so " +
			strconv.Quote(s[:len(s)-1]) + " already matches " + strconv.Quote(s) + ")")
	}
	parts := strings.Split(s[1:], "/")
	p := Pattern{raw: s, segs: make([]string, 0, len(parts))}
	for i, seg := range parts {
		switch {
		case seg == "":
			return fail("has an empty segment (//)")
		case seg == "." || seg == "..":
			return fail("has a dot segment (" + seg + "), which request paths may not contain")
		case seg == "**":
			if i != len(parts)-1 {
				return fail("** is only allowed as the last segment")
			}
			p.rest = true
		case seg == "*":
			p.segs = append(p.segs, seg)
		case strings.Contains(seg, "*"):
			return fail("segment " + strconv.Quote(seg) + ": a wildcard must be a whole segment (* or **)")
		default:
			p.segs = append(p.segs, seg)
		}
	}
	return p, nil
}

// MustParsePattern is ParsePattern for patterns known to be valid, such as
// constants in tests; it panics on error.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// Match reports whether the canonical path matches the pattern.
func (p Pattern) Match(path string) bool {
	if p.raw == "" {
		return false
	}
	path, ok := matchPath(path)
	if !ok {
		return false
	}
	pos := 1
	for _, want := range p.segs {
		if pos > len(path) {
			return false
		}
		seg, next := nextSegment(path, pos)
		if want == "*" {
			if seg == "" {
				return false
			}
		} else if seg != want {
			return false
		}
		pos = next
	}
	return p.rest || pos > len(path)
}

// matchPath strips the single trailing slash that matching ignores. The
// result's segments start at index 1 and run until the index exceeds its
// length; "/" yields no segments.
func matchPath(path string) (string, bool) {
	if path == "" || path[0] != '/' {
		return "", false
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	if path == "/" {
		// Start past the end so the root has zero segments.
		return "", true
	}
	return path, true
}

// nextSegment returns the segment of path starting at pos and the start of the
// one after it (len(path)+1 when there is none).
func nextSegment(path string, pos int) (seg string, next int) {
	end := strings.IndexByte(path[pos:], '/')
	if end < 0 {
		return path[pos:], len(path) + 1
	}
	return path[pos : pos+end], pos + end + 1
}
