package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/okta"
	"github.com/okproxy/okproxy/internal/policy"
)

// OktaGroupSummary is a synced group with its member counts, for `groups
// list`.
type OktaGroupSummary struct {
	okta.Group
	// Members counts ACTIVE members only: the others are granted nothing.
	Members      int       `json:"members"`
	MembersTotal int       `json:"members_total"`
	LastSynced   time.Time `json:"last_synced"`
}

// ListOktaGroups returns every synced group, by name.
func (s *Store) ListOktaGroups(ctx context.Context) ([]OktaGroupSummary, error) {
	rows, err := s.pool.Query(ctx, `SELECT g.id, g.name, g.type, g.description, g.last_updated, g.last_membership_updated, g.synced_at,
			count(u.id) FILTER (WHERE u.status = 'ACTIVE'), count(m.user_id)
		FROM okta_groups g
		LEFT JOIN okta_memberships m ON m.group_id = g.id
		LEFT JOIN okta_users u ON u.id = m.user_id
		GROUP BY g.id ORDER BY lower(g.name), g.id`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	var out []OktaGroupSummary
	var g OktaGroupSummary
	var lu, lmu *time.Time
	_, err = pgx.ForEachRow(rows, []any{&g.ID, &g.Name, &g.Type, &g.Description, &lu, &lmu, &g.LastSynced, &g.Members, &g.MembersTotal}, func() error {
		g.LastUpdated, g.LastMembershipUpdated, g.LastSynced = utc(lu), utc(lmu), g.LastSynced.UTC()
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return out, nil
}

// SyncRun is one recorded `groups sync`.
type SyncRun struct {
	ID         int64           `json:"id"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Status     string          `json:"status"`
	Full       bool            `json:"full"`
	Actor      string          `json:"actor"`
	Counts     json.RawMessage `json:"counts"`
	Error      string          `json:"error,omitempty"`
}

// LatestSyncRun returns the newest run with the given status (any real
// run — not a dry run — when status is empty), or ErrNotFound.
func (s *Store) LatestSyncRun(ctx context.Context, status string) (SyncRun, error) {
	var r SyncRun
	var counts []byte
	err := s.pool.QueryRow(ctx, `SELECT id, started_at, finished_at, status, full_sync, actor, counts, error FROM sync_runs
		WHERE ($1 = '' AND status <> 'dry_run') OR status = $1 ORDER BY id DESC LIMIT 1`, status).
		Scan(&r.ID, &r.StartedAt, &r.FinishedAt, &r.Status, &r.Full, &r.Actor, &counts, &r.Error)
	if err != nil {
		return SyncRun{}, notFound(err, "sync run")
	}
	r.StartedAt = r.StartedAt.UTC()
	if r.FinishedAt != nil {
		t := r.FinishedAt.UTC()
		r.FinishedAt = &t
	}
	r.Counts = counts
	return r, nil
}

// FindOktaGroup returns the synced group with that id, or the one whose
// name matches case-insensitively; several matches are an
// *AmbiguousGroupError, none ErrNotFound.
func (s *Store) FindOktaGroup(ctx context.Context, nameOrID string) (okta.Group, time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, type, description, last_updated, last_membership_updated, synced_at
		FROM okta_groups WHERE id = $1 OR lower(name) = lower($1) ORDER BY (id = $1) DESC, id`, nameOrID)
	if err != nil {
		return okta.Group{}, time.Time{}, fmt.Errorf("find group: %w", err)
	}
	type found struct {
		g      okta.Group
		synced time.Time
	}
	var ms []found
	var f found
	var lu, lmu *time.Time
	_, err = pgx.ForEachRow(rows, []any{&f.g.ID, &f.g.Name, &f.g.Type, &f.g.Description, &lu, &lmu, &f.synced}, func() error {
		f.g.LastUpdated, f.g.LastMembershipUpdated, f.synced = utc(lu), utc(lmu), f.synced.UTC()
		ms = append(ms, f)
		return nil
	})
	switch {
	case err != nil:
		return okta.Group{}, time.Time{}, fmt.Errorf("find group: %w", err)
	case len(ms) == 0:
		return okta.Group{}, time.Time{}, fmt.Errorf("group %q: %w", nameOrID, ErrNotFound)
	case ms[0].g.ID == nameOrID || len(ms) == 1:
		return ms[0].g, ms[0].synced, nil
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.g.ID
	}
	return okta.Group{}, time.Time{}, &AmbiguousGroupError{Name: nameOrID, IDs: ids}
}

// OktaGroupMembers returns a group's members, every status, each with all
// of their groups (group rules may test membership of other groups).
func (s *Store) OktaGroupMembers(ctx context.Context, groupID string) ([]directory.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT u.id, u.login, u.email, u.status, u.first_name, u.last_name, u.department, u.title,
			coalesce(array_agg(g.id ORDER BY g.name) FILTER (WHERE g.id IS NOT NULL), '{}'),
			coalesce(array_agg(g.name ORDER BY g.name) FILTER (WHERE g.id IS NOT NULL), '{}')
		FROM okta_memberships this
		JOIN okta_users u ON u.id = this.user_id
		LEFT JOIN okta_memberships m ON m.user_id = u.id
		LEFT JOIN okta_groups g ON g.id = m.group_id
		WHERE this.group_id = $1
		GROUP BY u.id ORDER BY lower(u.login)`, groupID)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []directory.User
	var u directory.User
	var ids, names []string
	_, err = pgx.ForEachRow(rows, []any{&u.ID, &u.Login, &u.Email, &u.Status, &u.FirstName, &u.LastName, &u.Department, &u.Title, &ids, &names}, func() error {
		u.Groups = make([]policy.GroupRef, len(ids))
		for i := range ids {
			u.Groups[i] = policy.GroupRef{ID: ids[i], Name: names[i]}
		}
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

// ListOktaGroupRules returns the synced Okta group rules.
func (s *Store) ListOktaGroupRules(ctx context.Context) ([]okta.GroupRule, error) {
	return queryGroupRules(ctx, s.pool, ``)
}

// RuleGroupUse is an okproxy rule that names a group.
type RuleGroupUse struct {
	Rule    string `json:"rule"`
	Kind    string `json:"kind"` // allow or deny
	Enabled bool   `json:"enabled"`
	// Bound is true when the rule holds the group's id (renames are
	// followed), false when it still names the group by name.
	Bound bool `json:"bound"`
}

// RulesUsingGroup lists the okproxy rules that reference a group, by id or
// (while unbound) by name.
func (s *Store) RulesUsingGroup(ctx context.Context, id, name string) ([]RuleGroupUse, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT r.name, g.kind, r.enabled, g.group_id IS NOT NULL
		FROM rule_groups g JOIN rules r ON r.id = g.rule_id
		WHERE g.group_id = $1 OR (g.group_id IS NULL AND lower(g.group_name) = lower($2))
		ORDER BY r.name, g.kind`, id, name)
	if err != nil {
		return nil, fmt.Errorf("rules using group: %w", err)
	}
	var out []RuleGroupUse
	var u RuleGroupUse
	_, err = pgx.ForEachRow(rows, []any{&u.Rule, &u.Kind, &u.Enabled, &u.Bound}, func() error {
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rules using group: %w", err)
	}
	return out, nil
}

// UserSyncedAt returns when a synced user was last confirmed by a sync.
func (s *Store) UserSyncedAt(ctx context.Context, id string) (time.Time, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, `SELECT synced_at FROM okta_users WHERE id = $1`, id).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return t.UTC(), err
}
