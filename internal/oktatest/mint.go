package oktatest

import (
	"cmp"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Claims describes an access token the way Okta's custom authorization
// server issues it. Zero fields get Okta-like defaults; Extra and Omit
// reach any claim, including with types Okta would never send.
type Claims struct {
	// Subject is sub, the user's login; default "alice@example.com".
	Subject string
	// UserID is uid, the Okta user id; default "00u" plus 17 characters
	// derived from Subject, so one login always gets the same id.
	UserID string
	// Groups is the groups claim. Nil leaves the claim out, as Okta does
	// when the groups filter matches none of the user's groups; a non-nil
	// empty slice sends [].
	Groups []string
	// Scopes is scp; nil means ["openid", "profile"].
	Scopes []string
	// ClientID is cid, the OAuth client the token was issued to; default
	// "0oatestclient0000001".
	ClientID string
	// Audience is aud; default [DefaultAudience]. One value is sent as a
	// string, as Okta does; more as an array.
	Audience []string
	// Issuer is iss; default the server's issuer.
	Issuer string
	// JTI is jti; default a random "AT.…" id.
	JTI string
	// IssuedAt is iat; default now (Options.Now).
	IssuedAt time.Time
	// Expiry is exp; default IssuedAt + TTL.
	Expiry time.Time
	// TTL is the lifetime used when Expiry is zero; default 1h, Okta's
	// default access token lifetime.
	TTL time.Duration
	// NotBefore is nbf; zero leaves it out (Okta access tokens carry none).
	NotBefore time.Time
	// Ver is ver; default 1.
	Ver int
	// Extra claims are set last, overriding any claim above.
	Extra map[string]any
	// Omit lists claims to leave out, applied after Extra.
	Omit []string
}

// Mint returns an access token for c signed with the current signing key,
// exactly as the authorization server would issue it.
func (s *Server) Mint(c Claims) string {
	k := s.current()
	return signRS256(k.priv, k.kid, s.claims(c))
}

// claims fills in defaults and renders c as a JSON object.
func (s *Server) claims(c Claims) map[string]any {
	c.Subject = cmp.Or(c.Subject, "alice@example.com")
	c.UserID = cmp.Or(c.UserID, UserIDFor(c.Subject))
	if c.Scopes == nil {
		c.Scopes = []string{"openid", "profile"}
	}
	c.ClientID = cmp.Or(c.ClientID, "0oatestclient0000001")
	if len(c.Audience) == 0 {
		c.Audience = []string{DefaultAudience}
	}
	c.Issuer = cmp.Or(c.Issuer, s.issuer)
	c.JTI = cmp.Or(c.JTI, "AT."+b64(randomBytes(30)))
	if c.IssuedAt.IsZero() {
		c.IssuedAt = s.opts.Now()
	}
	if c.Expiry.IsZero() {
		c.Expiry = c.IssuedAt.Add(cmp.Or(c.TTL, time.Hour))
	}
	m := map[string]any{
		"ver": cmp.Or(c.Ver, 1),
		"jti": c.JTI,
		"iss": c.Issuer,
		"iat": c.IssuedAt.Unix(),
		"exp": c.Expiry.Unix(),
		"cid": c.ClientID,
		"uid": c.UserID,
		"scp": c.Scopes,
		"sub": c.Subject,
	}
	if len(c.Audience) == 1 {
		m["aud"] = c.Audience[0]
	} else {
		m["aud"] = c.Audience
	}
	if c.Groups != nil {
		m["groups"] = c.Groups
	}
	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	for _, k := range c.Omit {
		delete(m, k)
	}
	return m
}

// UserIDFor is the uid Mint gives login by default: "00u" plus 17
// characters derived from the login, the shape of an Okta user id.
func UserIDFor(login string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(login)))
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b strings.Builder
	b.WriteString("00u")
	for _, c := range sum[:17] {
		b.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return b.String()
}

// Forgery names a hostile or unusual token that Forge makes.
type Forgery int

// The forgeries. All but ForgeMissingGroups and ForgeHundredGroups must
// be refused by a verifier configured for this server with default
// settings; those two are valid tokens that stress the groups handling
// (missing claim, and Okta's 100-group cap) and are refused only when the
// groups claim is required.
const (
	ForgeAlgNone         Forgery = iota + 1 // alg "none", empty signature
	ForgeHS256PublicKey                     // HS256 keyed with the signing key's public key (PEM)
	ForgeUnknownKID                         // signed by an unpublished key under a random kid
	ForgeTamperedPayload                    // payload changed after signing (groups and sub raised)
	ForgeBadSignature                       // the current kid, signed by an unpublished key
	ForgeExpired                            // exp five minutes ago
	ForgeFutureNBF                          // nbf two minutes ahead: inside go-oidc's 5 minutes, outside any sane skew
	ForgeFutureIAT                          // iat two minutes ahead
	ForgeWrongIssuer                        // iss of another authorization server
	ForgeWrongAudience                      // aud of another API
	ForgeMissingExp                         // no exp
	ForgeMissingSub                         // no sub
	ForgeGroupsString                       // groups as a string, not an array
	ForgeGroupsNumber                       // groups array holding a number
	ForgeMissingGroups                      // no groups claim (valid)
	ForgeHundredGroups                      // exactly 100 groups, Okta's cap (valid)
)

// Forgeries lists every Forgery, for table tests and fuzz seeds.
func Forgeries() []Forgery {
	out := make([]Forgery, 0, int(ForgeHundredGroups))
	for f := ForgeAlgNone; f <= ForgeHundredGroups; f++ {
		out = append(out, f)
	}
	return out
}

var forgeryNames = map[Forgery]string{
	ForgeAlgNone: "alg-none", ForgeHS256PublicKey: "hs256-public-key", ForgeUnknownKID: "unknown-kid",
	ForgeTamperedPayload: "tampered-payload", ForgeBadSignature: "bad-signature", ForgeExpired: "expired",
	ForgeFutureNBF: "future-nbf", ForgeFutureIAT: "future-iat", ForgeWrongIssuer: "wrong-issuer",
	ForgeWrongAudience: "wrong-audience", ForgeMissingExp: "missing-exp", ForgeMissingSub: "missing-sub",
	ForgeGroupsString: "groups-string", ForgeGroupsNumber: "groups-number",
	ForgeMissingGroups: "missing-groups", ForgeHundredGroups: "hundred-groups",
}

func (f Forgery) String() string {
	if n, ok := forgeryNames[f]; ok {
		return n
	}
	return fmt.Sprintf("Forgery(%d)", int(f))
}

// Forge returns a token of kind f built from c (defaults as for Mint;
// times are relative to c.IssuedAt or now). It panics on an unknown kind.
func (s *Server) Forge(f Forgery, c Claims) string {
	now := c.IssuedAt
	if now.IsZero() {
		now = s.opts.Now()
	}
	c.IssuedAt = now
	if c.Groups == nil {
		c.Groups = []string{"Everyone"}
	}
	cur := s.current()
	switch f {
	case ForgeAlgNone:
		return compact(map[string]any{"alg": "none", "kid": cur.kid}, s.claims(c), nil)
	case ForgeHS256PublicKey:
		der, err := x509.MarshalPKIXPublicKey(&cur.priv.PublicKey)
		if err != nil {
			panic(err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		return sign(map[string]any{"alg": "HS256", "kid": cur.kid}, s.claims(c), func(in []byte) []byte {
			mac := hmac.New(sha256.New, secret)
			mac.Write(in)
			return mac.Sum(nil)
		})
	case ForgeUnknownKID:
		return signRS256(s.rogueKey().priv, randomKID(), s.claims(c))
	case ForgeTamperedPayload:
		tok := s.Mint(c)
		c.Subject = "admin@example.com"
		c.Groups = append(slices.Clone(c.Groups), "Administrators")
		parts := strings.Split(tok, ".")
		parts[1] = b64(mustJSON(s.claims(c)))
		return strings.Join(parts, ".")
	case ForgeBadSignature:
		return signRS256(s.rogueKey().priv, cur.kid, s.claims(c))
	case ForgeExpired:
		c.IssuedAt = now.Add(-65 * time.Minute)
		c.Expiry = now.Add(-5 * time.Minute)
	case ForgeFutureNBF:
		c.NotBefore = now.Add(2 * time.Minute)
	case ForgeFutureIAT:
		c.IssuedAt = now.Add(2 * time.Minute)
	case ForgeWrongIssuer:
		c.Issuer = s.base + "/oauth2/aus0ther0000000000001"
	case ForgeWrongAudience:
		c.Audience = []string{"api://other"}
	case ForgeMissingExp:
		c.Omit = append(c.Omit, "exp")
	case ForgeMissingSub:
		c.Omit = append(c.Omit, "sub")
	case ForgeGroupsString:
		c.Extra = withClaim(c.Extra, "groups", "Everyone")
	case ForgeGroupsNumber:
		c.Extra = withClaim(c.Extra, "groups", []any{"Everyone", 42})
	case ForgeMissingGroups:
		c.Omit = append(c.Omit, "groups")
	case ForgeHundredGroups:
		c.Groups = make([]string, 100)
		for i := range c.Groups {
			c.Groups[i] = fmt.Sprintf("Group-%03d", i)
		}
	default:
		panic(fmt.Sprintf("oktatest: unknown forgery %d", int(f)))
	}
	return s.Mint(c)
}

func withClaim(extra map[string]any, k string, v any) map[string]any {
	m := make(map[string]any, len(extra)+1)
	for ek, ev := range extra {
		m[ek] = ev
	}
	m[k] = v
	return m
}

func signRS256(priv *rsa.PrivateKey, kid string, claims map[string]any) string {
	return sign(map[string]any{"alg": "RS256", "kid": kid}, claims, func(in []byte) []byte {
		sum := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, sum[:])
		if err != nil {
			panic(err)
		}
		return sig
	})
}

// sign builds a compact JWS by hand, so forgeries can carry headers no
// JOSE library would produce.
func sign(header, claims map[string]any, signer func(signingInput []byte) []byte) string {
	in := b64(mustJSON(header)) + "." + b64(mustJSON(claims))
	return in + "." + b64(signer([]byte(in)))
}

func compact(header, claims map[string]any, sig []byte) string {
	return b64(mustJSON(header)) + "." + b64(mustJSON(claims)) + "." + b64(sig)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
