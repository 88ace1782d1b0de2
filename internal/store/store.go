// Package store is okproxy's PostgreSQL layer: the only package that imports
// pgx. It holds the SQL, runs every multi-statement change in one transaction,
// maps rows to domain types and pgx.ErrNoRows to ErrNotFound in one place.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/okproxy/okproxy/migrations"
)

// Sentinel errors returned by Store methods.
var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object with that name already exists.
	ErrExists = errors.New("already exists")
)

// Config configures Open.
type Config struct {
	// URL is the PostgreSQL connection URL or DSN.
	URL string
	// ApplicationName is reported to PostgreSQL unless the URL sets one.
	ApplicationName string
	// StatementTimeout bounds every statement unless the URL sets one
	// (default 30s; CLI reports over large tables may raise it).
	StatementTimeout time.Duration
	// MaxConns bounds the pool (default pgxpool's: max(4, NumCPU)).
	MaxConns int32
	// Lazy skips the initial ping: serve starts (and fails closed) even when
	// the database is unreachable, and connects once it is back.
	Lazy bool
}

// Store wraps one pgxpool per process.
type Store struct {
	pool *pgxpool.Pool
	url  string
}

// Open connects and pings. It does not migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("no database URL: set --database-url, OKPROXY_DATABASE_URL or DATABASE_URL")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %s", redactErr(err, cfg.URL))
	}
	rp := pc.ConnConfig.RuntimeParams
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = cmp.Or(cfg.ApplicationName, "okproxy")
	}
	if _, ok := rp["statement_timeout"]; !ok {
		st := cfg.StatementTimeout
		if st == 0 {
			st = 30 * time.Second
		}
		rp["statement_timeout"] = fmt.Sprint(st.Milliseconds())
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", Redact(cfg.URL), err)
	}
	if cfg.Lazy {
		return &Store{pool: pool, url: cfg.URL}, nil
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s: %w", Redact(cfg.URL), err)
	}
	return &Store{pool: pool, url: cfg.URL}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool to this package's siblings in tests and to LISTEN.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// URL is the connection URL the store was opened with.
func (s *Store) URL() string { return s.url }

var pwRe = regexp.MustCompile(`(?i)(password=)\S+`)

// Redact hides the password of a database URL or DSN for logs and errors.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "***")
			u.RawQuery = q.Encode()
		}
		return strings.ReplaceAll(u.String(), "%2A%2A%2A", "***")
	}
	return pwRe.ReplaceAllString(raw, "${1}***")
}

// redactErr keeps parse errors from echoing the password back.
func redactErr(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = regexp.MustCompile(regexp.QuoteMeta(pw)).ReplaceAllString(msg, "***")
		}
	}
	return pwRe.ReplaceAllString(msg, "${1}***")
}

// InTx runs fn in one transaction, committing when fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// bumpVersion increments the named version counter inside tx; the trigger on
// versions sends the NOTIFY when tx commits.
func bumpVersion(ctx context.Context, tx pgx.Tx, name string) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, `UPDATE versions SET version = version + 1 WHERE name = $1 RETURNING version`, name).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("bump %s version: %w", name, err)
	}
	return v, nil
}

// bumpPolicy bumps the policy version and records who made it.
func bumpPolicy(ctx context.Context, tx pgx.Tx, actor, action string) (int64, error) {
	v, err := bumpVersion(ctx, tx, "policy")
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO policy_versions (version, actor, action) VALUES ($1, $2, $3)`, v, actor, action); err != nil {
		return 0, fmt.Errorf("record policy version: %w", err)
	}
	return v, nil
}

// Versions returns the current policy and directory versions.
func (s *Store) Versions(ctx context.Context) (policy, directory int64, err error) {
	rows, err := s.pool.Query(ctx, `SELECT name, version FROM versions`)
	if err != nil {
		return 0, 0, fmt.Errorf("read versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			return 0, 0, err
		}
		switch n {
		case "policy":
			policy = v
		case "directory":
			directory = v
		}
	}
	return policy, directory, rows.Err()
}

// isUniqueViolation reports a unique-constraint error.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Migrations is the goose provider type, named here so callers need not
// import goose (only the store does; internal/archtest enforces it).
type Migrations = goose.Provider

// Migrator returns a goose provider over the embedded migrations, sharing the
// store's pool and serialising concurrent runs with a Postgres session lock.
func (s *Store) Migrator() (*goose.Provider, *sql.DB, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	return newProvider(db)
}

func newProvider(db *sql.DB) (*goose.Provider, *sql.DB, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, nil, err
	}
	fsys, err := fs.Sub(migrations.FS, ".")
	if err != nil {
		return nil, nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// MigrateUp applies all pending migrations and returns how many it applied.
func (s *Store) MigrateUp(ctx context.Context) (int, error) {
	p, db, err := s.Migrator()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrate up: %w", err)
	}
	return len(res), nil
}

// EnsureAuditPartitions creates daily audit partitions from yesterday to
// days ahead.
func (s *Store) EnsureAuditPartitions(ctx context.Context, days int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT okproxy_audit_partitions(now() - interval '1 day', $1)`, days+1).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("create audit partitions: %w", err)
	}
	return n, nil
}

// notFound maps pgx.ErrNoRows to ErrNotFound with context.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}
