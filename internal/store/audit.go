package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// InsertAuditEvents appends events with one COPY and reports how many it
// inserted. Should some of them exist already (a batch whose commit succeeded
// although the client saw an error, spooled and replayed; or a replay
// repeated after a crash), the COPY fails as a whole on the primary key and
// the batch goes through InsertAuditEventsIdempotent instead. Plain COPY
// first because it is the faster path by far (docs/audit.md).
func (s *Store) InsertAuditEvents(ctx context.Context, events []*audit.Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	var n int64
	err := s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		var err error
		n, err = copyAudit(ctx, c.Conn().PgConn(), "audit_events", events)
		return err
	})
	if isUniqueViolation(err) {
		return s.InsertAuditEventsIdempotent(ctx, events)
	}
	if err != nil {
		return 0, fmt.Errorf("insert audit events: %w", err)
	}
	return n, nil
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
		if _, err := copyAudit(ctx, tx.Conn().PgConn(), "okproxy_audit_replay", events); err != nil {
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
