// Package server assembles `okproxy serve`: the store, the token verifier,
// the policy snapshot watcher, the audit writer, the quota limiter and the
// proxy handler, behind a main listener and an admin listener. It has a
// Start/Run/Close life cycle so tests can run the whole program on port 0.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/proxy"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/snapshot"
	"github.com/okproxy/okproxy/internal/store"
)

// Config is everything `okproxy serve` takes. Every field maps to a flag.
type Config struct {
	DatabaseURL string
	// Listen is the proxy address (default :8080); AdminListen serves
	// /healthz, /readyz and /metrics (default :9090).
	Listen      string
	AdminListen string
	Upstream    string
	// Issuer and Audiences: see authn.Config.
	Issuer         string
	Audiences      []string
	GroupsClaim    string
	GroupsSource   string
	RequireClaims  []string
	AllowedAlgs    []string
	ClockSkew      time.Duration
	TLSCert        string
	TLSKey         string
	TrustedProxies []string
	// AuditSpoolDir holds audit batches while the database is unreachable.
	AuditSpoolDir string
	// Migrate runs the embedded migrations before serving.
	Migrate bool
	// Replica names this process in audit events (default: hostname).
	Replica string
	// UpstreamTimeout bounds the wait for upstream response headers (default 60s).
	UpstreamTimeout time.Duration
	// ShutdownTimeout bounds draining on SIGTERM (default 30s).
	ShutdownTimeout time.Duration
	// PollInterval is the snapshot poll fallback (default 5s).
	PollInterval time.Duration
	// QuotaOnDBError is what happens beyond held leases when the database is
	// unreachable: allow (default, audited as quota_unchecked) or deny.
	QuotaOnDBError string
	// AdminPprof serves net/http/pprof on the admin listener.
	AdminPprof bool
	Logger     *slog.Logger
}

// UsageError is a configuration mistake (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	c.Listen = cmp.Or(c.Listen, ":8080")
	c.AdminListen = cmp.Or(c.AdminListen, ":9090")
	c.GroupsSource = cmp.Or(c.GroupsSource, string(proxy.GroupsAuto))
	c.UpstreamTimeout = cmp.Or(c.UpstreamTimeout, 60*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 30*time.Second)
	c.PollInterval = cmp.Or(c.PollInterval, 5*time.Second)
	c.QuotaOnDBError = cmp.Or(c.QuotaOnDBError, "allow")
	if c.Replica == "" {
		h, _ := os.Hostname()
		c.Replica = cmp.Or(h, "okproxy")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.DatabaseURL == "":
		return usage("database-url: no database: set --database-url, OKPROXY_DATABASE_URL or DATABASE_URL")
	case c.Upstream == "":
		return usage("upstream: --upstream is required")
	case c.Issuer == "":
		return usage("issuer: --issuer is required")
	case len(c.Audiences) == 0:
		return usage("audience: --audience is required (the aud your API's tokens carry, e.g. api://default)")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return usage("tls-cert/tls-key: give both or neither")
	case c.QuotaOnDBError != "allow" && c.QuotaOnDBError != "deny":
		return usage("quota-on-db-error: %q is not allow or deny", c.QuotaOnDBError)
	}
	u, err := url.Parse(c.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usage("upstream: %q is not an http(s) URL", c.Upstream)
	}
	switch proxy.GroupsSource(c.GroupsSource) {
	case proxy.GroupsAuto, proxy.GroupsToken, proxy.GroupsDirectory, proxy.GroupsUnion:
	default:
		return usage("groups-source: %q is not auto, token, directory or union", c.GroupsSource)
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		return usage("trusted-proxy: %v", err)
	}
	ac := c.authnConfig()
	if err := ac.Validate(); err != nil {
		return usage("%v", err)
	}
	return nil
}

func (c *Config) authnConfig() authn.Config {
	return authn.Config{Issuer: c.Issuer, Audiences: c.Audiences, AllowedAlgs: c.AllowedAlgs, ClockSkew: c.ClockSkew,
		RequiredClaims: c.RequireClaims, GroupsClaim: c.GroupsClaim, Logger: c.Logger}
}

func parsePrefixes(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !strings.Contains(p, "/") {
				a, err := netip.ParseAddr(p)
				if err != nil {
					return nil, fmt.Errorf("%q is not a CIDR or address", p)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			pr, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR", p)
			}
			out = append(out, pr.Masked())
		}
	}
	return out, nil
}

// Server is a running okproxy serve.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	verifier *authn.Verifier
	watcher  *snapshot.Watcher
	writer   *audit.Writer
	limiter  *quota.Limiter
	handler  *proxy.Handler
	reg      *prometheus.Registry

	main, admin     *http.Server
	mainLn, adminLn net.Listener

	cancel context.CancelFunc
	done   chan struct{}
}

// New builds the server; nothing listens until Start.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	s.store, err = store.Open(ctx, store.Config{URL: cfg.DatabaseURL, ApplicationName: "okproxy-serve", Lazy: !cfg.Migrate})
	if err != nil {
		return nil, err
	}
	s.log.Info("database configured", "url", store.Redact(cfg.DatabaseURL))
	if cfg.Migrate {
		n, err := s.store.MigrateUp(ctx)
		if err != nil {
			s.store.Close()
			return nil, err
		}
		s.log.Info("migrations applied", "count", n)
	}
	s.verifier, err = authn.New(ctx, cfg.authnConfig())
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	m := newServerMetrics(s.reg)
	s.limiter, err = quota.New(quota.Config{Store: s.store, OnDBError: cfg.QuotaOnDBError, Logger: s.log, Metrics: s.reg, Poll: cfg.PollInterval})
	if err != nil {
		s.verifier.Close()
		s.store.Close()
		return nil, err
	}
	s.watcher = snapshot.New(snapshot.Config{Source: s.store, Poll: cfg.PollInterval, Logger: s.log,
		OnSwap: func(sn *snapshot.Snapshot) { m.swapped(sn); s.limiter.Kick() }, OnError: func(error) { m.reloads.WithLabelValues("error").Inc() }})
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := s.watcher.Load(lctx); err != nil {
		s.log.Error("no policy snapshot at start; answering 503 until one loads", "err", err)
	}
	if err := s.limiter.Load(lctx); err != nil {
		s.log.Error("no quota set at start; --quota-on-db-error applies until one loads", "err", err)
	}
	cancel()
	s.writer, err = audit.NewWriter(audit.WriterConfig{Store: s.store, SpoolDir: cfg.AuditSpoolDir, Replica: cfg.Replica,
		Logger: s.log, Metrics: s.reg})
	if err != nil {
		s.verifier.Close()
		s.store.Close()
		return nil, err
	}
	up, _ := url.Parse(cfg.Upstream)
	tps, _ := parsePrefixes(cfg.TrustedProxies)
	s.handler, err = proxy.New(proxy.Config{
		Upstream:       up,
		Transport:      proxy.NewTransport(proxy.TransportConfig{ResponseHeaderTimeout: cfg.UpstreamTimeout}),
		Verifier:       s.verifier,
		Snapshots:      s.watcher,
		Audit:          s.writer,
		Quota:          s.limiter,
		GroupsSource:   proxy.GroupsSource(cfg.GroupsSource),
		TrustedProxies: tps,
		Replica:        cfg.Replica,
		Logger:         s.log,
		Metrics:        proxy.NewMetrics(s.reg),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds both listeners and starts serving and background work.
func (s *Server) Start(ctx context.Context) error {
	var err error
	if s.mainLn, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	if s.adminLn, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
		s.mainLn.Close()
		return fmt.Errorf("admin listen %s: %w", s.cfg.AdminListen, err)
	}
	s.main = &http.Server{
		Handler:     s.handler,
		ConnContext: proxy.ConnContext,
		ConnState:   proxy.ConnState,
		// "OPTIONS *" would otherwise be answered by net/http itself, with
		// 200 and no audit event; the handler refuses it (400) and audits it.
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            10 * time.Second,
		IdleTimeout:                  120 * time.Second,
		MaxHeaderBytes:               64 << 10,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.admin = &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 5 * time.Second}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.watcher.Run(bg)
	go s.writer.Run(bg)
	go s.limiter.Run(bg)
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return usage("tls-cert/tls-key: %v", err)
		}
		s.main.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		go s.main.ServeTLS(s.mainLn, "", "")
	} else {
		// Requests net/http refuses before the handler are audited too.
		go s.main.Serve(s.handler.WatchListener(s.mainLn))
	}
	go s.admin.Serve(s.adminLn)
	s.log.Info("okproxy serving", "listen", s.mainLn.Addr().String(), "admin", s.adminLn.Addr().String(),
		"upstream", s.cfg.Upstream, "issuer", s.cfg.Issuer, "replica", s.cfg.Replica)
	return nil
}

// Addr is the proxy listener's address; AdminAddr the admin one's.
func (s *Server) Addr() string      { return s.mainLn.Addr().String() }
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Shutdown drains requests, flushes the audit trail and releases everything.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if s.main != nil {
		errs = append(errs, s.main.Shutdown(ctx))
	}
	if s.limiter != nil {
		errs = append(errs, s.limiter.Close(ctx)) // drained: give leases back
	}
	if s.writer != nil {
		errs = append(errs, s.writer.Close(ctx))
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Shutdown(ctx))
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.verifier.Close()
	s.store.Close()
	s.log.Info("okproxy stopped")
	return errors.Join(errs...)
}

func (s *Server) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var missing []string
		if snap := s.watcher.Current(); snap == nil {
			missing = append(missing, "policy snapshot not loaded")
		}
		if !s.verifier.Ready() {
			missing = append(missing, "JWKS not fetched")
		}
		if len(missing) > 0 {
			http.Error(w, "not ready: "+strings.Join(missing, "; "), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if s.cfg.AdminPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type serverMetrics struct {
	policyVersion    prometheus.Gauge
	directoryVersion prometheus.Gauge
	reloads          *prometheus.CounterVec
	rules            prometheus.Gauge
	loadedAt         prometheus.Gauge
	lastSync         prometheus.Gauge
	users            prometheus.Gauge
}

func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	m := &serverMetrics{
		policyVersion:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_policy_version", Help: "Policy version in force."}),
		directoryVersion: prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_directory_version", Help: "Directory version in force."}),
		reloads:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "okproxy_snapshot_reloads_total", Help: "Snapshot reloads by result."}, []string{"result"}),
		rules:            prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_rules", Help: "Rules in the policy in force."}),
		loadedAt:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_snapshot_loaded_timestamp_seconds", Help: "When the snapshot in force was loaded."}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_directory_last_sync_timestamp_seconds",
			Help: "When the last successful Okta group sync finished (0: never); alert when it is older than twice the cron interval."}),
		users: prometheus.NewGauge(prometheus.GaugeOpts{Name: "okproxy_directory_users", Help: "Synced Okta users in the directory in force."}),
	}
	reg.MustRegister(m.policyVersion, m.directoryVersion, m.reloads, m.rules, m.loadedAt, m.lastSync, m.users)
	return m
}

func (m *serverMetrics) swapped(s *snapshot.Snapshot) {
	m.policyVersion.Set(float64(s.PolicyVersion))
	m.directoryVersion.Set(float64(s.DirectoryVersion))
	m.rules.Set(float64(len(s.Rules)))
	m.loadedAt.Set(float64(s.LoadedAt.Unix()))
	if d := s.Directory; d != nil && !d.LastSync.IsZero() {
		m.lastSync.Set(float64(d.LastSync.Unix()))
	}
	m.users.Set(float64(s.Directory.Len()))
	m.reloads.WithLabelValues("ok").Inc()
}
