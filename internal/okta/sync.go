package okta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Run statuses recorded in sync_runs and reported in Result.Status.
const (
	RunRunning = "running"
	RunOK      = "ok"
	RunFailed  = "failed"
	RunAborted = "aborted" // stopped by the mass-removal guard
	RunDryRun  = "dry_run"
	RunSkipped = "skipped" // another sync held the lock; not recorded
)

// DefaultMaxRemoval is the share of groups or memberships a sync may
// remove without --force.
const DefaultMaxRemoval = 0.2

// Store is the storage the sync needs; internal/store implements it.
type Store interface {
	// TryLockSync takes the cluster-wide sync lock without waiting; ok is
	// false when another sync holds it.
	TryLockSync(ctx context.Context) (unlock func(), ok bool, err error)
	// StartSyncRun records a running sync (and marks runs left "running"
	// by a crashed process as failed) and returns its id.
	StartSyncRun(ctx context.Context, start RunStart) (int64, error)
	// LoadSyncState reads the stored directory.
	LoadSyncState(ctx context.Context) (*State, error)
	// ApplySync applies plan and records rec for the run, in one
	// transaction, bumping the directory version (and the policy version
	// when rule groups were bound).
	ApplySync(ctx context.Context, runID int64, plan *Plan, rec RunRecord) error
	// FinishSyncRun records the outcome of a run that wrote nothing.
	FinishSyncRun(ctx context.Context, runID int64, rec RunRecord) error
}

// RunStart describes a sync as it starts.
type RunStart struct {
	StartedAt time.Time
	Full      bool
	DryRun    bool
	Actor     string
	Selection Selection
}

// RunRecord is the outcome of a run.
type RunRecord struct {
	Status     string
	FinishedAt time.Time
	Actor      string
	Counts     Counts
	Error      string
	// Full is true when every group's members were fetched (asked for, or
	// the first sync, which has nothing to be incremental against).
	Full bool
	// OktaAsOf is Okta's clock when the run started reading; the next
	// incremental sync asks for users changed since then.
	OktaAsOf time.Time
}

// Counts summarise a run; the JSON names are the monitoring contract of
// `groups sync -o json` (docs/sync.md).
type Counts struct {
	GroupsAdded        int   `json:"groups_added"`
	GroupsRemoved      int   `json:"groups_removed"`
	GroupsRenamed      int   `json:"groups_renamed"`
	MembershipsAdded   int   `json:"memberships_added"`
	MembershipsRemoved int   `json:"memberships_removed"`
	UsersAdded         int   `json:"users_added"`
	UsersRemoved       int   `json:"users_removed"`
	UsersChanged       int   `json:"users_changed"`
	GroupRulesChanged  int   `json:"group_rules_changed"`
	RuleGroupsBound    int   `json:"rule_groups_bound"`
	Groups             int   `json:"groups"`
	Memberships        int   `json:"memberships"`
	Users              int   `json:"users"`
	GroupsRefetched    int   `json:"groups_refetched"`
	APICalls           int64 `json:"api_calls"`
	RateLimited        int64 `json:"rate_limited"`
	RateLimitWaitMS    int64 `json:"rate_limit_wait_ms"`
}

// Result is what a sync did.
type Result struct {
	RunID  int64  `json:"run_id,omitempty"`
	Status string `json:"status"`
	// Full is true when every group's members were fetched: asked for
	// with --full, or the first sync.
	Full       bool      `json:"full"`
	DryRun     bool      `json:"dry_run"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	DurationMS int64     `json:"duration_ms"`
	Counts
	Error string `json:"error"`
	// Plan is the computed diff (nil when the sync failed before it).
	Plan *Plan `json:"-"`
}

// Config configures a Syncer.
type Config struct {
	// Source reads Okta; Store holds the directory. Both required.
	Source GroupSource
	Store  Store
	// Logger receives progress and warnings (default discard).
	Logger *slog.Logger
	// Selection picks the groups; groups outside it are removed.
	Selection Selection
	// Full refetches every group's members, not only those whose
	// lastMembershipUpdated moved.
	Full bool
	// DryRun computes and reports the diff without writing it.
	DryRun bool
	// MaxRemoval is the share (0..1) of stored groups, and separately of
	// memberships, a sync may remove; beyond it the sync stops without
	// writing unless Force. The zero value allows no removal at all; the
	// CLI default is DefaultMaxRemoval.
	MaxRemoval float64
	Force      bool
	// Concurrency is how many member listings run at once (default 4).
	Concurrency int
	// Actor is recorded with the run and the admin event.
	Actor string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Progress, when set, receives one-line progress messages (the CLI
	// passes them to a terminal's stderr).
	Progress func(msg string)
	// ChangedUsersOverlap is subtracted from the last run's Okta time when
	// asking for changed users, against clock granularity and Okta's
	// eventually consistent search (default 5m).
	ChangedUsersOverlap time.Duration
}

// Syncer runs syncs.
type Syncer struct {
	cfg    Config
	progMu sync.Mutex
}

// New validates cfg and returns a Syncer.
func New(cfg Config) (*Syncer, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("okta sync: no source")
	case cfg.Store == nil:
		return nil, errors.New("okta sync: no store")
	case !(cfg.MaxRemoval >= 0 && cfg.MaxRemoval <= 1): // NaN too: the guard compares against it
		return nil, fmt.Errorf("okta sync: max removal %v is not a share between 0 and 1", cfg.MaxRemoval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ChangedUsersOverlap == 0 {
		cfg.ChangedUsersOverlap = 5 * time.Minute
	}
	return &Syncer{cfg: cfg}, nil
}

func (s *Syncer) progress(format string, a ...any) {
	if s.cfg.Progress == nil {
		return
	}
	s.progMu.Lock()
	defer s.progMu.Unlock()
	s.cfg.Progress(fmt.Sprintf(format, a...))
}

// Run performs one sync. It returns ErrSyncRunning (status skipped) when
// another sync holds the lock, a *GuardError (status aborted) when the
// mass-removal guard stopped it, a *SelectionError when Okta refused the
// selection; any error means nothing in the directory was written. The
// Result is always non-nil.
func (s *Syncer) Run(ctx context.Context) (*Result, error) {
	c := s.cfg
	res := &Result{Status: RunRunning, Full: c.Full, DryRun: c.DryRun, StartedAt: c.Now().UTC()}
	unlock, ok, err := c.Store.TryLockSync(ctx)
	if err != nil {
		return s.done(res, RunFailed, err), err
	}
	if !ok {
		c.Logger.Info("another sync is running; nothing to do")
		return s.done(res, RunSkipped, ErrSyncRunning), ErrSyncRunning
	}
	defer unlock()
	res.RunID, err = c.Store.StartSyncRun(ctx, RunStart{StartedAt: res.StartedAt, Full: c.Full, DryRun: c.DryRun, Actor: c.Actor, Selection: c.Selection})
	if err != nil {
		return s.done(res, RunFailed, err), err
	}
	log := c.Logger.With("run_id", res.RunID)
	plan, asOf, err := s.plan(ctx, res)
	if err != nil {
		s.record(ctx, res, RunFailed, err, asOf)
		log.Error("okta sync failed; nothing written", "err", err)
		return res, err
	}
	res.Plan = plan
	if err := plan.check(c.MaxRemoval); err != nil {
		if !c.Force {
			s.record(ctx, res, RunAborted, err, asOf)
			log.Error("okta sync stopped by the mass-removal guard; nothing written", "err", err)
			return res, err
		}
		log.Warn("mass-removal guard overridden by --force", "err", err)
	}
	for _, n := range plan.Ambiguous {
		log.Warn("rule group name matches several synced groups; left unbound: an allow by it grants nobody and a deny by it denies each "+
			"until the rule names the group by id (see okproxy rules lint)", "group", n, "group_ids", strings.Join(plan.AmbiguousIDs(n), ","))
	}
	if c.DryRun {
		s.record(ctx, res, RunDryRun, nil, asOf)
		return res, nil
	}
	s.progress("applying the changes")
	rec := RunRecord{Status: RunOK, Actor: c.Actor, OktaAsOf: asOf, Full: res.Full}
	s.done(res, RunOK, nil)
	rec.FinishedAt, rec.Counts = res.FinishedAt, res.Counts
	if err := c.Store.ApplySync(ctx, res.RunID, plan, rec); err != nil {
		res.Status = RunRunning
		s.record(ctx, res, RunFailed, err, asOf)
		log.Error("okta sync failed to apply; nothing written", "err", err)
		return res, err
	}
	s.done(res, RunOK, nil) // the duration includes the commit
	log.Info("okta sync done", "status", res.Status, "groups_added", res.GroupsAdded, "groups_removed", res.GroupsRemoved,
		"groups_renamed", res.GroupsRenamed, "memberships_added", res.MembershipsAdded, "memberships_removed", res.MembershipsRemoved,
		"users_changed", res.UsersChanged, "api_calls", res.APICalls, "duration_ms", res.DurationMS)
	return res, nil
}

// done fills in the outcome fields of res.
func (s *Syncer) done(res *Result, status string, err error) *Result {
	res.Status = status
	res.FinishedAt = s.cfg.Now().UTC()
	res.DurationMS = res.FinishedAt.Sub(res.StartedAt).Milliseconds()
	if err != nil {
		res.Error = err.Error()
	}
	if st, ok := s.cfg.Source.(StatsReporter); ok {
		stats := st.Stats()
		res.APICalls, res.RateLimited, res.RateLimitWaitMS = stats.APICalls, stats.RateLimited, stats.RateLimitWait.Milliseconds()
	}
	return res
}

// record finishes the run record of a run that wrote nothing. It uses a
// context that survives cancellation, so an interrupted sync is still
// recorded as failed.
func (s *Syncer) record(ctx context.Context, res *Result, status string, err error, asOf time.Time) {
	s.done(res, status, err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rec := RunRecord{Status: status, FinishedAt: res.FinishedAt, Actor: s.cfg.Actor, Counts: res.Counts, Error: res.Error, OktaAsOf: asOf, Full: res.Full}
	if ferr := s.cfg.Store.FinishSyncRun(ctx, res.RunID, rec); ferr != nil {
		s.cfg.Logger.Error("record sync run", "run_id", res.RunID, "err", ferr)
	}
}

// plan reads Okta and computes the diff against the store.
func (s *Syncer) plan(ctx context.Context, res *Result) (*Plan, time.Time, error) {
	c := s.cfg
	asOf := time.Time{}
	cur, err := c.Store.LoadSyncState(ctx)
	if err != nil {
		return nil, asOf, err
	}
	s.progress("listing groups")
	groups, err := c.Source.ListGroups(ctx, c.Selection)
	if err != nil {
		return nil, asOf, err
	}
	asOf = res.StartedAt
	if st, ok := c.Source.(StatsReporter); ok && !st.Stats().ServerTime.IsZero() {
		asOf = st.Stats().ServerTime.UTC()
	}
	want := &desired{groups: map[string]Group{}, members: map[string]map[string]bool{}, users: map[string]User{}, rules: map[string]GroupRule{}}
	for _, g := range groups {
		want.groups[g.ID] = g
	}
	incremental := !c.Full && cur.LastOK != nil
	res.Full = !incremental
	fresh, err := s.readMembers(ctx, cur, want, incremental, res)
	if err != nil {
		return nil, asOf, err
	}
	s.progress("listing group rules")
	rules, err := c.Source.ListGroupRules(ctx)
	if err != nil {
		return nil, asOf, err
	}
	for _, r := range rules {
		want.rules[r.ID] = r
	}
	if incremental {
		// A user's deactivation or profile change does not move any
		// group's lastMembershipUpdated: ask for changed users explicitly.
		since := cur.LastOK.OktaAsOf
		if since.IsZero() {
			since = cur.LastOK.StartedAt
		}
		s.progress("listing users changed since %s", since.Format(time.RFC3339))
		us, err := c.Source.ListUsersUpdatedSince(ctx, since.Add(-c.ChangedUsersOverlap))
		if err != nil {
			return nil, asOf, err
		}
		for _, u := range us {
			fresh[u.ID] = u
		}
	}
	if err := assembleUsers(cur, want, fresh); err != nil {
		return nil, asOf, err
	}
	p := buildPlan(cur, want)
	s.count(res, p, want)
	return p, asOf, nil
}

// readMembers fills want.members: as stored for groups whose membership
// did not move (incremental mode), fetched for the others. It returns the
// users it read, by id. A group gone from Okta meanwhile is dropped.
func (s *Syncer) readMembers(ctx context.Context, cur *State, want *desired, incremental bool, res *Result) (map[string]User, error) {
	var changed []string
	for _, id := range sortedKeys(want.groups) {
		g, old := want.groups[id], cur.Groups[id]
		if !incremental || old.ID == "" || g.LastMembershipUpdated.IsZero() || !g.LastMembershipUpdated.Equal(old.LastMembershipUpdated) {
			changed = append(changed, id)
			continue
		}
		want.members[id] = cur.Members[id]
	}
	res.GroupsRefetched = len(changed)
	fetched, err := s.fetchMembers(ctx, changed)
	if err != nil {
		return nil, err
	}
	fresh := map[string]User{}
	for _, id := range changed {
		us, ok := fetched[id]
		if !ok {
			s.cfg.Logger.Warn("group disappeared from Okta during the sync; treating it as removed", "group_id", id)
			delete(want.groups, id)
			continue
		}
		set := make(map[string]bool, len(us))
		for _, u := range us {
			set[u.ID] = true
			fresh[u.ID] = u
		}
		want.members[id] = set
	}
	return fresh, nil
}

// assembleUsers fills want.users: every member, with fresh data where this
// run read some, else as stored; plus stored users who are in no synced
// group any more but are not ACTIVE — kept so the proxy can still refuse a
// deactivated user whose token (with its groups claim) has not expired.
func assembleUsers(cur *State, want *desired, fresh map[string]User) error {
	for gid, set := range want.members {
		for uid := range set {
			if _, done := want.users[uid]; done {
				continue
			}
			if u, ok := fresh[uid]; ok {
				want.users[uid] = u
			} else if u, ok := cur.Users[uid]; ok {
				want.users[uid] = u
			} else {
				return fmt.Errorf("stored membership of group %s refers to unknown user %s: run with --full", gid, uid)
			}
		}
	}
	logins := make(map[string]string, len(want.users))
	for id, u := range want.users {
		l := strings.ToLower(u.Login)
		if other, dup := logins[l]; dup {
			return fmt.Errorf("okta users %s and %s share the login %q", other, id, u.Login)
		}
		logins[l] = id
	}
	for id, u := range cur.Users {
		if _, in := want.users[id]; in {
			continue
		}
		if f, ok := fresh[id]; ok {
			u = f
		}
		if _, clash := logins[strings.ToLower(u.Login)]; u.Status != StatusActive && !clash {
			want.users[id] = u
		}
	}
	return nil
}

func (s *Syncer) count(res *Result, p *Plan, want *desired) {
	res.GroupsAdded, res.GroupsRemoved, res.GroupsRenamed = len(p.GroupsAdded), len(p.GroupsRemoved), len(p.GroupsRenamed)
	res.MembershipsAdded, res.MembershipsRemoved = len(p.MembershipsAdded), len(p.MembershipsRemoved)
	res.UsersAdded, res.UsersRemoved, res.UsersChanged = len(p.UsersAdded), len(p.UsersRemoved), len(p.UsersChanged)
	res.GroupRulesChanged = len(p.RulesUpserted) + len(p.RulesRemoved)
	res.RuleGroupsBound = len(p.Bindings)
	res.Groups, res.Users = len(want.groups), len(want.users)
	res.Memberships = 0
	for gid, m := range want.members {
		if _, ok := want.groups[gid]; ok {
			res.Memberships += len(m)
		}
	}
}

// fetchMembers lists the members of ids, Concurrency at a time. Groups
// that disappeared are left out of the result; any other error cancels the
// rest and fails the sync.
func (s *Syncer) fetchMembers(ctx context.Context, ids []string) (map[string][]User, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(map[string][]User, len(ids))
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	work := make(chan string)
	for range min(s.cfg.Concurrency, max(len(ids), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				us, err := s.cfg.Source.ListMembers(ctx, id)
				mu.Lock()
				switch {
				case errors.Is(err, ErrGroupNotFound):
				case err != nil:
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				default:
					out[id] = us
				}
				done++
				n := done
				mu.Unlock()
				if n%25 == 0 || n == len(ids) {
					s.progress("fetched members of %d/%d groups", n, len(ids))
				}
			}
		}()
	}
feed:
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
