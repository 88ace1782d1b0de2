package authn

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/okproxy/okproxy/internal/oktatest"
)

var (
	fuzzOnce sync.Once
	fuzzV    *Verifier
)

// FuzzVerify feeds random strings and mutations of real and hostile tokens
// to Verify. It must never panic, and whatever it accepts must carry a
// valid RS256 signature by one of the fake's keys over a payload naming
// the right issuer and audience, checked here without the code under test.
func FuzzVerify(f *testing.F) {
	srv := shared(f)
	f.Add(srv.Mint(oktatest.Claims{Groups: []string{"Finance"}}))
	for _, forgery := range oktatest.Forgeries() {
		f.Add(srv.Forge(forgery, oktatest.Claims{}))
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJSUzI1NiJ9.e30.AA"} {
		f.Add(s)
	}
	fuzzOnce.Do(func() {
		v, err := New(context.Background(), Config{Issuer: srv.Issuer(), Audiences: []string{oktatest.DefaultAudience}})
		if err != nil {
			f.Fatal(err)
		}
		fuzzV = v // lives as long as the fuzz process
	})
	keys := srv.PublicKeys()
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := fuzzV.Verify(context.Background(), raw)
		if err != nil {
			if id != nil {
				t.Fatal("identity returned with an error")
			}
			return
		}
		if !signedBy(raw, keys) {
			t.Fatalf("accepted a token not signed by the server: %q", raw)
		}
		if id.Subject == "" || id.Expiry.IsZero() {
			t.Fatalf("accepted token with empty identity %+v", id)
		}
	})
}

// signedBy is an independent check: RS256 over header.payload by a
// published key, the header naming that kid, and iss/aud as expected.
func signedBy(raw string, keys map[string]*rsa.PublicKey) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	var h struct{ Alg, Kid string }
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil || h.Alg != "RS256" {
		return false
	}
	pub, ok := keys[h.Kid]
	if !ok {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
		return false
	}
	var c struct{ Iss, Aud string }
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	return err == nil && json.Unmarshal(pb, &c) == nil && c.Aud == oktatest.DefaultAudience && strings.HasSuffix(c.Iss, "/oauth2/default")
}
