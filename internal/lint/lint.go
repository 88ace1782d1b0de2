// Package lint finds rules and quotas that are wrong or pointless although
// each is valid on its own: groups Okta no longer has, rules that can never
// grant anyone, duplicates, public routes that deny rules cannot protect,
// report-only rules left unpromoted, quotas that never apply.
//
// It is pure: the caller (okproxy rules lint) reads rules, quotas and the
// synced directory from the database and passes the clock's reading in.
// Each finding names its rules and says what to do about it.
package lint

import (
	"slices"
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// Check identifies the kind of a finding.
type Check string

const (
	UnknownGroup    Check = "unknown-group"        // a group the synced directory never had
	DeletedGroup    Check = "deleted-group"        // bound to an id the directory no longer has
	RenamedGroup    Check = "renamed-group"        // bound id whose Okta name changed (informational)
	UnboundGroup    Check = "unbound-group"        // named only by name although the directory has it (informational)
	AmbiguousGroup  Check = "ambiguous-group"      // named only by a name several synced groups share
	NeverGrants     Check = "never-grants"         // a rule that cannot grant anyone
	Duplicate       Check = "duplicate"            // rules identical apart from name and description
	PublicOverDeny  Check = "public-overlaps-deny" // a deny rule on a route a public rule opens
	StaleReportOnly Check = "stale-report-only"    // report-only longer than the threshold
	QuotaNotGranted Check = "quota-never-applies"  // a quota on a group no rule grants there
	RegexLike       Check = "regex-like-path"      // a path pattern that reads like a regular expression
)

// order is the order findings are reported in.
var order = []Check{AmbiguousGroup, UnknownGroup, DeletedGroup, NeverGrants, RegexLike, Duplicate, PublicOverDeny, StaleReportOnly, QuotaNotGranted, RenamedGroup, UnboundGroup}

// Severity says whether a finding fails the lint (warning) or is only
// worth knowing (info).
type Severity string

const (
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding is one problem, the objects involved, and what to do.
type Finding struct {
	Check    Check    `json:"check"`
	Severity Severity `json:"severity"`
	Rules    []string `json:"rules,omitempty"`
	Quotas   []string `json:"quotas,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix"`
}

// Rule is a stored rule. Its group refs carry the id they are bound to (if
// any) and the name stored with the rule, which may have gone stale.
type Rule struct {
	policy.Rule
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Quota is the part of a stored quota lint looks at.
type Quota struct {
	Name    string
	Group   policy.GroupRef
	Path    string
	Methods []string
}

// Directory is what lint needs of the synced directory.
type Directory struct {
	// Synced is true once a sync has completed. Before that every group is
	// reported as unknown; the checks that conclude a group is gone (and a
	// rule can never grant) are skipped, as nothing can be concluded yet.
	Synced bool
	// Groups maps each synced group's id to its current name.
	Groups map[string]string
}

// Input is everything lint looks at.
type Input struct {
	Rules     []Rule
	Quotas    []Quota
	Directory Directory
	// Now is the time report-only ages are measured against.
	Now time.Time
	// ReportMaxAge is how long a rule may stay report-only (default 14 days).
	ReportMaxAge time.Duration
}

// DefaultReportMaxAge is the default threshold for StaleReportOnly.
const DefaultReportMaxAge = 14 * 24 * time.Hour

// Run returns every finding, ordered by check and then by the names involved.
func Run(in Input) []Finding {
	if in.ReportMaxAge <= 0 {
		in.ReportMaxAge = DefaultReportMaxAge
	}
	gs := make([]policy.GroupRef, 0, len(in.Directory.Groups))
	for id, name := range in.Directory.Groups {
		gs = append(gs, policy.GroupRef{ID: id, Name: name})
	}
	l := &linter{in: in, byName: policy.NewGroups(gs)}
	l.rules = make([]rule, len(in.Rules))
	for i := range in.Rules {
		l.rules[i] = l.prepare(in.Rules[i])
	}
	var out []Finding
	out = append(out, l.groups()...)
	out = append(out, l.neverGrants()...)
	out = append(out, l.duplicates()...)
	out = append(out, l.publicOverDeny()...)
	out = append(out, l.staleReportOnly()...)
	out = append(out, l.regexLike()...)
	out = append(out, l.quotasNotGranted()...)
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := slices.Index(order, a.Check) - slices.Index(order, b.Check); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.Rules, ",")+"|"+strings.Join(a.Quotas, ","), strings.Join(b.Rules, ",")+"|"+strings.Join(b.Quotas, ","))
	})
	return out
}

// Failed reports whether any finding is a warning: `rules lint` exits 3 then.
func Failed(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Warning })
}

// linter holds the input with each rule's match conditions prepared once.
type linter struct {
	in    Input
	rules []rule
	// byName finds synced groups by name, compared as Decide compares them.
	byName *policy.Groups
}

type rule struct {
	*Rule
	path    pattern
	methods methodSet
	hosts   []string
}

func (l *linter) prepare(r Rule) rule {
	// Normalize sorts in place: work on a copy so the caller's input stays as given.
	r.Rule = r.Rule.Clone()
	r.Normalize()
	return rule{Rule: &r, path: parsePattern(r.Path), methods: newMethodSet(r.Methods), hosts: r.Hosts}
}

// enforcing reports whether the rule changes real decisions.
func (r rule) enforcing() bool { return r.Enabled && r.Mode != policy.ModeReport }

// state is what the directory says about a group ref.
type state int

const (
	known state = iota
	unknown
	deleted
	renamed
	unbound   // stored by name only, but the directory has a group of that name
	ambiguous // stored by name only, and the directory has several groups of that name
)

func (l *linter) state(g policy.GroupRef) (state, string) {
	if !l.in.Directory.Synced {
		return known, ""
	}
	if g.ID == "" {
		switch ids := l.byName.Matching(g.Name); {
		case len(ids) > 1:
			return ambiguous, strings.Join(ids, ", ")
		case len(ids) == 1:
			return unbound, ids[0]
		}
		return unknown, ""
	}
	cur, ok := l.in.Directory.Groups[g.ID]
	switch {
	case !ok:
		return deleted, ""
	case g.Name != "" && g.Name != g.ID && cur != g.Name:
		return renamed, cur
	}
	return known, cur
}

// gone reports whether no Okta group can stand behind the ref any more.
func (l *linter) gone(g policy.GroupRef) bool {
	s, _ := l.state(g)
	return s == unknown || s == deleted
}

// ambiguous reports whether g is a name several synced groups share: Decide
// grants nothing by it (and a quota by it applies to nobody) until it is
// bound by id.
func (l *linter) ambiguous(g policy.GroupRef) bool {
	s, _ := l.state(g)
	return s == ambiguous
}

// grantsNobody reports whether an allow list naming g can admit no one
// because of g: g is gone, or ambiguous.
func (l *linter) grantsNobody(g policy.GroupRef) bool {
	return l.gone(g) || l.ambiguous(g)
}

// name is the group's name as people know it now.
func (l *linter) name(g policy.GroupRef) string {
	if st, cur := l.state(g); cur != "" && st != unbound && st != ambiguous {
		return cur
	}
	return g.String()
}

// same reports whether two refs name the same group as Decide sees it: the
// same id, or, when either is unbound, the same name ignoring case.
func (l *linter) same(a, b policy.GroupRef) bool {
	if a.ID != "" && b.ID != "" {
		return a.ID == b.ID
	}
	return strings.EqualFold(l.name(a), l.name(b))
}

func quote(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + n + `"`
	}
	return strings.Join(q, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
