package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/okproxy/okproxy/internal/policyfile"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/okproxy/okproxy/internal/policy"
)

// Rule is a stored rule with its bookkeeping.
type Rule struct {
	policy.Rule
	CreatedAt time.Time `json:"created_at" yaml:"created_at"`
	UpdatedAt time.Time `json:"updated_at" yaml:"updated_at"`
}

// AmbiguousGroupError says a group name matches several synced groups.
type AmbiguousGroupError struct {
	Name string
	IDs  []string
}

func (e *AmbiguousGroupError) Error() string {
	return fmt.Sprintf("group %q matches %d synced groups (%s): name it by id", e.Name, len(e.IDs), strings.Join(e.IDs, ", "))
}

// oktaGroupID matches Okta group ids (00g followed by 17 base62 characters).
var oktaGroupID = regexp.MustCompile(`^00g[0-9A-Za-z]{17}$`)

// IsGroupID reports whether s has the shape of an Okta group id.
func IsGroupID(s string) bool { return oktaGroupID.MatchString(s) }

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ResolveGroups binds group names or ids to the synced directory. A known
// group comes back with its id and current name; an unknown one is kept as
// given and listed in unknown.
func (s *Store) ResolveGroups(ctx context.Context, refs []string) ([]policy.GroupRef, []string, error) {
	return resolveGroups(ctx, s.pool, refs)
}

func resolveGroups(ctx context.Context, q querier, refs []string) ([]policy.GroupRef, []string, error) {
	var out []policy.GroupRef
	var unknown []string
	seen := map[string]bool{}
	var dir *policyfile.Directory // the synced groups, loaded on first use
	for _, ref := range refs {
		var g policy.GroupRef
		if IsGroupID(ref) {
			err := q.QueryRow(ctx, `SELECT id, name FROM okta_groups WHERE id = $1`, ref).Scan(&g.ID, &g.Name)
			if errors.Is(err, pgx.ErrNoRows) {
				g = policy.GroupRef{ID: ref, Name: ref}
				unknown = append(unknown, ref)
			} else if err != nil {
				return nil, nil, fmt.Errorf("resolve group %q: %w", ref, err)
			}
		} else {
			// Names compare in Go as serve compares them (policy.FoldName),
			// not with the database's lower(), which under a C collation
			// folds ASCII only.
			if dir == nil {
				gs, synced, err := loadGroups(ctx, q)
				if err != nil {
					return nil, nil, fmt.Errorf("resolve group %q: %w", ref, err)
				}
				dir = policyfile.NewDirectory(synced, gs)
			}
			ms := dir.Matching(ref)
			switch len(ms) {
			case 0:
				g = policy.GroupRef{Name: ref}
				unknown = append(unknown, ref)
			case 1:
				g = policy.GroupRef{ID: ms[0].ID, Name: ms[0].Name}
			default:
				ids := make([]string, len(ms))
				for i, m := range ms {
					ids[i] = m.ID
				}
				return nil, nil, &AmbiguousGroupError{Name: ref, IDs: ids}
			}
		}
		key := g.ID + "\x00" + strings.ToLower(g.Name)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, g)
	}
	return out, unknown, nil
}

// groupIndex indexes the synced groups by name, so that rules and quotas
// loaded for evaluation can mark the names several groups share
// (policy.GroupRef.IsAmbiguous): an allow or a quota by such a name applies to
// nobody, a deny to the members of each.
func groupIndex(ctx context.Context, q querier) (*policy.Groups, error) {
	gs, _, err := loadGroups(ctx, q)
	if err != nil {
		return nil, err
	}
	refs := make([]policy.GroupRef, len(gs))
	for i, g := range gs {
		refs[i] = policy.GroupRef{ID: g.ID, Name: g.Name}
	}
	return policy.NewGroups(refs), nil
}

const ruleColumns = `r.id, r.name, r.path, r.methods, r.hosts, r.public, r.allow_authenticated, r.scopes,
	r.description, r.enabled, r.mode, r.created_at, r.updated_at`

// ListRules returns every rule, ordered by name, with group names as the
// directory currently knows them.
func (s *Store) ListRules(ctx context.Context) ([]Rule, error) {
	return listRules(ctx, s.pool, "")
}

// GetRule returns one rule or ErrNotFound.
func (s *Store) GetRule(ctx context.Context, name string) (Rule, error) {
	rs, err := listRules(ctx, s.pool, name)
	if err != nil {
		return Rule{}, err
	}
	if len(rs) == 0 {
		return Rule{}, fmt.Errorf("rule %q: %w", name, ErrNotFound)
	}
	return rs[0], nil
}

func listRules(ctx context.Context, q querier, name string) ([]Rule, error) {
	sql := `SELECT ` + ruleColumns + ` FROM rules r`
	args := []any{}
	if name != "" {
		sql += ` WHERE r.name = $1`
		args = append(args, name)
	}
	sql += ` ORDER BY r.name`
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	var out []Rule
	byID := map[int64]int{}
	for rows.Next() {
		var r Rule
		var id int64
		var mode string
		if err := rows.Scan(&id, &r.Name, &r.Path, &r.Methods, &r.Hosts, &r.Public, &r.AllowAuthenticated,
			&r.Scopes, &r.Description, &r.Enabled, &mode, &r.CreatedAt, &r.UpdatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list rules: %w", err)
		}
		r.Mode = policy.Mode(mode)
		byID[id] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	gsql := `SELECT g.rule_id, g.kind, g.group_id, coalesce(o.name, g.group_name)
		FROM rule_groups g LEFT JOIN okta_groups o ON o.id = g.group_id`
	var gargs []any
	if name != "" {
		gsql += ` WHERE g.rule_id = (SELECT id FROM rules WHERE name = $1)`
		gargs = append(gargs, name)
	}
	gsql += ` ORDER BY g.rule_id, g.kind, g.position`
	grows, err := q.Query(ctx, gsql, gargs...)
	if err != nil {
		return nil, fmt.Errorf("list rule groups: %w", err)
	}
	defer grows.Close()
	for grows.Next() {
		var id int64
		var kind, gname string
		var gid *string
		if err := grows.Scan(&id, &kind, &gid, &gname); err != nil {
			return nil, fmt.Errorf("list rule groups: %w", err)
		}
		i, ok := byID[id]
		if !ok {
			continue
		}
		ref := policy.GroupRef{Name: gname}
		if gid != nil {
			ref.ID = *gid
		}
		if kind == "allow" {
			out[i].Allow = append(out[i].Allow, ref)
		} else {
			out[i].Deny = append(out[i].Deny, ref)
		}
	}
	return out, grows.Err()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// insertRule writes r (already validated) inside tx.
func insertRule(ctx context.Context, tx pgx.Tx, r policy.Rule) error {
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO rules (name, path, methods, hosts, public, allow_authenticated, scopes, description, enabled, mode)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		r.Name, r.Path, nonNil(r.Methods), nonNil(r.Hosts), r.Public, r.AllowAuthenticated, nonNil(r.Scopes),
		r.Description, r.Enabled, string(r.Mode)).Scan(&id)
	if isUniqueViolation(err) {
		return fmt.Errorf("rule %q: %w", r.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("insert rule %q: %w", r.Name, err)
	}
	for kind, refs := range map[string][]policy.GroupRef{"allow": r.Allow, "deny": r.Deny} {
		for i, g := range refs {
			var gid *string
			if g.ID != "" {
				gid = &g.ID
			}
			if _, err := tx.Exec(ctx, `INSERT INTO rule_groups (rule_id, kind, position, group_id, group_name) VALUES ($1, $2, $3, $4, $5)`,
				id, kind, i, gid, g.Name); err != nil {
				return fmt.Errorf("insert rule %q groups: %w", r.Name, err)
			}
		}
	}
	return nil
}

// AdminEvent is one entry of the admin event log.
type AdminEvent struct {
	ID            int64           `json:"id" yaml:"id"`
	Time          time.Time       `json:"time" yaml:"time"`
	Actor         string          `json:"actor" yaml:"actor"`
	Action        string          `json:"action" yaml:"action"`
	ObjectType    string          `json:"object_type" yaml:"object_type"`
	ObjectName    string          `json:"object_name" yaml:"object_name"`
	Before        json.RawMessage `json:"before,omitempty" yaml:"before,omitempty"`
	After         json.RawMessage `json:"after,omitempty" yaml:"after,omitempty"`
	PolicyVersion int64           `json:"policy_version,omitempty" yaml:"policy_version,omitempty"`
}

func adminEvent(ctx context.Context, tx pgx.Tx, actor, action, objType, objName string, before, after any, version int64) error {
	var b, a []byte
	var err error
	if before != nil {
		if b, err = json.Marshal(before); err != nil {
			return err
		}
	}
	if after != nil {
		if a, err = json.Marshal(after); err != nil {
			return err
		}
	}
	var pv *int64
	if version > 0 {
		pv = &version
	}
	_, err = tx.Exec(ctx, `INSERT INTO admin_events (actor, action, object_type, object_name, before, after, policy_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, actor, action, objType, objName, b, a, pv)
	if err != nil {
		return fmt.Errorf("record admin event: %w", err)
	}
	return nil
}

// AddRule stores a new rule (validated by the caller) as one policy version.
func (s *Store) AddRule(ctx context.Context, r policy.Rule, actor string) (int64, error) {
	var v int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if err := insertRule(ctx, tx, r); err != nil {
			return err
		}
		var err error
		if v, err = bumpPolicy(ctx, tx, actor, "rules add "+r.Name); err != nil {
			return err
		}
		return adminEvent(ctx, tx, actor, "rule.add", "rule", r.Name, nil, r, v)
	})
	return v, err
}

// RemoveRule deletes a rule as one policy version.
func (s *Store) RemoveRule(ctx context.Context, name, actor string) (int64, error) {
	var v int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		before, err := listRules(ctx, tx, name)
		if err != nil {
			return err
		}
		if len(before) == 0 {
			return fmt.Errorf("rule %q: %w", name, ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE name = $1`, name); err != nil {
			return fmt.Errorf("delete rule %q: %w", name, err)
		}
		if v, err = bumpPolicy(ctx, tx, actor, "rules rm "+name); err != nil {
			return err
		}
		return adminEvent(ctx, tx, actor, "rule.remove", "rule", name, before[0].Rule, nil, v)
	})
	return v, err
}

// SetRuleEnabled enables or disables a rule. When the rule is already in that
// state nothing is written and changed is false.
func (s *Store) SetRuleEnabled(ctx context.Context, name string, enabled bool, actor string) (v int64, changed bool, err error) {
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		before, err := listRules(ctx, tx, name)
		if err != nil {
			return err
		}
		if len(before) == 0 {
			return fmt.Errorf("rule %q: %w", name, ErrNotFound)
		}
		if before[0].Enabled == enabled {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE rules SET enabled = $2, updated_at = now() WHERE name = $1`, name, enabled); err != nil {
			return fmt.Errorf("update rule %q: %w", name, err)
		}
		action := "disable"
		if enabled {
			action = "enable"
		}
		if v, err = bumpPolicy(ctx, tx, actor, "rules "+action+" "+name); err != nil {
			return err
		}
		after := before[0].Rule
		after.Enabled = enabled
		changed = true
		return adminEvent(ctx, tx, actor, "rule."+action, "rule", name, before[0].Rule, after, v)
	})
	return v, changed, err
}

// ListAdminEvents returns admin events newest first.
func (s *Store) ListAdminEvents(ctx context.Context, objectType, objectName string, since time.Time, limit int) ([]AdminEvent, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT id, time, actor, action, object_type, object_name, before, after, coalesce(policy_version, 0)
		FROM admin_events
		WHERE ($1 = '' OR object_type = $1) AND ($2 = '' OR object_name = $2) AND time >= $3
		ORDER BY id DESC LIMIT $4`, objectType, objectName, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list admin events: %w", err)
	}
	defer rows.Close()
	var out []AdminEvent
	for rows.Next() {
		var e AdminEvent
		var b, a []byte
		if err := rows.Scan(&e.ID, &e.Time, &e.Actor, &e.Action, &e.ObjectType, &e.ObjectName, &b, &a, &e.PolicyVersion); err != nil {
			return nil, err
		}
		e.Before, e.After = b, a
		out = append(out, e)
	}
	return out, rows.Err()
}

// Snapshot is a consistent view of everything a replica decides with.
type Snapshot struct {
	PolicyVersion    int64
	DirectoryVersion int64
	Rules            []policy.Rule
}

// LoadSnapshot reads rules and versions in one repeatable-read transaction so
// the version matches the rules.
func (s *Store) LoadSnapshot(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT name, version FROM versions`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			var v int64
			if err := rows.Scan(&n, &v); err != nil {
				rows.Close()
				return err
			}
			if n == "policy" {
				snap.PolicyVersion = v
			} else if n == "directory" {
				snap.DirectoryVersion = v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rs, err := listRules(ctx, tx, "")
		if err != nil {
			return err
		}
		snap.Rules = make([]policy.Rule, len(rs))
		for i, r := range rs {
			snap.Rules[i] = r.Rule
		}
		// Every ref is marked, bound ones too: a bound group whose name
		// another synced group shares ignoring case is granted to a token's
		// group name only by the exact name (policy.Groups.Mark).
		gs, err := groupIndex(ctx, tx)
		if err != nil {
			return err
		}
		gs.MarkRules(snap.Rules)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load snapshot: %w", err)
	}
	return snap, nil
}

// LoadRules returns every rule with the policy version they belong to, read
// in one repeatable-read transaction.
func (s *Store) LoadRules(ctx context.Context) (int64, []policy.Rule, error) {
	snap, err := s.LoadSnapshot(ctx)
	if err != nil {
		return 0, nil, err
	}
	return snap.PolicyVersion, snap.Rules, nil
}
