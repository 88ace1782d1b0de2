package proxy

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// stripInbound removes headers a client could use to pose as someone else
// (X-Okproxy-*), to change the method or path after the policy decided (the
// method- and URL-override headers some frameworks honour), or, from a peer
// that is not a trusted proxy, to claim another client address or another
// front-end route (X-Forwarded-*, Forwarded, X-Real-IP and kin). It also
// removes every header whose name contains an underscore, as nginx does by
// default: CGI, WSGI and Rack turn "-" and "_" into the same variable, so
// "X-Okproxy_User" would reach such an upstream as HTTP_X_OKPROXY_USER.
// Keys are compared without regard to case: net/http canonicalises them,
// but a map built by hand may not, and one pass costs no allocation.
func stripInbound(h http.Header, trusted bool) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
			continue
		}
		if k == "" {
			continue
		}
		// Every name below starts with x, f, t or c: most headers a client
		// sends (Accept, Authorization, Host, User-Agent) skip the compares.
		switch k[0] | 0x20 {
		case 'x', 'f', 't', 'c', 'r':
			if len(k) >= 10 && strings.EqualFold(k[:10], "X-Okproxy-") || overrideHeader(k) || identityHeader(k) || !trusted && forwardingHeader(k) {
				delete(h, k)
			}
		case 'h':
			// Only meaningful with an h2c upgrade, which never passes
			// (upgradeAllowed).
			if strings.EqualFold(k, "Http2-Settings") {
				delete(h, k)
			}
		}
	}
}

// overrideHeader: headers that ask the upstream framework to use another
// method or path than the one okproxy authorised.
func overrideHeader(k string) bool {
	for _, o := range [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
		"X-Original-Url", "X-Rewrite-Url", "X-Original-Method"} {
		if len(k) == len(o) && strings.EqualFold(k, o) {
			return true
		}
	}
	return false
}

// identityHeader: headers other authenticating proxies (oauth2-proxy,
// Apache, nginx auth_request set-ups) use to name the caller, which an
// upstream moved behind okproxy may still believe. okproxy's own are
// X-Okproxy-*; these are never the client's to set.
func identityHeader(k string) bool {
	if len(k) >= 15 && strings.EqualFold(k[:15], "X-Auth-Request-") {
		return true
	}
	for _, o := range [...]string{"X-Remote-User", "Remote-User", "X-Authenticated-User", "X-Forwarded-User",
		"X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups", "X-Forwarded-Access-Token"} {
		if len(k) == len(o) && strings.EqualFold(k, o) {
			return true
		}
	}
	return false
}

// forwardingHeader: headers a front-end proxy sets about the client or its
// own routing, believable only from a --trusted-proxy peer.
func forwardingHeader(k string) bool {
	if len(k) >= 12 && strings.EqualFold(k[:12], "X-Forwarded-") {
		return true
	}
	for _, o := range [...]string{"Forwarded", "X-Forwarded", "X-Real-Ip", "True-Client-Ip", "X-Client-Ip", "Client-Ip",
		"X-Cluster-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip", "X-Originating-Ip", "X-Original-Forwarded-For",
		"X-Proxyuser-Ip", "X-Host", "X-Original-Host"} {
		if len(k) == len(o) && strings.EqualFold(k, o) {
			return true
		}
	}
	return false
}

// upgradeAllowed reports whether an Upgrade request may pass: only a
// WebSocket opening handshake (RFC 6455 §4.1: GET, version 13, a key of 16
// bytes). After a 101 the connection is a raw tunnel the proxy no longer
// reads, so an upgrade to h2c (HTTP/2 requests on the tunnel, each
// unchecked), to any other protocol, or a half-formed WebSocket request an
// upstream might answer with a blind 101 and then read HTTP requests from,
// is not forwarded; the request itself is served without it. The upstream's
// 101 must prove it read the key (checkUpgradeResponse).
func upgradeAllowed(r *http.Request) bool {
	ups := r.Header.Values("Upgrade")
	if len(ups) == 0 {
		return true
	}
	for _, v := range ups {
		for _, p := range strings.Split(v, ",") {
			if !strings.EqualFold(strings.TrimSpace(p), "websocket") {
				return false
			}
		}
	}
	if r.Method != http.MethodGet || len(r.Header.Values("Sec-Websocket-Version")) != 1 || r.Header.Get("Sec-Websocket-Version") != "13" {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key"))
	return err == nil && len(key) == 16 && len(r.Header.Values("Sec-Websocket-Key")) == 1
}

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// checkUpgradeResponse accepts a 101 only when the upstream answered the
// WebSocket key it was sent (RFC 6455 §4.2.2): an upstream that switches
// protocols without having read the handshake (a blind "101" endpoint)
// would otherwise open a tunnel for unchecked requests.
func checkUpgradeResponse(resp *http.Response) error {
	key := resp.Request.Header.Get("Sec-Websocket-Key")
	sum := sha1.Sum([]byte(key + websocketGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	if key == "" || resp.Header.Get("Sec-Websocket-Accept") != want || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return errors.New("upstream switched protocols without a valid WebSocket handshake answer (Sec-WebSocket-Accept)")
	}
	return nil
}

// rawPath extracts the escaped path from the request target exactly as the
// client sent it (RequestURI), so nothing has been decoded or cleaned yet.
// Absolute-form targets are accepted (proxies send them); asterisk-form and
// authority-form (CONNECT) are not paths and are refused.
func rawPath(requestURI string) (string, bool) {
	if requestURI == "" {
		return "", false
	}
	if requestURI[0] != '/' {
		i := strings.Index(requestURI, "://")
		if i <= 0 {
			return "", false
		}
		rest := requestURI[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "/", !strings.ContainsAny(rest, "?#")
		}
		requestURI = rest[j:]
	}
	// A fragment never belongs in a request target (RFC 9112 §3.2), also
	// not after the query, where an upstream might read it differently.
	if strings.IndexByte(requestURI, '#') >= 0 {
		return "", false
	}
	if i := strings.IndexByte(requestURI, '?'); i >= 0 {
		requestURI = requestURI[:i]
	}
	return requestURI, true
}

// targetForLog is a refused request target as audit and logs show it: the
// part before any query or fragment (SPEC §6: never the query string),
// printable and short.
func targetForLog(uri string) string {
	uri, _, _ = strings.Cut(uri, "#")
	if p, ok := rawPath(uri); ok {
		// Origin or absolute form: the path alone, never the query, the
		// user:password@ or the host.
		return safeLogPath(p)
	}
	// Authority or asterisk form: nothing before an "@".
	uri, _, _ = strings.Cut(uri, "?")
	if i := strings.LastIndexByte(uri, '@'); i >= 0 {
		uri = uri[i+1:]
	}
	return safeLogPath(uri)
}

// safeLogPath keeps a refused raw path printable and short for logs and audit.
func safeLogPath(raw string) string {
	if len(raw) > 1024 {
		raw = raw[:1024]
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c < 0x20 || c == 0x7f || c >= 0x80 {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// requestID keeps a sane incoming X-Request-Id, else makes one.
func requestID(in string) string {
	if in != "" && len(in) <= 128 {
		ok := true
		for i := 0; i < len(in); i++ {
			c := in[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
				ok = false
				break
			}
		}
		if ok {
			return in
		}
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (h *Handler) trusted(remoteAddr string) bool {
	if len(h.cfg.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return inPrefixes(ap.Addr().Unmap(), h.cfg.TrustedProxies)
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the
// right-most address in X-Forwarded-For that is not itself trusted.
func (h *Handler) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !inPrefixes(peer, h.cfg.TrustedProxies) {
		return peer.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, p := range strings.Split(v, ",") {
			// An empty element ("1.1.1.1,") is garbage like any other.
			hops = append(hops, strings.TrimSpace(p))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil || a.Zone() != "" {
			// Garbage in the chain (an IPv6 zone is free text, never a
			// client's address): stop believing it at this point.
			return peer.String()
		}
		a = a.Unmap()
		if !inPrefixes(a, h.cfg.TrustedProxies) {
			return a.String()
		}
	}
	return peer.String()
}

// NormalizeHost lower-cases a Host header value and drops the port, a
// trailing dot and IPv6 brackets: the host rules and audit events see.
func NormalizeHost(h string) string {
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.Trim(h, "[]")
}

// headerSafe drops characters that cannot appear in a header value.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 && r != '\t' || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}
