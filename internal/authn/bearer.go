package authn

import (
	"net/http"
	"strings"
)

// BearerToken extracts the token from an Authorization header value. It
// accepts exactly "Bearer <token>": the scheme in any case, one space, and
// a non-empty RFC 6750 b64token.
//
// present is false only for an empty header (no credentials: anonymous).
// Any other value that is not a well-formed bearer token — another scheme,
// "Bearer" alone, extra spaces, several tokens — is a credential presented
// and refused: present is true and err wraps ErrInvalidToken, so a public
// route cannot be reached with a malformed or foreign credential either.
func BearerToken(header string) (token string, present bool, err error) {
	if header == "" {
		return "", false, nil
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true, invalid("authorization header is not Bearer")
	}
	if !isB64Token(tok) {
		return "", true, invalid("malformed bearer token")
	}
	if len(tok) > maxTokenBytes {
		return "", true, invalid("token larger than %d bytes", maxTokenBytes)
	}
	return tok, true, nil
}

// BearerTokenFromHeader is BearerToken for a request's headers: several
// Authorization headers are refused rather than one of them chosen, and an
// Authorization header with an empty value counts as presented.
func BearerTokenFromHeader(h http.Header) (token string, present bool, err error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", false, nil
	case len(vals) > 1:
		return "", true, invalid("multiple authorization headers")
	case vals[0] == "":
		return "", true, invalid("empty authorization header")
	}
	return BearerToken(vals[0])
}

// isB64Token reports whether s matches RFC 6750's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !b64TokenChar[body[i]] {
			return false
		}
	}
	return true
}

// b64TokenChar is RFC 6750's b64token alphabet as a table: this runs over
// every byte of every request's token, so it is a lookup, not a switch.
var b64TokenChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()
