package okta_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/oktaorg"
	"github.com/okproxy/okproxy/internal/store"
)

const testToken = "00test-api-token-not-a-secret"

// env is one fake org, its clock and a fresh database.
type env struct {
	clock *oktaorg.Clock
	org   *oktaorg.Org
	srv   *oktaorg.Server
	st    *store.Store
	slept atomic.Int64 // fake time spent waiting, ns
	log   *slog.Logger
}

// newEnv serves org (the small fixture when nil) from a fake on loopback.
func newEnv(t *testing.T, org func(now func() time.Time) *oktaorg.Org, mod func(*oktaorg.Config)) *env {
	t.Helper()
	e := &env{clock: oktaorg.NewClock(time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second))}
	if org == nil {
		org = smallOrg(t)
	}
	e.org = org(e.clock.Now)
	cfg := oktaorg.Config{Org: e.org, APIToken: testToken, Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := oktaorg.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.srv = srv
	e.st = dbtest.NewStore(t)
	e.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func smallOrg(t *testing.T) func(func() time.Time) *oktaorg.Org {
	return func(now func() time.Time) *oktaorg.Org {
		o, err := oktaorg.LoadFile("../../testdata/okta/small-org.json", now)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
}

func generated(cfg oktaorg.GenerateConfig) func(func() time.Time) *oktaorg.Org {
	return func(now func() time.Time) *oktaorg.Org {
		cfg.Now = now
		return oktaorg.Generate(cfg)
	}
}

// sleep waits by advancing the fake clock: no test sleeps for real.
func (e *env) sleep(ctx context.Context, d time.Duration) error {
	e.clock.Advance(d)
	e.slept.Add(int64(d))
	return ctx.Err()
}

func (e *env) clientConfig() okta.ClientConfig {
	return okta.ClientConfig{OrgURL: e.srv.URL(), APIToken: testToken, AllowHTTP: true,
		Sleep: e.sleep, Now: e.clock.Now, Logger: e.log}
}

func (e *env) source(t *testing.T, mod func(*okta.ClientConfig)) *okta.SDKSource {
	t.Helper()
	cc := e.clientConfig()
	if mod != nil {
		mod(&cc)
	}
	src, err := okta.NewSDKSource(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// sync runs one sync with a fresh source; mod adjusts the sync config.
func (e *env) sync(t *testing.T, src okta.GroupSource, mod func(*okta.Config)) (*okta.Result, error) {
	t.Helper()
	if src == nil {
		src = e.source(t, nil)
	}
	cfg := okta.Config{Source: src, Store: e.st, Logger: e.log, MaxRemoval: okta.DefaultMaxRemoval, Actor: "test", Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	s, err := okta.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.Run(context.Background())
}

func (e *env) mustSync(t *testing.T, mod func(*okta.Config)) *okta.Result {
	t.Helper()
	res, err := e.sync(t, nil, mod)
	if err != nil {
		t.Fatalf("sync: %v (result %+v)", err, res)
	}
	return res
}

// dump renders the synced directory, rule bindings and versions, to prove
// that a failed or refused sync wrote nothing.
func (e *env) dump(t *testing.T) string {
	t.Helper()
	var out string
	err := e.st.Pool().QueryRow(context.Background(), `SELECT json_build_array(
		(SELECT coalesce(json_agg(g ORDER BY id), '[]') FROM (SELECT id, name, type, description, last_updated, last_membership_updated FROM okta_groups) g),
		(SELECT coalesce(json_agg(u ORDER BY id), '[]') FROM (SELECT id, login, email, status, department, title FROM okta_users) u),
		(SELECT coalesce(json_agg(m ORDER BY group_id, user_id), '[]') FROM okta_memberships m),
		(SELECT coalesce(json_agg(r ORDER BY id), '[]') FROM (SELECT id, name, status, expression, group_ids FROM okta_group_rules) r),
		(SELECT coalesce(json_agg(rg ORDER BY rule_id, kind, position), '[]') FROM rule_groups rg),
		(SELECT json_agg(v ORDER BY name) FROM versions v))::text`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) version(t *testing.T, name string) int {
	return e.count(t, `SELECT version::int FROM versions WHERE name = $1`, name)
}

func (e *env) lastRun(t *testing.T) (status, errMsg string, counts map[string]any) {
	t.Helper()
	var raw []byte
	err := e.st.Pool().QueryRow(context.Background(), `SELECT status, error, counts FROM sync_runs ORDER BY id DESC LIMIT 1`).Scan(&status, &errMsg, &raw)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(raw, &counts)
	return status, errMsg, counts
}

func (e *env) userStatus(t *testing.T, login string) string {
	t.Helper()
	u, err := e.st.GetUser(context.Background(), login)
	if err != nil {
		t.Fatalf("user %s: %v", login, err)
	}
	return u.Status
}
