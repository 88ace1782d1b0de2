package proxy

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzRawPath: whatever request target a client sends, an accepted one
// yields an origin-form path with no query or fragment left in it, taken
// verbatim from the target (nothing decoded or cleaned yet).
func FuzzRawPath(f *testing.F) {
	for _, s := range []string{"/", "/a?b", "/a#b", "*", "example.com:443", "http://h", "http://h/x?y", "http://h?x",
		"https://h/a/../b", "//h/x", "/%2e%2e/x", "h://", "://x/", "/a?b#c", "http://h#/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		p, ok := rawPath(target)
		if !ok {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
			t.Fatalf("rawPath(%q) = %q: not an origin-form path", target, p)
		}
		if p != "/" && !strings.Contains(target, p) {
			t.Fatalf("rawPath(%q) = %q: not taken from the target", target, p)
		}
	})
}

// FuzzClientIP: the audited client address is always a single parsable
// address; behind a trusted proxy it is the peer or an untrusted hop of the
// chain, and an untrusted peer can never choose it with X-Forwarded-For.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"", "203.0.113.7", "203.0.113.7, 10.0.0.2", "garbage, 10.0.0.2", "::ffff:203.0.113.7",
		"10.0.0.1,10.0.0.2", " , ,", "203.0.113.7 10.0.0.2", "[::1]", "fe80::1%eth0",
		"fe80::1%<img/src=x>", "203.0.113.7,"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	h := &Handler{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}}}
	f.Fuzz(func(t *testing.T, xff string, fromTrusted bool) {
		r := &http.Request{Header: http.Header{"X-Forwarded-For": {xff}}, RemoteAddr: "198.51.100.9:4000"}
		if fromTrusted {
			r.RemoteAddr = "127.0.0.1:4000"
		}
		got := h.clientIP(r)
		a, err := netip.ParseAddr(got)
		if err != nil || a.String() != got || a.Zone() != "" {
			t.Fatalf("clientIP(xff %q) = %q: not one canonical address without a zone", xff, got)
		}
		switch {
		case !fromTrusted && got != "198.51.100.9":
			t.Fatalf("untrusted peer chose its address with X-Forwarded-For %q: %q", xff, got)
		case fromTrusted && got != "127.0.0.1":
			// Independently: got must be one of the chain's hops, canonical
			// and unmapped, and not a trusted proxy itself.
			inChain := false
			for _, hop := range strings.Split(xff, ",") {
				if ha, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && ha.Unmap().String() == got {
					inChain = true
				}
			}
			if !inChain || h.trusted(netip.AddrPortFrom(a, 0).String()) {
				t.Fatalf("clientIP(xff %q) = %q: neither the peer nor an untrusted hop", xff, got)
			}
		}
	})
}

// Hostile X-Forwarded-For chains from a trusted peer: anything unparsable
// at the right end (an empty element, an IPv6 zone, which is free text)
// means the chain is not believed and the peer is audited.
func TestClientIPHostileChains(t *testing.T) {
	t.Parallel()
	h := &Handler{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	for xff, want := range map[string]string{
		"203.0.113.7":                          "203.0.113.7",
		"203.0.113.7,":                         "127.0.0.1",
		"203.0.113.7, ":                        "127.0.0.1",
		"fe80::1%<img/src=x/onerror=1>":        "127.0.0.1",
		"203.0.113.7, fe80::1%eth0":            "127.0.0.1",
		"fe80::1%eth0, 203.0.113.7":            "203.0.113.7",
		"::ffff:203.0.113.7":                   "203.0.113.7",
		"203.0.113.7, evil":                    "127.0.0.1",
		"198.51.100.1, 203.0.113.7, 127.0.0.2": "203.0.113.7",
	} {
		r := &http.Request{Header: http.Header{"X-Forwarded-For": {xff}}, RemoteAddr: "127.0.0.1:4000"}
		if got := h.clientIP(r); got != want {
			t.Errorf("X-Forwarded-For %q: client %q, want %q", xff, got, want)
		}
	}
}

// FuzzStripInbound: whatever a header is called, once stripped from an
// untrusted peer no name is left that an upstream, reading "-" and "_" alike
// and ignoring case, could take for an identity, override or forwarding
// header; and headers that are none of these survive.
func FuzzStripInbound(f *testing.F) {
	for _, s := range []string{"X-Okproxy-User", "x-okproxy_groups", "X_Forwarded_For", "X-Real-Ip", "Forwarded",
		"X-Original-URL", "x-http-method-override", "Accept", "Content-Type", "Cf-Connecting-Ip", "True-Client-IP", ""} {
		f.Add(s)
	}
	protected := []string{"x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url",
		"x-original-method", "forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip",
		"cf-connecting-ip", "fastly-client-ip", "x-originating-ip", "x-forwarded", "client-ip", "x-host", "x-original-host",
		"x-original-forwarded-for", "x-proxyuser-ip", "x-remote-user", "remote-user", "x-authenticated-user"}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"v"}, "Accept": {"*/*"}}
		stripInbound(h, false)
		if _, ok := h["Accept"]; !ok && name != "Accept" {
			t.Fatalf("stripping %q removed Accept", name)
		}
		for k := range h {
			n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if strings.HasPrefix(n, "x-okproxy-") || strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "x-auth-request-") ||
				slices.Contains(protected, n) || strings.Contains(k, "_") {
				t.Fatalf("%q survived as %q", name, k)
			}
		}
	})
}
