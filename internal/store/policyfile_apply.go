package store

import (
	"cmp"
	"context"
	"fmt"
	"github.com/okproxy/okproxy/internal/duration"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/policyfile"
	"github.com/okproxy/okproxy/internal/quota"
)

// ApplyOptions configures ApplyPolicy.
type ApplyOptions struct {
	// Diff says what the document is authoritative for (--prune, and which
	// sections it has).
	Diff policyfile.DiffOptions
	// Actor is recorded with the policy version and every admin event.
	Actor string
	// Action describes the change in policy_versions, e.g. "rules apply -f rules.yaml".
	Action string
	// Verb names the admin events: "apply" gives rule.apply and quota.apply
	// (before/after tell an add from a change or a remove).
	Verb string
	// DryRun computes the plan without writing anything.
	DryRun bool
}

// ApplyResult is what ApplyPolicy did.
type ApplyResult struct {
	Plan policyfile.Plan
	// Version is the new policy version when something was written, else
	// the current one.
	Version int64
	// Applied is true when a new version was written.
	Applied bool
}

// ApplyPolicy makes the stored policy match desired: in one transaction, as
// one policy version, with one admin event per changed object. The policy
// version row is locked first, so the plan is computed against exactly the
// state it is applied to. A plan with nothing to do writes nothing and bumps
// no version, which is what makes apply idempotent.
//
// Rules are written with COPY and pipelined batches, never a statement per
// rule round trip: 10,000 rules apply in a few seconds.
func (s *Store) ApplyPolicy(ctx context.Context, desired policyfile.Document, o ApplyOptions) (ApplyResult, error) {
	var res ApplyResult
	if o.DryRun {
		cur, v, err := s.PolicyDocument(ctx)
		if err != nil {
			return res, err
		}
		return ApplyResult{Plan: policyfile.Diff(cur, desired, o.Diff), Version: v}, nil
	}
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		v, err := policyVersion(ctx, tx, true)
		if err != nil {
			return err
		}
		res.Version = v
		cur, err := loadDocument(ctx, tx)
		if err != nil {
			return err
		}
		res.Plan = policyfile.Diff(cur, desired, o.Diff)
		if res.Plan.Empty() {
			return nil
		}
		if err := writeRules(ctx, tx, res.Plan.Rules); err != nil {
			return err
		}
		if err := writeQuotas(ctx, tx, res.Plan.Quotas); err != nil {
			return err
		}
		if res.Version, err = bumpPolicy(ctx, tx, o.Actor, o.Action); err != nil {
			return err
		}
		res.Applied = true
		return writeEvents(ctx, tx, res.Plan, o, res.Version)
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply policy: %w", err)
	}
	return res, nil
}

func ruleArgs(r *policyfile.Rule) []any {
	return []any{r.Name, r.Path, nonNil(r.Methods), nonNil(r.Hosts), r.Public, r.AllowAuthenticated,
		nonNil(r.Scopes), r.Description, r.Enabled, cmp.Or(r.Mode, string(policy.ModeEnforce))}
}

func writeRules(ctx context.Context, tx pgx.Tx, changes []policyfile.RuleChange) error {
	var removed, added []string
	var addRows [][]any
	withGroups := map[string]*policyfile.Rule{}
	batch := &pgx.Batch{}
	var updated []string
	for _, c := range changes {
		switch c.Op {
		case policyfile.OpRemove:
			removed = append(removed, c.Name)
		case policyfile.OpAdd:
			added = append(added, c.Name)
			addRows = append(addRows, ruleArgs(c.After))
			withGroups[c.Name] = c.After
		case policyfile.OpChange:
			updated = append(updated, c.Name)
			withGroups[c.Name] = c.After
			batch.Queue(`UPDATE rules SET path = $2, methods = $3, hosts = $4, public = $5, allow_authenticated = $6,
				scopes = $7, description = $8, enabled = $9, mode = $10, updated_at = now() WHERE name = $1`, ruleArgs(c.After)...)
		}
	}
	if len(removed) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE name = ANY($1)`, removed); err != nil {
			return fmt.Errorf("remove rules: %w", err)
		}
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("update rules: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rule_groups WHERE rule_id IN (SELECT id FROM rules WHERE name = ANY($1))`, updated); err != nil {
			return fmt.Errorf("update rule groups: %w", err)
		}
	}
	if len(addRows) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"rules"},
			[]string{"name", "path", "methods", "hosts", "public", "allow_authenticated", "scopes", "description", "enabled", "mode"},
			pgx.CopyFromRows(addRows))
		if isUniqueViolation(err) {
			return fmt.Errorf("add rules: %w (changed concurrently?)", ErrExists)
		}
		if err != nil {
			return fmt.Errorf("add rules: %w", err)
		}
	}
	if len(withGroups) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT id, name FROM rules WHERE name = ANY($1)`, append(added, updated...))
	if err != nil {
		return fmt.Errorf("read rule ids: %w", err)
	}
	var groupRows [][]any
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			rows.Close()
			return err
		}
		r := withGroups[name]
		for kind, gs := range map[string][]policyfile.Group{"allow": r.Allow, "deny": r.Deny} {
			for i, g := range gs {
				var gid any
				if g.ID != "" {
					gid = g.ID
				}
				groupRows = append(groupRows, []any{id, kind, int32(i), gid, cmp.Or(g.Name, g.ID)})
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rule ids: %w", err)
	}
	if len(groupRows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"rule_groups"}, []string{"rule_id", "kind", "position", "group_id", "group_name"},
			pgx.CopyFromRows(groupRows)); err != nil {
			return fmt.Errorf("write rule groups: %w", err)
		}
	}
	return nil
}

func quotaArgs(q *policyfile.Quota) ([]any, error) {
	d, err := duration.Parse(q.Window)
	if err != nil {
		return nil, fmt.Errorf("quota %q: window: %w", q.Name, err)
	}
	var gid any
	if q.Group.ID != "" {
		gid = q.Group.ID
	}
	return []any{q.Name, gid, cmp.Or(q.Group.Name, q.Group.ID), q.Limit, int64(d / time.Second),
		cmp.Or(q.Path, policyfile.DefaultQuotaPath), nonNil(q.Methods), cmp.Or(q.Per, policyfile.PerUser)}, nil
}

// writeQuotas changes quotas in place (UPDATE, not delete and re-add) so
// that their ids, and with them the current windows' counts, survive.
func writeQuotas(ctx context.Context, tx pgx.Tx, changes []policyfile.QuotaChange) error {
	batch := &pgx.Batch{}
	for _, c := range changes {
		switch c.Op {
		case policyfile.OpRemove:
			batch.Queue(`DELETE FROM quotas WHERE name = $1`, c.Name)
		case policyfile.OpAdd:
			args, err := quotaArgs(c.After)
			if err != nil {
				return err
			}
			batch.Queue(`INSERT INTO quotas (name, group_id, group_name, limit_count, window_seconds, path, methods, per)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, args...)
		case policyfile.OpChange:
			args, err := quotaArgs(c.After)
			if err != nil {
				return err
			}
			batch.Queue(`UPDATE quotas SET group_id = $2, group_name = $3, limit_count = $4, window_seconds = $5,
				path = $6, methods = $7, per = $8, updated_at = now() WHERE name = $1`, args...)
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("write quotas: %w", err)
	}
	return nil
}

// writeEvents records one admin event per added, changed or removed object,
// with before/after in the shapes `rules add` and `quotas add` record
// (policy.Rule, quota.Quota), so that history and audit admin read them alike.
func writeEvents(ctx context.Context, tx pgx.Tx, p policyfile.Plan, o ApplyOptions, version int64) error {
	var rows [][]any
	add := func(kind, name string, before, after any) error {
		b, err := marshalEvent(before)
		if err != nil {
			return err
		}
		a, err := marshalEvent(after)
		if err != nil {
			return err
		}
		rows = append(rows, []any{o.Actor, kind + "." + o.Verb, kind, name, b, a, version})
		return nil
	}
	ruleValue := func(r *policyfile.Rule) any {
		if r == nil {
			return nil
		}
		pr := r.Policy()
		pr.Normalize()
		return pr
	}
	// Quota events carry quota.Quota, as `quotas add` and `quotas rm` record them.
	quotaValue := func(q *policyfile.Quota) any {
		if q == nil {
			return nil
		}
		d, _ := duration.Parse(q.Window) // validated
		return quota.Quota{Name: q.Name, Group: policy.GroupRef{ID: q.Group.ID, Name: q.Group.Name}, Limit: q.Limit,
			WindowSeconds: int64(d / time.Second), Path: q.Path, Methods: q.Methods, Per: quota.Per(q.Per)}
	}
	for _, c := range p.Rules {
		if c.Op == policyfile.OpKeep {
			continue
		}
		if err := add("rule", c.Name, ruleValue(c.Before), ruleValue(c.After)); err != nil {
			return err
		}
	}
	for _, c := range p.Quotas {
		if c.Op == policyfile.OpKeep {
			continue
		}
		if err := add("quota", c.Name, quotaValue(c.Before), quotaValue(c.After)); err != nil {
			return err
		}
	}
	if len(rows) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"admin_events"},
		[]string{"actor", "action", "object_type", "object_name", "before", "after", "policy_version"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("record admin events: %w", err)
	}
	return nil
}
