// Package okta syncs the Okta directory — groups, their members, the users
// in them and Okta group rules — into okproxy's store, for `okproxy groups
// sync`.
//
// Everything that talks to Okta sits behind GroupSource. Its one
// implementation (NewSDKSource) is the only code in okproxy that imports
// github.com/okta/okta-sdk-golang/v2, which upstream has retired: moving to
// v5 means rewriting sdk.go and nothing else. The sync itself (Syncer) is
// plain Go over GroupSource and the Store interface it declares, which
// internal/store implements.
package okta

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Okta user statuses okproxy cares about; only ACTIVE users are granted
// anything.
const (
	StatusActive        = "ACTIVE"
	StatusSuspended     = "SUSPENDED"
	StatusDeprovisioned = "DEPROVISIONED"
)

// Group is an Okta group as okproxy keeps it.
type Group struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Type        string `json:"type"` // OKTA_GROUP, APP_GROUP or BUILT_IN
	Description string `json:"description,omitempty"`
	// LastUpdated moves when the group's profile changes.
	LastUpdated time.Time `json:"last_updated,omitzero"`
	// LastMembershipUpdated moves when a member is added or removed; the
	// incremental sync refetches members only when it changed.
	LastMembershipUpdated time.Time `json:"last_membership_updated,omitzero"`
}

// User is an Okta user as okproxy keeps it. Users of every status are
// kept: a non-ACTIVE user grants nothing, and knowing the status lets the
// proxy refuse a deactivated user whose token has not expired yet.
type User struct {
	ID         string `json:"id"`
	Login      string `json:"login"`
	Email      string `json:"email,omitempty"`
	Status     string `json:"status"`
	FirstName  string `json:"first_name,omitempty"`
	LastName   string `json:"last_name,omitempty"`
	Department string `json:"department,omitempty"`
	Title      string `json:"title,omitempty"`
}

// GroupRule is an Okta group rule: users matching Expression (Okta
// Expression Language) are assigned to GroupIDs while Status is ACTIVE.
type GroupRule struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Status     string   `json:"status"`
	Expression string   `json:"expression"`
	GroupIDs   []string `json:"group_ids"`
}

// Selection picks the groups to sync; both fields are passed to Okta
// unchanged. Empty selects every group.
type Selection struct {
	// Filter is Okta's `filter` (id, type, lastUpdated,
	// lastMembershipUpdated), e.g. `type eq "OKTA_GROUP"`.
	Filter string `json:"filter,omitempty"`
	// Search is Okta's `search`, e.g. `profile.name sw "app-"`.
	Search string `json:"search,omitempty"`
}

// GroupSource reads the directory from Okta. Each list method follows
// pagination to the end or fails; it never returns a partial list.
type GroupSource interface {
	// ListGroups lists the selected groups.
	ListGroups(ctx context.Context, sel Selection) ([]Group, error)
	// ListMembers lists a group's members, whatever their status. It
	// returns an error wrapping ErrGroupNotFound when the group is gone.
	ListMembers(ctx context.Context, groupID string) ([]User, error)
	// ListGroupRules lists every group rule, active or not.
	ListGroupRules(ctx context.Context) ([]GroupRule, error)
	// ListUsersUpdatedSince lists users (of any status) whose profile or
	// status changed after since.
	ListUsersUpdatedSince(ctx context.Context, since time.Time) ([]User, error)
}

// SourceStats is what a GroupSource can report about its traffic.
type SourceStats struct {
	// APICalls counts HTTP requests sent, retries included.
	APICalls int64
	// RateLimited counts 429 answers; RateLimitWait is the time spent
	// waiting them out.
	RateLimited   int64
	RateLimitWait time.Duration
	// ServerTime is Okta's clock (Date header) at the first response: the
	// point in time the sync's view of Okta is from.
	ServerTime time.Time
}

// StatsReporter is implemented by sources that count their traffic.
type StatsReporter interface {
	Stats() SourceStats
}

// Errors returned by GroupSource implementations and Syncer.Run.
var (
	// ErrGroupNotFound: the group disappeared between listing and reading
	// its members.
	ErrGroupNotFound = errors.New("group not found")
	// ErrSyncRunning: another sync holds the lock; nothing was done.
	ErrSyncRunning = errors.New("another sync is running")
)

// APIError is an error answer from Okta, after retries.
type APIError struct {
	// Op names the call, e.g. "list groups".
	Op string
	// Status is the HTTP status.
	Status int
	// Code and Summary are Okta's errorCode and errorSummary.
	Code    string
	Summary string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("okta %s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Summary != "" {
		s += ": " + e.Summary
	}
	return s
}

// SelectionError says Okta refused the group selection (HTTP 400 on the
// groups listing): the filter or search expression is invalid.
type SelectionError struct {
	Selection Selection
	Err       error
}

func (e *SelectionError) Error() string {
	return fmt.Sprintf("okta refused the group selection (filter %q, search %q): %v", e.Selection.Filter, e.Selection.Search, e.Err)
}

func (e *SelectionError) Unwrap() error { return e.Err }

// GuardError says the sync would remove more than the allowed share of
// groups or memberships and stopped without writing.
type GuardError struct {
	What    string // "groups" or "memberships"
	Removed int
	Total   int
	Max     float64
}

func (e *GuardError) Error() string {
	return fmt.Sprintf("sync would remove %d of %d %s (%.1f%%, more than the %.1f%% allowed by --max-removal); nothing was written: check --group-filter/--group-search, or rerun with --force if this is intended",
		e.Removed, e.Total, e.What, 100*float64(e.Removed)/float64(e.Total), 100*e.Max)
}
