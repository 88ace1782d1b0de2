package okta

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ConfigError names the ClientConfig field that is wrong, so the CLI can
// name its flag.
type ConfigError struct {
	Field string // ClientConfig field name
	Msg   string
}

func (e *ConfigError) Error() string { return e.Msg }

// pkcs1PEM turns an RSA private key in PEM form into the PKCS#1 PEM
// ("RSA PRIVATE KEY") okta-sdk-golang v2 insists on, converting PKCS#8
// ("PRIVATE KEY", what the Okta admin console and openssl genpkey produce)
// and rejecting everything else with a message that says what to do. Error
// messages never include key material.
func pkcs1PEM(data []byte) (string, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		if strings.Contains(string(data), `"kty"`) {
			return "", errors.New("the private key file holds a JWK; okproxy needs a PEM file (convert the JWK to PEM first)")
		}
		return "", errors.New("the private key file is not PEM (expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)")
	}
	if strings.TrimSpace(string(rest)) != "" && strings.Contains(string(rest), "PRIVATE KEY") {
		return "", errors.New("the private key file holds more than one key; keep only the service app's key")
	}
	if _, enc := block.Headers["Proc-Type"]; enc || block.Type == "ENCRYPTED PRIVATE KEY" {
		return "", errors.New("the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem) and protect the file with permissions")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return "", errors.New("the RSA PRIVATE KEY block does not parse as PKCS#1")
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return "", errors.New("the PRIVATE KEY block does not parse as PKCS#8")
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			key = k
		case *ecdsa.PrivateKey, ed25519.PrivateKey:
			return "", fmt.Errorf("the private key is %s; okta-sdk-golang v2 signs client assertions with RS256 only: register an RSA key (2048 bits or more) with the service app", keyKind(k))
		default:
			return "", errors.New("the private key is not an RSA key")
		}
	case "EC PRIVATE KEY":
		return "", errors.New("the private key is an EC key; okta-sdk-golang v2 signs client assertions with RS256 only: register an RSA key (2048 bits or more) with the service app")
	default:
		return "", fmt.Errorf("unexpected PEM block %q: expected RSA PRIVATE KEY (PKCS#1) or PRIVATE KEY (PKCS#8)", block.Type)
	}
	if key.N.BitLen() < 2048 {
		return "", fmt.Errorf("the RSA key has %d bits; Okta requires at least 2048", key.N.BitLen())
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})), nil
}

func keyKind(k any) string {
	if _, ok := k.(ed25519.PrivateKey); ok {
		return "an Ed25519 key"
	}
	return "an EC key"
}

// checkOrgURL validates the org URL and returns it without a trailing
// slash. http:// is accepted only with allowHTTP and only on a loopback
// host: it exists for local test doubles, and a token sent in clear to any
// other host would be exposed.
func checkOrgURL(raw string, allowHTTP bool) (string, error) {
	if raw == "" {
		return "", &ConfigError{"OrgURL", "no Okta org URL: set --okta-org-url or OKTA_ORG_URL (e.g. https://example.okta.com)"}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", &ConfigError{"OrgURL", fmt.Sprintf("Okta org URL %q must look like https://example.okta.com", raw)}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", &ConfigError{"OrgURL", fmt.Sprintf("Okta org URL %q must be scheme://host only, without path, query or credentials", u.Redacted())}
	}
	if strings.Contains(u.Hostname(), "-admin.") {
		return "", &ConfigError{"OrgURL", fmt.Sprintf("Okta org URL %q is the admin console; use the org domain without -admin", raw)}
	}
	loopback := u.Hostname() == "localhost"
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch {
	case u.Scheme == "http" && !allowHTTP:
		return "", &ConfigError{"OrgURL", fmt.Sprintf("Okta org URL %q is not https (--okta-allow-http permits http:// on a loopback host, for local test doubles only)", raw)}
	case u.Scheme == "http" && !loopback:
		return "", &ConfigError{"AllowHTTP", fmt.Sprintf("--okta-allow-http permits http:// only on a loopback host, not %q", u.Host)}
	}
	return u.Scheme + "://" + u.Host, nil
}
