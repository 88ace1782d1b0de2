package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePatternRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern string
		want    string // substring of the message naming the problem
	}{
		{"", "must start with /"},
		{"billing/**", "must start with /"},
		{"/a/**/b", "** is only allowed as the last segment"},
		{"/**/**", "** is only allowed as the last segment"},
		{"/a/b**", "wildcard must be a whole segment"},
		{"/a*", "wildcard must be a whole segment"},
		{"/*a/b", "wildcard must be a whole segment"},
		{"/***", "wildcard must be a whole segment"},
		{"/a//b", "empty segment"},
		{"//", "empty segment"},
		{"/a/", "must not end with /"},
		{"/a/**/", "must not end with /"},
		{"/a/./b", "dot segment"},
		{"/a/..", "dot segment"},
		{"/a\x00b", "control character"},
		{"/a\nb", "control character"},
		{"/a\x7fb", "control character"},
		{`/a\b`, "backslash"},
		{"/a;b", "';'"},
		{"/bil%6Cing", "decoded paths"},
		{"/a?x=1", "query string"},
		{"/a#frag", "fragment"},
		{"/\xff", "UTF-8"},
		{"/a ", "white space"},
		{" /a", "white space"},
	} {
		_, err := ParsePattern(tc.pattern)
		var pe *PatternError
		if !errors.As(err, &pe) {
			t.Errorf("ParsePattern(%q) = %v, want *PatternError", tc.pattern, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePattern(%q) error %q does not mention %q", tc.pattern, err, tc.want)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"/billing/**",
			[]string{"/billing", "/billing/", "/billing/a", "/billing/a/b", "/billing/a/b/"},
			[]string{"/", "/billingx", "/Billing", "/billin", "/other/billing"}},
		{"/billing/*",
			[]string{"/billing/a", "/billing/a/", "/billing/%2e"},
			[]string{"/billing", "/billing/", "/billing/a/b"}},
		{"/a/*/c",
			[]string{"/a/b/c", "/a/x/c/"},
			[]string{"/a/c", "/a/b/c/d", "/a/b/C"}},
		{"/healthz", []string{"/healthz", "/healthz/"}, []string{"/healthz/x", "/Healthz", "/healthzz", "/"}},
		{"/", []string{"/"}, []string{"/a"}},
		{"/**", []string{"/", "/a", "/a/b/c"}, nil},
		{"/*", []string{"/a", "/a/"}, []string{"/", "/a/b"}},
		{"/*/**", []string{"/a", "/a/b/c"}, []string{"/"}},
		{"/ünïcode/☃", []string{"/ünïcode/☃"}, []string{"/unicode/☃"}},
		{"/a/%", nil, nil}, // rejected; see below
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			if tc.yes == nil && tc.no == nil {
				continue
			}
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		if p.String() != tc.pattern {
			t.Errorf("String() = %q, want %q", p.String(), tc.pattern)
		}
		for _, path := range tc.yes {
			if !p.Match(path) {
				t.Errorf("%q should match %q", tc.pattern, path)
			}
		}
		for _, path := range tc.no {
			if p.Match(path) {
				t.Errorf("%q should not match %q", tc.pattern, path)
			}
		}
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	t.Parallel()
	var p Pattern
	for _, path := range []string{"/", "", "/a"} {
		if p.Match(path) {
			t.Errorf("zero Pattern matched %q", path)
		}
	}
}
