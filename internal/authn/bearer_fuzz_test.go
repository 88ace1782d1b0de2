package authn

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzBearerToken: an Authorization header is accepted only as one
// "Bearer" (any case) credential whose token is the rest of the header, a
// non-empty RFC 6750 b64token within the size limit; anything else that is
// present is refused, never silently treated as absent.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer a.b.c", "BEARER x==", "Basic dXNlcjpw", "Bearer", "Bearer ",
		"Bearer  abc", "Bearer a b", "Bearer a\tb", "Bearer =", "Bearer abc=def", "Token abc", "Bearer a%2Eb", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, present, err := BearerTokenFromHeader(http.Header{"Authorization": {header}})
		if !present {
			t.Fatalf("header %q: reported absent", header)
		}
		if err != nil {
			if tok != "" {
				t.Fatalf("header %q: token %q returned with an error", header, tok)
			}
			return
		}
		if len(header) < 7 || !strings.EqualFold(header[:7], "Bearer ") || header[7:] != tok {
			t.Fatalf("header %q: accepted token %q that is not the whole credential", header, tok)
		}
		body := strings.TrimRight(tok, "=")
		if body == "" || len(tok) > maxTokenBytes {
			t.Fatalf("header %q: accepted empty or oversized token", header)
		}
		for _, c := range []byte(body) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
				t.Fatalf("header %q: accepted token with %q outside b64token", header, c)
			}
		}
	})
}
