package store

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/audit"
)

// How `audit query` stays fast over millions of rows (docs/audit.md): the
// page is "newest N matching events". For scalar filters the statement is
// shaped so that an index on (key, time DESC) can deliver rows in time
// order. Group and rule filters are array containment with GIN indexes,
// which cannot deliver order; there the planner's guess decides between
// walking the primary key backwards (good when the value is common) and a
// bitmap scan (good when it is rare), and it guesses wrong for rare values.
// So those queries first count matches up to bitmapCap with a bitmap scan:
// under the cap, the page is read with a bitmap scan and sorted; at or over
// it, the value is common enough for the backward walk, which then reads at
// most about limit × (rows in the window) / bitmapCap rows.
const bitmapCap = 10000

// auditQuery is a planned Filter.
type auditQuery struct {
	where    []string
	args     []any
	branches []string // alternatives for --user, each served by its own index
	// arrayOnly: group or rule filters and no scalar filter with an ordered
	// index, so the bitmap probe applies.
	arrayOnly bool
}

func (q *auditQuery) arg(v any) string {
	q.args = append(q.args, v)
	return fmt.Sprintf("$%d", len(q.args))
}

// planAuditQuery turns f into conditions. It reads the directory and rules
// to learn how a group name is spelled in tokens, so that --group compares
// case-insensitively while the plain GIN index on groups still serves it.
func (s *Store) planAuditQuery(ctx context.Context, f audit.Filter) (auditQuery, error) {
	var q auditQuery
	if !f.Since.IsZero() {
		q.where = append(q.where, "time >= "+q.arg(f.Since))
	}
	if !f.Until.IsZero() {
		q.where = append(q.where, "time < "+q.arg(f.Until))
	}
	scalar := false
	if f.User != "" {
		u := q.arg(f.User)
		q.branches = []string{
			"lower(subject) = lower(" + u + ")",
			"user_id = " + u + " AND user_id <> ''",
			// Matches audit_events_email_lower's predicate, so it can use it.
			"lower(email) = lower(" + u + ") AND email <> '' AND lower(email) <> lower(subject)",
		}
		scalar = true
	}
	if f.Group != "" {
		spellings, err := s.groupSpellings(ctx, f.Group)
		if err != nil {
			return q, err
		}
		q.where = append(q.where, "groups && "+q.arg(spellings))
	}
	if f.Decision != "" {
		q.where = append(q.where, "decision = "+q.arg(f.Decision))
		scalar = scalar || f.Decision == audit.DecisionError
	}
	if f.Reason != "" {
		if f.Decision == "" {
			// Lets audit_events_decision (decision, reason, time) serve a
			// reason on its own without assuming which decision it goes with.
			q.where = append(q.where, "decision = ANY("+q.arg(audit.Decisions)+")")
		}
		q.where = append(q.where, "reason = "+q.arg(f.Reason))
		scalar = true
	}
	if f.Rule != "" {
		q.where = append(q.where, "rules @> ARRAY["+q.arg(f.Rule)+"]::text[]")
	}
	if f.PathPrefix != "" {
		// The range uses audit_events_path whatever the plan cache does with
		// parameters; the LIKE keeps the match exact.
		q.where = append(q.where, "path ~>=~ "+q.arg(f.PathPrefix))
		if hi, ok := prefixUpperBound(f.PathPrefix); ok {
			q.where = append(q.where, "path ~<~ "+q.arg(hi))
		}
		q.where = append(q.where, "path LIKE "+q.arg(likePrefix(f.PathPrefix)))
		scalar = true
	}
	if f.Status != 0 {
		q.where = append(q.where, "status = "+q.arg(int32(f.Status)))
		scalar = true
	}
	q.arrayOnly = !scalar && (f.Group != "" || f.Rule != "")
	return q, nil
}

// groupSpellings returns the spellings of a group name to look for in
// tokens: as typed, lower case, upper case, capitalised, and every spelling
// (ignoring case) known to the synced directory and to rules. Tokens carry
// Okta's spelling, which the directory knows once synced. An Okta group id
// (SPEC §3) also matches the group's current name and the names rules and
// quotas bound to it were given, which are the names it had before a rename.
func (s *Store) groupSpellings(ctx context.Context, name string) ([]string, error) {
	variants := []string{name, strings.ToLower(name), strings.ToUpper(name)}
	if r, size := utf8.DecodeRuneInString(name); size > 0 {
		variants = append(variants, strings.ToUpper(string(r))+strings.ToLower(name[size:]))
	}
	var out []string
	// Names found by id get the same case variants as a typed name: a
	// token may spell the group in another case (--group NAME ignores case).
	err := s.pool.QueryRow(ctx, `SELECT array_agg(DISTINCT v) FROM (
		SELECT unnest($2::text[]) AS n
		UNION SELECT name FROM okta_groups WHERE lower(name) = lower($1) OR id = $1
		UNION SELECT group_name FROM rule_groups WHERE lower(group_name) = lower($1) OR group_id = $1
		UNION SELECT group_name FROM quotas WHERE group_id = $1) s,
		unnest(ARRAY[n, lower(n), upper(n), initcap(n), upper(left(n, 1)) || lower(substr(n, 2))]) AS v`, name, variants).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("resolve group %q: %w", name, err)
	}
	return out, nil
}

// likePrefix escapes LIKE metacharacters so a path prefix matches literally.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// prefixUpperBound is the least string greater than every string starting
// with p in byte order (= code point order for UTF-8): p with its last code
// point incremented, dropping code points that cannot be.
func prefixUpperBound(p string) (string, bool) {
	rs := []rune(p)
	for len(rs) > 0 {
		last := rs[len(rs)-1] + 1
		if last == 0xD800 {
			last = 0xE000 // skip the surrogates, which UTF-8 cannot encode
		}
		if last <= utf8.MaxRune {
			rs[len(rs)-1] = last
			return string(rs), true
		}
		rs = rs[:len(rs)-1]
	}
	return "", false
}

func (q auditQuery) whereSQL(extra ...string) string {
	all := append(append([]string{}, q.where...), extra...)
	if len(all) == 0 {
		return "TRUE"
	}
	return strings.Join(all, " AND ")
}

const auditSelectCols = `time, event_id, request_id, replica, method, host, path, status, decision, reason,
	policy_version, rules, rule, shadow, subject, user_id, email, groups, client_ip, user_agent, jti,
	client_id, latency_ms`

// pageSQL is the newest-first page. With --user, one branch per identity
// column, each ordered by its own index, merged and de-duplicated (an event
// whose subject equals its user id matches two branches).
func (q auditQuery) pageSQL(limit int) (string, []any) {
	args := append([]any{}, q.args...)
	args = append(args, limit)
	lim := fmt.Sprintf("$%d", len(args))
	if len(q.branches) == 0 {
		return "SELECT " + auditSelectCols + " FROM audit_events WHERE " + q.whereSQL() +
			" ORDER BY time DESC LIMIT " + lim, args
	}
	parts := make([]string, len(q.branches))
	for i, b := range q.branches {
		parts[i] = "(SELECT " + auditSelectCols + " FROM audit_events WHERE " + q.whereSQL(b) +
			" ORDER BY time DESC LIMIT " + lim + ")"
	}
	return "SELECT DISTINCT ON (time, event_id) " + auditSelectCols + " FROM (" +
		strings.Join(parts, " UNION ALL ") + ") u ORDER BY time DESC, event_id LIMIT " + lim, args
}

// countSQL counts matches up to n.
func (q auditQuery) countSQL(n int) (string, []any) {
	args := append([]any{}, q.args...)
	args = append(args, n)
	return fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM audit_events WHERE %s LIMIT $%d) c", q.whereSQL(), len(args)), args
}

// withAuditPage runs fn with the page statement for f inside a read-only
// transaction whose planner settings implement the bitmap probe.
func (s *Store) withAuditPage(ctx context.Context, f audit.Filter, fn func(tx pgx.Tx, sql string, args []any) error) error {
	q, err := s.planAuditQuery(ctx, f)
	if err != nil {
		return err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// Plans depend on the actual values (how common a user or group
		// is, which partitions the window covers) and on the settings
		// below, which a cached generic plan would ignore.
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
			return err
		}
		if q.arrayOnly {
			for _, set := range []string{`SET LOCAL enable_indexscan = off`, `SET LOCAL enable_seqscan = off`} {
				if _, err := tx.Exec(ctx, set); err != nil {
					return err
				}
			}
			var n int
			csql, cargs := q.countSQL(bitmapCap)
			if err := tx.QueryRow(ctx, csql, cargs...).Scan(&n); err != nil {
				return err
			}
			if n >= bitmapCap {
				// Common enough: walk the primary key backwards and stop at
				// the page; the planner would otherwise bitmap-scan and sort
				// every match.
				for _, set := range []string{`SET LOCAL enable_indexscan = on`, `SET LOCAL enable_bitmapscan = off`} {
					if _, err := tx.Exec(ctx, set); err != nil {
						return err
					}
				}
			}
		}
		sql, args := q.pageSQL(limit)
		return fn(tx, sql, args)
	})
}

// QueryAuditEvents returns the events matching f, newest first, at most
// f.Limit (default 100).
func (s *Store) QueryAuditEvents(ctx context.Context, f audit.Filter) ([]audit.Event, error) {
	var out []audit.Event
	err := s.withAuditPage(ctx, f, func(tx pgx.Tx, sql string, args []any) error {
		var err error
		out, err = scanAuditEvents(ctx, tx, sql, args)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("query audit events: %w", err)
	}
	return out, nil
}

// ExplainAuditQuery returns EXPLAIN (ANALYZE, BUFFERS) of QueryAuditEvents(f),
// for the measurements in docs/audit.md.
func (s *Store) ExplainAuditQuery(ctx context.Context, f audit.Filter) (string, error) {
	var b strings.Builder
	err := s.withAuditPage(ctx, f, func(tx pgx.Tx, sql string, args []any) error {
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			b.WriteString(line + "\n")
		}
		return rows.Err()
	})
	return strings.TrimSpace(b.String()), err
}

// FollowedEvent is an event and when PostgreSQL took it in (ingested_at:
// the start of the inserting transaction).
type FollowedEvent struct {
	audit.Event
	Ingested time.Time
}

// FollowPos is a position in ingestion order (events taken in by one
// transaction in time order); the zero value is the start.
type FollowPos struct {
	Ingested, Time time.Time
	ID             [16]byte
}

// Pos is e's position in ingestion order.
func (e FollowedEvent) Pos() FollowPos { return FollowPos{e.Ingested, e.Time, e.ID} }

// FollowAuditEvents returns events matching f that were ingested at or after
// from and come after pos, in ingestion order, at most limit. f's Since and
// Until do not apply: `audit query --follow` prints what arrives, and an
// event replayed from a spool arrives long after its own time.
func (s *Store) FollowAuditEvents(ctx context.Context, f audit.Filter, from time.Time, pos FollowPos, limit int) ([]FollowedEvent, error) {
	f.Since, f.Until = time.Time{}, time.Time{}
	q, err := s.planAuditQuery(ctx, f)
	if err != nil {
		return nil, err
	}
	q.where = append(q.where, "ingested_at >= "+q.arg(from))
	if !pos.Ingested.IsZero() {
		q.where = append(q.where, "(ingested_at, time, event_id) > ("+q.arg(pos.Ingested)+", "+q.arg(pos.Time)+", "+q.arg(pos.ID)+"::uuid)")
	}
	where := q.whereSQL()
	if len(q.branches) > 0 {
		where += " AND ((" + strings.Join(q.branches, ") OR (") + "))"
	}
	sql := fmt.Sprintf("SELECT %s, ingested_at FROM audit_events WHERE %s ORDER BY ingested_at, time, event_id LIMIT %s",
		auditSelectCols, where, q.arg(max(limit, 1)))
	rows, err := s.pool.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, fmt.Errorf("follow audit events: %w", err)
	}
	defer rows.Close()
	var out []FollowedEvent
	for rows.Next() {
		var e FollowedEvent
		if err := scanAuditEvent(rows, &e.Event, &e.Ingested); err != nil {
			return nil, fmt.Errorf("follow audit events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("follow audit events: %w", err)
	}
	return out, nil
}

// DatabaseNow is PostgreSQL's clock, the one ingested_at is read from.
func (s *Store) DatabaseNow(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t)
	return t, err
}

func scanAuditEvents(ctx context.Context, q querier, sql string, args []any) ([]audit.Event, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		if err := scanAuditEvent(rows, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanAuditEvent reads auditSelectCols into e, then any extra columns.
func scanAuditEvent(rows pgx.Rows, e *audit.Event, extra ...any) error {
	var status int32
	dest := append([]any{&e.Time, &e.ID, &e.RequestID, &e.Replica, &e.Method, &e.Host, &e.Path, &status,
		&e.Decision, &e.Reason, &e.PolicyVersion, &e.Rules, &e.Rule, &e.Shadow, &e.Subject, &e.UserID,
		&e.Email, &e.Groups, &e.ClientIP, &e.UserAgent, &e.JTI, &e.ClientID, &e.LatencyMS}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	e.Status = int(status)
	e.Rules, e.Groups = emptyIfNil(e.Rules), emptyIfNil(e.Groups)
	return nil
}
