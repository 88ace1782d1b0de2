package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/store"
)

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbtest.NewEmptyDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.MigrateUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("applied %d migrations, want at least 4", n)
	}
	p, db, err := st.Migrator()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Every migration can be rolled back one step at a time, and re-applied.
	for i := 0; i < n; i++ {
		if _, err := p.Down(ctx); err != nil {
			t.Fatalf("down step %d: %v", i, err)
		}
	}
	var tables int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("after all downs %d tables remain", tables)
	}
	if m, err := st.MigrateUp(ctx); err != nil || m != n {
		t.Fatalf("re-up applied %d (%v), want %d", m, err, n)
	}
	if m, err := st.MigrateUp(ctx); err != nil || m != 0 {
		t.Fatalf("second up applied %d (%v), want 0", m, err)
	}
}

func TestAuditPartitionsAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	if _, err := st.EnsureAuditPartitions(ctx, 7); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 9 { // yesterday..+7 plus the default partition
		t.Fatalf("%d partitions, want >= 9", n)
	}
	// Creating them again creates nothing.
	if c, err := st.EnsureAuditPartitions(ctx, 7); err != nil || c != 0 {
		t.Fatalf("second call created %d (%v)", c, err)
	}
}

func sampleRule(name string) policy.Rule {
	return policy.Rule{Name: name, Path: "/billing/**", Methods: []string{"GET"},
		Allow: []policy.GroupRef{{Name: "Finance"}}, Deny: []policy.GroupRef{{Name: "Contractors"}}, Enabled: true, Mode: policy.ModeEnforce}
}

func TestRuleLifecycleVersionsAndAdminEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)

	// LISTEN on a dedicated connection to see the NOTIFY of each change.
	conn, err := pgx.Connect(ctx, st.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN okproxy_changes"); err != nil {
		t.Fatal(err)
	}
	waitNotify := func(want string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no notification %q: %v", want, err)
		}
		if n.Payload != want {
			t.Fatalf("notification %q, want %q", n.Payload, want)
		}
	}

	v1, err := st.AddRule(ctx, sampleRule("billing-read"), "alice@test")
	if err != nil {
		t.Fatal(err)
	}
	waitNotify("policy:1")
	if v1 != 1 {
		t.Fatalf("version %d, want 1", v1)
	}
	if _, err := st.AddRule(ctx, sampleRule("billing-read"), "alice@test"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate add: %v, want ErrExists", err)
	}
	// The failed add bumped nothing.
	if pv, _, _ := st.Versions(ctx); pv != 1 {
		t.Fatalf("policy version %d after failed add, want 1", pv)
	}
	got, err := st.GetRule(ctx, "billing-read")
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "/billing/**" || len(got.Allow) != 1 || got.Allow[0].Name != "Finance" || got.Deny[0].Name != "Contractors" {
		t.Fatalf("round trip: %+v", got)
	}
	if _, changed, err := st.SetRuleEnabled(ctx, "billing-read", false, "bob@test"); err != nil || !changed {
		t.Fatalf("disable: changed=%v err=%v", changed, err)
	}
	waitNotify("policy:2")
	if _, changed, err := st.SetRuleEnabled(ctx, "billing-read", false, "bob@test"); err != nil || changed {
		t.Fatalf("second disable: changed=%v err=%v (want no change)", changed, err)
	}
	if _, err := st.RemoveRule(ctx, "billing-read", "carol@test"); err != nil {
		t.Fatal(err)
	}
	waitNotify("policy:3")
	if _, err := st.RemoveRule(ctx, "billing-read", "carol@test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove missing: %v", err)
	}
	evs, err := st.ListAdminEvents(ctx, "rule", "billing-read", time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d admin events, want 3", len(evs))
	}
	rm, dis, add := evs[0], evs[1], evs[2]
	if add.Action != "rule.add" || add.Actor != "alice@test" || add.Before != nil || !strings.Contains(string(add.After), `"Finance"`) || add.PolicyVersion != 1 {
		t.Fatalf("add event: %+v", add)
	}
	if dis.Action != "rule.disable" || !strings.Contains(string(dis.Before), `"enabled": true`) && !strings.Contains(string(dis.Before), `"enabled":true`) {
		t.Fatalf("disable event before: %s", dis.Before)
	}
	if !strings.Contains(string(dis.After), `"enabled": false`) && !strings.Contains(string(dis.After), `"enabled":false`) {
		t.Fatalf("disable event after: %s", dis.After)
	}
	if rm.Action != "rule.remove" || rm.Actor != "carol@test" || rm.After != nil {
		t.Fatalf("remove event: %+v", rm)
	}
}

func TestResolveGroupsBindsToDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	_, err := st.Pool().Exec(ctx, `INSERT INTO okta_groups (id, name, type) VALUES
		('00g1aaaaaaaaaaaaaaaa', 'Finance', 'OKTA_GROUP'),
		('00g2aaaaaaaaaaaaaaaa', 'Dup', 'OKTA_GROUP'),
		('00g3aaaaaaaaaaaaaaaa', 'dup', 'APP_GROUP')`)
	if err != nil {
		t.Fatal(err)
	}
	refs, unknown, err := st.ResolveGroups(ctx, []string{"finance", "Nobody", "00g1aaaaaaaaaaaaaaaa"})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || refs[0] != (policy.GroupRef{ID: "00g1aaaaaaaaaaaaaaaa", Name: "Finance"}) || refs[1] != (policy.GroupRef{Name: "Nobody"}) {
		t.Fatalf("refs %+v (the id and the name of Finance collapse into one)", refs)
	}
	if len(unknown) != 1 || unknown[0] != "Nobody" {
		t.Fatalf("unknown %v", unknown)
	}
	var amb *store.AmbiguousGroupError
	if _, _, err := st.ResolveGroups(ctx, []string{"DUP"}); !errors.As(err, &amb) {
		t.Fatalf("ambiguous name: %v", err)
	}
	// A bound rule shows the group's current name after a rename in Okta.
	r := sampleRule("r1")
	r.Allow = []policy.GroupRef{{ID: "00g1aaaaaaaaaaaaaaaa", Name: "Finance"}}
	if _, err := st.AddRule(ctx, r, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE okta_groups SET name = 'Finance-EMEA' WHERE id = '00g1aaaaaaaaaaaaaaaa'`); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetRule(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Allow[0] != (policy.GroupRef{ID: "00g1aaaaaaaaaaaaaaaa", Name: "Finance-EMEA"}) {
		t.Fatalf("after rename: %+v", got.Allow)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:***@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                             "postgres://u@h/db",
		"host=h user=u password=secret dbname=d":        "host=h user=u password=*** dbname=d",
		"postgres://h/db?password=secret":               "postgres://h/db?password=***",
	} {
		got := store.Redact(in)
		if got != want || strings.Contains(got, "secret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
