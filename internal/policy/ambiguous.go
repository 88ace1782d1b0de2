package policy

import (
	"slices"
	"strings"
)

// Groups indexes the synced directory's groups by name, folded exactly as
// Decide compares names, to tell which references by name are ambiguous:
// Okta lets two groups have names that compare equal (an APP_GROUP imported
// from AD may repeat an OKTA_GROUP's name), and a rule stored by name before
// the sync cannot say which of them it meant.
type Groups struct {
	byName  map[string][]string // foldKey(name) -> ids, sorted
	byExact map[string]int      // exact name -> how many groups have it
}

// NewGroups indexes groups, each with its ID and current Name.
func NewGroups(groups []GroupRef) *Groups {
	g := &Groups{byName: make(map[string][]string, len(groups)), byExact: make(map[string]int, len(groups))}
	for _, x := range groups {
		if x.ID == "" {
			continue
		}
		k := foldKey(x.Name)
		if !slices.Contains(g.byName[k], x.ID) {
			g.byName[k] = append(g.byName[k], x.ID)
			g.byExact[x.Name]++
		}
	}
	for _, ids := range g.byName {
		slices.Sort(ids)
	}
	return g
}

// Matching returns the ids of the groups whose name compares equal to name
// (case-insensitively), sorted; the caller must not modify them.
func (g *Groups) Matching(name string) []string {
	if g == nil {
		return nil
	}
	return g.byName[foldKey(name)]
}

// Mark makes ref ambiguous (IsAmbiguous) when it has no id and its name
// matches two or more groups, and unambiguous otherwise. A ref bound to an
// id whose name other synced groups share ignoring case is marked so that a
// token's group names grant it only by the exact name, or not at all when
// the exact name is shared too: a token saying "SALES" must not be taken
// for the group "Sales" when both exist.
func (g *Groups) Mark(ref *GroupRef) {
	ref.amb, ref.nameMatch = nil, nameFold
	if ref.ID != "" {
		if g != nil && len(g.Matching(ref.Name)) > 1 {
			ref.nameMatch = nameExact
			if g.byExact[ref.Name] > 1 {
				ref.nameMatch = nameNever
			}
		}
		return
	}
	if ids := g.Matching(ref.Name); len(ids) > 1 {
		ids = slices.Clone(ids)
		ref.amb = &ids
	}
}

// MarkRules marks every allow and deny reference of rules, in place.
func (g *Groups) MarkRules(rules []Rule) {
	for i := range rules {
		for j := range rules[i].Allow {
			g.Mark(&rules[i].Allow[j])
		}
		for j := range rules[i].Deny {
			g.Mark(&rules[i].Deny[j])
		}
	}
}

// IsAmbiguous reports whether Groups.Mark found the ref to be a name several
// synced groups share: an allow or a quota by it applies to nobody, a deny
// by it to the members of each.
func (g GroupRef) IsAmbiguous() bool { return g.ID == "" && g.amb != nil }

// AmbiguousIDs returns the ids of the groups an ambiguous ref could mean,
// sorted (nil unless IsAmbiguous); the caller must not modify them.
func (g GroupRef) AmbiguousIDs() []string {
	if !g.IsAmbiguous() {
		return nil
	}
	return *g.amb
}

// TokenNameGrants reports whether a caller group known only by its name (a
// token's groups claim) is in the group ref names, as an allow or a quota
// reads it: see Groups.Mark.
func (g GroupRef) TokenNameGrants(name string) bool {
	if g.IsAmbiguous() || name == "" || g.Name == "" {
		return false
	}
	switch g.nameMatch {
	case nameExact:
		return name == g.Name
	case nameNever:
		return false
	}
	return strings.EqualFold(name, g.Name) // as foldKey compares, without allocating
}
