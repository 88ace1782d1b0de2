package store

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminEventFilter selects admin events for `okproxy audit admin`. Zero
// fields do not filter.
type AdminEventFilter struct {
	Since, Until time.Time
	Actor        string
	ObjectType   string
	ObjectName   string
	Limit        int // default 100
}

// QueryAdminEvents returns admin events matching f, newest first.
func (s *Store) QueryAdminEvents(ctx context.Context, f AdminEventFilter) ([]AdminEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var until *time.Time
	if !f.Until.IsZero() {
		until = &f.Until
	}
	rows, err := s.pool.Query(ctx, `SELECT id, time, actor, action, object_type, object_name, before, after, coalesce(policy_version, 0)
		FROM admin_events
		WHERE time >= $1 AND ($2::timestamptz IS NULL OR time < $2)
		  AND ($3 = '' OR lower(actor) = lower($3))
		  AND ($4 = '' OR object_type = $4) AND ($5 = '' OR object_name = $5)
		ORDER BY time DESC, id DESC LIMIT $6`, f.Since, until, f.Actor, f.ObjectType, f.ObjectName, limit)
	if err != nil {
		return nil, fmt.Errorf("query admin events: %w", err)
	}
	defer rows.Close()
	out := []AdminEvent{}
	for rows.Next() {
		var e AdminEvent
		var b, a []byte
		if err := rows.Scan(&e.ID, &e.Time, &e.Actor, &e.Action, &e.ObjectType, &e.ObjectName, &b, &a, &e.PolicyVersion); err != nil {
			return nil, fmt.Errorf("query admin events: %w", err)
		}
		e.Before, e.After = b, a
		out = append(out, e)
	}
	return out, rows.Err()
}

// PolicyObjectKnown reports whether a rule or quota is named name now, or
// was according to the admin event log (a removed one). `rules history
// NAME` uses it to tell a mistyped name from one with no recorded change.
func (s *Store) PolicyObjectKnown(ctx context.Context, name string) (bool, error) {
	var known bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rules WHERE name = $1)
		OR EXISTS (SELECT 1 FROM quotas WHERE name = $1)
		OR EXISTS (SELECT 1 FROM admin_events WHERE object_type IN ('rule', 'quota') AND object_name = $1)`, name).Scan(&known)
	if err != nil {
		return false, fmt.Errorf("look up %q: %w", name, err)
	}
	return known, nil
}

// AuditPartition is one daily partition of audit_events.
type AuditPartition struct {
	Name string    `json:"name"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Rows int64     `json:"rows"`
}

// PruneResult is what PruneAudit removed (or would remove, when DryRun).
type PruneResult struct {
	Cutoff     time.Time        `json:"cutoff"`
	DryRun     bool             `json:"dry_run"`
	Partitions []AuditPartition `json:"partitions"`
	// DefaultRows counts rows deleted from the default partition, which
	// catches events that arrived for days without a partition.
	DefaultRows int64 `json:"default_rows"`
	Rows        int64 `json:"rows"` // total
}

var partitionBound = regexp.MustCompile(`FROM \('([^']+)'\) TO \('([^']+)'\)`)

// PruneAudit drops every daily partition that lies entirely before cutoff
// and deletes older rows from the default partition, in one transaction,
// recording an admin event with what it removed. Dropping whole partitions
// is fast and returns the space at once; the partition holding the cutoff
// is kept until a later run. With dryRun nothing is changed.
func (s *Store) PruneAudit(ctx context.Context, cutoff time.Time, dryRun bool, actor string) (PruneResult, error) {
	res := PruneResult{Cutoff: cutoff.UTC(), DryRun: dryRun, Partitions: []AuditPartition{}}
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		// Bounds are rendered in the session time zone; DROP waits for
		// running queries on the table, but not forever.
		for _, set := range []string{`SET LOCAL TimeZone = 'UTC'`, `SET LOCAL lock_timeout = '10s'`} {
			if _, err := tx.Exec(ctx, set); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
			FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'audit_events'::regclass`)
		if err != nil {
			return fmt.Errorf("list audit partitions: %w", err)
		}
		parts := []AuditPartition{} // [] in JSON and in the admin event, never null
		for rows.Next() {
			var name, bound string
			if err := rows.Scan(&name, &bound); err != nil {
				rows.Close()
				return err
			}
			m := partitionBound.FindStringSubmatch(bound)
			if m == nil {
				continue // the default partition
			}
			from, err1 := time.Parse("2006-01-02 15:04:05-07", m[1])
			to, err2 := time.Parse("2006-01-02 15:04:05-07", m[2])
			if err1 != nil || err2 != nil {
				rows.Close()
				return fmt.Errorf("audit partition %s: unexpected bound %q", name, bound)
			}
			if !to.After(cutoff) {
				parts = append(parts, AuditPartition{Name: name, From: from.UTC(), To: to.UTC()})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].From.Before(parts[j].From) })
		for i := range parts {
			p := &parts[i]
			ident := pgx.Identifier{p.Name}.Sanitize()
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+ident).Scan(&p.Rows); err != nil {
				return fmt.Errorf("count %s: %w", p.Name, err)
			}
			if !dryRun {
				if _, err := tx.Exec(ctx, `DROP TABLE `+ident); err != nil {
					return fmt.Errorf("drop %s: %w", p.Name, err)
				}
			}
			res.Rows += p.Rows
		}
		res.Partitions = parts
		if dryRun {
			err = tx.QueryRow(ctx, `SELECT count(*) FROM audit_events_default WHERE time < $1`, cutoff).Scan(&res.DefaultRows)
		} else {
			tag, derr := tx.Exec(ctx, `DELETE FROM audit_events_default WHERE time < $1`, cutoff)
			res.DefaultRows, err = tag.RowsAffected(), derr
		}
		if err != nil {
			return fmt.Errorf("prune default audit partition: %w", err)
		}
		res.Rows += res.DefaultRows
		if dryRun {
			return nil
		}
		return adminEvent(ctx, tx, actor, "audit.prune", "audit", "audit_events", nil, res, 0)
	})
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune audit events: %w", err)
	}
	return res, nil
}
