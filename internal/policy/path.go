package policy

import (
	"strings"
	"unicode/utf8"
)

// PathError says why a request path was refused (SPEC §4, request hygiene).
// Reason is safe to show to the client: it never echoes the path, which may
// hold control characters meant for a log or a terminal.
type PathError struct {
	Reason string
}

func (e *PathError) Error() string { return "bad request path: " + e.Reason }

// Reasons a path is refused. They are fixed strings so that tests, logs and
// metrics can compare them.
const (
	pathNoSlash        = "path must start with /"
	pathEncodedSlash   = "encoded slash (%2F) in path"
	pathEncodedBack    = "encoded backslash (%5C) in path"
	pathBackslash      = `backslash (\) in path`
	pathControl        = "control character in path"
	pathSemicolon      = "semicolon (;) in path"
	pathBadEscape      = "malformed percent-escape in path"
	pathBadUTF8        = "path is not valid UTF-8 once decoded"
	pathDotSegment     = "dot segment (. or ..) in path"
	pathEmptySegment   = "empty segment (//) in path"
	pathNotCanonical   = "path is not canonical"
	pathEncodedControl = "encoded control character in path"
)

// CanonicalPath decodes the raw, still-escaped request path and returns the
// decoded path that rules are matched against.
//
// Pass the path exactly as the client sent it: r.URL.RawPath when it is set,
// else r.URL.EscapedPath(). Do not pass r.URL.EscapedPath() alone: when the
// raw path holds a character Go would have escaped ('{', '"', ...) it
// re-escapes r.URL.Path instead, and "/a%2Fb/{x}" comes back as "/a/b/%7Bx%7D"
// with the encoded slash gone. Never pass r.URL.Path, which is decoded.
//
// Escapes are decoded exactly once: %252e becomes the literal segment "%2e",
// which is not a dot segment; EscapePath turns it back into %252e so the
// upstream sees the same thing we matched. Anything an upstream could read
// differently from us is refused rather than repaired: encoded slashes and
// backslashes, backslashes, control characters (raw or encoded, DEL
// included), . and .. segments (raw or encoded), empty inner segments, ';'
// (path parameters, which some servers strip before routing), malformed
// escapes and invalid UTF-8 (overlong encodings of '.' or '/' live there). A
// single trailing slash is kept.
func CanonicalPath(escaped string) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", &PathError{Reason: pathNoSlash}
	}
	escapes := false
	for i := 0; i < len(escaped); i++ {
		c := escaped[i]
		if c == '%' {
			if i+2 >= len(escaped) || !isHex(escaped[i+1]) || !isHex(escaped[i+2]) {
				return "", &PathError{Reason: pathBadEscape}
			}
			c = unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
			switch {
			case c == '/':
				return "", &PathError{Reason: pathEncodedSlash}
			case c == '\\':
				return "", &PathError{Reason: pathEncodedBack}
			case isControl(c):
				return "", &PathError{Reason: pathEncodedControl}
			}
			escapes = true
			i += 2
		} else if c == '\\' {
			return "", &PathError{Reason: pathBackslash}
		} else if isControl(c) {
			return "", &PathError{Reason: pathControl}
		}
		if c == ';' {
			return "", &PathError{Reason: pathSemicolon}
		}
	}
	decoded := escaped
	if escapes {
		decoded = unescape(escaped)
	}
	if !utf8.ValidString(decoded) {
		return "", &PathError{Reason: pathBadUTF8}
	}
	if reason := checkSegments(decoded); reason != "" {
		return "", &PathError{Reason: reason}
	}
	return decoded, nil
}

// checkSegments enforces the segment rules on a decoded path that starts
// with /: no empty inner segment and no dot segment.
func checkSegments(p string) string {
	if p == "/" {
		return ""
	}
	for pos := 1; pos <= len(p); {
		seg, next := nextSegment(p, pos)
		switch seg {
		case "":
			if next <= len(p) { // not the single trailing slash
				return pathEmptySegment
			}
		case ".", "..":
			return pathDotSegment
		}
		pos = next
	}
	return ""
}

// checkDecoded reports why p is not a path CanonicalPath could have
// returned, or "" when it is. Decide uses it so that a caller that forgot to
// canonicalise fails closed instead of matching /public/../admin as public.
func checkDecoded(p string) string {
	if p == "" || p[0] != '/' {
		return pathNoSlash
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; isControl(c) || c == '\\' || c == ';' {
			return pathNotCanonical
		}
	}
	if !utf8.ValidString(p) {
		return pathBadUTF8
	}
	return checkSegments(p)
}

// EscapePath re-escapes a decoded path canonically for forwarding upstream.
// Unreserved characters, sub-delimiters other than ';', ':', '@' and '/' stay
// as they are; every other byte, '%' included, becomes %XX with upper-case
// hex, so CanonicalPath(EscapePath(p)) == p for every canonical p.
func EscapePath(decoded string) string {
	n := 0
	for i := 0; i < len(decoded); i++ {
		if escapeByte(decoded[i]) {
			n++
		}
	}
	if n == 0 {
		return decoded
	}
	var b strings.Builder
	b.Grow(len(decoded) + 2*n)
	for i := 0; i < len(decoded); i++ {
		c := decoded[i]
		if escapeByte(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// escapeByte reports whether c must be escaped in a forwarded path: anything
// outside RFC 3986 pchar and '/', plus ';' because we never forward path
// parameters (CanonicalPath refuses them; escaping keeps EscapePath safe on
// its own).
func escapeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	}
	switch c {
	case '-', '.', '_', '~', // unreserved
		'!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', // sub-delims but ';'
		':', '@', '/':
		return false
	}
	return true
}

func isControl(c byte) bool { return c < 0x20 || c == 0x7f }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// unescape decodes %XX sequences; CanonicalPath has already checked that
// every one is well formed.
func unescape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
