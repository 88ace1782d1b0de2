// Command fakeorg serves the fake Okta Management API of package oktaorg on
// loopback, for the local demo and for measuring `okproxy groups sync`:
//
//	fakeorg --fixture testdata/okta/small-org.json          # a small org
//	fakeorg --generate --users 5000 --groups 300            # a large one
//
// Point okproxy at it with OKTA_API_TOKEN=<--token> and
// `okproxy groups sync --okta-org-url http://127.0.0.1:18081 --okta-allow-http`.
// Test-only endpoints change the org between syncs (no authentication:
// loopback only, never anywhere but a developer's machine or CI):
//
//	POST /test/rename?group=ID&name=NAME
//	POST /test/member?group=ID&user=ID&op=add|remove
//	POST /test/status?user=ID&status=DEPROVISIONED
//	GET  /test/counts                      requests per operation (JSON)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/okproxy/okproxy/internal/oktaorg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fakeorg:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakeorg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:18081", "loopback address to listen on")
	fixture := fs.String("fixture", "", "org fixture (JSON, see testdata/okta/small-org.json)")
	generate := fs.Bool("generate", false, "generate a large org instead of loading a fixture")
	users := fs.Int("users", 5000, "generated users")
	groups := fs.Int("groups", 300, "generated groups")
	power := fs.Int("power-user-groups", 150, "groups of the generated power.user@example.com")
	token := fs.String("token", "", "SSWS API token to accept (env FAKEORG_TOKEN; default fake-okta-token)")
	rateLimit := fs.Int("rate-limit", 0, "requests per minute before 429s (0: unlimited)")
	comma := fs.Bool("comma-joined-links", false, "send self and next in one Link header (the SDK loop trap)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := oktaorg.CheckLoopback(*listen); err != nil {
		return fmt.Errorf("%w: --listen: %v", errUsage, err)
	}
	var org *oktaorg.Org
	switch {
	case *generate && *fixture != "":
		return fmt.Errorf("%w: --fixture and --generate exclude each other", errUsage)
	case *generate:
		org = oktaorg.Generate(oktaorg.GenerateConfig{Users: *users, Groups: *groups, PowerUserGroups: *power})
	case *fixture != "":
		var err error
		if org, err = oktaorg.LoadFile(*fixture, nil); err != nil {
			return fmt.Errorf("%w: --fixture: %v", errUsage, err)
		}
	default:
		return fmt.Errorf("%w: give --fixture FILE or --generate", errUsage)
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv("FAKEORG_TOKEN")
	}
	if tok == "" {
		tok = "fake-okta-token"
	}
	api := oktaorg.NewHandler(oktaorg.Config{Org: org, APIToken: tok, RateLimit: *rateLimit, CommaJoinedLinks: *comma})
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.HandleFunc("POST /test/rename", func(w http.ResponseWriter, r *http.Request) {
		reply(w, org.RenameGroup(r.FormValue("group"), r.FormValue("name")))
	})
	mux.HandleFunc("POST /test/member", func(w http.ResponseWriter, r *http.Request) {
		g, u := r.FormValue("group"), r.FormValue("user")
		switch r.FormValue("op") {
		case "add":
			reply(w, org.AddMember(g, u))
		case "remove":
			reply(w, org.RemoveMember(g, u))
		default:
			reply(w, errors.New("op must be add or remove"))
		}
	})
	mux.HandleFunc("POST /test/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, org.SetUserStatus(r.FormValue("user"), r.FormValue("status")))
	})
	mux.HandleFunc("GET /test/counts", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"total": api.Total(), "by_operation": api.Counts()})
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	g, u, m := org.Counts()
	fmt.Fprintf(stdout, "fakeorg: serving %d groups, %d users, %d memberships on http://%s\n", g, u, m, ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func reply(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
