package proxy

import (
	"context"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// QuotaCheck is what a Limiter decides on.
type QuotaCheck struct {
	Method  string
	Path    string // canonical
	Subject string
	UserID  string
	Groups  []policy.GroupRef
}

// QuotaDecision is a Limiter's answer.
type QuotaDecision struct {
	// Limited is true when a quota applies to this caller and request.
	Limited bool
	// Allowed is false when the quota is exhausted.
	Allowed bool
	// Unchecked is true when the quota store was unreachable and the request
	// was admitted by the configured fallback (audited as quota_unchecked).
	Unchecked bool
	Quota     string
	Limit     int64
	Remaining int64
	// Reset is the time until the window ends.
	Reset time.Duration
}

// Limiter applies quotas (internal/quota).
type Limiter interface {
	Admit(ctx context.Context, c QuotaCheck) QuotaDecision
}
