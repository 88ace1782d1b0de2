package authn

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// maxNumericDate is the last second of year 9999: later values are not
// dates but attempts to overflow time arithmetic.
const maxNumericDate = 253402300799

// identity applies the claim rules of SPEC §4 to a payload whose signature
// and issuer have been verified, and builds the Identity. Claim types are
// checked strictly: a claim the proxy relies on that has the wrong JSON
// type makes the token invalid rather than being read as empty.
func (v *Verifier) identity(c map[string]json.RawMessage, now time.Time) (*Identity, error) {
	// go-oidc checked iss; checking again keeps this function whole.
	if iss, ok := stringValue(c["iss"]); !ok || iss != v.cfg.Issuer {
		return nil, invalid("wrong issuer")
	}
	aud, ok := audience(c["aud"])
	if !ok {
		return nil, invalid("missing or malformed audience")
	}
	if !v.acceptsAudience(aud) {
		return nil, invalid("wrong audience")
	}

	skew := v.cfg.ClockSkew
	exp, present, ok := numericDate(c, "exp")
	switch {
	case !present:
		return nil, invalid("missing exp")
	case !ok:
		return nil, invalid("malformed exp")
	case now.After(exp.Add(skew)):
		return nil, invalid("token expired")
	}
	// go-oidc would tolerate five minutes here; SPEC §4 wants the skew.
	nbf, present, ok := numericDate(c, "nbf")
	switch {
	case present && !ok:
		return nil, invalid("malformed nbf")
	case present && nbf.After(now.Add(skew)):
		return nil, invalid("token not yet valid (nbf in the future)")
	}
	iat, present, ok := numericDate(c, "iat")
	switch {
	case present && !ok:
		return nil, invalid("malformed iat")
	case present && iat.After(now.Add(skew)):
		return nil, invalid("token issued in the future (iat)")
	}

	sub, ok := stringValue(c["sub"])
	if !ok || sub == "" {
		return nil, invalid("missing sub")
	}
	for _, name := range v.cfg.RequiredClaims {
		if !nonEmpty(c[name]) {
			return nil, invalid("missing required claim %.64q", name)
		}
	}

	id := &Identity{Subject: sub, Expiry: exp, IssuedAt: iat}
	if raw, present := c[v.cfg.GroupsClaim]; present {
		if id.Groups, ok = stringArray(raw); !ok {
			return nil, invalid("groups claim is not an array of strings")
		}
		id.GroupsClaimPresent = true
	}
	if raw, present := c["scp"]; present {
		if id.Scopes, ok = scopes(raw); !ok {
			return nil, invalid("malformed scp")
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"uid", &id.UserID}, {"cid", &id.ClientID}, {"jti", &id.JTI}, {"email", &id.Email}} {
		if raw, present := c[f.name]; present {
			if *f.dst, ok = stringValue(raw); !ok {
				return nil, invalid("malformed %s", f.name)
			}
		}
	}
	// Identity that reaches the upstream in headers and the audit trail in
	// columns must be what the issuer signed: a control character would have
	// to be dropped from a header, so "bob\nx" and "bobx" would become the
	// same caller. Such a token is refused rather than altered.
	if hasControl(sub) || hasControl(id.UserID) || hasControl(id.Email) || slices.ContainsFunc(id.Groups, hasControl) {
		return nil, invalid("sub, uid, email or a group name contains a control character")
	}
	if id.Email == "" && looksLikeEmail(sub) {
		id.Email = sub
	}
	return id, nil
}

// hasControl reports a C0 control character (tab included), DEL or a C1
// control character.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return true
		}
	}
	return false
}

// stringValue decodes a JSON string, and only a string: encoding/json
// would turn null into "" without complaint.
func stringValue(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// stringArray decodes a JSON array of strings; null, other types and
// arrays holding anything but strings are refused.
func stringArray(raw json.RawMessage) ([]string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, ok := stringValue(e)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// audience decodes aud, a string or an array of strings (RFC 7519 4.1.3).
func audience(raw json.RawMessage) ([]string, bool) {
	if s, ok := stringValue(raw); ok {
		return []string{s}, true
	}
	return stringArray(raw)
}

// scopes decodes scp: Okta sends an array; a space-separated string (the
// OAuth "scope" form) is accepted too.
func scopes(raw json.RawMessage) ([]string, bool) {
	if s, ok := stringValue(raw); ok {
		return strings.Fields(s), true
	}
	return stringArray(raw)
}

// acceptsAudience reports whether aud names one of the configured audiences.
func (v *Verifier) acceptsAudience(aud []string) bool {
	return slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) })
}

// numericDate decodes claim name as an RFC 7519 NumericDate: seconds
// since the epoch, possibly fractional.
func numericDate(c map[string]json.RawMessage, name string) (t time.Time, present, ok bool) {
	raw, present := c[name]
	if !present {
		return time.Time{}, false, false
	}
	t, ok = numericDateValue(raw)
	return t, true, ok
}

// numericDateValue decodes a present claim value as a NumericDate.
func numericDateValue(raw json.RawMessage) (time.Time, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// nonEmpty reports whether a required claim carries a value: present and
// not null, "", [] or {}.
func nonEmpty(raw json.RawMessage) bool {
	if raw == nil {
		return false
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// looksLikeEmail is deliberately loose: it only decides whether sub (an
// Okta login, usually an address) can stand in for a missing email claim.
func looksLikeEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && strings.Contains(domain, ".") &&
		!strings.ContainsAny(domain, "@") && !strings.ContainsAny(s, " \t\r\n")
}
