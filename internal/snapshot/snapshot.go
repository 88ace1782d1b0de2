// Package snapshot keeps a replica's view of the policy and the directory:
// loaded at start, compiled, and swapped atomically whenever the database
// says something changed (LISTEN/NOTIFY, with a periodic poll as fallback).
// When the database is unreachable the last good snapshot keeps serving; a
// replica that never loaded one has none, and the proxy fails closed.
package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/policy"
)

// Snapshot is an immutable, compiled view; requests read it without locks.
type Snapshot struct {
	PolicyVersion    int64
	DirectoryVersion int64
	Policy           *policy.Policy
	Rules            []policy.Rule
	Directory        *directory.Directory
	LoadedAt         time.Time
}

// Source is the database side, implemented by internal/store.
type Source interface {
	// Versions returns the current policy and directory versions (cheap).
	Versions(ctx context.Context) (policyVersion, directoryVersion int64, err error)
	// LoadRules returns the rules and the policy version they belong to.
	LoadRules(ctx context.Context) (version int64, rules []policy.Rule, err error)
	// LoadDirectory returns the synced directory.
	LoadDirectory(ctx context.Context) (*directory.Directory, error)
	// Listen calls onConnect after each (re)connect and onNotify per change
	// notification until ctx ends.
	Listen(ctx context.Context, log *slog.Logger, onConnect func(), onNotify func(payload string))
}

// Config configures a Watcher.
type Config struct {
	Source Source
	// Poll is the fallback poll interval for missed notifications (default 5s).
	Poll time.Duration
	// Logger receives reload events.
	Logger *slog.Logger
	// OnSwap, when set, is called after each successful swap (metrics).
	OnSwap func(s *Snapshot)
	// OnError, when set, is called after each failed reload (metrics).
	OnError func(err error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Watcher owns the current snapshot.
type Watcher struct {
	cfg     Config
	current atomic.Pointer[Snapshot]
	kick    chan struct{}
	mu      sync.Mutex // serialises reloads
}

// New makes a watcher; call Load once and Run in a goroutine.
func New(cfg Config) *Watcher {
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Watcher{cfg: cfg, kick: make(chan struct{}, 1)}
}

// Current returns the snapshot in force, or nil when none was ever loaded.
func (w *Watcher) Current() *Snapshot { return w.current.Load() }

// Set installs s directly (tests and `rules test --policy`).
func (w *Watcher) Set(s *Snapshot) { w.current.Store(s) }

// Load reloads whatever changed since the current snapshot.
func (w *Watcher) Load(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.current.Load()
	pv, dv, err := w.cfg.Source.Versions(ctx)
	if err != nil {
		return w.fail(fmt.Errorf("read versions: %w", err))
	}
	if cur != nil && cur.PolicyVersion == pv && cur.DirectoryVersion == dv {
		return nil
	}
	next := &Snapshot{LoadedAt: w.cfg.Now()}
	if cur != nil {
		*next = *cur
		next.LoadedAt = w.cfg.Now()
	}
	// Rules name their groups by the directory's current names (a group
	// renamed in Okta keeps its rules), so a directory change recompiles them.
	if cur == nil || cur.PolicyVersion != pv || cur.DirectoryVersion != dv {
		v, rules, err := w.cfg.Source.LoadRules(ctx)
		if err != nil {
			return w.fail(fmt.Errorf("load rules: %w", err))
		}
		p, err := policy.Compile(rules)
		if err != nil {
			// A stored rule that does not compile must not take the replica
			// down: keep the last good policy and say so loudly.
			return w.fail(fmt.Errorf("compile policy version %d: %w", v, err))
		}
		next.PolicyVersion, next.Policy, next.Rules = v, p, rules
		w.warnAmbiguous(rules)
	}
	if cur == nil || cur.DirectoryVersion != dv {
		d, err := w.cfg.Source.LoadDirectory(ctx)
		if err != nil {
			return w.fail(fmt.Errorf("load directory: %w", err))
		}
		// The version read before the rules were loaded, not d.Version: the
		// rules were marked against the directory of their own transaction
		// (shared group names, store.LoadSnapshot), and a sync that commits
		// between the two loads must trigger another reload, which it does
		// only while the recorded version is older than the database's.
		next.Directory, next.DirectoryVersion = d, dv
	}
	w.current.Store(next)
	w.cfg.Logger.Info("snapshot loaded", "policy_version", next.PolicyVersion, "directory_version", next.DirectoryVersion,
		"rules", len(next.Rules), "users", next.Directory.Len())
	if w.cfg.OnSwap != nil {
		w.cfg.OnSwap(next)
	}
	return nil
}

// warnAmbiguous logs each group a rule names by a name several synced
// groups share: the refusals it causes say only "forbidden", so the reason
// must be in the log (and in okproxy rules lint).
func (w *Watcher) warnAmbiguous(rules []policy.Rule) {
	for _, r := range rules {
		for _, g := range r.Allow {
			if g.IsAmbiguous() {
				w.cfg.Logger.Warn("rule allows a group by a name several synced groups share: it grants nobody until the rule names the group by id",
					"rule", r.Name, "group", g.Name, "group_ids", strings.Join(g.AmbiguousIDs(), ","))
			}
		}
		for _, g := range r.Deny {
			if g.IsAmbiguous() {
				w.cfg.Logger.Warn("rule denies a group by a name several synced groups share: it denies the members of each until the rule names the group by id",
					"rule", r.Name, "group", g.Name, "group_ids", strings.Join(g.AmbiguousIDs(), ","))
			}
		}
	}
}

func (w *Watcher) fail(err error) error {
	w.cfg.Logger.Error("snapshot reload failed; keeping the last good snapshot", "err", err)
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
	return err
}

// Kick asks Run to reload soon.
func (w *Watcher) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run listens for changes and polls until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	go w.cfg.Source.Listen(ctx, w.cfg.Logger, w.Kick, func(string) { w.Kick() })
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		w.Load(lctx)
		cancel()
	}
}
