package okta_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/oktaorg"
	"github.com/okproxy/okproxy/internal/policy"
)

const (
	everyone   = "00gEveryone000000001"
	developers = "00gDevelopers0000002"
	finance    = "00gFinance0000000003"
	alice      = "00uAlice000000000001"
	bob        = "00uBob00000000000002"
	carol      = "00uCarol000000000003"
)

func TestSyncSmallOrg(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	res := e.mustSync(t, nil)
	if res.Status != okta.RunOK || res.GroupsAdded != 6 || res.UsersAdded != 7 || res.MembershipsAdded != 17 || res.Groups != 6 {
		t.Fatalf("first sync: %+v", res)
	}
	if res.GroupRulesChanged != 3 || res.GroupsRefetched != 6 || res.APICalls == 0 {
		t.Fatalf("first sync counts: %+v", res)
	}
	// Users of every status are kept, with their status.
	for login, want := range map[string]string{"alice@example.com": "ACTIVE", "dave@example.com": "SUSPENDED",
		"erin@example.com": "DEPROVISIONED", "grace@example.com": "STAGED"} {
		if got := e.userStatus(t, login); got != want {
			t.Errorf("%s: status %s, want %s", login, got, want)
		}
	}
	if v := e.version(t, "directory"); v != 1 {
		t.Fatalf("directory version %d after first sync", v)
	}
	if st, msg, _ := e.lastRun(t); st != "ok" || msg != "" {
		t.Fatalf("run record: %s %q", st, msg)
	}
	gs, err := e.st.ListOktaGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for _, g := range gs {
		byName[g.Name] = g.Members
	}
	// Developers: alice, frank ACTIVE; dave SUSPENDED does not count.
	if byName["Developers"] != 2 || byName["Everyone"] != 4 || byName["Contractors"] != 1 {
		t.Fatalf("active member counts: %v", byName)
	}

	// Nothing changed in Okta: one groups listing, the rules, the changed
	// users — no member listing, no directory change.
	e.srv.ResetCounts()
	res = e.mustSync(t, nil)
	if !res.Plan.Empty() || res.GroupsRefetched != 0 {
		t.Fatalf("second sync changed something: %+v", res.Plan)
	}
	want := map[string]int64{oktaorg.OpListGroups: 1, oktaorg.OpListGroupRules: 1, oktaorg.OpListUsers: 1}
	if got := e.srv.Counts(); !equalCounts(got, want) {
		t.Fatalf("second sync requests %v, want %v", got, want)
	}
	// Still a successful sync: replicas are told, and learn it is fresh.
	if v := e.version(t, "directory"); v != 2 {
		t.Fatalf("directory version %d after a second sync", v)
	}
	if n := e.count(t, `SELECT count(*) FROM admin_events WHERE action = 'groups.sync'`); n != 1 {
		t.Fatalf("%d sync admin events; a sync that changed nothing records none", n)
	}
}

func equalCounts(got, want map[string]int64) bool {
	for k, v := range got {
		if want[k] != v {
			return false
		}
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestPaginationManyPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, generated(oktaorg.GenerateConfig{Users: 400, Groups: 60, PowerUserGroups: 50}), nil)
	src := e.source(t, func(c *okta.ClientConfig) { c.GroupPageSize, c.MemberPageSize = 7, 9 })
	res, err := e.sync(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	groups, users, memberships := e.org.Counts()
	if res.Groups != groups || res.Memberships != memberships {
		t.Fatalf("synced %d groups / %d memberships, org has %d / %d", res.Groups, res.Memberships, groups, memberships)
	}
	if n := e.count(t, `SELECT count(*) FROM okta_users`); n != users {
		// Every generated user is at least in Everyone.
		t.Fatalf("synced %d users, org has %d", n, users)
	}
	if got, want := e.srv.Count(oktaorg.OpListGroups), int64((groups+6)/7); got != want {
		t.Fatalf("groups pages: %d requests, want %d", got, want)
	}
	var wantMemberPages int64
	for _, g := range e.org.Fixture().Groups {
		wantMemberPages += int64(max((len(e.org.Members(g.ID))+8)/9, 1))
	}
	if got := e.srv.Count(oktaorg.OpListGroupUsers); got != wantMemberPages {
		t.Fatalf("member pages: %d requests, want %d", got, wantMemberPages)
	}
}

// okta-sdk-golang v2 reads a comma-joined Link header's self link as the
// next one and loops forever; we parse Link headers ourselves.
func TestCommaJoinedLinkHeaderDoesNotLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, func(c *oktaorg.Config) { c.CommaJoinedLinks = true })
	src := e.source(t, func(c *okta.ClientConfig) { c.GroupPageSize, c.MemberPageSize = 2, 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := src.ListGroups(ctx, okta.Selection{})
	if err != nil || len(gs) != 6 {
		t.Fatalf("list groups: %d groups, %v", len(gs), err)
	}
	if n := e.srv.Count(oktaorg.OpListGroups); n != 3 {
		t.Fatalf("6 groups at 2 a page took %d requests, want 3", n)
	}
	res, err := e.sync(t, src, nil)
	if err != nil || res.Groups != 6 || res.Memberships != 17 {
		t.Fatalf("sync over comma-joined links: %+v %v", res, err)
	}
}

func TestRateLimitStormIsWaitedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, func(c *oktaorg.Config) { c.RateLimit = 3 })
	e.srv.Throttle(12) // a storm on top of a tiny per-minute budget
	began := time.Now()
	res := e.mustSync(t, nil)
	if res.Groups != 6 || res.Memberships != 17 || res.Error != "" {
		t.Fatalf("sync under rate limit: %+v", res)
	}
	if res.RateLimited < 12 {
		t.Fatalf("only %d 429s seen", res.RateLimited)
	}
	// 8 calls at 3 a minute plus 12 throttled answers: many fake minutes
	// waited, each wait ending at the advertised reset.
	if slept := time.Duration(e.slept.Load()); slept < 10*time.Minute || res.RateLimitWaitMS != slept.Milliseconds() {
		t.Fatalf("waited %s (reported %dms)", slept, res.RateLimitWaitMS)
	}
	if real := time.Since(began); real > 20*time.Second {
		t.Fatalf("the storm took %s of real time: something slept for real", real)
	}
}

func TestRateLimitBeyondPatienceFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	e.mustSync(t, nil)
	before := e.dump(t)
	e.org.RenameGroup(developers, "Devs")
	e.srv.Throttle(1000)
	src := e.source(t, func(c *okta.ClientConfig) { c.MaxRateLimitWait = 10 * time.Minute })
	_, err := e.sync(t, src, nil)
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Fatalf("endless storm: err %v", err)
	}
	if e.dump(t) != before {
		t.Fatal("a failed sync wrote to the directory")
	}
	if st, msg, _ := e.lastRun(t); st != "failed" || !strings.Contains(msg, "rate limit") {
		t.Fatalf("run record: %s %q", st, msg)
	}
}

func TestDeactivatedUsersKeepTheirStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	e.mustSync(t, nil)
	// Deactivation does not move any group's lastMembershipUpdated; the
	// incremental sync must still see it.
	e.clock.Advance(time.Minute)
	e.org.SetUserStatus(alice, oktaorg.StatusDeprovisioned)
	e.org.SetUserStatus(bob, oktaorg.StatusSuspended)
	e.srv.ResetCounts()
	res := e.mustSync(t, nil)
	if res.UsersChanged != 2 || res.GroupsRefetched != 0 {
		t.Fatalf("incremental sync after deactivation: %+v", res)
	}
	if e.userStatus(t, "alice@example.com") != "DEPROVISIONED" || e.userStatus(t, "bob@example.com") != "SUSPENDED" {
		t.Fatal("statuses not synced")
	}
	// Still a member (Okta keeps them), but counted nowhere as active.
	u, _ := e.st.GetUser(context.Background(), "alice@example.com")
	if len(u.Groups) != 2 || u.Active() {
		t.Fatalf("alice: %+v", u)
	}
	// Removed from every group while deprovisioned: kept, so the proxy can
	// refuse a token that still carries her groups.
	e.clock.Advance(time.Minute)
	e.org.RemoveMember(everyone, alice)
	e.org.RemoveMember(developers, alice)
	e.mustSync(t, func(c *okta.Config) { c.MaxRemoval = 1 })
	if e.userStatus(t, "alice@example.com") != "DEPROVISIONED" {
		t.Fatal("deprovisioned user with no groups was dropped")
	}
}

func TestUserInOneHundredFiftyGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t, generated(oktaorg.GenerateConfig{Users: 300, Groups: 170, PowerUserGroups: 150}), nil)
	e.mustSync(t, nil)
	u, err := e.st.GetUser(context.Background(), "power.user@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Groups) != 150 {
		t.Fatalf("power user in %d groups, want 150", len(u.Groups))
	}
}

func TestConcurrentSyncSaysSoAndExitsCleanly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	// A sync in flight: its source blocks until released.
	gate := make(chan struct{})
	entered := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := e.sync(t, gated{e.source(t, nil), entered, gate}, nil)
		first <- err
	}()
	<-entered
	res, err := e.sync(t, nil, nil)
	if !errors.Is(err, okta.ErrSyncRunning) || res.Status != okta.RunSkipped || !strings.Contains(res.Error, "another sync is running") {
		t.Fatalf("second sync: %v %+v", err, res)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if n := e.count(t, `SELECT count(*) FROM sync_runs`); n != 1 {
		t.Fatalf("%d runs recorded; the skipped one must not be", n)
	}
}

type gated struct {
	okta.GroupSource
	entered chan struct{}
	gate    chan struct{}
}

func (g gated) ListGroups(ctx context.Context, sel okta.Selection) ([]okta.Group, error) {
	close(g.entered)
	<-g.gate
	return g.GroupSource.ListGroups(ctx, sel)
}

func TestMassRemovalGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	e.mustSync(t, nil)
	before := e.dump(t)
	nothing := okta.Selection{Filter: `id eq "00gNoSuchGroup0000000"`}
	res, err := e.sync(t, nil, func(c *okta.Config) { c.Selection = nothing })
	var ge *okta.GuardError
	if !errors.As(err, &ge) || ge.What != "groups" || ge.Removed != 6 || res.Status != okta.RunAborted {
		t.Fatalf("mistyped filter: %v %+v", err, res)
	}
	if e.dump(t) != before {
		t.Fatal("the guard let a write through")
	}
	if st, msg, _ := e.lastRun(t); st != "aborted" || !strings.Contains(msg, "--force") {
		t.Fatalf("run record: %s %q", st, msg)
	}
	// Memberships are guarded on their own: 3 of 17 is over 10%.
	e.clock.Advance(time.Minute)
	for _, uid := range []string{alice, bob, carol} {
		e.org.RemoveMember(everyone, uid)
	}
	if _, err := e.sync(t, nil, func(c *okta.Config) { c.MaxRemoval = 0.1 }); !errors.As(err, &ge) || ge.What != "memberships" {
		t.Fatalf("membership guard: %v", err)
	}
	res, err = e.sync(t, nil, func(c *okta.Config) { c.Selection, c.Force = nothing, true })
	if err != nil || res.GroupsRemoved != 6 || e.count(t, `SELECT count(*) FROM okta_groups`) != 0 {
		t.Fatalf("--force: %v %+v", err, res)
	}
}

func TestFailedSyncMidwayChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	e.mustSync(t, nil)
	before, version := e.dump(t), e.version(t, "directory")
	e.clock.Advance(time.Minute)
	e.org.RenameGroup(finance, "Money")
	for _, g := range []string{developers, finance, everyone} {
		e.org.AddMember(g, carol)
	}
	// The second member listing and every one after it fail, retries too.
	e.srv.InjectFault(oktaorg.Fault{Op: oktaorg.OpListGroupUsers, After: 1})
	res, err := e.sync(t, nil, func(c *okta.Config) { c.Concurrency = 1 })
	var ae *okta.APIError
	if !errors.As(err, &ae) || ae.Status != 500 || res.Status != okta.RunFailed {
		t.Fatalf("sync with a failing Okta: %v %+v", err, res)
	}
	if e.dump(t) != before || e.version(t, "directory") != version {
		t.Fatal("a failed sync wrote to the directory")
	}
	if st, msg, _ := e.lastRun(t); st != "failed" || !strings.Contains(msg, "500") {
		t.Fatalf("run record: %s %q", st, msg)
	}
	// A single transient 500 is retried and the sync goes through.
	e.srv.ClearFaults()
	e.srv.InjectFault(oktaorg.Fault{Op: oktaorg.OpListGroupUsers, Count: 1})
	if res := e.mustSync(t, nil); res.GroupsRenamed != 1 || res.MembershipsAdded != 2 {
		t.Fatalf("sync after recovery: %+v", res)
	}
}

func TestBadTokenFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	_, err := e.sync(t, e.source(t, func(c *okta.ClientConfig) { c.APIToken = "wrong" }), nil)
	var ae *okta.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "E0000011" {
		t.Fatalf("bad token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), testToken) {
		t.Fatalf("error leaks the token: %v", err)
	}
	if n := e.count(t, `SELECT count(*) FROM okta_groups`); n != 0 {
		t.Fatal("wrote groups")
	}
}

func TestIncrementalFetchesChangedGroupsOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, generated(oktaorg.GenerateConfig{Users: 500, Groups: 120, PowerUserGroups: 30}), nil)
	e.mustSync(t, nil)
	// The first sync had nothing to be incremental against: its run
	// record says full, like its summary.
	fullRuns := func() (n int) {
		e.st.Pool().QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE full_sync) FROM sync_runs`).Scan(&n)
		return n
	}
	if n := fullRuns(); n != 1 {
		t.Fatalf("first sync recorded full_sync on %d runs", n)
	}
	e.clock.Advance(time.Minute)
	fx := e.org.Fixture()
	g1, g2, g3 := fx.Groups[10].ID, fx.Groups[20].ID, fx.Groups[30].ID
	u := fx.Users[7].ID
	e.org.AddMember(g1, u)
	e.org.AddMember(g2, u)
	e.org.RemoveMember(g3, e.org.Members(g3)[0])
	e.srv.ResetCounts()
	res := e.mustSync(t, nil)
	want := map[string]int64{oktaorg.OpListGroups: 1, oktaorg.OpListGroupUsers: 3, oktaorg.OpListGroupRules: 1, oktaorg.OpListUsers: 1}
	if got := e.srv.Counts(); !equalCounts(got, want) {
		t.Fatalf("incremental sync requests %v, want %v", got, want)
	}
	if res.GroupsRefetched != 3 || res.MembershipsAdded+res.MembershipsRemoved < 2 || res.APICalls != 6 {
		t.Fatalf("incremental result: %+v", res)
	}
	if n := fullRuns(); n != 1 {
		t.Fatalf("an incremental sync was recorded as full (%d full runs)", n)
	}
	// --full refetches everything.
	e.srv.ResetCounts()
	if res := e.mustSync(t, func(c *okta.Config) { c.Full = true }); res.GroupsRefetched != 120 || !res.Plan.Empty() {
		t.Fatalf("full sync: %+v", res)
	}
	if n := e.srv.Count(oktaorg.OpListGroupUsers); n < 120 {
		t.Fatalf("full sync made %d member listings", n)
	}
}

func TestRenameInOktaKeepsRuleBindings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	// Rules written before the first sync hold names only.
	r := policy.Rule{Name: "dev-api", Path: "/dev/**", Enabled: true, Mode: policy.ModeEnforce,
		Allow: []policy.GroupRef{{Name: "developers"}}, Deny: []policy.GroupRef{{Name: "Nobody Has This"}}}
	if _, err := e.st.AddRule(ctx, r, "test"); err != nil {
		t.Fatal(err)
	}
	policyBefore := e.version(t, "policy")
	res := e.mustSync(t, nil)
	if res.RuleGroupsBound != 1 {
		t.Fatalf("bound %d rule groups, want 1 (case-insensitive name match)", res.RuleGroupsBound)
	}
	if e.version(t, "policy") != policyBefore+1 {
		t.Fatal("binding did not bump the policy version")
	}
	if n := e.count(t, `SELECT count(*) FROM admin_events WHERE action = 'rule.bind_group' AND object_name = 'dev-api'`); n != 1 {
		t.Fatalf("%d bind events", n)
	}
	if n := e.count(t, `SELECT count(*) FROM rule_groups WHERE group_id IS NULL AND group_name = 'Nobody Has This'`); n != 1 {
		t.Fatal("unknown group name got bound")
	}
	e.clock.Advance(time.Minute)
	e.org.RenameGroup(developers, "Engineering Devs")
	if res := e.mustSync(t, nil); res.GroupsRenamed != 1 || res.Plan.GroupsRenamed[0].From != "Developers" {
		t.Fatalf("rename: %+v", res.Plan)
	}
	if n := e.count(t, `SELECT count(*) FROM rule_groups WHERE group_id = $1`, developers); n != 1 {
		t.Fatal("rename lost the binding")
	}
	got, err := e.st.GetRule(ctx, "dev-api")
	if err != nil {
		t.Fatal(err)
	}
	if got.Allow[0].ID != developers || got.Allow[0].Name != "Engineering Devs" {
		t.Fatalf("rule shows %+v", got.Allow)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	e.mustSync(t, nil)
	e.clock.Advance(time.Minute)
	e.org.RenameGroup(finance, "Money")
	e.org.RemoveMember(everyone, carol)
	e.org.SetUserStatus(alice, oktaorg.StatusSuspended)
	before := e.dump(t)
	res := e.mustSync(t, func(c *okta.Config) { c.DryRun = true })
	p := res.Plan
	if res.Status != okta.RunDryRun || len(p.GroupsRenamed) != 1 || len(p.MembershipsRemoved) != 1 || len(p.UsersChanged) != 1 {
		t.Fatalf("dry run: %+v", res)
	}
	if e.dump(t) != before {
		t.Fatal("dry run wrote to the directory")
	}
	if st, _, _ := e.lastRun(t); st != "dry_run" {
		t.Fatalf("run record %s", st)
	}
	// The next real sync still sees the changes (the dry run did not move
	// the incremental baseline).
	if res := e.mustSync(t, nil); res.GroupsRenamed != 1 || res.MembershipsRemoved != 1 || res.UsersChanged != 1 {
		t.Fatalf("real sync after dry run: %+v", res)
	}
}

func TestGroupSelection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	res := e.mustSync(t, func(c *okta.Config) { c.Selection = okta.Selection{Filter: `type eq "OKTA_GROUP"`} })
	if res.Groups != 4 {
		t.Fatalf("OKTA_GROUP filter synced %d groups", res.Groups)
	}
	res = e.mustSync(t, func(c *okta.Config) {
		c.Selection = okta.Selection{Search: `type eq "OKTA_GROUP" and profile.name sw "dev"`}
		c.Force = true
	})
	if res.Groups != 1 || res.GroupsRemoved != 3 {
		t.Fatalf("search: %+v", res)
	}
	_, err := e.sync(t, nil, func(c *okta.Config) { c.Selection = okta.Selection{Filter: `profile.name eq "x"`} })
	var se *okta.SelectionError
	if !errors.As(err, &se) {
		t.Fatalf("filter on an unsupported attribute: %v", err)
	}
}

// With the budget nearly spent the client pauses until the reset instead of
// running into 429s: Okta's budgets are shared by the whole org.
func TestPacingKeepsClearOf429s(t *testing.T) {
	t.Parallel()
	e := newEnv(t, generated(oktaorg.GenerateConfig{Users: 100, Groups: 40, PowerUserGroups: 10}), func(c *oktaorg.Config) { c.RateLimit = 20 })
	// One request at a time: with several in flight a few may still
	// overshoot the budget (and be waited out as 429s).
	res := e.mustSync(t, func(c *okta.Config) { c.Concurrency = 1 })
	if res.Groups != 40 || res.RateLimited != 0 || e.slept.Load() == 0 {
		t.Fatalf("paced sync: %d groups, %d 429s, waited %s", res.Groups, res.RateLimited, time.Duration(e.slept.Load()))
	}
}

// A guard share that is not a number in [0, 1] is refused: NaN in
// particular passes "< 0" and "> 1" alike and compares false with every
// count, which would switch the mass-removal guard off.
func TestNewRefusesBadMaxRemoval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, nil)
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -0.1, 1.5} {
		_, err := okta.New(okta.Config{Source: e.source(t, nil), Store: e.st, MaxRemoval: v})
		if err == nil || !strings.Contains(err.Error(), "max removal") {
			t.Errorf("MaxRemoval %v: %v", v, err)
		}
	}
}
