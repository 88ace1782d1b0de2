package audit

import (
	"fmt"
	"github.com/okproxy/okproxy/internal/duration"
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// Filter selects stored events for `okproxy audit query`. Zero fields do not
// filter.
type Filter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	// User matches subject or email (case-insensitively) or user id.
	User string
	// Group matches a group in the event's token (case-insensitively).
	Group    string
	Decision string
	Reason   string
	// Rule matches the granting (or denying) rule or any matched rule.
	Rule       string
	PathPrefix string
	Status     int
	// Limit bounds the rows returned (newest first).
	Limit int
}

// Decisions lists the valid Decision values.
var Decisions = []string{DecisionAllow, DecisionDeny, DecisionError}

// Reasons lists the reason codes an event can carry (SPEC §4 and §6).
var Reasons = []string{
	string(policy.ReasonOK), string(policy.ReasonUnauthorized), string(policy.ReasonInvalidToken),
	string(policy.ReasonForbidden), string(policy.ReasonInsufficientScope), string(policy.ReasonUserInactive),
	string(policy.ReasonQuotaExceeded), string(policy.ReasonQuotaUnchecked), string(policy.ReasonBadRequest),
	string(policy.ReasonBadGateway), string(policy.ReasonGatewayTimeout), string(policy.ReasonUnavailable),
}

// ValidReason reports whether r is one of Reasons.
func ValidReason(r string) bool {
	for _, v := range Reasons {
		if r == v {
			return true
		}
	}
	return false
}

// ValidDecision reports whether d is allow, deny or error.
func ValidDecision(d string) bool {
	for _, v := range Decisions {
		if d == v {
			return true
		}
	}
	return false
}

// ParseDuration is okproxy's duration syntax (internal/duration): Go
// durations plus leading days, whole or fractional ("90d", "1d12h", "1.5d").
func ParseDuration(s string) (time.Duration, error) { return duration.Parse(s) }

// ParseTimeBound reads a time bound: a duration back from now ("1h", "7d")
// or an RFC 3339 time ("2024-05-01T00:00:00Z"); a bare date is midnight UTC.
func ParseTimeBound(s string, now time.Time) (time.Time, error) {
	if d, err := ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want a duration back from now (1h, 7d) or RFC 3339 (2006-01-02T15:04:05Z)", s)
}
