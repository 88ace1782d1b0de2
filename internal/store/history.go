package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/policyfile"
)

// ErrNoSnapshot: the policy version exists but no snapshot of it was kept
// (it predates migration 00008, or its snapshot failed with a WARNING).
var ErrNoSnapshot = errors.New("no snapshot of that policy version")

// PolicyVersion is one entry of the policy history with its changes.
type PolicyVersion struct {
	Version int64     `json:"version" yaml:"version"`
	Time    time.Time `json:"time" yaml:"time"`
	Actor   string    `json:"actor" yaml:"actor"`
	Action  string    `json:"action" yaml:"action"`
	// Restorable says whether `rules rollback --to` this version can work.
	Restorable bool           `json:"restorable" yaml:"restorable"`
	Changes    []PolicyChange `json:"changes" yaml:"changes"`
}

// PolicyChange is one admin event of a version: an object before and after.
type PolicyChange struct {
	Action     string          `json:"action" yaml:"action"`
	ObjectType string          `json:"object_type" yaml:"object_type"`
	ObjectName string          `json:"object_name" yaml:"object_name"`
	Before     json.RawMessage `json:"before,omitempty" yaml:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty" yaml:"after,omitempty"`
}

// PolicyHistory returns policy versions newest first, at most limit, each
// with its admin events in the order they were recorded. With object set,
// only versions that changed an object (rule or quota) of that name, and
// only those changes.
func (s *Store) PolicyHistory(ctx context.Context, object string, limit int) ([]PolicyVersion, error) {
	if limit <= 0 {
		limit = 20
	}
	var out []PolicyVersion
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT v.version, v.created_at, v.actor, v.action,
				EXISTS (SELECT 1 FROM policy_snapshots s WHERE s.version = v.version)
			FROM policy_versions v
			WHERE $1 = '' OR EXISTS (SELECT 1 FROM admin_events e WHERE e.policy_version = v.version AND e.object_name = $1)
			ORDER BY v.version DESC LIMIT $2`, object, limit)
		if err != nil {
			return err
		}
		index := map[int64]int{}
		var versions []int64
		for rows.Next() {
			var v PolicyVersion
			if err := rows.Scan(&v.Version, &v.Time, &v.Actor, &v.Action, &v.Restorable); err != nil {
				rows.Close()
				return err
			}
			v.Changes = []PolicyChange{}
			index[v.Version] = len(out)
			versions = append(versions, v.Version)
			out = append(out, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(versions) == 0 {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT policy_version, action, object_type, object_name, before, after
			FROM admin_events WHERE policy_version = ANY($1) AND ($2 = '' OR object_name = $2) ORDER BY id`, versions, object)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			var c PolicyChange
			var b, a []byte
			if err := rows.Scan(&v, &c.Action, &c.ObjectType, &c.ObjectName, &b, &a); err != nil {
				return err
			}
			c.Before, c.After = b, a
			out[index[v]].Changes = append(out[index[v]].Changes, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	return out, nil
}

// PolicySnapshot returns the policy as it stood after version v:
// ErrNotFound when there is no such version, ErrNoSnapshot when it was not
// kept.
func (s *Store) PolicySnapshot(ctx context.Context, v int64) (policyfile.Document, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT document FROM policy_snapshots WHERE version = $1`, v).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM policy_versions WHERE version = $1)`, v).Scan(&exists); err != nil {
			return policyfile.Document{}, fmt.Errorf("read policy version %d: %w", v, err)
		}
		if !exists {
			return policyfile.Document{}, fmt.Errorf("policy version %d: %w", v, ErrNotFound)
		}
		return policyfile.Document{}, fmt.Errorf("policy version %d: %w", v, ErrNoSnapshot)
	}
	if err != nil {
		return policyfile.Document{}, fmt.Errorf("read policy snapshot %d: %w", v, err)
	}
	var doc policyfile.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return policyfile.Document{}, fmt.Errorf("decode policy snapshot %d: %w", v, err)
	}
	doc.Normalize()
	return doc, nil
}
