// Package quota enforces okproxy's per-group request quotas (SPEC §5)
// exactly across any number of replicas without a database round trip per
// request.
//
// A quota gives the members of one Okta group a budget of Limit requests per
// fixed, epoch-aligned window, counted per user or shared by the group. The
// budget of one key (quota, user or group, window) lives in one row of
// quota_windows. Replicas lease blocks of it with one atomic statement that
// never lets the total granted exceed the limit, hand the block out from
// memory, and return what they did not spend. See docs/quotas.md for the
// protocol, its failure modes and its numbers.
//
// This file holds the domain: what a quota is, how it is validated, and the
// storage interface that internal/store implements.
package quota

import (
	"context"
	"errors"
	"fmt"
	"github.com/okproxy/okproxy/internal/duration"
	"strconv"
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// Per says who shares a count.
type Per string

const (
	// PerUser gives every caller their own count (the default).
	PerUser Per = "user"
	// PerGroup makes all members of the group share one count.
	PerGroup Per = "group"
)

// MaxWindow bounds a window so that window arithmetic in seconds and
// nanoseconds never overflows; a year is far beyond any sensible quota.
const MaxWindow = 366 * 24 * time.Hour

// Quota is one quota as stored and shown.
type Quota struct {
	// ID is the database id; budgets are keyed by it, so removing a quota
	// and adding it again starts from fresh counts.
	ID    int64           `json:"-" yaml:"-"`
	Name  string          `json:"name" yaml:"name"`
	Group policy.GroupRef `json:"group" yaml:"group"`
	Limit int64           `json:"limit" yaml:"limit"`
	// WindowSeconds is the window length; windows start at multiples of it
	// since the Unix epoch.
	WindowSeconds int64     `json:"window_seconds" yaml:"window_seconds"`
	Path          string    `json:"path" yaml:"path"`
	Methods       []string  `json:"methods,omitempty" yaml:"methods,omitempty"`
	Per           Per       `json:"per" yaml:"per"`
	CreatedAt     time.Time `json:"created_at,omitzero" yaml:"created_at,omitempty"`
}

// Window returns the window length.
func (q Quota) Window() time.Duration { return time.Duration(q.WindowSeconds) * time.Second }

// Normalize puts q into its stored form: trimmed, methods upper case, sorted
// and deduplicated, path defaulted to /** and per to user.
func (q *Quota) Normalize() {
	r := policy.Rule{Name: q.Name, Path: q.Path, Methods: q.Methods}
	r.Normalize()
	q.Name, q.Path, q.Methods = r.Name, r.Path, r.Methods
	if q.Path == "" {
		q.Path = "/**"
	}
	q.Group.ID = strings.TrimSpace(q.Group.ID)
	q.Group.Name = strings.TrimSpace(q.Group.Name)
	q.Per = Per(strings.ToLower(strings.TrimSpace(string(q.Per))))
	if q.Per == "" {
		q.Per = PerUser
	}
}

// Validate reports the first problem with q as a *policy.ValidationError
// whose Field is the CLI flag's name (name, group, limit, window, path,
// method, per).
func (q Quota) Validate() error {
	bad := func(field, msg string) error { return &policy.ValidationError{Field: field, Message: msg} }
	if q.Group.Name == "" && q.Group.ID == "" {
		return bad("group", "is required (the Okta group, by name or 00g… id, whose members the quota applies to)")
	}
	// The rule validator already knows names, paths, methods and group refs;
	// a quota shares their syntax, so it borrows it rather than copy it.
	r := policy.Rule{Name: q.Name, Path: q.Path, Methods: q.Methods, Allow: []policy.GroupRef{q.Group}}
	if err := r.Validate(); err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			switch ve.Field {
			case "allow":
				return bad("group", ve.Message)
			case "methods":
				return bad("method", ve.Message)
			}
		}
		return err
	}
	if q.Limit <= 0 {
		return bad("limit", fmt.Sprintf("%d: must be a positive number of requests per window", q.Limit))
	}
	if q.WindowSeconds <= 0 || q.WindowSeconds > int64(MaxWindow/time.Second) {
		return bad("window", fmt.Sprintf("%ds: must be between 1s and %s", q.WindowSeconds, FormatWindow(int64(MaxWindow/time.Second))))
	}
	switch q.Per {
	case PerUser, PerGroup:
	default:
		return bad("per", strconv.Quote(string(q.Per))+" must be user or group")
	}
	return nil
}

// ParseWindow reads a window length: Go duration syntax plus leading days,
// whole or fractional ("90s", "15m", "1h", "7d", "1d12h", "1.5d"). Windows
// are whole seconds, at least one, at most MaxWindow.
func ParseWindow(s string) (int64, error) {
	in := s
	if strings.TrimSpace(s) == "" {
		return 0, errors.New("is required (e.g. 1m, 1h, 1d)")
	}
	d, err := duration.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s, 1h, 7d)", in)
	}
	switch {
	case d < time.Second:
		return 0, fmt.Errorf("%q: a window is at least 1s", in)
	case d > MaxWindow:
		return 0, fmt.Errorf("%q: a window is at most %s", in, FormatWindow(int64(MaxWindow/time.Second)))
	case d%time.Second != 0:
		return 0, fmt.Errorf("%q: a window is a whole number of seconds", in)
	}
	return int64(d / time.Second), nil
}

// FormatWindow writes a window the way ParseWindow reads it, largest units
// first and zero units left out: 86400 → "1d", 5400 → "1h30m", 90 → "1m30s".
func FormatWindow(seconds int64) string {
	return duration.Format(time.Duration(seconds) * time.Second)
}

// Errors the Store reports.
var (
	// ErrUnknownQuota: a lease named a quota that has been removed (the
	// replica's quota set is stale until its next reload).
	ErrUnknownQuota = errors.New("quota no longer exists")
	// ErrNotApplied marks a failed statement that certainly changed nothing
	// (it never reached the server, or the server rolled it back), so it is
	// safe to send again. A failure without it may or may not have been
	// applied, and is never retried: retrying a return of unused budget
	// that was in fact applied would hand the budget out twice.
	ErrNotApplied = errors.New("statement not applied")
)

// Loaded is the quota set at one policy version, with the database's clock.
type Loaded struct {
	PolicyVersion    int64
	DirectoryVersion int64
	Quotas           []Quota
	// Now is the database's now() when the set was read.
	Now time.Time
}

// Lease asks for part of one key's budget in one window. The store grants
// LeaseGrant(Limit, granted so far, Need, Block, Divisor), computed inside
// the statement from the row as locked, and nothing at all unless Window
// is the current window by the database's clock.
type Lease struct {
	QuotaID       int64
	Key           string // subject_key
	Label         string // human label stored with a new row
	Window        int64  // window start, epoch seconds
	WindowSeconds int64
	Limit         int64
	// Need is the requests waiting for this lease: granted in full while
	// the budget lasts.
	Need int64
	// Block is what the replica would like beyond that (its adaptive block).
	Block int64
	// Divisor caps Block at 1/Divisor of the budget remaining (0 or 1: no cap).
	Divisor int64
	// Used is the number of admissions since this replica last reported,
	// added to the row's used count in the same statement.
	Used int64
}

// LeaseGrant is the lease arithmetic, which the store's statement performs
// in SQL on the locked row (a test holds the two together): the waiting
// requests (need) in full, or the replica's block if larger but never more
// than 1/divisor of what remains, and never more than remains. Computing
// the share from the row, not from the replica's last view of it, is what
// bounds what any one replica can hold to 1/divisor of the remaining
// budget, and makes a lease exactly the waiting requests once less than
// divisor units remain.
func LeaseGrant(limit, granted, need, block, divisor int64) int64 {
	rem := max(limit-granted, 0)
	return min(rem, max(need, min(block, rem/max(divisor, 1))))
}

// Grant is a lease's answer.
type Grant struct {
	Granted int64     // what this statement granted
	Total   int64     // the window's total granted to all replicas, after it
	Now     time.Time // the database's now() when the statement ran
}

// Report gives back unused budget and reports admissions for one key and
// window. Reports for the same key and window are merged before sending.
type Report struct {
	QuotaID int64
	Key     string
	Window  int64
	Unused  int64 // granted -= Unused
	Used    int64 // used += Used
}

// Store is the database side, implemented by internal/store.
type Store interface {
	// LoadQuotas reads every quota with the versions it belongs to.
	LoadQuotas(ctx context.Context) (*Loaded, error)
	// QuotaVersions is the cheap poll: policy and directory versions and the
	// database's clock.
	QuotaVersions(ctx context.Context) (policyVersion, directoryVersion int64, now time.Time, err error)
	// LeaseQuota runs the one atomic lease statement.
	LeaseQuota(ctx context.Context, l Lease) (Grant, error)
	// ReportQuotas applies reports in one statement.
	ReportQuotas(ctx context.Context, rs []Report) error
	// PruneQuotaWindows deletes rows of windows that ended more than
	// retention ago and says how many.
	PruneQuotaWindows(ctx context.Context, retention time.Duration) (int64, error)
}

// Usage is one key's count in the current window, for `okproxy quotas usage`.
type Usage struct {
	Quota       string    `json:"quota" yaml:"quota"`
	Per         Per       `json:"per" yaml:"per"`
	Key         string    `json:"key" yaml:"key"`
	Subject     string    `json:"subject" yaml:"subject"`
	Limit       int64     `json:"limit" yaml:"limit"`
	WindowStart time.Time `json:"window_start" yaml:"window_start"`
	WindowEnd   time.Time `json:"window_end" yaml:"window_end"`
	// Granted is the budget leased to replicas: an upper bound on what has
	// been admitted in the window (it includes budget held unspent by live
	// replicas and budget lost with replicas that died holding it).
	Granted int64 `json:"granted" yaml:"granted"`
	// Used is the admissions replicas have reported: a lower bound, behind
	// by at most one report interval per replica.
	Used int64 `json:"used" yaml:"used"`
	// Remaining is Limit - Granted: budget no replica holds yet.
	Remaining int64     `json:"remaining" yaml:"remaining"`
	UpdatedAt time.Time `json:"updated_at" yaml:"updated_at"`
}

// UsageFilter selects usage rows.
type UsageFilter struct {
	// Quota restricts to one quota by name ("" for all).
	Quota string
	// User restricts to one user: per-user keys of that login or Okta user
	// id, and per-group keys of quotas whose group the user is in (per the
	// synced directory).
	User string
}
