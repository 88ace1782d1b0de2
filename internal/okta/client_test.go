package okta_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/oktaorg"
)

// The SDK reads ~/.okta/okta.yaml and OKTA_CLIENT_* before applying our
// settings. Every one of those is overridden, so none can redirect the
// client, change its credentials or turn its cache back on. (The SDK finds
// the home directory through the user database, not $HOME, so the
// variables are what really exercise the override; the yaml fills the same
// fields.)
func TestClientIgnoresOktaEnvironmentAndFiles(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".okta"), 0o700)
	os.WriteFile(filepath.Join(home, ".okta", "okta.yaml"), []byte(`okta:
  client:
    orgUrl: https://evil.example.com
    token: bogus-from-yaml
    authorizationMode: PrivateKey
    cache: {enabled: true, defaultTtl: 3600, defaultTti: 3600}
    proxy: {host: 192.0.2.1, port: 9}
`), 0o600)
	t.Setenv("HOME", home)
	for k, v := range map[string]string{
		"OKTA_CLIENT_ORGURL":                 "https://evil.example.com",
		"OKTA_CLIENT_TOKEN":                  "bogus-from-env",
		"OKTA_CLIENT_AUTHORIZATIONMODE":      "PrivateKey",
		"OKTA_CLIENT_CLIENTID":               "0oabogus",
		"OKTA_CLIENT_PRIVATEKEY":             "bogus",
		"OKTA_CLIENT_SCOPES":                 "okta.everything.manage",
		"OKTA_CLIENT_CACHE_ENABLED":          "true",
		"OKTA_CLIENT_CACHE_DEFAULT_TTL":      "3600",
		"OKTA_CLIENT_PROXY_HOST":             "192.0.2.1",
		"OKTA_CLIENT_PROXY_PORT":             "9",
		"OKTA_CLIENT_RATE_LIMIT_MAX_RETRIES": "9",
		"OKTA_CLIENT_REQUEST_TIMEOUT":        "1",
		"OKTA_TESTING_DISABLE_HTTPS_CHECK":   "false",
	} {
		t.Setenv(k, v)
	}
	e := newEnv(t, nil, nil)
	src := e.source(t, nil)
	ctx := context.Background()
	gs, err := src.ListGroups(ctx, okta.Selection{})
	if err != nil || len(gs) != 6 {
		t.Fatalf("list groups with a hostile environment: %d, %v", len(gs), err)
	}
	// With the SDK cache on, this second listing would be served stale.
	e.org.RenameGroup(developers, "Renamed")
	gs, err = src.ListGroups(ctx, okta.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range gs {
		found = found || g.Name == "Renamed"
	}
	if !found || e.srv.Count(oktaorg.OpListGroups) != 2 {
		t.Fatalf("second listing was cached (%d requests)", e.srv.Count(oktaorg.OpListGroups))
	}
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testKey(t *testing.T) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func pkcs8(t *testing.T, k any) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

func TestPrivateKeyMode(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for name, pemKey := range map[string][]byte{"pkcs1": pkcs1, "pkcs8": pkcs8(t, key)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil, func(c *oktaorg.Config) { c.APIToken, c.ClientID, c.ClientKey = "", "0oaokproxysync", &key.PublicKey })
			src := e.source(t, func(c *okta.ClientConfig) { c.APIToken, c.ClientID, c.PrivateKey = "", "0oaokproxysync", pemKey })
			res, err := e.sync(t, src, nil)
			if err != nil || res.Groups != 6 || res.Users != 7 {
				t.Fatalf("sync in private key mode: %v %+v", err, res)
			}
			// One token, reused for every call.
			if n := e.srv.Count(oktaorg.OpToken); n != 1 {
				t.Fatalf("%d token requests", n)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		t.Parallel()
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		e := newEnv(t, nil, func(c *oktaorg.Config) { c.APIToken, c.ClientID, c.ClientKey = "", "0oaokproxysync", &other.PublicKey })
		src := e.source(t, func(c *okta.ClientConfig) { c.APIToken, c.ClientID, c.PrivateKey = "", "0oaokproxysync", pkcs1 })
		if _, err := e.sync(t, src, nil); err == nil || !strings.Contains(err.Error(), "client_assertion") {
			t.Fatalf("wrong key: %v", err)
		}
	})
}

func TestClientConfigValidation(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cases := []struct {
		name  string
		cfg   okta.ClientConfig
		field string
		msg   string
	}{
		{"no url", okta.ClientConfig{APIToken: "t"}, "OrgURL", "--okta-org-url"},
		{"http without switch", okta.ClientConfig{OrgURL: "http://127.0.0.1:1", APIToken: "t"}, "OrgURL", "--okta-allow-http"},
		{"http not loopback", okta.ClientConfig{OrgURL: "http://example.okta.com", APIToken: "t", AllowHTTP: true}, "AllowHTTP", "loopback"},
		{"path", okta.ClientConfig{OrgURL: "https://example.okta.com/api", APIToken: "t"}, "OrgURL", "without path"},
		{"admin domain", okta.ClientConfig{OrgURL: "https://example-admin.okta.com", APIToken: "t"}, "OrgURL", "-admin"},
		{"no credentials", okta.ClientConfig{OrgURL: "https://example.okta.com"}, "APIToken", "OKTA_API_TOKEN"},
		{"both credentials", okta.ClientConfig{OrgURL: "https://example.okta.com", APIToken: "t", ClientID: "c", PrivateKey: good}, "APIToken", "not both"},
		{"key without client", okta.ClientConfig{OrgURL: "https://example.okta.com", PrivateKey: good}, "ClientID", "--okta-client-id"},
		{"client without key", okta.ClientConfig{OrgURL: "https://example.okta.com", ClientID: "c"}, "PrivateKey", "--okta-private-key-file"},
		{"not pem", okta.ClientConfig{OrgURL: "https://example.okta.com", ClientID: "c", PrivateKey: []byte("hello")}, "PrivateKey", "not PEM"},
		{"ec key", okta.ClientConfig{OrgURL: "https://example.okta.com", ClientID: "c", PrivateKey: pkcs8(t, ec)}, "PrivateKey", "RS256"},
		{"small key", okta.ClientConfig{OrgURL: "https://example.okta.com", ClientID: "c", PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})}, "PrivateKey", "2048"},
		{"encrypted", okta.ClientConfig{OrgURL: "https://example.okta.com", ClientID: "c", PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})}, "PrivateKey", "encrypted"},
	}
	for _, c := range cases {
		_, err := okta.NewSDKSource(context.Background(), c.cfg)
		var ce *okta.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(ce.Msg, c.msg) {
			t.Errorf("%s: %v (want field %s mentioning %q)", c.name, err, c.field, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----\nMII") {
			t.Errorf("%s: error includes key material", c.name)
		}
	}
	for _, ok := range []okta.ClientConfig{
		{OrgURL: "https://example.okta.com/", APIToken: "t"},
		{OrgURL: "http://localhost:8080", APIToken: "t", AllowHTTP: true},
		{OrgURL: "http://[::1]:8080", APIToken: "t", AllowHTTP: true},
		{OrgURL: "https://example.okta.com", ClientID: "c", PrivateKey: pkcs8(t, key)},
	} {
		if _, err := okta.NewSDKSource(context.Background(), ok); err != nil {
			t.Errorf("%+v: %v", ok.OrgURL, err)
		}
	}
}

// The SDK puts the OAuth client assertion in the token request's URL; a
// network error must not carry it into messages, logs or sync_runs.
func TestTransportErrorsDoNotLeakTheClientAssertion(t *testing.T) {
	t.Parallel()
	pemKey := pkcs8(t, testKey(t))
	src, err := okta.NewSDKSource(context.Background(), okta.ClientConfig{OrgURL: "http://127.0.0.1:1", AllowHTTP: true,
		ClientID: "0oaokproxysync", PrivateKey: pemKey, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.ListGroups(context.Background(), okta.Selection{})
	if err == nil || strings.Contains(err.Error(), "client_assertion") || strings.Contains(err.Error(), "eyJ") {
		t.Fatalf("error: %v", err)
	}
	if !strings.Contains(err.Error(), "/oauth2/v1/token") {
		t.Fatalf("error does not say where it failed: %v", err)
	}
}
