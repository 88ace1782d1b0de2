package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/okproxy/okproxy/internal/quota"
)

// Quota definitions: the CLI's add/list/show/rm and the limiter's load.
// Budgets (leases, reports, usage) are in quota_lease.go.

const quotaColumns = `q.id, q.name, q.group_id, coalesce(o.name, q.group_name), q.limit_count, q.window_seconds,
	q.path, q.methods, q.per, q.created_at`

// listQuotas returns quotas ordered by name, all or the one named, with
// group names as the directory currently knows them.
func listQuotas(ctx context.Context, q querier, name string) ([]quota.Quota, error) {
	sql := `SELECT ` + quotaColumns + ` FROM quotas q LEFT JOIN okta_groups o ON o.id = q.group_id`
	var args []any
	if name != "" {
		sql += ` WHERE q.name = $1`
		args = append(args, name)
	}
	rows, err := q.Query(ctx, sql+` ORDER BY q.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	defer rows.Close()
	out := []quota.Quota{}
	for rows.Next() {
		var r quota.Quota
		var gid *string
		var per string
		if err := rows.Scan(&r.ID, &r.Name, &gid, &r.Group.Name, &r.Limit, &r.WindowSeconds, &r.Path, &r.Methods, &per, &r.CreatedAt); err != nil {
			return nil, fmt.Errorf("list quotas: %w", err)
		}
		if gid != nil {
			r.Group.ID = *gid
		}
		r.Per = quota.Per(per)
		if len(r.Methods) == 0 {
			r.Methods = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	return out, nil
}

// ListQuotas returns every quota ordered by name.
func (s *Store) ListQuotas(ctx context.Context) ([]quota.Quota, error) {
	return listQuotas(ctx, s.pool, "")
}

// GetQuota returns one quota or ErrNotFound.
func (s *Store) GetQuota(ctx context.Context, name string) (quota.Quota, error) {
	qs, err := listQuotas(ctx, s.pool, name)
	if err != nil {
		return quota.Quota{}, err
	}
	if len(qs) == 0 {
		return quota.Quota{}, fmt.Errorf("quota %q: %w", name, ErrNotFound)
	}
	return qs[0], nil
}

// AddQuota stores a new quota (validated, groups resolved by the caller) as
// one policy version, so running replicas reload their quota sets.
func (s *Store) AddQuota(ctx context.Context, q quota.Quota, actor string) (int64, error) {
	var v int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		var gid *string
		if q.Group.ID != "" {
			gid = &q.Group.ID
		}
		err := tx.QueryRow(ctx, `INSERT INTO quotas (name, group_id, group_name, limit_count, window_seconds, path, methods, per)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, created_at`,
			q.Name, gid, q.Group.String(), q.Limit, q.WindowSeconds, q.Path, nonNil(q.Methods), string(q.Per)).Scan(&q.ID, &q.CreatedAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("quota %q: %w", q.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("insert quota %q: %w", q.Name, err)
		}
		if v, err = bumpPolicy(ctx, tx, actor, "quotas add "+q.Name); err != nil {
			return err
		}
		return adminEvent(ctx, tx, actor, "quota.add", "quota", q.Name, nil, q, v)
	})
	return v, err
}

// RemoveQuota deletes a quota, and with it its counts, as one policy version.
func (s *Store) RemoveQuota(ctx context.Context, name, actor string) (int64, error) {
	var v int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		before, err := listQuotas(ctx, tx, name)
		if err != nil {
			return err
		}
		if len(before) == 0 {
			return fmt.Errorf("quota %q: %w", name, ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM quotas WHERE name = $1`, name); err != nil {
			return fmt.Errorf("delete quota %q: %w", name, err)
		}
		if v, err = bumpPolicy(ctx, tx, actor, "quotas rm "+name); err != nil {
			return err
		}
		return adminEvent(ctx, tx, actor, "quota.remove", "quota", name, before[0], nil, v)
	})
	return v, err
}

// LoadQuotas reads every quota with the versions and the database clock in
// one repeatable-read transaction, so the version matches the quotas.
func (s *Store) LoadQuotas(ctx context.Context) (*quota.Loaded, error) {
	l := &quota.Loaded{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT (SELECT version FROM versions WHERE name = 'policy'),
			(SELECT version FROM versions WHERE name = 'directory'), now()`).Scan(&l.PolicyVersion, &l.DirectoryVersion, &l.Now)
		if err != nil {
			return err
		}
		if l.Quotas, err = listQuotas(ctx, tx, ""); err != nil {
			return err
		}
		if len(l.Quotas) == 0 {
			return nil
		}
		gs, err := groupIndex(ctx, tx) // bound groups too: see LoadSnapshot
		if err != nil {
			return err
		}
		for i := range l.Quotas {
			gs.Mark(&l.Quotas[i].Group)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load quotas: %w", err)
	}
	return l, nil
}

// QuotaVersions is the limiter's cheap poll: both versions and now().
func (s *Store) QuotaVersions(ctx context.Context) (policyVersion, directoryVersion int64, now time.Time, err error) {
	err = s.pool.QueryRow(ctx, `SELECT (SELECT version FROM versions WHERE name = 'policy'),
		(SELECT version FROM versions WHERE name = 'directory'), now()`).Scan(&policyVersion, &directoryVersion, &now)
	if err != nil {
		err = fmt.Errorf("read versions: %w", err)
	}
	return policyVersion, directoryVersion, now, err
}

// leaseError classifies a failed budget statement for the limiter: a
// removed quota, a statement that certainly changed nothing, or one that
// may have been applied.
func leaseError(what string, err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "23503": // foreign_key_violation: the quota is gone
		return fmt.Errorf("%s: %w: %w", what, quota.ErrUnknownQuota, quota.ErrNotApplied)
	case errors.As(err, &pe):
		// The server refused the statement; in autocommit it rolled back.
		return fmt.Errorf("%s: %w: %w", what, quota.ErrNotApplied, err)
	case pgconn.SafeToRetry(err):
		return fmt.Errorf("%s: %w: %w", what, quota.ErrNotApplied, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
