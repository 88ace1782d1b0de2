package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/okta"
)

// ApplySync applies a sync plan, bumps the directory version (the trigger
// NOTIFYs replicas) and records the run as rec, in one transaction: a
// failure anywhere leaves the previous directory as it was.
// Removals go first so that a login moving from a removed user to a new
// one does not trip the unique index. Rows are written in bulk through
// unnest, so a first sync of thousands of users is a handful of
// statements.
func (s *Store) ApplySync(ctx context.Context, runID int64, p *okta.Plan, rec okta.RunRecord) error {
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if err := applyRemovals(ctx, tx, p); err != nil {
			return err
		}
		if err := upsertUsers(ctx, tx, append(p.UsersAdded, changedUsers(p)...)); err != nil {
			return err
		}
		if err := upsertGroups(ctx, tx, p.GroupsUpserted); err != nil {
			return err
		}
		if len(p.MembershipsAdded) > 0 {
			gs, us := membershipColumns(p.MembershipsAdded)
			if _, err := tx.Exec(ctx, `INSERT INTO okta_memberships (group_id, user_id)
				SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, gs, us); err != nil {
				return fmt.Errorf("add memberships: %w", err)
			}
		}
		// Everything left in the directory was confirmed by this sync.
		if _, err := tx.Exec(ctx, `UPDATE okta_groups SET synced_at = $1`, rec.FinishedAt); err != nil {
			return fmt.Errorf("stamp groups: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE okta_users SET synced_at = $1`, rec.FinishedAt); err != nil {
			return fmt.Errorf("stamp users: %w", err)
		}
		if err := applyGroupRules(ctx, tx, p); err != nil {
			return err
		}
		bound, err := applyBindings(ctx, tx, p.Bindings, rec.Actor)
		if err != nil {
			return err
		}
		rec.Counts.RuleGroupsBound = bound
		// Bumped on every successful sync, changes or not: replicas reload
		// and so also learn that the directory is fresh.
		if _, err := bumpVersion(ctx, tx, "directory"); err != nil {
			return err
		}
		if !p.Empty() {
			if err := adminEvent(ctx, tx, rec.Actor, "groups.sync", "directory", "okta", nil, rec.Counts, 0); err != nil {
				return err
			}
		}
		return finishRun(ctx, tx, runID, rec)
	})
	if err != nil {
		return fmt.Errorf("apply sync: %w", err)
	}
	return nil
}

func changedUsers(p *okta.Plan) []okta.User {
	out := make([]okta.User, len(p.UsersChanged))
	for i, c := range p.UsersChanged {
		out[i] = c.After
	}
	return out
}

func membershipColumns(ms []okta.Membership) (gs, us []string) {
	gs, us = make([]string, len(ms)), make([]string, len(ms))
	for i, m := range ms {
		gs[i], us[i] = m.GroupID, m.UserID
	}
	return gs, us
}

func applyRemovals(ctx context.Context, tx pgx.Tx, p *okta.Plan) error {
	if len(p.MembershipsRemoved) > 0 {
		gs, us := membershipColumns(p.MembershipsRemoved)
		if _, err := tx.Exec(ctx, `DELETE FROM okta_memberships m USING unnest($1::text[], $2::text[]) AS d(g, u)
			WHERE m.group_id = d.g AND m.user_id = d.u`, gs, us); err != nil {
			return fmt.Errorf("remove memberships: %w", err)
		}
	}
	if len(p.GroupsRemoved) > 0 {
		ids := make([]string, len(p.GroupsRemoved))
		for i, g := range p.GroupsRemoved {
			ids[i] = g.ID
		}
		if _, err := tx.Exec(ctx, `DELETE FROM okta_groups WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("remove groups: %w", err)
		}
	}
	if len(p.UsersRemoved) > 0 {
		ids := make([]string, len(p.UsersRemoved))
		for i, u := range p.UsersRemoved {
			ids[i] = u.ID
		}
		if _, err := tx.Exec(ctx, `DELETE FROM okta_users WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("remove users: %w", err)
		}
	}
	return nil
}

func upsertUsers(ctx context.Context, tx pgx.Tx, us []okta.User) error {
	if len(us) == 0 {
		return nil
	}
	cols := make([][]string, 8)
	for _, u := range us {
		for i, v := range []string{u.ID, u.Login, u.Email, u.Status, u.FirstName, u.LastName, u.Department, u.Title} {
			cols[i] = append(cols[i], v)
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO okta_users (id, login, email, status, first_name, last_name, department, title)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
		ON CONFLICT (id) DO UPDATE SET login = EXCLUDED.login, email = EXCLUDED.email, status = EXCLUDED.status,
			first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
			department = EXCLUDED.department, title = EXCLUDED.title`,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
	if err != nil {
		return fmt.Errorf("write users: %w", err)
	}
	return nil
}

func upsertGroups(ctx context.Context, tx pgx.Tx, gs []okta.Group) error {
	if len(gs) == 0 {
		return nil
	}
	var ids, names, types, descs []string
	var lus, lmus []*time.Time
	for _, g := range gs {
		ids, names, types, descs = append(ids, g.ID), append(names, g.Name), append(types, g.Type), append(descs, g.Description)
		lus, lmus = append(lus, nullTime(g.LastUpdated)), append(lmus, nullTime(g.LastMembershipUpdated))
	}
	_, err := tx.Exec(ctx, `INSERT INTO okta_groups (id, name, type, description, last_updated, last_membership_updated)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type, description = EXCLUDED.description,
			last_updated = EXCLUDED.last_updated, last_membership_updated = EXCLUDED.last_membership_updated`,
		ids, names, types, descs, lus, lmus)
	if err != nil {
		return fmt.Errorf("write groups: %w", err)
	}
	return nil
}

func applyGroupRules(ctx context.Context, tx pgx.Tx, p *okta.Plan) error {
	if len(p.RulesRemoved) > 0 {
		ids := make([]string, len(p.RulesRemoved))
		for i, r := range p.RulesRemoved {
			ids[i] = r.ID
		}
		if _, err := tx.Exec(ctx, `DELETE FROM okta_group_rules WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("remove group rules: %w", err)
		}
	}
	for _, r := range p.RulesUpserted {
		gids := r.GroupIDs
		if gids == nil {
			gids = []string{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO okta_group_rules (id, name, status, expression, group_ids, synced_at)
			VALUES ($1, $2, $3, $4, $5, now())
			ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, status = EXCLUDED.status,
				expression = EXCLUDED.expression, group_ids = EXCLUDED.group_ids, synced_at = now()`,
			r.ID, r.Name, r.Status, r.Expression, gids); err != nil {
			return fmt.Errorf("write group rule %s: %w", r.ID, err)
		}
	}
	return nil
}

// applyBindings binds rule group references stored by name to the group
// ids the sync found, as one policy version, with an admin event per
// binding. A reference changed since the plan was computed is skipped.
func applyBindings(ctx context.Context, tx pgx.Tx, bs []okta.Binding, actor string) (int, error) {
	var done []okta.Binding
	for _, b := range bs {
		tag, err := tx.Exec(ctx, `UPDATE rule_groups SET group_id = $1
			WHERE rule_id = $2 AND kind = $3 AND position = $4 AND group_id IS NULL AND group_name = $5`,
			b.GroupID, b.RuleID, b.Kind, b.Position, b.GroupName)
		if err != nil {
			return 0, fmt.Errorf("bind rule %s group %q: %w", b.Rule, b.GroupName, err)
		}
		if tag.RowsAffected() == 1 {
			done = append(done, b)
		}
	}
	if len(done) == 0 {
		return 0, nil
	}
	v, err := bumpPolicy(ctx, tx, actor, fmt.Sprintf("groups sync: bound %d rule group reference(s)", len(done)))
	if err != nil {
		return 0, err
	}
	for _, b := range done {
		before := map[string]string{"kind": b.Kind, "group_name": b.GroupName}
		after := map[string]string{"kind": b.Kind, "group_name": b.GroupName, "group_id": b.GroupID}
		if err := adminEvent(ctx, tx, actor, "rule.bind_group", "rule", b.Rule, before, after, v); err != nil {
			return 0, err
		}
	}
	return len(done), nil
}
