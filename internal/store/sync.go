package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/okta"
)

// The Store implements okta.Store: the sync's lock, run records, the
// stored directory, and the one transaction that applies a sync.
var _ okta.Store = (*Store)(nil)

// syncLockKey names the advisory lock that serialises syncs per database.
const syncLockKey = "okproxy_groups_sync"

// TryLockSync takes the session-level advisory lock on a dedicated pool
// connection, without waiting. The lock lives as long as that session, so
// a crashed sync cannot leave it behind.
func (s *Store) TryLockSync(ctx context.Context) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("sync lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, syncLockKey).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("sync lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, syncLockKey); err != nil {
			// Ending the session is the other way to release it.
			conn.Conn().Close(ctx)
		}
		conn.Release()
	}
	return unlock, true, nil
}

// StartSyncRun records a running sync. Runs still marked running belong to
// a process that died mid-sync (the caller holds the lock): they are marked
// failed first.
func (s *Store) StartSyncRun(ctx context.Context, st okta.RunStart) (int64, error) {
	var id int64
	sel, err := json.Marshal(st.Selection)
	if err != nil {
		return 0, err
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sync_runs SET status = 'failed', finished_at = now(),
			error = 'interrupted: the process ended before the run finished' WHERE status = 'running'`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO sync_runs (started_at, status, full_sync, actor, selection)
			VALUES ($1, 'running', $2, $3, $4) RETURNING id`, st.StartedAt, st.Full, st.Actor, sel).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("record sync run: %w", err)
	}
	return id, nil
}

// FinishSyncRun records the outcome of a run that wrote nothing.
func (s *Store) FinishSyncRun(ctx context.Context, runID int64, rec okta.RunRecord) error {
	return s.InTx(ctx, func(tx pgx.Tx) error { return finishRun(ctx, tx, runID, rec) })
}

func finishRun(ctx context.Context, tx pgx.Tx, runID int64, rec okta.RunRecord) error {
	counts, err := json.Marshal(rec.Counts)
	if err != nil {
		return err
	}
	var asOf *time.Time
	if !rec.OktaAsOf.IsZero() {
		asOf = &rec.OktaAsOf
	}
	tag, err := tx.Exec(ctx, `UPDATE sync_runs SET status = $2, finished_at = $3, counts = $4, error = $5, okta_as_of = $6,
		full_sync = full_sync OR $7 WHERE id = $1`, runID, rec.Status, rec.FinishedAt, counts, rec.Error, asOf, rec.Full)
	if err != nil {
		return fmt.Errorf("record sync run %d: %w", runID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("record sync run %d: %w", runID, ErrNotFound)
	}
	return nil
}

// LoadSyncState reads the stored directory in one consistent snapshot.
func (s *Store) LoadSyncState(ctx context.Context) (*okta.State, error) {
	st := &okta.State{Groups: map[string]okta.Group{}, Members: map[string]map[string]bool{},
		Users: map[string]okta.User{}, Rules: map[string]okta.GroupRule{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		gs, err := queryGroups(ctx, tx, ``)
		if err != nil {
			return err
		}
		for _, g := range gs {
			st.Groups[g.ID] = g
		}
		rows, err := tx.Query(ctx, `SELECT group_id, user_id FROM okta_memberships`)
		if err != nil {
			return err
		}
		var gid, uid string
		_, err = pgx.ForEachRow(rows, []any{&gid, &uid}, func() error {
			if st.Members[gid] == nil {
				st.Members[gid] = map[string]bool{}
			}
			st.Members[gid][uid] = true
			return nil
		})
		if err != nil {
			return err
		}
		us, err := queryOktaUsers(ctx, tx, ``)
		if err != nil {
			return err
		}
		for _, u := range us {
			st.Users[u.ID] = u
		}
		rs, err := queryGroupRules(ctx, tx, ``)
		if err != nil {
			return err
		}
		for _, r := range rs {
			st.Rules[r.ID] = r
		}
		rows, err = tx.Query(ctx, `SELECT r.id, r.name, g.kind, g.position, g.group_name
			FROM rule_groups g JOIN rules r ON r.id = g.rule_id
			WHERE g.group_id IS NULL ORDER BY r.name, g.kind, g.position`)
		if err != nil {
			return err
		}
		var ref okta.RuleGroupRef
		_, err = pgx.ForEachRow(rows, []any{&ref.RuleID, &ref.Rule, &ref.Kind, &ref.Position, &ref.GroupName}, func() error {
			st.Unbound = append(st.Unbound, ref)
			return nil
		})
		if err != nil {
			return err
		}
		var started time.Time
		var asOf *time.Time
		err = tx.QueryRow(ctx, `SELECT started_at, okta_as_of FROM sync_runs WHERE status = 'ok' ORDER BY id DESC LIMIT 1`).Scan(&started, &asOf)
		switch {
		case err == pgx.ErrNoRows:
		case err != nil:
			return err
		default:
			st.LastOK = &okta.LastRun{StartedAt: started.UTC()}
			if asOf != nil {
				st.LastOK.OktaAsOf = asOf.UTC()
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load synced directory: %w", err)
	}
	return st, nil
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func queryGroups(ctx context.Context, q querier, where string, args ...any) ([]okta.Group, error) {
	rows, err := q.Query(ctx, `SELECT id, name, type, description, last_updated, last_membership_updated
		FROM okta_groups `+where+` ORDER BY lower(name), id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read groups: %w", err)
	}
	var out []okta.Group
	var g okta.Group
	var lu, lmu *time.Time
	_, err = pgx.ForEachRow(rows, []any{&g.ID, &g.Name, &g.Type, &g.Description, &lu, &lmu}, func() error {
		g.LastUpdated, g.LastMembershipUpdated = utc(lu), utc(lmu)
		out = append(out, g)
		return nil
	})
	return out, err
}

func queryOktaUsers(ctx context.Context, q querier, where string, args ...any) ([]okta.User, error) {
	rows, err := q.Query(ctx, `SELECT id, login, email, status, first_name, last_name, department, title
		FROM okta_users `+where+` ORDER BY lower(login)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	var out []okta.User
	var u okta.User
	_, err = pgx.ForEachRow(rows, []any{&u.ID, &u.Login, &u.Email, &u.Status, &u.FirstName, &u.LastName, &u.Department, &u.Title}, func() error {
		out = append(out, u)
		return nil
	})
	return out, err
}

func queryGroupRules(ctx context.Context, q querier, where string, args ...any) ([]okta.GroupRule, error) {
	rows, err := q.Query(ctx, `SELECT id, name, status, expression, group_ids FROM okta_group_rules `+where+` ORDER BY name, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read group rules: %w", err)
	}
	var out []okta.GroupRule
	var r okta.GroupRule
	_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Name, &r.Status, &r.Expression, &r.GroupIDs}, func() error {
		out = append(out, r)
		r.GroupIDs = nil
		return nil
	})
	return out, err
}
