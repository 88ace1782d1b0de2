package authn

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	for _, tc := range []struct {
		header  string
		token   string
		present bool
		ok      bool
	}{
		{"", "", false, true},
		{"Bearer " + jwt, jwt, true, true},
		{"bearer " + jwt, jwt, true, true},
		{"BEARER " + jwt, jwt, true, true},
		{"Bearer abc~+/==", "abc~+/==", true, true},
		{"Bearer", "", true, false},
		{"Bearer ", "", true, false},
		{"Bearer  x", "", true, false},
		{"bearer  x", "", true, false},
		{"Bearer x ", "", true, false},
		{" Bearer x", "", true, false},
		{"Bearer\tx", "", true, false},
		{"Bearer a b", "", true, false},
		{"Bearer a,Bearer b", "", true, false},
		{"Bearer a, b", "", true, false},
		{"Bearer ===", "", true, false},
		{"Bearer a=b", "", true, false},
		{"Bearer a\x00", "", true, false},
		{"Bearer a\nb", "", true, false},
		{"Bearer é", "", true, false},
		{"Basic x", "", true, false},
		{"Basic dXNlcjpwYXNz", "", true, false},
		{"Token x", "", true, false},
		{"Bearerx", "", true, false},
		{"DPoP " + jwt, "", true, false},
		{jwt, "", true, false},
		{" ", "", true, false},
		{"Bearer " + strings.Repeat("a", maxTokenBytes+1), "", true, false},
	} {
		tok, present, err := BearerToken(tc.header)
		if tok != tc.token || present != tc.present || (err == nil) != tc.ok {
			t.Errorf("BearerToken(%.40q) = %.20q, %v, %v", tc.header, tok, present, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("BearerToken(%.40q): err %v does not wrap ErrInvalidToken", tc.header, err)
		}
	}
}

func TestBearerTokenFromHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vals    []string
		present bool
		ok      bool
	}{
		{nil, false, true},
		{[]string{"Bearer x"}, true, true},
		{[]string{""}, true, false},
		{[]string{"Bearer x", "Bearer y"}, true, false},
		{[]string{"Bearer x", ""}, true, false},
	} {
		h := http.Header{}
		for _, v := range tc.vals {
			h.Add("Authorization", v)
		}
		_, present, err := BearerTokenFromHeader(h)
		if present != tc.present || (err == nil) != tc.ok {
			t.Errorf("%q: present %v err %v", tc.vals, present, err)
		}
	}
}
