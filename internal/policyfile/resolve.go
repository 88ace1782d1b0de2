package policyfile

import (
	"github.com/okproxy/okproxy/internal/policy"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Directory is the synced Okta groups, as resolving a file needs them.
type Directory struct {
	// Synced is true once a directory sync has completed; before that every
	// group is unknown and nothing is worth a warning beyond saying so.
	Synced bool
	byID   map[string]string
	byName map[string][]Group
}

// NewDirectory indexes groups (id and current name of each synced group).
func NewDirectory(synced bool, groups []Group) *Directory {
	d := &Directory{Synced: synced, byID: make(map[string]string, len(groups)), byName: make(map[string][]Group, len(groups))}
	for _, g := range groups {
		d.byID[g.ID] = g.Name
		k := policy.FoldName(g.Name)
		d.byName[k] = append(d.byName[k], g)
	}
	for _, gs := range d.byName {
		sort.Slice(gs, func(i, j int) bool { return gs[i].ID < gs[j].ID })
	}
	return d
}

// Matching returns the synced groups whose name equals name ignoring case
// (policy.FoldName), sorted by id; the caller must not modify them.
func (d *Directory) Matching(name string) []Group {
	if d == nil {
		return nil
	}
	return d.byName[policy.FoldName(name)]
}

// Name returns the current name of the group with that id.
func (d *Directory) Name(id string) (string, bool) {
	if d == nil {
		return "", false
	}
	n, ok := d.byID[id]
	return n, ok
}

// oktaGroupID is the shape of an Okta group id; a bare name of this shape is
// taken as an id, as `rules add --allow 00g…` does.
var oktaGroupID = regexp.MustCompile(`^00g[0-9A-Za-z]{17}$`)

// resolution is what Resolve decided for one reference.
type resolution struct {
	group   Group
	unknown bool   // not in the directory: stored as given
	renamed string // the file's name, when the directory calls the group otherwise
	amb     []string
}

func (d *Directory) resolve(g Group) resolution {
	g.Name, g.ID = strings.TrimSpace(g.Name), strings.TrimSpace(g.ID)
	if g.ID == "" && oktaGroupID.MatchString(g.Name) {
		g.ID, g.Name = g.Name, ""
	}
	if g.ID != "" {
		cur, ok := d.Name(g.ID)
		if !ok {
			// Keep the name the file gives: it is all a reader has until the
			// directory knows the id, and it keeps export → apply exact.
			if g.Name == "" {
				g.Name = g.ID
			}
			return resolution{group: g, unknown: true}
		}
		res := resolution{group: Group{ID: g.ID, Name: cur}}
		if g.Name != "" && g.Name != g.ID && !strings.EqualFold(g.Name, cur) {
			res.renamed = g.Name
		}
		return res
	}
	ms := d.Matching(g.Name)
	switch len(ms) {
	case 0:
		return resolution{group: g, unknown: true}
	case 1:
		return resolution{group: ms[0]}
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return resolution{group: g, amb: ids}
}

// Resolve binds every group of the file to the directory, in place: an id
// (given, or a bare name shaped like one) stays bound to that id and takes
// the directory's current name; a name is bound to the one synced group of
// that name (case-insensitively). Groups the directory does not know are
// kept as written and reported once each in warnings (SPEC §3: accepted with
// a warning, reported by lint); a name that matches several synced groups is
// an error, since binding to either could grant the wrong people.
func (f *File) Resolve(dir *Directory) (warnings Problems, err error) {
	var errs Problems
	type seenGroup struct {
		label string
		line  int
		obj   string
		field string
		uses  int
	}
	unknown := map[string]*seenGroup{}
	var order []string
	note := func(res resolution, line int, obj, field string) {
		k := res.group.key()
		if s, ok := unknown[k]; ok {
			s.uses++
			return
		}
		unknown[k] = &seenGroup{label: res.group.String(), line: line, obj: obj, field: field, uses: 1}
		order = append(order, k)
	}
	one := func(g Group, line int, obj, field string) Group {
		res := dir.resolve(g)
		switch {
		case res.amb != nil:
			errs = append(errs, Problem{File: f.Name, Line: line, Object: obj, Field: field,
				Message: "group " + strconv.Quote(g.Name) + " matches " + strconv.Itoa(len(res.amb)) + " synced groups (" + strings.Join(res.amb, ", ") + "): name it by id"})
		case res.unknown:
			note(res, line, obj, field)
		case res.renamed != "":
			warnings = append(warnings, Problem{File: f.Name, Line: line, Object: obj, Field: field,
				Message: "group " + res.group.ID + " is now called " + strconv.Quote(res.group.Name) + " in Okta (the file says " + strconv.Quote(res.renamed) + "); the rule stays bound to the id"})
		}
		return res.group
	}
	for i := range f.Doc.Rules {
		r := &f.Doc.Rules[i]
		obj := objectLabel("rule", strings.TrimSpace(r.Name), i)
		for j, g := range r.Allow {
			r.Allow[j] = one(g, f.RuleLine(i, "allow["+strconv.Itoa(j)+"]"), obj, "allow")
		}
		for j, g := range r.Deny {
			r.Deny[j] = one(g, f.RuleLine(i, "deny["+strconv.Itoa(j)+"]"), obj, "deny")
		}
	}
	for i := range f.Doc.Quotas {
		q := &f.Doc.Quotas[i]
		q.Group = one(q.Group, f.QuotaLine(i, "group"), objectLabel("quota", strings.TrimSpace(q.Name), i), "group")
	}
	if len(order) > 0 && (dir == nil || !dir.Synced) {
		// Before the first sync every group is unknown: one note, not one per group.
		warnings = append(warnings, Problem{File: f.Name, Message: strconv.Itoa(len(order)) +
			" group(s) stored as written because the Okta directory has never been synced; run okproxy groups sync, then okproxy rules lint"})
		order = nil
	}
	for _, k := range order {
		s := unknown[k]
		msg := "group " + strconv.Quote(s.label) + " is not in the synced directory; stored as written"
		if s.uses > 1 {
			msg += " (used " + strconv.Itoa(s.uses) + " times)"
		}
		msg += ": check the spelling, run okproxy groups sync, then okproxy rules lint"
		warnings = append(warnings, Problem{File: f.Name, Line: s.line, Object: s.obj, Field: s.field, Message: msg})
	}
	if len(errs) > 0 {
		return warnings.sorted(), errs.sorted()
	}
	return warnings.sorted(), nil
}
