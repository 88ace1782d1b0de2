package oktatest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func getJSON(t *testing.T, url string, v any) http.Header {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
	return resp.Header
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	if !strings.HasPrefix(s.Issuer(), "http://127.0.0.1:") || !strings.HasSuffix(s.Issuer(), "/oauth2/default") {
		t.Fatalf("issuer %q", s.Issuer())
	}
	for _, doc := range []string{"openid-configuration", "oauth-authorization-server"} {
		var d map[string]any
		getJSON(t, s.Issuer()+"/.well-known/"+doc, &d)
		if d["issuer"] != s.Issuer() || d["jwks_uri"] != s.Issuer()+"/v1/keys" || d["token_endpoint"] != s.Issuer()+"/v1/token" {
			t.Errorf("%s: %v", doc, d)
		}
	}
	if got := s.DiscoveryFetches(); got != 2 {
		t.Errorf("DiscoveryFetches = %d, want 2", got)
	}
}

type jwks struct {
	Keys []map[string]string `json:"keys"`
}

func TestKeysAndRotation(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{KeysMaxAge: 90 * time.Second})
	var ks jwks
	h := getJSON(t, s.Issuer()+"/v1/keys", &ks)
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "max-age=90") {
		t.Errorf("Cache-Control %q", cc)
	}
	if len(ks.Keys) != 1 {
		t.Fatalf("keys %v", ks.Keys)
	}
	k := ks.Keys[0]
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["e"] != "AQAB" || k["kid"] != s.KeyID() || len(k["n"]) < 340 {
		t.Errorf("key %v", k)
	}

	old := s.KeyID()
	nk := s.RotateKey()
	if nk == old || s.KeyID() != nk {
		t.Fatalf("rotate: old %s new %s current %s", old, nk, s.KeyID())
	}
	getJSON(t, s.Issuer()+"/v1/keys", &ks)
	if kids := kidsOf(ks); !slices.Equal(kids, []string{old, nk}) {
		t.Errorf("after rotate kids %v", kids)
	}
	s.DropOldKeys()
	getJSON(t, s.Issuer()+"/v1/keys", &ks)
	if kids := kidsOf(ks); !slices.Equal(kids, []string{nk}) {
		t.Errorf("after drop kids %v", kids)
	}
	if got := s.KeyFetches(); got != 3 {
		t.Errorf("KeyFetches = %d, want 3", got)
	}

	s.SetKeysDown(true)
	resp, err := http.Get(s.Issuer() + "/v1/keys")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("keys down: %d", resp.StatusCode)
	}
}

func kidsOf(ks jwks) []string {
	var out []string
	for _, k := range ks.Keys {
		out = append(out, k["kid"])
	}
	return out
}

// decode splits a token without trusting it.
func decode(t *testing.T, tok string) (header, claims map[string]any, signingInput, sig []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return header, claims, []byte(parts[0] + "." + parts[1]), sig
}

func verifies(s *Server, kid string, signingInput, sig []byte) bool {
	pub, ok := s.PublicKeys()[kid]
	if !ok {
		return false
	}
	sum := sha256.Sum256(signingInput)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
}

func TestMintDefaults(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	s := newServer(t, Options{Now: func() time.Time { return now }})
	h, c, in, sig := decode(t, s.Mint(Claims{Groups: []string{"Finance"}}))
	if h["alg"] != "RS256" || h["kid"] != s.KeyID() {
		t.Errorf("header %v", h)
	}
	if !verifies(s, s.KeyID(), in, sig) {
		t.Error("minted token does not verify")
	}
	want := map[string]any{
		"ver": 1.0, "iss": s.Issuer(), "aud": DefaultAudience, "iat": 1_700_000_000.0, "exp": 1_700_003_600.0,
		"cid": "0oatestclient0000001", "uid": UserIDFor("alice@example.com"), "sub": "alice@example.com",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if jti, _ := c["jti"].(string); !strings.HasPrefix(jti, "AT.") {
		t.Errorf("jti %v", c["jti"])
	}
	if uid := UserIDFor("alice@example.com"); len(uid) != 20 || !strings.HasPrefix(uid, "00u") {
		t.Errorf("uid %q", uid)
	}
	if _, ok := c["nbf"]; ok {
		t.Error("nbf present by default")
	}

	_, c, _, _ = decode(t, s.Mint(Claims{Audience: []string{"a", "b"}, Extra: map[string]any{"x": 1}, Omit: []string{"cid"}}))
	if _, ok := c["groups"]; ok {
		t.Error("nil Groups should omit the claim")
	}
	if _, ok := c["cid"]; ok {
		t.Error("Omit cid ignored")
	}
	if aud, ok := c["aud"].([]any); !ok || len(aud) != 2 || c["x"] != 1.0 {
		t.Errorf("aud %v x %v", c["aud"], c["x"])
	}
}

func TestForgeries(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	kid := s.KeyID()
	seen := map[string]bool{}
	for _, f := range Forgeries() {
		tok := s.Forge(f, Claims{})
		if seen[tok] {
			t.Errorf("%v: duplicate token", f)
		}
		seen[tok] = true
		h, c, in, sig := decode(t, tok)
		valid := verifies(s, kid, in, sig)
		switch f {
		case ForgeAlgNone:
			if h["alg"] != "none" || len(sig) != 0 {
				t.Errorf("%v: %v", f, h)
			}
		case ForgeHS256PublicKey:
			if h["alg"] != "HS256" || h["kid"] != kid {
				t.Errorf("%v: %v", f, h)
			}
		case ForgeUnknownKID:
			if h["kid"] == kid || valid {
				t.Errorf("%v: %v", f, h)
			}
		case ForgeTamperedPayload, ForgeBadSignature:
			if h["kid"] != kid || valid {
				t.Errorf("%v: kid %v valid %v", f, h["kid"], valid)
			}
		case ForgeGroupsString:
			if _, ok := c["groups"].(string); !ok || !valid {
				t.Errorf("%v: %v", f, c["groups"])
			}
		case ForgeHundredGroups:
			if g, _ := c["groups"].([]any); len(g) != 100 || !valid {
				t.Errorf("%v: %d groups", f, len(g))
			}
		case ForgeMissingExp, ForgeMissingSub, ForgeMissingGroups:
			claim := map[Forgery]string{ForgeMissingExp: "exp", ForgeMissingSub: "sub", ForgeMissingGroups: "groups"}[f]
			if _, ok := c[claim]; ok || !valid {
				t.Errorf("%v: claim present or not validly signed", f)
			}
		default:
			if !valid {
				t.Errorf("%v: claim forgery should be validly signed", f)
			}
		}
		if f.String() == "" || strings.HasPrefix(f.String(), "Forgery(") {
			t.Errorf("%d has no name", f)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:0": true, "127.1.2.3:80": true, "[::1]:8080": true, "localhost:1": true,
		":8080": false, "0.0.0.0:8080": false, "10.0.0.1:80": false, "example.com:80": false, "127.0.0.1": false,
	} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("CheckLoopback(%q) = %v", addr, err)
		}
	}
	if _, err := NewServer(Options{Addr: "0.0.0.0:0"}); err == nil {
		t.Error("NewServer listened on all interfaces")
	}
}

func TestMuxMount(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.Handle("GET /api/v1/groups", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[]`))
	}))
	var v []any
	getJSON(t, s.URL()+"/api/v1/groups", &v)
	if s.Mux() == nil {
		t.Fatal("nil mux")
	}
}
