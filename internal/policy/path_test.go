package policy

import (
	"errors"
	"testing"
)

// pathCases seed FuzzCanonicalPath too. want is the decoded path, or "" when
// the path must be refused with reason.
var pathCases = []struct {
	in, want, reason string
}{
	{"/", "/", ""},
	{"/a/b/", "/a/b/", ""},
	{"/billing/x", "/billing/x", ""},
	{"/bil%6Cing/x", "/billing/x", ""},
	{"/%7Euser/a%20b", "/~user/a b", ""},
	{"/caf%C3%A9/☃", "/café/☃", ""},
	{"/a/%252e", "/a/%2e", ""}, // decoded once: a literal segment "%2e", not a dot
	{"/a/%252e%252e/b", "/a/%2e%2e/b", ""},
	{"/a/...", "/a/...", ""},
	{"/a/.b/c.", "/a/.b/c.", ""},
	{"/a+b/@c:d", "/a+b/@c:d", ""},

	{"", "", pathNoSlash},
	{"billing", "", pathNoSlash},
	{"%2Fadmin", "", pathNoSlash},
	{"/billing/%2e%2e/admin", "", pathDotSegment},
	{"/billing/..%2Fadmin", "", pathEncodedSlash},
	{"/billing/../admin", "", pathDotSegment},
	{"//admin", "", pathEmptySegment},
	{"/a//b", "", pathEmptySegment},
	{"/a//", "", pathEmptySegment},
	{"/admin;x=1", "", pathSemicolon},
	{"/admin%3Bx=1", "", pathSemicolon},
	{"/admin%3b", "", pathSemicolon},
	{"/a%00b", "", pathEncodedControl},
	{"/a\x00b", "", pathControl},
	{"/a%0a", "", pathEncodedControl},
	{"/a%0D%0Ab", "", pathEncodedControl},
	{"/a%7f", "", pathEncodedControl},
	{"/a\x7f", "", pathControl},
	{"/a\tb", "", pathControl},
	{"/a%5Cb", "", pathEncodedBack},
	{"/a%5cb", "", pathEncodedBack},
	{`/a\b`, "", pathBackslash},
	{`/..\admin`, "", pathBackslash},
	{"/./a", "", pathDotSegment},
	{"/a/.", "", pathDotSegment},
	{"/a/./", "", pathDotSegment},
	{"/a/..", "", pathDotSegment},
	{"/a/%2E/b", "", pathDotSegment},
	{"/a/%2e%2E/b", "", pathDotSegment},
	{"/a/.%2e", "", pathDotSegment},
	{"/a%2fb", "", pathEncodedSlash},
	{"/a%2Fb", "", pathEncodedSlash},
	{"/%", "", pathBadEscape},
	{"/%2", "", pathBadEscape},
	{"/%zz", "", pathBadEscape},
	{"/%g0", "", pathBadEscape},
	{"/a%c0%ae", "", pathBadUTF8}, // overlong '.'
	{"/a%c0%af", "", pathBadUTF8}, // overlong '/'
	{"/a%ff", "", pathBadUTF8},
	{"/\xff", "", pathBadUTF8},
}

func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	for _, tc := range pathCases {
		got, err := CanonicalPath(tc.in)
		if tc.reason != "" {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Reason != tc.reason {
				t.Errorf("CanonicalPath(%q) = %q, %v; want refusal %q", tc.in, got, err, tc.reason)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		back, err := CanonicalPath(EscapePath(got))
		if err != nil || back != got {
			t.Errorf("round trip of %q via %q = %q, %v", got, EscapePath(got), back, err)
		}
	}
}

func TestEscapePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/billing/x", "/billing/x"},
		{"/", "/"},
		{"/a/%2e", "/a/%252e"},
		{"/a b/c?d#e", "/a%20b/c%3Fd%23e"},
		{"/café", "/caf%C3%A9"},
		{"/a;b", "/a%3Bb"},
		{"/~u/a-b_c.d!$&'()*+,=:@", "/~u/a-b_c.d!$&'()*+,=:@"},
		{"/a\"<>`{}|^[]", "/a%22%3C%3E%60%7B%7D%7C%5E%5B%5D"},
	} {
		if got := EscapePath(tc.in); got != tc.want {
			t.Errorf("EscapePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDecideRefusesNonCanonicalPath(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, Rule{Name: "pub", Path: "/**", Public: true})
	for _, path := range []string{"", "public", "/public/../admin", "/a//b", "/a\\b", "/a;b", "/a\x00", "/\xff", "/."} {
		d := p.Decide(Request{Method: "GET", Path: path}, nil)
		if d.Effect != Deny || d.Reason != ReasonBadRequest {
			t.Errorf("Decide(%q) = %s/%s, want deny/bad_request", path, d.Effect, d.Reason)
		}
	}
}
