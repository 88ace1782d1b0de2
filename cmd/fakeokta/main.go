// Command fakeokta runs the fake Okta authorization server of package
// oktatest for the local demo. It listens on loopback only and adds
// test-only endpoints that mint tokens for anyone who asks, which is why it
// must never run anywhere but a developer's machine or CI:
//
//	GET  /test/token?sub=alice@example.com&groups=Finance,Auditors&scp=a,b&uid=00u…&cid=0oa…&aud=api://default&ttl=1h[&format=json]
//	POST /test/rotate     rotate the signing key (old key stays published)
//	POST /test/drop-old-keys
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fakeokta:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakeokta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:18080", "loopback address to listen on (host:port)")
	authServer := fs.String("auth-server", "default", "authorization server id (issuer path /oauth2/ID)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := oktatest.CheckLoopback(*listen); err != nil {
		return fmt.Errorf("%w: --listen: %v", errUsage, err)
	}
	srv, err := oktatest.NewServer(oktatest.Options{Addr: *listen, AuthServerID: *authServer})
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.Handle("GET /test/token", tokenHandler(srv))
	srv.Handle("POST /test/rotate", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"kid": srv.RotateKey()})
	}))
	srv.Handle("POST /test/drop-old-keys", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.DropOldKeys()
		writeJSON(w, map[string]string{"kid": srv.KeyID()})
	}))

	fmt.Fprintln(stdout, srv.Issuer())
	fmt.Fprintf(stderr, "fakeokta: issuer %s (TEST ONLY: %s/test/token mints tokens for anyone)\n", srv.Issuer(), srv.URL())
	<-ctx.Done()
	return nil
}

// tokenHandler mints a token from query parameters. Lists are
// comma-separated; an empty groups= sends an empty array, no groups
// parameter leaves the claim out.
func tokenHandler(srv *oktatest.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c := oktatest.Claims{
			Subject:  q.Get("sub"),
			UserID:   q.Get("uid"),
			ClientID: q.Get("cid"),
		}
		if q.Has("groups") {
			c.Groups = list(q.Get("groups"))
		}
		if q.Has("scp") {
			c.Scopes = list(q.Get("scp"))
		}
		if q.Has("aud") {
			c.Audience = list(q.Get("aud"))
		}
		if v := q.Get("ttl"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				http.Error(w, "bad ttl", http.StatusBadRequest)
				return
			}
			c.TTL = d
		}
		tok := srv.Mint(c)
		if q.Get("format") == "json" {
			writeJSON(w, map[string]any{
				"token_type":   "Bearer",
				"access_token": tok,
				"expires_in":   int(cmp.Or(c.TTL, time.Hour).Seconds()),
			})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, tok)
	})
}

func list(s string) []string {
	out := []string{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
