// Package dbtest hands tests their own fresh PostgreSQL database, created in
// milliseconds from a migrated template database and dropped afterwards. It is
// safe under `go test -race -p N ./...`: the template is built once per
// migration set under an advisory lock, and every test gets a uniquely named
// copy.
//
// Tests that need a database and find no DATABASE_URL fail loudly; they never
// skip. `make test` provides one through scripts/db.sh.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/store"
	"github.com/okproxy/okproxy/migrations"
)

const missingURL = `DATABASE_URL is not set: these tests need a real PostgreSQL.
Run "make test" (it starts a private throw-away cluster with scripts/db.sh),
or: eval "$(scripts/db.sh up)" && go test ./...`

// BaseURL returns DATABASE_URL or fails the test.
func BaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal(missingURL)
	}
	return u
}

// WithDatabase returns raw with its database name replaced.
func WithDatabase(t testing.TB, raw, db string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		t.Fatalf("DATABASE_URL must be a postgres:// URL for the test harness: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

var (
	tmplOnce sync.Once
	tmplName string
	tmplErr  error
)

func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
}

func ensureTemplate(ctx context.Context, base string, t testing.TB) (string, error) {
	tmplOnce.Do(func() {
		hash, err := migrationsHash()
		if err != nil {
			tmplErr = err
			return
		}
		name := "okproxy_tmpl_" + hash
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tmplErr = fmt.Errorf("connect to DATABASE_URL: %w", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext('okproxy_dbtest_template'))`); err != nil {
			tmplErr = err
			return
		}
		defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtext('okproxy_dbtest_template'))`)
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			tmplErr = err
			return
		}
		if !exists {
			building := name + "_building"
			conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{building}.Sanitize()+` WITH (FORCE)`)
			if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{building}.Sanitize()); err != nil {
				tmplErr = fmt.Errorf("create template database: %w", err)
				return
			}
			st, err := store.Open(ctx, store.Config{URL: WithDatabase(t, base, building), ApplicationName: "okproxy-dbtest"})
			if err != nil {
				tmplErr = err
				return
			}
			_, err = st.MigrateUp(ctx)
			st.Close()
			if err != nil {
				tmplErr = fmt.Errorf("migrate template database: %w", err)
				return
			}
			// Renaming makes a half-built template impossible to pick up.
			if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{building}.Sanitize()+` RENAME TO `+pgx.Identifier{name}.Sanitize()); err != nil {
				tmplErr = fmt.Errorf("rename template database: %w", err)
				return
			}
		}
		tmplName = name
	})
	return tmplName, tmplErr
}

func randomName(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NewDatabase creates a fresh, migrated database for t and returns its URL.
// It is dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// NewEmptyDatabase creates a fresh database with no migrations applied.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	base := BaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stmt := `CREATE DATABASE %s`
	if migrated {
		tmpl, err := ensureTemplate(ctx, base, t)
		if err != nil {
			t.Fatalf("dbtest: %v", err)
		}
		stmt += ` TEMPLATE ` + pgx.Identifier{tmpl}.Sanitize()
	}
	name := randomName("okproxy_t_")
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("dbtest: connect to DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	var lastErr error
	for i := 0; i < 20; i++ {
		// Copying from a template fails while another session is connected to
		// it, which only the template build does, briefly: retry.
		if _, lastErr = conn.Exec(ctx, fmt.Sprintf(stmt, pgx.Identifier{name}.Sanitize())); lastErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("dbtest: create database: %v", lastErr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return WithDatabase(t, base, name)
}

// NewStore returns a Store on a fresh migrated database, closed when t ends.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	u := NewDatabase(t)
	st, err := store.Open(context.Background(), store.Config{URL: u, ApplicationName: "okproxy-test"})
	if err != nil {
		t.Fatalf("dbtest: open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}
