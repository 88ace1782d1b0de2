package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/policy"
)

// LoadDirectory reads every synced user with their groups.
func (s *Store) LoadDirectory(ctx context.Context) (*directory.Directory, error) {
	var dir *directory.Directory
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var version int64
		var last *time.Time
		if err := tx.QueryRow(ctx, `SELECT (SELECT version FROM versions WHERE name = 'directory'),
			(SELECT max(coalesce(finished_at, started_at)) FROM sync_runs WHERE status = 'ok')`).Scan(&version, &last); err != nil {
			return err
		}
		users, err := scanUsers(ctx, tx, "")
		if err != nil {
			return err
		}
		dir = directory.New(version, last != nil, users)
		if last != nil {
			dir.LastSync = *last
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load directory: %w", err)
	}
	return dir, nil
}

// GetUser returns one synced user by id or login, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, idOrLogin string) (directory.User, error) {
	us, err := scanUsers(ctx, s.pool, idOrLogin)
	if err != nil {
		return directory.User{}, err
	}
	if len(us) == 0 {
		return directory.User{}, fmt.Errorf("user %q: %w", idOrLogin, ErrNotFound)
	}
	return us[0], nil
}

func scanUsers(ctx context.Context, q querier, idOrLogin string) ([]directory.User, error) {
	where := ""
	args := []any{}
	if idOrLogin != "" {
		where = ` WHERE u.id = $1 OR lower(u.login) = lower($1)`
		args = append(args, idOrLogin)
	}
	rows, err := q.Query(ctx, `SELECT u.id, u.login, u.email, u.status, u.first_name, u.last_name, u.department, u.title,
			coalesce(array_agg(g.id ORDER BY g.name) FILTER (WHERE g.id IS NOT NULL), '{}'),
			coalesce(array_agg(g.name ORDER BY g.name) FILTER (WHERE g.id IS NOT NULL), '{}')
		FROM okta_users u
		LEFT JOIN okta_memberships m ON m.user_id = u.id
		LEFT JOIN okta_groups g ON g.id = m.group_id`+where+`
		GROUP BY u.id ORDER BY u.login`, args...)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer rows.Close()
	var out []directory.User
	for rows.Next() {
		var u directory.User
		var ids, names []string
		if err := rows.Scan(&u.ID, &u.Login, &u.Email, &u.Status, &u.FirstName, &u.LastName, &u.Department, &u.Title, &ids, &names); err != nil {
			return nil, fmt.Errorf("read users: %w", err)
		}
		u.Groups = make([]policy.GroupRef, len(ids))
		for i := range ids {
			u.Groups[i] = policy.GroupRef{ID: ids[i], Name: names[i]}
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
