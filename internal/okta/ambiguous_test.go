package okta_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/quota"
)

const contractors = "00gContractors000005"

// A rule and a quota written by name before the sync, when Okta then holds
// two groups of that name ignoring case (Contractors renamed "DEVELOPERS"):
// the sync leaves them unbound and says why in its log, and the rules and
// quotas loaded for evaluation carry both ids, so that an allow or a quota by
// the name applies to nobody and a deny to the members of each.
func TestAmbiguousNameStaysUnboundAndGrantsNobody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	var log bytes.Buffer
	e.log = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	for _, r := range []policy.Rule{
		{Name: "dev-api", Path: "/dev/**", Allow: []policy.GroupRef{{Name: "Developers"}}},
		{Name: "no-devs", Path: "/prod/**", Deny: []policy.GroupRef{{Name: "developers"}}},
		{Name: "prod", Path: "/prod/**", AllowAuthenticated: true},
	} {
		r.Enabled, r.Mode = true, policy.ModeEnforce
		if _, err := e.st.AddRule(ctx, r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	q := quota.Quota{Name: "dev-tier", Group: policy.GroupRef{Name: "Developers"}, Limit: 1, WindowSeconds: 60, Path: "/**", Per: quota.PerUser}
	if _, err := e.st.AddQuota(ctx, q, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.org.RenameGroup(contractors, "DEVELOPERS"); err != nil {
		t.Fatal(err)
	}
	res := e.mustSync(t, nil)
	if res.RuleGroupsBound != 0 || !slices.Equal(res.Plan.Ambiguous, []string{"Developers", "developers"}) {
		t.Fatalf("bound %d, ambiguous %v", res.RuleGroupsBound, res.Plan.Ambiguous)
	}
	if want := `group=Developers group_ids=` + contractors + "," + developers; !strings.Contains(log.String(), "an allow by it grants nobody") || !strings.Contains(log.String(), want) {
		t.Errorf("sync log:\n%s\nwant %s", log.String(), want)
	}

	snap, err := e.st.LoadSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{contractors, developers}
	for _, r := range snap.Rules {
		for _, g := range append(slices.Clone(r.Allow), r.Deny...) {
			if !slices.Equal(g.AmbiguousIDs(), ids) {
				t.Errorf("rule %s group %+v: AmbiguousIDs %v, want %v", r.Name, g, g.AmbiguousIDs(), ids)
			}
		}
	}
	pol, err := policy.Compile(snap.Rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, login := range []string{"alice@example.com", "frank@example.com"} { // Developers; Developers and Contractors
		u, err := e.st.GetUser(ctx, login)
		if err != nil {
			t.Fatal(err)
		}
		c := policy.NewCaller(login, u.Groups, nil)
		if d := pol.Decide(policy.Request{Method: "GET", Path: "/dev/x"}, c); d.Effect != policy.Deny || d.AmbiguousRule != "dev-api" {
			t.Errorf("%s on the ambiguous allow: %+v", login, d)
		}
		if d := pol.Decide(policy.Request{Method: "GET", Path: "/prod/x"}, c); d.Effect != policy.Deny || d.Denied != "no-devs" {
			t.Errorf("%s on the ambiguous deny: %+v", login, d)
		}
	}
	bob, err := e.st.GetUser(ctx, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if d := pol.Decide(policy.Request{Method: "GET", Path: "/prod/x"}, policy.NewCaller("bob", bob.Groups, nil)); d.Effect != policy.Allow {
		t.Errorf("bob is in neither group: %+v", d)
	}

	l, err := e.st.LoadQuotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Quotas) != 1 || !l.Quotas[0].Group.IsAmbiguous() || !slices.Equal(l.Quotas[0].Group.AmbiguousIDs(), ids) {
		t.Fatalf("loaded quota group: %+v", l.Quotas)
	}
}
