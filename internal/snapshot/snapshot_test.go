package snapshot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/policy"
)

// memSource is an in-memory Source: the watcher's logic (what to reload,
// what to keep on failure) is tested here; LISTEN/NOTIFY and the SQL are
// tested against PostgreSQL in internal/store and internal/server.
type memSource struct {
	mu         sync.Mutex
	pv, dv     int64
	rules      []policy.Rule
	dir        *directory.Directory
	down       bool
	ruleLoads  int
	dirLoads   int
	groupNames map[string]string // directory renames, applied to rule refs by id
	// syncBetween makes the next LoadDirectory see a newer directory than
	// the LoadRules before it.
	syncBetween bool
}

func (m *memSource) Versions(context.Context) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return 0, 0, errors.New("connection refused")
	}
	return m.pv, m.dv, nil
}

func (m *memSource) LoadRules(context.Context) (int64, []policy.Rule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ruleLoads++
	out := make([]policy.Rule, len(m.rules))
	for i, r := range m.rules {
		r.Allow = append([]policy.GroupRef(nil), r.Allow...)
		for j, g := range r.Allow {
			if n, ok := m.groupNames[g.ID]; ok {
				r.Allow[j].Name = n
			}
		}
		out[i] = r
	}
	return m.pv, out, nil
}

func (m *memSource) LoadDirectory(context.Context) (*directory.Directory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirLoads++
	if m.syncBetween {
		// A sync commits after the rules were loaded, before the directory.
		m.syncBetween = false
		m.dv++
	}
	return directory.New(m.dv, true, nil), nil
}

func (m *memSource) Listen(ctx context.Context, _ *slog.Logger, _ func(), _ func(string)) {
	<-ctx.Done()
}

func rule(name, group string) policy.Rule {
	return policy.Rule{Name: name, Path: "/x/**", Allow: []policy.GroupRef{{ID: "00gfin0000000000000a", Name: group}}, Enabled: true, Mode: policy.ModeEnforce}
}

func allowed(t *testing.T, w *Watcher, group string) bool {
	t.Helper()
	s := w.Current()
	c := policy.NewCaller("u", []policy.GroupRef{{Name: group}}, nil)
	return s.Policy.Decide(policy.Request{Method: "GET", Path: "/x/1"}, c).Effect == policy.Allow
}

func TestWatcherReloadsWhatChangedAndKeepsLastGood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &memSource{pv: 1, dv: 1, rules: []policy.Rule{rule("fin", "Finance")}, groupNames: map[string]string{}}
	w := New(Config{Source: src})
	if w.Current() != nil {
		t.Fatal("a snapshot before any load")
	}
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !allowed(t, w, "finance") || w.Current().PolicyVersion != 1 {
		t.Fatal("first load")
	}
	// Nothing changed: nothing is reloaded.
	w.Load(ctx)
	if src.ruleLoads != 1 || src.dirLoads != 1 {
		t.Fatalf("unchanged versions reloaded: rules %d, directory %d", src.ruleLoads, src.dirLoads)
	}
	// A rename in the directory recompiles the rules under the new name.
	src.mu.Lock()
	src.dv, src.groupNames["00gfin0000000000000a"] = 2, "Finance-EMEA"
	src.mu.Unlock()
	w.Load(ctx)
	if !allowed(t, w, "Finance-EMEA") || allowed(t, w, "Finance") || src.ruleLoads != 2 {
		t.Fatalf("directory change did not recompile rules (loads %d)", src.ruleLoads)
	}
	// Database down: the last good snapshot stays.
	src.mu.Lock()
	src.down, src.pv = true, 3
	src.mu.Unlock()
	if err := w.Load(ctx); err == nil {
		t.Fatal("load with the database down reported no error")
	}
	if s := w.Current(); s == nil || s.PolicyVersion != 1 || !allowed(t, w, "Finance-EMEA") {
		t.Fatal("the last good snapshot was not kept")
	}
	// A stored rule that no longer compiles: keep the last good policy.
	src.mu.Lock()
	src.down = false
	src.rules = append(src.rules, policy.Rule{Name: "broken", Path: "no-slash", Public: true, Enabled: true})
	src.mu.Unlock()
	if err := w.Load(ctx); err == nil {
		t.Fatal("a policy that does not compile was accepted")
	}
	if w.Current().PolicyVersion != 1 {
		t.Fatal("a broken policy replaced the last good one")
	}
}

// TestWatcherWarnsOfAmbiguousNames: a rule naming a group by a name several
// synced groups share (marked by the store) grants nobody, and the replica's
// log says why, as the refusals themselves only say "forbidden".
func TestWatcherWarnsOfAmbiguousNames(t *testing.T) {
	t.Parallel()
	amb := policy.GroupRef{Name: "Sales"}
	policy.NewGroups([]policy.GroupRef{{ID: "00gsales", Name: "Sales"}, {ID: "00gcontractors", Name: "SALES"}}).Mark(&amb)
	src := &memSource{pv: 1, dv: 1, rules: []policy.Rule{
		{Name: "sales", Path: "/x/**", Allow: []policy.GroupRef{amb}, Enabled: true},
		{Name: "no-sales", Path: "/y/**", Deny: []policy.GroupRef{amb}, Enabled: true},
	}}
	var log bytes.Buffer
	w := New(Config{Source: src, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := w.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if allowed(t, w, "Sales") || allowed(t, w, "SALES") {
		t.Error("an ambiguous allow granted")
	}
	for _, want := range []string{
		`level=WARN msg="rule allows a group by a name several synced groups share: it grants nobody until the rule names the group by id" rule=sales group=Sales group_ids=00gcontractors,00gsales`,
		`msg="rule denies a group by a name several synced groups share: it denies the members of each until the rule names the group by id" rule=no-sales group=Sales`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log:\n%s\nwant %s", log.String(), want)
		}
	}
}

// A sync that commits between loading the rules (marked against the
// directory of their transaction) and loading the directory must not leave
// the rules marked against the older directory: the snapshot records the
// directory version read before the rules, so the next check reloads both.
func TestWatcherReloadsAfterASyncBetweenLoads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &memSource{pv: 1, dv: 1, rules: []policy.Rule{rule("fin", "Finance")}, groupNames: map[string]string{}, syncBetween: true}
	w := New(Config{Source: src})
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if src.ruleLoads != 2 || w.Current().DirectoryVersion != 2 {
		t.Fatalf("rule loads %d, directory version %d: the rules were not reloaded against the newer directory", src.ruleLoads, w.Current().DirectoryVersion)
	}
	w.Load(ctx)
	if src.ruleLoads != 2 {
		t.Fatalf("rule loads %d after nothing changed", src.ruleLoads)
	}
}
