// Package directory is the in-memory view of the synced Okta directory that
// serve and `rules test` consult: users by id and by login, with their
// status and group memberships. It is pure data; internal/store fills it.
package directory

import (
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// Okta user statuses that matter to access decisions.
const (
	StatusActive = "ACTIVE"
)

// User is a synced Okta user.
type User struct {
	ID         string            `json:"id" yaml:"id"`
	Login      string            `json:"login" yaml:"login"`
	Email      string            `json:"email" yaml:"email"`
	Status     string            `json:"status" yaml:"status"`
	FirstName  string            `json:"first_name,omitempty" yaml:"first_name,omitempty"`
	LastName   string            `json:"last_name,omitempty" yaml:"last_name,omitempty"`
	Department string            `json:"department,omitempty" yaml:"department,omitempty"`
	Title      string            `json:"title,omitempty" yaml:"title,omitempty"`
	Groups     []policy.GroupRef `json:"groups" yaml:"groups"`
}

// Active reports whether the user may be granted anything.
func (u *User) Active() bool { return u.Status == StatusActive }

// Directory indexes users by id and by lower-cased login.
type Directory struct {
	// Version is the directory version this view was loaded at.
	Version int64
	// Synced is false until a sync has ever completed; lookups then find nothing.
	Synced bool
	// LastSync is when the last successful sync finished (zero: never), so a
	// stale directory is visible in /metrics.
	LastSync time.Time
	byID     map[string]*User
	byLogin  map[string]*User
}

// New builds a directory from users.
func New(version int64, synced bool, users []User) *Directory {
	d := &Directory{Version: version, Synced: synced, byID: make(map[string]*User, len(users)), byLogin: make(map[string]*User, len(users))}
	for i := range users {
		u := &users[i]
		d.byID[u.ID] = u
		d.byLogin[strings.ToLower(u.Login)] = u
	}
	return d
}

// Lookup finds a user by Okta id (uid claim) first, then by login (sub).
func (d *Directory) Lookup(uid, login string) (*User, bool) {
	if d == nil {
		return nil, false
	}
	if uid != "" {
		if u, ok := d.byID[uid]; ok {
			return u, true
		}
	}
	if login != "" {
		if u, ok := d.byLogin[strings.ToLower(login)]; ok {
			return u, true
		}
	}
	return nil, false
}

// Len is the number of users.
func (d *Directory) Len() int {
	if d == nil {
		return 0
	}
	return len(d.byID)
}
