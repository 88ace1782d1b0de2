// Package oktaorg is a fake Okta org: the part of the Okta Management API
// that `okproxy groups sync` reads (groups, their members, group rules,
// users), served over HTTP the way Okta serves it — Link-header pagination
// with `after` cursors, SSWS and OAuth (private_key_jwt) authentication,
// X-Rate-Limit-* headers and 429s once a per-minute budget is spent, Okta's
// error bodies, and members listings that include DEPROVISIONED users.
//
// Tests drive it through an injectable clock (so rate-limit resets never
// need a real sleep), per-operation request counters, fault injection and
// mutators (rename a group, add or remove a member, change a user's status).
// It listens on loopback only; it exists for tests and the local demo.
package oktaorg

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

// Okta object types and statuses the fake knows about.
const (
	GroupTypeOkta    = "OKTA_GROUP"
	GroupTypeApp     = "APP_GROUP"
	GroupTypeBuiltIn = "BUILT_IN"

	StatusActive        = "ACTIVE"
	StatusStaged        = "STAGED"
	StatusProvisioned   = "PROVISIONED"
	StatusRecovery      = "RECOVERY"
	StatusPasswordExp   = "PASSWORD_EXPIRED"
	StatusLockedOut     = "LOCKED_OUT"
	StatusSuspended     = "SUSPENDED"
	StatusDeprovisioned = "DEPROVISIONED"

	RuleActive   = "ACTIVE"
	RuleInactive = "INACTIVE"
)

// Group is an Okta group in the shape the API returns it.
type Group struct {
	ID                    string       `json:"id"`
	Created               time.Time    `json:"created"`
	LastUpdated           time.Time    `json:"lastUpdated"`
	LastMembershipUpdated time.Time    `json:"lastMembershipUpdated"`
	ObjectClass           []string     `json:"objectClass"`
	Type                  string       `json:"type"`
	Profile               GroupProfile `json:"profile"`
}

// GroupProfile is a group's profile.
type GroupProfile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// User is an Okta user in the shape the API returns it.
type User struct {
	ID              string      `json:"id"`
	Status          string      `json:"status"`
	Created         time.Time   `json:"created"`
	Activated       *time.Time  `json:"activated"`
	StatusChanged   *time.Time  `json:"statusChanged"`
	LastLogin       *time.Time  `json:"lastLogin"`
	LastUpdated     time.Time   `json:"lastUpdated"`
	PasswordChanged *time.Time  `json:"passwordChanged"`
	Type            UserType    `json:"type"`
	Profile         UserProfile `json:"profile"`
}

// UserType is the user's type reference.
type UserType struct {
	ID string `json:"id"`
}

// UserProfile holds the profile attributes okproxy reads, plus the ones
// Okta always sends.
type UserProfile struct {
	FirstName   string  `json:"firstName"`
	LastName    string  `json:"lastName"`
	MobilePhone *string `json:"mobilePhone"`
	SecondEmail *string `json:"secondEmail"`
	Login       string  `json:"login"`
	Email       string  `json:"email"`
	Department  string  `json:"department,omitempty"`
	Title       string  `json:"title,omitempty"`
}

// GroupRule is an Okta group rule in the shape the API returns it.
type GroupRule struct {
	Type        string         `json:"type"`
	ID          string         `json:"id"`
	Status      string         `json:"status"`
	Name        string         `json:"name"`
	Created     time.Time      `json:"created"`
	LastUpdated time.Time      `json:"lastUpdated"`
	Conditions  RuleConditions `json:"conditions"`
	Actions     RuleActions    `json:"actions"`
}

// RuleConditions holds the rule's expression (and the people exclusions
// Okta always sends).
type RuleConditions struct {
	People     *RulePeople    `json:"people,omitempty"`
	Expression RuleExpression `json:"expression"`
}

// RulePeople lists excluded users and groups.
type RulePeople struct {
	Users  RuleExclusions `json:"users"`
	Groups RuleExclusions `json:"groups"`
}

// RuleExclusions is a list of excluded ids.
type RuleExclusions struct {
	Exclude []string `json:"exclude"`
}

// RuleExpression is an Okta Expression Language condition.
type RuleExpression struct {
	Value string `json:"value"`
	Type  string `json:"type"`
}

// RuleActions says which groups a rule assigns matching users to.
type RuleActions struct {
	AssignUserToGroups RuleAssignment `json:"assignUserToGroups"`
}

// RuleAssignment lists target group ids.
type RuleAssignment struct {
	GroupIDs []string `json:"groupIds"`
}

// Fixture is the JSON form of an org (testdata/okta/*.json): Okta-shaped
// objects plus memberships as group id → member user ids.
type Fixture struct {
	Groups      []Group             `json:"groups"`
	Users       []User              `json:"users"`
	Memberships map[string][]string `json:"memberships"`
	Rules       []GroupRule         `json:"rules"`
}

// Org is the fake org's data. Its methods are safe for concurrent use; the
// mutators stamp timestamps from the org's clock the way Okta does (a
// membership change moves the group's lastMembershipUpdated, a status change
// the user's lastUpdated and statusChanged).
type Org struct {
	mu      sync.Mutex
	now     func() time.Time
	rnd     *rand.Rand
	groups  map[string]*Group
	users   map[string]*User
	members map[string]map[string]bool // group id → user ids
	rules   map[string]*GroupRule
}

// NewOrg returns an empty org whose timestamps come from now (time.Now when
// nil).
func NewOrg(now func() time.Time) *Org {
	if now == nil {
		now = time.Now
	}
	return &Org{
		now:     now,
		rnd:     rand.New(rand.NewPCG(1, 2)),
		groups:  map[string]*Group{},
		users:   map[string]*User{},
		members: map[string]map[string]bool{},
		rules:   map[string]*GroupRule{},
	}
}

// LoadFile reads a fixture file into a new org.
func LoadFile(path string, now func() time.Time) (*Org, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	o, err := Load(f, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

// Load reads a fixture into a new org.
func Load(r io.Reader, now func() time.Time) (*Org, error) {
	var fx Fixture
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fx); err != nil {
		return nil, fmt.Errorf("decode fixture: %w", err)
	}
	return FromFixture(fx, now)
}

// FromFixture builds an org from a fixture, checking its references.
func FromFixture(fx Fixture, now func() time.Time) (*Org, error) {
	o := NewOrg(now)
	for _, g := range fx.Groups {
		if _, err := o.AddGroup(g); err != nil {
			return nil, err
		}
	}
	for _, u := range fx.Users {
		if _, err := o.AddUser(u); err != nil {
			return nil, err
		}
	}
	for gid, uids := range fx.Memberships {
		g, ok := o.groups[gid]
		if !ok {
			return nil, fmt.Errorf("memberships: unknown group %q", gid)
		}
		for _, uid := range uids {
			if _, ok := o.users[uid]; !ok {
				return nil, fmt.Errorf("memberships of %s: unknown user %q", gid, uid)
			}
			o.members[g.ID][uid] = true
		}
	}
	for _, r := range fx.Rules {
		if _, err := o.AddRule(r); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Fixture returns the org's current contents in fixture form, sorted by id.
func (o *Org) Fixture() Fixture {
	o.mu.Lock()
	defer o.mu.Unlock()
	fx := Fixture{Memberships: map[string][]string{}}
	for _, g := range sortedValues(o.groups) {
		fx.Groups = append(fx.Groups, *g)
		if ms := sortedKeys(o.members[g.ID]); len(ms) > 0 {
			fx.Memberships[g.ID] = ms
		}
	}
	for _, u := range sortedValues(o.users) {
		fx.Users = append(fx.Users, *u)
	}
	for _, r := range sortedValues(o.rules) {
		fx.Rules = append(fx.Rules, *r)
	}
	return fx
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID makes an Okta-shaped id: a 3-character prefix and 17 base62
// characters. Callers hold o.mu.
func (o *Org) newID(prefix string) string {
	b := []byte(prefix)
	for range 17 {
		b = append(b, base62[o.rnd.IntN(len(base62))])
	}
	return string(b)
}

func (o *Org) stamp() time.Time { return o.now().UTC().Truncate(time.Millisecond) }

// AddGroup adds g, filling in an id, type and timestamps when missing, and
// returns its id.
func (o *Org) AddGroup(g Group) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if g.Profile.Name == "" {
		return "", fmt.Errorf("group %q: profile.name is required", g.ID)
	}
	if g.ID == "" {
		g.ID = o.newID("00g")
	}
	if _, dup := o.groups[g.ID]; dup {
		return "", fmt.Errorf("group %q: duplicate id", g.ID)
	}
	now := o.stamp()
	if g.Type == "" {
		g.Type = GroupTypeOkta
	}
	for _, t := range []*time.Time{&g.Created, &g.LastUpdated, &g.LastMembershipUpdated} {
		if t.IsZero() {
			*t = now
		}
	}
	if g.ObjectClass == nil {
		g.ObjectClass = []string{"okta:user_group"}
	}
	o.groups[g.ID] = &g
	o.members[g.ID] = map[string]bool{}
	return g.ID, nil
}

// AddUser adds u, filling in an id, status and timestamps when missing, and
// returns its id.
func (o *Org) AddUser(u User) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if u.Profile.Login == "" {
		return "", fmt.Errorf("user %q: profile.login is required", u.ID)
	}
	if u.ID == "" {
		u.ID = o.newID("00u")
	}
	if _, dup := o.users[u.ID]; dup {
		return "", fmt.Errorf("user %q: duplicate id", u.ID)
	}
	now := o.stamp()
	if u.Status == "" {
		u.Status = StatusActive
	}
	if u.Created.IsZero() {
		u.Created = now
	}
	if u.LastUpdated.IsZero() {
		u.LastUpdated = now
	}
	if u.StatusChanged == nil {
		u.StatusChanged = &now
	}
	if u.Type.ID == "" {
		u.Type.ID = "oty1defaultusertype0"
	}
	o.users[u.ID] = &u
	return u.ID, nil
}

// AddRule adds a group rule and returns its id.
func (o *Org) AddRule(r GroupRule) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.Name == "" {
		return "", fmt.Errorf("rule %q: name is required", r.ID)
	}
	if r.ID == "" {
		r.ID = o.newID("0pr")
	}
	now := o.stamp()
	r.Type = "group_rule"
	if r.Status == "" {
		r.Status = RuleActive
	}
	if r.Conditions.Expression.Type == "" {
		r.Conditions.Expression.Type = "urn:okta:expression:1.0"
	}
	if r.Conditions.People == nil {
		r.Conditions.People = &RulePeople{Users: RuleExclusions{Exclude: []string{}}, Groups: RuleExclusions{Exclude: []string{}}}
	}
	for _, t := range []*time.Time{&r.Created, &r.LastUpdated} {
		if t.IsZero() {
			*t = now
		}
	}
	o.rules[r.ID] = &r
	return r.ID, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedValues[V any](m map[string]*V) []*V {
	out := make([]*V, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

// pageAfter returns up to limit of the id-sorted ids strictly after the
// cursor, and whether more follow.
func pageAfter(ids []string, after string, limit int) ([]string, bool) {
	start := 0
	if after != "" {
		start, _ = slices.BinarySearch(ids, after)
		if start < len(ids) && ids[start] == after {
			start++
		}
	}
	end := min(start+limit, len(ids))
	if start > end {
		start = end
	}
	return ids[start:end], end < len(ids)
}
