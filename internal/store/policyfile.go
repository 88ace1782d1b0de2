package store

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/okproxy/okproxy/internal/duration"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/lint"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/policyfile"
)

// PolicyDocument returns the stored policy, rules and quotas, with the
// policy version it is, read in one repeatable-read transaction.
func (s *Store) PolicyDocument(ctx context.Context) (policyfile.Document, int64, error) {
	var doc policyfile.Document
	var v int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if v, err = policyVersion(ctx, tx, false); err != nil {
			return err
		}
		doc, err = loadDocument(ctx, tx)
		return err
	})
	if err != nil {
		return policyfile.Document{}, 0, fmt.Errorf("load policy: %w", err)
	}
	return doc, v, nil
}

// policyVersion reads the current policy version, locking it when lock is
// set: apply then serialises with every other policy change, which all bump
// that same row, so the diff it computes is the diff it writes.
func policyVersion(ctx context.Context, q querier, lock bool) (int64, error) {
	sql := `SELECT version FROM versions WHERE name = 'policy'`
	if lock {
		sql += ` FOR UPDATE`
	}
	var v int64
	if err := q.QueryRow(ctx, sql).Scan(&v); err != nil {
		return 0, fmt.Errorf("read policy version: %w", err)
	}
	return v, nil
}

func loadDocument(ctx context.Context, q querier) (policyfile.Document, error) {
	doc := policyfile.Document{APIVersion: policyfile.APIVersion, Kind: policyfile.Kind}
	rs, err := listRules(ctx, q, "")
	if err != nil {
		return doc, err
	}
	doc.Rules = make([]policyfile.Rule, len(rs))
	for i, r := range rs {
		doc.Rules[i] = policyfile.FromPolicy(r.Rule)
	}
	qs, err := loadQuotas(ctx, q)
	if err != nil {
		return doc, err
	}
	doc.Quotas = qs
	doc.Normalize()
	return doc, nil
}

// loadQuotas reads quotas through the quota engineer's listQuotas (current
// group names, like every list) in file form.
func loadQuotas(ctx context.Context, q querier) ([]policyfile.Quota, error) {
	qs, err := listQuotas(ctx, q, "")
	if err != nil {
		return nil, err
	}
	out := make([]policyfile.Quota, len(qs))
	for i, x := range qs {
		out[i] = policyfile.Quota{
			Name:    x.Name,
			Group:   policyfile.Group{Name: x.Group.Name, ID: x.Group.ID},
			Limit:   x.Limit,
			Window:  duration.Format(time.Duration(x.WindowSeconds) * time.Second),
			Path:    x.Path,
			Methods: x.Methods,
			Per:     string(x.Per),
		}
		out[i].Normalize()
	}
	return out, nil
}

// loadGroups reads the synced groups and whether a sync ever completed.
func loadGroups(ctx context.Context, q querier) ([]policyfile.Group, bool, error) {
	var synced bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sync_runs WHERE status = 'ok')`).Scan(&synced); err != nil {
		return nil, false, fmt.Errorf("read sync state: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT id, name FROM okta_groups ORDER BY id`)
	if err != nil {
		return nil, false, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var out []policyfile.Group
	for rows.Next() {
		var g policyfile.Group
		if err := rows.Scan(&g.ID, &g.Name); err != nil {
			return nil, false, fmt.Errorf("list groups: %w", err)
		}
		out = append(out, g)
	}
	// Groups may be present from a sync that is still recorded as running
	// (or from tests); their presence counts as synced for resolution.
	return out, synced || len(out) > 0, rows.Err()
}

// PolicyDirectory returns the synced groups, indexed for resolving the
// groups of a policy file in one pass instead of a query per reference.
func (s *Store) PolicyDirectory(ctx context.Context) (*policyfile.Directory, error) {
	gs, synced, err := loadGroups(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	return policyfile.NewDirectory(synced, gs), nil
}

// LintInput gathers what `rules lint` checks: rules with their timestamps
// and the group names stored with them, quotas, and the synced directory.
func (s *Store) LintInput(ctx context.Context) (lint.Input, error) {
	var in lint.Input
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rs, err := listRules(ctx, tx, "")
		if err != nil {
			return err
		}
		// listRules shows current names; lint needs the stored ones to see renames.
		stored := map[[3]string]string{}
		rows, err := tx.Query(ctx, `SELECT r.name, g.kind, g.group_id, g.group_name FROM rule_groups g
			JOIN rules r ON r.id = g.rule_id WHERE g.group_id IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("list rule groups: %w", err)
		}
		for rows.Next() {
			var k [3]string
			var name string
			if err := rows.Scan(&k[0], &k[1], &k[2], &name); err != nil {
				rows.Close()
				return err
			}
			stored[k] = name
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		restore := func(rule, kind string, refs []policy.GroupRef) {
			for i, g := range refs {
				if n, ok := stored[[3]string{rule, kind, g.ID}]; ok && g.ID != "" {
					refs[i].Name = n
				}
			}
		}
		in.Rules = make([]lint.Rule, len(rs))
		for i, r := range rs {
			restore(r.Name, "allow", r.Allow)
			restore(r.Name, "deny", r.Deny)
			in.Rules[i] = lint.Rule{Rule: r.Rule, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
		}
		qs, err := loadQuotas(ctx, tx)
		if err != nil {
			return err
		}
		storedQuota := map[string]string{}
		rows, err = tx.Query(ctx, `SELECT name, group_name FROM quotas WHERE group_id IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("list quota groups: %w", err)
		}
		for rows.Next() {
			var name, group string
			if err := rows.Scan(&name, &group); err != nil {
				rows.Close()
				return err
			}
			storedQuota[name] = group
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, q := range qs {
			g := policy.GroupRef{ID: q.Group.ID, Name: q.Group.Name}
			if n, ok := storedQuota[q.Name]; ok && g.ID != "" {
				g.Name = n
			}
			in.Quotas = append(in.Quotas, lint.Quota{Name: q.Name, Group: g, Path: q.Path, Methods: q.Methods})
		}
		gs, _, err := loadGroups(ctx, tx)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sync_runs WHERE status = 'ok')`).Scan(&in.Directory.Synced); err != nil {
			return err
		}
		in.Directory.Groups = make(map[string]string, len(gs))
		for _, g := range gs {
			in.Directory.Groups[g.ID] = g.Name
		}
		return nil
	})
	if err != nil {
		return lint.Input{}, fmt.Errorf("load lint input: %w", err)
	}
	return in, nil
}

// RuleNames lists rule names for shell completion.
func (s *Store) RuleNames(ctx context.Context) ([]string, error) {
	return names(ctx, s.pool, `SELECT name FROM rules ORDER BY name`)
}

// GroupNames lists the names rules can use for shell completion: synced
// groups and the names of groups rules already name but Okta does not have.
func (s *Store) GroupNames(ctx context.Context) ([]string, error) {
	return names(ctx, s.pool, `SELECT name FROM okta_groups
		UNION SELECT group_name FROM rule_groups WHERE group_id IS NULL ORDER BY 1`)
}

func names(ctx context.Context, q querier, sql string) ([]string, error) {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// marshalEvent renders an admin event's before/after value; nil stays NULL.
func marshalEvent(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}
