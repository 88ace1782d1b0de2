package authn

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/oktatest"
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

// FuzzVerifyHeaderMemo: a connection's memo never changes a decision.
// Whatever Authorization values follow a header that verified, VerifyHeader
// through the warm memo answers exactly as it does without one.
func FuzzVerifyHeaderMemo(f *testing.F) {
	srv := shared(f)
	v := newVerifier(f, srv, nil)
	good := "Bearer " + srv.Mint(oktatest.Claims{Subject: "alice@example.com"})
	other := "Bearer " + srv.Mint(oktatest.Claims{Subject: "bob@example.com"})
	for _, s := range []string{good, other, good + " ", " " + good, strings.ToLower(good[:7]) + good[7:], good[:len(good)-1],
		good + "=", "Basic " + good[7:], "", good + "\x00", good[:40] + "x" + good[41:]} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, header string, twice bool) {
		h := http.Header{"Authorization": {header}}
		if twice {
			h["Authorization"] = []string{good, header}
		}
		var memo HeaderMemo
		if _, _, err := v.VerifyHeader(context.Background(), http.Header{"Authorization": {good}}, &memo); err != nil {
			t.Fatal(err)
		}
		id1, present1, err1 := v.VerifyHeader(context.Background(), h, &memo)
		id2, present2, err2 := v.VerifyHeader(context.Background(), h, nil)
		if present1 != present2 || (err1 == nil) != (err2 == nil) || (id1 == nil) != (id2 == nil) ||
			(id1 != nil && id1.Subject != id2.Subject) {
			t.Fatalf("header %q (after a verified one: %v): with memo %v %v %v, without %v %v %v",
				header, twice, id1, present1, err1, id2, present2, err2)
		}
	})
}
