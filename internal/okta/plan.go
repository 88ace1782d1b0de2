package okta

import (
	"github.com/okproxy/okproxy/internal/policy"
	"maps"
	"slices"
	"time"
)

// State is the directory as the store holds it before a sync.
type State struct {
	Groups map[string]Group
	// Members maps a group id to its members' user ids.
	Members map[string]map[string]bool
	Users   map[string]User
	Rules   map[string]GroupRule
	// Unbound are okproxy rule group references still stored by name
	// (group_id NULL); a sync binds those whose name now matches exactly
	// one synced group.
	Unbound []RuleGroupRef
	// LastOK is the last successful sync, nil before the first one.
	LastOK *LastRun
}

// LastRun describes a finished sync run.
type LastRun struct {
	StartedAt time.Time
	// OktaAsOf is Okta's clock when that run started reading.
	OktaAsOf time.Time
}

// RuleGroupRef is one group reference of an okproxy rule.
type RuleGroupRef struct {
	RuleID    int64  `json:"-"`
	Rule      string `json:"rule"`
	Kind      string `json:"kind"` // allow or deny
	Position  int    `json:"-"`
	GroupName string `json:"group_name"`
}

// Binding binds a rule's group reference to a synced group id.
type Binding struct {
	RuleGroupRef
	GroupID string `json:"group_id"`
}

// Membership is one (group, user) pair.
type Membership struct {
	GroupID string `json:"group_id"`
	UserID  string `json:"user_id"`
}

// Rename is a group whose name changed in Okta; its id, and so every rule
// bound to it, stays.
type Rename struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
}

// UserChange is a user whose stored attributes changed.
type UserChange struct {
	Before User `json:"before"`
	After  User `json:"after"`
}

// Plan is the difference between the stored directory and Okta, computed
// before anything is written and applied in one transaction.
type Plan struct {
	GroupsAdded   []Group  `json:"groups_added"`
	GroupsRemoved []Group  `json:"groups_removed"`
	GroupsRenamed []Rename `json:"groups_renamed"`
	// GroupsUpserted holds every added or changed group (renames, type,
	// description, timestamps).
	GroupsUpserted     []Group      `json:"-"`
	MembershipsAdded   []Membership `json:"memberships_added"`
	MembershipsRemoved []Membership `json:"memberships_removed"`
	UsersAdded         []User       `json:"users_added"`
	UsersRemoved       []User       `json:"users_removed"`
	UsersChanged       []UserChange `json:"users_changed"`
	RulesUpserted      []GroupRule  `json:"group_rules_upserted"`
	RulesRemoved       []GroupRule  `json:"group_rules_removed"`
	Bindings           []Binding    `json:"rule_groups_bound"`
	// Ambiguous lists rule group names that match several synced groups
	// and so stay unbound: until named by id, an allow by such a name
	// grants nobody and a deny by it denies the members of each.
	Ambiguous []string `json:"ambiguous_names,omitempty"`
	// ambiguousIDs maps each name of Ambiguous to the ids it matches.
	ambiguousIDs map[string][]string

	groupsBefore, membershipsBefore int
	groupNames, userLogins          map[string]string
}

// GroupName returns a group's name as this plan knows it (the new name of
// a renamed group, the last stored name of a removed one), or the id.
func (p *Plan) GroupName(id string) string {
	if n, ok := p.groupNames[id]; ok {
		return n
	}
	return id
}

// UserLogin returns a user's login as this plan knows it, or the id.
func (p *Plan) UserLogin(id string) string {
	if l, ok := p.userLogins[id]; ok {
		return l
	}
	return id
}

// Empty reports whether applying the plan would change nothing.
func (p *Plan) Empty() bool {
	return len(p.GroupsUpserted)+len(p.GroupsRemoved)+len(p.MembershipsAdded)+len(p.MembershipsRemoved)+
		len(p.UsersAdded)+len(p.UsersRemoved)+len(p.UsersChanged)+len(p.RulesUpserted)+len(p.RulesRemoved)+len(p.Bindings) == 0
}

// desired is the directory as Okta has it, assembled by the sync.
type desired struct {
	groups  map[string]Group
	members map[string]map[string]bool
	users   map[string]User
	rules   map[string]GroupRule
}

// buildPlan diffs the stored state against the desired one. It is pure;
// the output is sorted so diffs print and test stably.
func buildPlan(cur *State, want *desired) *Plan {
	p := &Plan{groupsBefore: len(cur.Groups), groupNames: map[string]string{}, userLogins: map[string]string{}}
	for _, src := range []map[string]Group{cur.Groups, want.groups} {
		for id, g := range src {
			p.groupNames[id] = g.Name
		}
	}
	for _, src := range []map[string]User{cur.Users, want.users} {
		for id, u := range src {
			p.userLogins[id] = u.Login
		}
	}
	for _, m := range cur.Members {
		p.membershipsBefore += len(m)
	}
	for _, id := range sortedKeys(want.groups) {
		g, old := want.groups[id], cur.Groups[id]
		switch {
		case old.ID == "":
			p.GroupsAdded = append(p.GroupsAdded, g)
			p.GroupsUpserted = append(p.GroupsUpserted, g)
		case !sameGroup(old, g):
			if old.Name != g.Name {
				p.GroupsRenamed = append(p.GroupsRenamed, Rename{ID: id, From: old.Name, To: g.Name})
			}
			p.GroupsUpserted = append(p.GroupsUpserted, g)
		}
	}
	for _, id := range sortedKeys(cur.Groups) {
		if _, ok := want.groups[id]; !ok {
			p.GroupsRemoved = append(p.GroupsRemoved, cur.Groups[id])
		}
	}
	for _, gid := range sortedKeys(want.members) {
		for _, uid := range sortedKeys(want.members[gid]) {
			if !cur.Members[gid][uid] {
				p.MembershipsAdded = append(p.MembershipsAdded, Membership{gid, uid})
			}
		}
	}
	for _, gid := range sortedKeys(cur.Members) {
		for _, uid := range sortedKeys(cur.Members[gid]) {
			if !want.members[gid][uid] {
				p.MembershipsRemoved = append(p.MembershipsRemoved, Membership{gid, uid})
			}
		}
	}
	for _, id := range sortedKeys(want.users) {
		u, old := want.users[id], cur.Users[id]
		switch {
		case old.ID == "":
			p.UsersAdded = append(p.UsersAdded, u)
		case old != u:
			p.UsersChanged = append(p.UsersChanged, UserChange{Before: old, After: u})
		}
	}
	for _, id := range sortedKeys(cur.Users) {
		if _, ok := want.users[id]; !ok {
			p.UsersRemoved = append(p.UsersRemoved, cur.Users[id])
		}
	}
	for _, id := range sortedKeys(want.rules) {
		r, old := want.rules[id], cur.Rules[id]
		if old.ID == "" || old.Name != r.Name || old.Status != r.Status || old.Expression != r.Expression || !slices.Equal(old.GroupIDs, r.GroupIDs) {
			p.RulesUpserted = append(p.RulesUpserted, r)
		}
	}
	for _, id := range sortedKeys(cur.Rules) {
		if _, ok := want.rules[id]; !ok {
			p.RulesRemoved = append(p.RulesRemoved, cur.Rules[id])
		}
	}
	p.bind(cur.Unbound, want.groups)
	return p
}

// bind matches unbound rule group names against the synced groups,
// case-insensitively, binding only unambiguous ones.
func (p *Plan) bind(refs []RuleGroupRef, groups map[string]Group) {
	byName := map[string][]string{}
	for _, id := range sortedKeys(groups) {
		n := policy.FoldName(groups[id].Name)
		byName[n] = append(byName[n], id)
	}
	seen := map[string]bool{}
	for _, r := range refs {
		ids := byName[policy.FoldName(r.GroupName)]
		switch {
		case len(ids) == 1:
			p.Bindings = append(p.Bindings, Binding{RuleGroupRef: r, GroupID: ids[0]})
		case len(ids) > 1 && !seen[r.GroupName]:
			seen[r.GroupName] = true
			p.Ambiguous = append(p.Ambiguous, r.GroupName)
			if p.ambiguousIDs == nil {
				p.ambiguousIDs = map[string][]string{}
			}
			p.ambiguousIDs[r.GroupName] = ids
		}
	}
}

// AmbiguousIDs returns the ids of the synced groups an Ambiguous name matches.
func (p *Plan) AmbiguousIDs(name string) []string { return p.ambiguousIDs[name] }

// check enforces the mass-removal guard: removing more than maxShare of
// the stored groups or memberships is refused.
func (p *Plan) check(maxShare float64) error {
	if n := len(p.GroupsRemoved); n > 0 && float64(n) > maxShare*float64(p.groupsBefore) {
		return &GuardError{What: "groups", Removed: n, Total: p.groupsBefore, Max: maxShare}
	}
	if n := len(p.MembershipsRemoved); n > 0 && float64(n) > maxShare*float64(p.membershipsBefore) {
		return &GuardError{What: "memberships", Removed: n, Total: p.membershipsBefore, Max: maxShare}
	}
	return nil
}

// sameGroup compares groups with time.Equal: times read back from
// Postgres carry another location than those decoded from Okta.
func sameGroup(a, b Group) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Type == b.Type && a.Description == b.Description &&
		a.LastUpdated.Equal(b.LastUpdated) && a.LastMembershipUpdated.Equal(b.LastMembershipUpdated)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
