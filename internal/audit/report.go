package audit

import (
	"cmp"
	"time"
)

// ReportOptions configures a report. Zero values take the defaults shown.
type ReportOptions struct {
	Since, Until time.Time
	// SpikeSigma and SpikeMin define a denial spike: a caller's denials in
	// the last bucket exceed the mean plus SpikeSigma standard deviations of
	// its earlier buckets (default 3) and number at least SpikeMin
	// (default 5).
	SpikeSigma float64
	SpikeMin   int
	// BurstMin is how many invalid tokens from one client IP in one bucket
	// make a burst (default 20).
	BurstMin int
	// Top bounds the per-group, per-rule and per-caller lists (default 20).
	Top int
}

// Defaults fills zero fields.
func (o ReportOptions) Defaults() ReportOptions {
	o.SpikeSigma = cmp.Or(o.SpikeSigma, 3)
	o.SpikeMin = cmp.Or(o.SpikeMin, 5)
	o.BurstMin = cmp.Or(o.BurstMin, 20)
	o.Top = cmp.Or(o.Top, 20)
	return o
}

// Bucket is the bucket width for a window: hours up to two days, else days.
func (o ReportOptions) Bucket() string {
	if o.Until.Sub(o.Since) <= 48*time.Hour {
		return "hour"
	}
	return "day"
}

// BucketStarts lists the UTC bucket starts covering [since, until).
func BucketStarts(since, until time.Time, bucket string) []time.Time {
	step := time.Hour
	t := since.UTC().Truncate(time.Hour)
	if bucket == "day" {
		step = 24 * time.Hour
		t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	var out []time.Time
	for ; t.Before(until); t = t.Add(step) {
		out = append(out, t)
	}
	return out
}

// Report is `okproxy audit report`: usage and denials over time, and the
// anomalies an operator should look at. Times are UTC; buckets are UTC hours
// or days.
type Report struct {
	Since       time.Time     `json:"since"`
	Until       time.Time     `json:"until"`
	Bucket      string        `json:"bucket"` // hour or day
	Options     ReportOptions `json:"-"`
	Totals      Totals        `json:"totals"`
	Series      []BucketStat  `json:"series"`
	Groups      []KeyUsage    `json:"groups"`
	Rules       []KeyUsage    `json:"rules"`
	Users       []CallerStat  `json:"users"`
	TopDenied   []CallerStat  `json:"top_denied"`
	Anomalies   Anomalies     `json:"anomalies"`
	Shadow      ShadowImpact  `json:"shadow"`
	GeneratedAt time.Time     `json:"generated_at"`
}

// Totals over the whole window.
type Totals struct {
	Requests  int64 `json:"requests"`
	Allowed   int64 `json:"allowed"`
	Denied    int64 `json:"denied"`
	Errors    int64 `json:"errors"`
	Users     int64 `json:"users"`
	ClientIPs int64 `json:"client_ips"`
}

// BucketStat counts one bucket.
type BucketStat struct {
	Start    time.Time `json:"start"`
	Requests int64     `json:"requests"`
	Denied   int64     `json:"denied"`
	Errors   int64     `json:"errors"`
	Users    int64     `json:"users"`
}

// KeyUsage is one group's or rule's usage: totals and a series with one
// entry per bucket of the report.
type KeyUsage struct {
	Name     string       `json:"name"`
	Requests int64        `json:"requests"`
	Denied   int64        `json:"denied"`
	Users    int64        `json:"users"`
	Series   []BucketStat `json:"series"`
}

// CallerStat is one caller (subject, or "anonymous@IP" without a token).
type CallerStat struct {
	Caller   string `json:"caller"`
	Requests int64  `json:"requests"`
	Denied   int64  `json:"denied"`
	// TopReason is the most frequent denial reason.
	TopReason string `json:"top_reason,omitempty"`
}

// Anomalies are what the report flags.
type Anomalies struct {
	DenialSpikes       []DenialSpike `json:"denial_spikes"`
	InvalidTokenBursts []Burst       `json:"invalid_token_bursts"`
	UnmatchedRules     []RuleRef     `json:"unmatched_rules"`
	UnmentionedGroups  []GroupSeen   `json:"unmentioned_groups"`
}

// DenialSpike: Caller was denied Count times in the last bucket, above its
// own baseline (Mean + sigma × Stddev over the earlier buckets).
type DenialSpike struct {
	Caller    string    `json:"caller"`
	Bucket    time.Time `json:"bucket"`
	Count     int64     `json:"count"`
	Mean      float64   `json:"mean"`
	Stddev    float64   `json:"stddev"`
	Threshold float64   `json:"threshold"`
}

// Burst: Count invalid tokens from ClientIP within one bucket.
type Burst struct {
	ClientIP string    `json:"client_ip"`
	Bucket   time.Time `json:"bucket"`
	Count    int64     `json:"count"`
}

// RuleRef names an enabled rule that matched no request in the window.
type RuleRef struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
}

// GroupSeen is a group that appeared in tokens although no rule mentions it.
type GroupSeen struct {
	Name     string `json:"name"`
	Requests int64  `json:"requests"`
	Users    int64  `json:"users"`
}

// ShadowImpact is what enforcing the report-only rules would have changed,
// from the events' shadow outcomes.
type ShadowImpact struct {
	Evaluated  int64         `json:"evaluated"` // requests a report-only rule matched
	Changed    int64         `json:"changed"`   // of which the outcome would flip
	WouldDeny  int64         `json:"would_deny"`
	WouldAllow int64         `json:"would_allow"`
	Callers    int64         `json:"callers"` // distinct callers with a flip
	ByRule     []ShadowRule  `json:"by_rule"`
	TopCallers []ShadowFlips `json:"top_callers"`
}

// ShadowRule is the flips attributed to one report-only rule.
type ShadowRule struct {
	Rule       string `json:"rule"`
	WouldDeny  int64  `json:"would_deny"`
	WouldAllow int64  `json:"would_allow"`
	Callers    int64  `json:"callers"`
}

// ShadowFlips is one caller's flips.
type ShadowFlips struct {
	Caller     string `json:"caller"`
	WouldDeny  int64  `json:"would_deny"`
	WouldAllow int64  `json:"would_allow"`
}
