package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/server"
)

func (a *App) serveCommand() *cobra.Command {
	var c server.Config
	var logLevel string
	cmd := &cobra.Command{
		Use:   "serve --upstream URL --issuer URL --audience AUD [flags]",
		Short: "Run the proxy: verify Okta tokens, enforce rules, forward, audit",
		Long: `serve verifies Okta access tokens, decides each request from the rules held in
PostgreSQL (reloaded within a second of any change), enforces quotas, forwards allowed
requests to the upstream and records every decision in the audit trail.

Every flag can be set as OKPROXY_<FLAG>, e.g. OKPROXY_UPSTREAM.`,
		Example: `  okproxy serve --upstream http://127.0.0.1:9000 \
      --issuer https://example.okta.com/oauth2/default --audience api://default \
      --listen :8080 --admin-listen :9090 --audit-spool-dir /var/spool/okproxy`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErrorf("log-level: %q is not debug, info, warn or error", logLevel)
			}
			c.Logger = slog.New(slog.NewJSONHandler(a.Stderr, &slog.HandlerOptions{Level: lvl}))
			c.DatabaseURL = a.databaseURL
			c.Audiences = splitList(c.Audiences)
			c.RequireClaims = splitList(c.RequireClaims)
			c.AllowedAlgs = splitList(c.AllowedAlgs)
			if c.ClockSkew < 0 || c.ClockSkew > authn.MaxClockSkew {
				return usageErrorf("clock-skew: %s is outside 0 (no tolerance) to %s", c.ClockSkew, authn.MaxClockSkew)
			}
			if c.ClockSkew == 0 {
				// Only an explicit --clock-skew 0 gets here (the flag's
				// default is 30s): no tolerance, not the default.
				c.ClockSkew = authn.NoClockSkew
			}
			return runServe(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Upstream, "upstream", "", "upstream base URL allowed requests are forwarded to (required)")
	f.StringVar(&c.Issuer, "issuer", "", "Okta authorization server issuer, https:// (loopback may be http://) (required)")
	f.StringSliceVar(&c.Audiences, "audience", nil, "accepted token audience (repeatable; required)")
	f.StringVar(&c.Listen, "listen", ":8080", "proxy listen address")
	f.StringVar(&c.AdminListen, "admin-listen", ":9090", "admin listen address: /healthz, /readyz, /metrics")
	f.StringVar(&c.GroupsClaim, "groups-claim", "groups", "token claim holding the caller's groups")
	f.StringVar(&c.GroupsSource, "groups-source", "auto", "auto, token, directory or union (see SPEC §4)")
	f.StringSliceVar(&c.RequireClaims, "require-claim", nil, "claim every token must carry, beyond sub (repeatable)")
	f.StringSliceVar(&c.AllowedAlgs, "allowed-alg", []string{"RS256"}, "accepted JWS algorithms (none and HMAC are never accepted)")
	durationVar(f, &c.ClockSkew, "clock-skew", 30*time.Second, "tolerance for exp, nbf and iat")
	f.StringVar(&c.TLSCert, "tls-cert", "", "serve TLS with this certificate (PEM)")
	f.StringVar(&c.TLSKey, "tls-key", "", "private key for --tls-cert (PEM)")
	f.StringSliceVar(&c.TrustedProxies, "trusted-proxy", nil, "CIDR of a proxy whose X-Forwarded-For is believed (repeatable)")
	f.StringVar(&c.AuditSpoolDir, "audit-spool-dir", "", "directory where audit events are spooled while the database is unreachable")
	f.BoolVar(&c.Migrate, "migrate", false, "apply database migrations before serving")
	f.StringVar(&c.Replica, "replica", "", "replica name in audit events (default hostname)")
	durationVar(f, &c.UpstreamTimeout, "upstream-timeout", 60*time.Second, "wait for upstream response headers before answering 504")
	durationVar(f, &c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long SIGTERM waits for requests to drain")
	durationVar(f, &c.PollInterval, "poll-interval", 5*time.Second, "policy poll interval (a fallback: changes arrive by NOTIFY)")
	f.StringVar(&c.QuotaOnDBError, "quota-on-db-error", "allow", "beyond held leases while the database is unreachable: allow (audited quota_unchecked) or deny")
	f.BoolVar(&c.AdminPprof, "admin-pprof", false, "serve Go's /debug/pprof on the admin listener (for profiling; keep the admin listener private)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runServe(ctx context.Context, c server.Config) error {
	if os.Getenv("GOGC") == "" {
		// The live heap of a replica is small (snapshot, token cache, audit
		// queue) while every request allocates; collecting at 4x instead of 2x
		// the live heap halves GC work for a few extra MB. GOGC overrides it.
		debug.SetGCPercent(400)
	}
	s, err := server.New(ctx, c)
	var ue *server.UsageError
	if errors.As(err, &ue) {
		return usageErrorf("%s", ue.Msg)
	}
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		if errors.As(err, &ue) {
			return usageErrorf("%s", ue.Msg)
		}
		s.Shutdown(context.Background())
		if strings.Contains(err.Error(), "address already in use") {
			return usageErrorf("%v", err)
		}
		return err
	}
	<-ctx.Done()
	c.Logger.Info("shutting down: draining requests and flushing the audit trail")
	return s.Shutdown(context.Background())
}
