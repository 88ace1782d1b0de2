package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/audit"
)

// auditColumns is the column order of COPY and of query scans.
var auditColumns = []string{
	"time", "event_id", "request_id", "replica", "method", "host", "path", "status", "decision", "reason",
	"policy_version", "rules", "rule", "shadow", "subject", "user_id", "email", "groups", "client_ip",
	"user_agent", "jti", "client_id", "latency_ms",
}

var _ audit.Store = (*Store)(nil)

func emptyIfNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// auditRows feeds events to CopyFrom without building a [][]any up front.
type auditRows struct {
	events []*audit.Event
	i      int
	row    []any
}

func (r *auditRows) Next() bool { r.i++; return r.i <= len(r.events) }
func (r *auditRows) Err() error { return nil }
func (r *auditRows) Values() ([]any, error) {
	e := r.events[r.i-1]
	r.row = append(r.row[:0], e.Time, e.ID, e.RequestID, e.Replica, e.Method, e.Host, e.Path, int32(e.Status),
		e.Decision, e.Reason, e.PolicyVersion, emptyIfNil(e.Rules), e.Rule, e.Shadow, e.Subject, e.UserID,
		e.Email, emptyIfNil(e.Groups), e.ClientIP, e.UserAgent, e.JTI, e.ClientID, e.LatencyMS)
	return r.row, nil
}

// InsertAuditEvents appends events with one COPY. Should some of them exist
// already (a batch whose commit succeeded although the client saw an error,
// then spooled and retried), the COPY fails as a whole on the primary key and
// the batch is inserted idempotently instead.
func (s *Store) InsertAuditEvents(ctx context.Context, events []*audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"audit_events"}, auditColumns, &auditRows{events: events})
	if isUniqueViolation(err) {
		_, err = s.InsertAuditEventsIdempotent(ctx, events)
	}
	if err != nil {
		return fmt.Errorf("insert audit events: %w", err)
	}
	return nil
}

// InsertAuditEventsIdempotent copies events into a temporary table and moves
// those not yet stored into audit_events, in one transaction, returning how
// many it inserted. Used for spool replays.
func (s *Store) InsertAuditEventsIdempotent(ctx context.Context, events []*audit.Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	var inserted int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		// LIKE copies no constraints or indexes, and ON COMMIT DROP keeps
		// pooled connections clean.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE okproxy_audit_replay (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"okproxy_audit_replay"}, auditColumns, &auditRows{events: events}); err != nil {
			return err
		}
		cols := strings.Join(auditColumns, ", ")
		tag, err := tx.Exec(ctx, `INSERT INTO audit_events (`+cols+`) SELECT DISTINCT ON (time, event_id) `+cols+
			` FROM okproxy_audit_replay ON CONFLICT (time, event_id) DO NOTHING`)
		if err != nil {
			return err
		}
		inserted = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replay audit events: %w", err)
	}
	return inserted, nil
}

// likePrefix escapes LIKE metacharacters so a path prefix matches literally.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// auditWhere builds the WHERE clause of f. Every condition is written so an
// index can serve it (see migrations/00005_audit_indexes.sql).
func auditWhere(f audit.Filter) (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !f.Since.IsZero() {
		conds = append(conds, "time >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "time < "+arg(f.Until))
	}
	if f.User != "" {
		u := arg(f.User)
		conds = append(conds, fmt.Sprintf("(lower(subject) = lower(%s) OR lower(email) = lower(%s) OR user_id = %s)", u, u, u))
	}
	if f.Group != "" {
		conds = append(conds, "okproxy_lower_array(groups) @> ARRAY[lower("+arg(f.Group)+")]")
	}
	if f.Decision != "" {
		conds = append(conds, "decision = "+arg(f.Decision))
	}
	if f.Reason != "" {
		conds = append(conds, "reason = "+arg(f.Reason))
	}
	if f.Rule != "" {
		r := arg(f.Rule)
		conds = append(conds, fmt.Sprintf("(rule = %s OR rules @> ARRAY[%s])", r, r))
	}
	if f.PathPrefix != "" {
		conds = append(conds, "path LIKE "+arg(likePrefix(f.PathPrefix)))
	}
	if f.Status != 0 {
		conds = append(conds, "status = "+arg(int32(f.Status)))
	}
	if len(conds) == 0 {
		return "TRUE", args
	}
	return strings.Join(conds, " AND "), args
}

const auditSelect = `SELECT time, event_id, request_id, replica, method, host, path, status, decision, reason,
	policy_version, rules, rule, shadow, subject, user_id, email, groups, client_ip, user_agent, jti,
	client_id, latency_ms FROM audit_events`

// AuditQuerySQL returns the statement and arguments QueryAuditEvents runs,
// for EXPLAIN in benchmarks.
func AuditQuerySQL(f audit.Filter) (string, []any) {
	where, args := auditWhere(f)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	return fmt.Sprintf("%s WHERE %s ORDER BY time DESC LIMIT $%d", auditSelect, where, len(args)), args
}

// QueryAuditEvents returns the events matching f, newest first.
func (s *Store) QueryAuditEvents(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	sql, args := AuditQuerySQL(f)
	return s.scanAuditEvents(ctx, sql, args)
}

// FollowAuditEvents returns events matching f (its Limit included) with time
// at or after from, oldest first; `audit query --follow` polls it with a
// window that overlaps the previous poll and drops the ids it has seen.
func (s *Store) FollowAuditEvents(ctx context.Context, f audit.Filter, from time.Time) ([]audit.Event, error) {
	f.Since = from
	where, args := auditWhere(f)
	limit := f.Limit
	if limit <= 0 {
		limit = 10000
	}
	args = append(args, limit)
	sql := fmt.Sprintf("%s WHERE %s ORDER BY time ASC LIMIT $%d", auditSelect, where, len(args))
	return s.scanAuditEvents(ctx, sql, args)
}

func (s *Store) scanAuditEvents(ctx context.Context, sql string, args []any) ([]audit.Event, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var status int32
		if err := rows.Scan(&e.Time, &e.ID, &e.RequestID, &e.Replica, &e.Method, &e.Host, &e.Path, &status,
			&e.Decision, &e.Reason, &e.PolicyVersion, &e.Rules, &e.Rule, &e.Shadow, &e.Subject, &e.UserID,
			&e.Email, &e.Groups, &e.ClientIP, &e.UserAgent, &e.JTI, &e.ClientID, &e.LatencyMS); err != nil {
			return nil, fmt.Errorf("query audit events: %w", err)
		}
		e.Status = int(status)
		e.Rules, e.Groups = emptyIfNil(e.Rules), emptyIfNil(e.Groups)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	return out, nil
}
