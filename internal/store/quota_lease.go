package store

import (
	"context"
	"fmt"
	"time"

	"github.com/okproxy/okproxy/internal/quota"
)

// leaseSQL is the whole lease protocol's critical section in one statement
// (docs/quotas.md). The row of (quota, key, window) is created or locked by
// INSERT … ON CONFLICT, and the grant is quota.LeaseGrant computed from the
// locked row — least(remaining, greatest(need, least(block, remaining /
// divisor))) — so however many replicas race, granted never exceeds the
// limit. Nothing is granted unless $3 is the current window by the
// database's clock: windows are the database's, not the replicas'. (A new
// row's grant is positive exactly then, which the update branch reads back
// as excluded.last_grant.) The grant is written to last_grant so that
// RETURNING, which sees only the new row, can report it. Used admissions
// ride along.
//
// $1 quota id, $2 subject key, $3 window start, $4 label, $5 block,
// $6 used since last report, $7 window seconds, $8 limit, $9 need,
// $10 divisor.
const leaseSQL = `
INSERT INTO quota_windows AS w (quota_id, subject_key, window_start, subject, granted, last_grant, used, updated_at)
SELECT $1, $2, $3, $4, x.g, x.g, $6, now()
FROM (SELECT CASE WHEN floor(extract(epoch FROM now()) / $7::bigint)::bigint * $7::bigint = $3::bigint
                  THEN least($8::bigint, greatest($9::bigint, least($5::bigint, $8::bigint / $10::bigint)))
                  ELSE 0 END AS g) AS x
ON CONFLICT (quota_id, subject_key, window_start) DO UPDATE SET
    last_grant = CASE WHEN excluded.last_grant > 0 THEN least(greatest($8::bigint - w.granted, 0), greatest($9::bigint,
                     least($5::bigint, greatest($8::bigint - w.granted, 0) / $10::bigint))) ELSE 0 END,
    granted    = w.granted + CASE WHEN excluded.last_grant > 0 THEN least(greatest($8::bigint - w.granted, 0), greatest($9::bigint,
                     least($5::bigint, greatest($8::bigint - w.granted, 0) / $10::bigint))) ELSE 0 END,
    used       = w.used + excluded.used,
    updated_at = excluded.updated_at
RETURNING w.last_grant, w.granted, now()`

// LeaseQuota runs the lease statement. Errors wrap quota.ErrUnknownQuota
// when the quota was removed, and quota.ErrNotApplied when the statement
// certainly changed nothing.
func (s *Store) LeaseQuota(ctx context.Context, l quota.Lease) (quota.Grant, error) {
	var g quota.Grant
	// Acquiring separately tells "never sent" (safe) from "sent, answer
	// lost" (maybe applied) when the database is unreachable.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return g, fmt.Errorf("lease quota: %w: %w", quota.ErrNotApplied, err)
	}
	defer conn.Release()
	err = conn.QueryRow(ctx, leaseSQL, l.QuotaID, l.Key, l.Window, l.Label, l.Block, l.Used, l.WindowSeconds, l.Limit,
		l.Need, max(l.Divisor, 1)).
		Scan(&g.Granted, &g.Total, &g.Now)
	if err != nil {
		return quota.Grant{}, leaseError("lease quota", err)
	}
	return g, nil
}

// reportSQL gives back unused budget and adds admissions for many keys in
// one statement. The caller merges duplicates: UPDATE … FROM applies at most
// one input row per target row.
const reportSQL = `
UPDATE quota_windows AS w
SET granted = greatest(w.granted - r.unused, 0), used = w.used + r.used, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS r(quota_id, subject_key, window_start, unused, used)
WHERE w.quota_id = r.quota_id AND w.subject_key = r.subject_key AND w.window_start = r.window_start`

// ReportQuotas applies reports (returns and admissions) in one statement.
func (s *Store) ReportQuotas(ctx context.Context, rs []quota.Report) error {
	if len(rs) == 0 {
		return nil
	}
	ids := make([]int64, len(rs))
	keys := make([]string, len(rs))
	windows := make([]int64, len(rs))
	unused := make([]int64, len(rs))
	used := make([]int64, len(rs))
	for i, r := range rs {
		ids[i], keys[i], windows[i], unused[i], used[i] = r.QuotaID, r.Key, r.Window, r.Unused, r.Used
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("report quotas: %w: %w", quota.ErrNotApplied, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, reportSQL, ids, keys, windows, unused, used); err != nil {
		return leaseError("report quotas", err)
	}
	return nil
}

// PruneQuotaWindows deletes rows of windows that ended more than retention ago.
func (s *Store) PruneQuotaWindows(ctx context.Context, retention time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM quota_windows w USING quotas q
		WHERE q.id = w.quota_id AND w.window_start + q.window_seconds < extract(epoch FROM now()) - $1::bigint`,
		int64(retention/time.Second))
	if err != nil {
		return 0, fmt.Errorf("prune quota windows: %w", err)
	}
	return tag.RowsAffected(), nil
}

// QuotaUsage returns the current window's counts (by the database's clock)
// per quota and key, ordered by quota and subject.
func (s *Store) QuotaUsage(ctx context.Context, f quota.UsageFilter) ([]quota.Usage, error) {
	rows, err := s.pool.Query(ctx, `
SELECT q.name, q.per, w.subject_key, w.subject, q.limit_count, w.window_start, q.window_seconds,
       w.granted, w.used, w.updated_at
FROM quota_windows w JOIN quotas q ON q.id = w.quota_id
WHERE w.window_start = floor(extract(epoch FROM now()) / q.window_seconds)::bigint * q.window_seconds
  AND ($1 = '' OR q.name = $1)
  AND ($2 = '' OR
       (q.per = 'user' AND (lower(w.subject) = lower($2) OR w.subject_key = $2
                            OR w.subject_key IN (SELECT id FROM okta_users WHERE lower(login) = lower($2))))
    OR (q.per = 'group' AND EXISTS (
            SELECT 1 FROM okta_memberships m
            JOIN okta_users u ON u.id = m.user_id
            JOIN okta_groups g ON g.id = m.group_id
            WHERE (lower(u.login) = lower($2) OR u.id = $2)
              AND (g.id = q.group_id OR (q.group_id IS NULL AND lower(g.name) = lower(q.group_name))))))
ORDER BY q.name, w.subject, w.subject_key`, f.Quota, f.User)
	if err != nil {
		return nil, fmt.Errorf("quota usage: %w", err)
	}
	defer rows.Close()
	out := []quota.Usage{}
	for rows.Next() {
		var u quota.Usage
		var per string
		var start, seconds int64
		if err := rows.Scan(&u.Quota, &per, &u.Key, &u.Subject, &u.Limit, &start, &seconds, &u.Granted, &u.Used, &u.UpdatedAt); err != nil {
			return nil, fmt.Errorf("quota usage: %w", err)
		}
		u.Per = quota.Per(per)
		u.WindowStart, u.WindowEnd = time.Unix(start, 0).UTC(), time.Unix(start+seconds, 0).UTC()
		u.Remaining = max(u.Limit-u.Granted, 0)
		out = append(out, u)
	}
	return out, rows.Err()
}
