package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:80"} {
		err := run(context.Background(), []string{"--listen", addr}, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("--listen %s: err = %v, want usage error", addr, err)
		}
	}
}

func TestTokenEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--listen", "127.0.0.1:0"}, pw, io.Discard) }()
	issuer, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	issuer = strings.TrimSpace(issuer)
	base := strings.TrimSuffix(issuer, "/oauth2/default")
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	resp, err := http.Get(base + "/test/token?sub=bob@example.com&groups=Finance,Auditors&scp=a,b&ttl=5m")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parts := strings.Split(strings.TrimSpace(string(body)), ".")
	if resp.StatusCode != 200 || len(parts) != 3 {
		t.Fatalf("token: %d %q", resp.StatusCode, body)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Sub    string   `json:"sub"`
		Iss    string   `json:"iss"`
		Groups []string `json:"groups"`
		Scp    []string `json:"scp"`
		Iat    int64    `json:"iat"`
		Exp    int64    `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c.Sub != "bob@example.com" || c.Iss != issuer || strings.Join(c.Groups, ",") != "Finance,Auditors" ||
		strings.Join(c.Scp, ",") != "a,b" || c.Exp-c.Iat != 300 {
		t.Errorf("claims %+v", c)
	}

	if resp, err = http.Get(base + "/test/token?ttl=bogus"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad ttl: %d", resp.StatusCode)
	}

	resp, err = http.Post(base+"/test/rotate", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rot map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&rot)
	resp.Body.Close()
	if rot["kid"] == "" {
		t.Errorf("rotate: %v", rot)
	}
}
