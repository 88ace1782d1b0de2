package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCanonicalPath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		decoded, err := CanonicalPath(escaped)
		if err != nil {
			if _, ok := err.(*PathError); !ok {
				t.Fatalf("error %T is not a *PathError", err)
			}
			return
		}
		if !strings.HasPrefix(decoded, "/") {
			t.Fatalf("%q: decoded %q does not start with /", escaped, decoded)
		}
		if strings.Contains(decoded, "//") || strings.ContainsAny(decoded, `\;`) || !utf8.ValidString(decoded) {
			t.Fatalf("%q: decoded %q has //, \\, ; or bad UTF-8", escaped, decoded)
		}
		for i := 0; i < len(decoded); i++ {
			if c := decoded[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("%q: decoded %q has a control character", escaped, decoded)
			}
		}
		for _, seg := range strings.Split(decoded, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: decoded %q has a dot segment", escaped, decoded)
			}
		}
		forwarded := EscapePath(decoded)
		back, err := CanonicalPath(forwarded)
		if err != nil || back != decoded {
			t.Fatalf("%q: round trip via %q gave %q, %v; want %q", escaped, forwarded, back, err, decoded)
		}
		if EscapePath(back) != forwarded {
			t.Fatalf("%q: EscapePath is not stable: %q then %q", escaped, forwarded, EscapePath(back))
		}
		if checkDecoded(decoded) != "" {
			t.Fatalf("%q: Decide would refuse accepted path %q: %s", escaped, decoded, checkDecoded(decoded))
		}
	})
}

// refMatch is a deliberately naive matcher, written from the SPEC rather
// than from pattern.go, for FuzzPattern to compare against.
func refMatch(pattern, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	if len(path) > 1 && strings.HasSuffix(path, "/") {
		path = path[:len(path)-1]
	}
	var ps, pp []string
	if path != "/" {
		ps = strings.Split(path[1:], "/")
	}
	if pattern != "/" {
		pp = strings.Split(pattern[1:], "/")
	}
	for {
		switch {
		case len(pp) == 0:
			return len(ps) == 0
		case pp[0] == "**":
			return true
		case len(ps) == 0:
			return false
		case pp[0] == "*" && ps[0] == "":
			return false
		case pp[0] != "*" && pp[0] != ps[0]:
			return false
		}
		pp, ps = pp[1:], ps[1:]
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"/billing/**", "/billing"}, {"/billing/**", "/billing/"}, {"/billing/**", "/billing/a/b"},
		{"/billing/*", "/billing/"}, {"/a/*/c", "/a/b/c/"}, {"/", "/"}, {"/**", "/"}, {"/*", "//"},
		{"/healthz", "/healthz/"}, {"/a/**/b", "/a/x/b"}, {"/a/b**", "/a/b"}, {"billing/**", "/billing"},
		{"/a//b", "/a//b"}, {"/a/", "/a/"}, {"/*/**", "/x/"}, {"/ü/*", "/ü/ö"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			if p.Match(path) {
				t.Fatalf("failed parse %q still matches %q", pattern, path)
			}
			return
		}
		want := refMatch(pattern, path)
		if got := p.Match(path); got != want {
			t.Fatalf("ParsePattern(%q).Match(%q) = %v, reference says %v", pattern, path, got, want)
		}
		// The trie in Decide must agree with Pattern.Match on every path
		// Decide accepts.
		if checkDecoded(path) != "" {
			return
		}
		pol, err := Compile([]Rule{{Name: "r", Path: pattern, Public: true, Enabled: true}})
		if err != nil {
			t.Fatalf("pattern %q parses but does not compile: %v", pattern, err)
		}
		if got := pol.Decide(Request{Method: "GET", Path: path}, nil).Effect == Allow; got != want {
			t.Fatalf("Decide on %q with pattern %q: allowed=%v, want %v", path, pattern, got, want)
		}
	})
}
