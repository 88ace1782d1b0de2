package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/policyfile"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/store"
)

// Every path that makes a policy version leaves a snapshot equal to the
// live policy at that version, without calling anything for it.
func TestPolicySnapshotsEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	rule := policy.Rule{Name: "r", Path: "/r/**", Methods: []string{"GET"}, Enabled: true, Mode: policy.ModeEnforce,
		Allow: []policy.GroupRef{{Name: "Finance"}}, Deny: []policy.GroupRef{{ID: "00gx", Name: "X"}}}
	check := func(step string) {
		t.Helper()
		live, v, err := st.PolicyDocument(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := st.PolicySnapshot(ctx, v)
		if err != nil {
			t.Fatalf("%s: snapshot of version %d: %v", step, v, err)
		}
		if !reflect.DeepEqual(live, snap) {
			t.Fatalf("%s: snapshot of version %d differs from the live policy:\n%+v\n%+v", step, v, snap, live)
		}
	}
	if _, err := st.AddRule(ctx, rule, "t"); err != nil {
		t.Fatal(err)
	}
	check("add")
	if _, _, err := st.SetRuleEnabled(ctx, "r", false, "t"); err != nil {
		t.Fatal(err)
	}
	check("disable")
	if _, err := st.AddQuota(ctx, quota.Quota{Name: "q", Group: policy.GroupRef{Name: "Finance"}, Limit: 5, WindowSeconds: 90061,
		Path: "/**", Per: quota.PerGroup}, "t"); err != nil {
		t.Fatal(err)
	}
	check("quota add")
	res, err := st.ApplyPolicy(ctx, policyfile.Document{Rules: []policyfile.Rule{{Name: "s", Path: "/s", Public: true, Enabled: true}}},
		store.ApplyOptions{Diff: policyfile.DiffOptions{Rules: true}, Actor: "t", Action: "apply", Verb: "apply"})
	if err != nil || !res.Applied || res.Version != 4 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	check("apply")
	if _, err := st.RemoveRule(ctx, "r", "t"); err != nil {
		t.Fatal(err)
	}
	check("rm")
	if _, err := st.PolicySnapshot(ctx, 99); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
}

// A snapshot that cannot be built (here: a column it reads is gone) must not
// block policy changes; the version is then reported as not restorable.
func TestPolicySnapshotFailureDoesNotBlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	if _, err := st.Pool().Exec(ctx, `ALTER TABLE quotas RENAME COLUMN per TO per_renamed`); err != nil {
		t.Fatal(err)
	}
	v, err := st.AddRule(ctx, policy.Rule{Name: "r", Path: "/r", Public: true, Enabled: true, Mode: policy.ModeEnforce}, "t")
	if err != nil {
		t.Fatalf("a failing snapshot blocked the change: %v", err)
	}
	if _, err := st.PolicySnapshot(ctx, v); !errors.Is(err, store.ErrNoSnapshot) {
		t.Fatalf("want ErrNoSnapshot, got %v", err)
	}
	hist, err := st.PolicyHistory(ctx, "", 10)
	if err != nil || len(hist) != 1 || hist[0].Restorable || len(hist[0].Changes) != 1 {
		t.Fatalf("history: %+v %v", hist, err)
	}
}
