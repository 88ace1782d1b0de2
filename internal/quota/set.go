package quota

import (
	"math/bits"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/okproxy/okproxy/internal/policy"
)

// compiled is a quota prepared for matching. It is immutable once built;
// the per-quota counters are resolved here so the hot path does no label
// lookups.
type compiled struct {
	Quota
	pattern  policy.Pattern
	methods  map[string]bool // upper case; nil: all methods
	groupKey string          // the per-group subject key

	admitted, exceeded, unchecked, dbDenied prometheus.Counter
}

// set is one loaded quota set; the limiter swaps whole sets atomically.
type set struct {
	policyVersion    int64
	directoryVersion int64
	quotas           []*compiled
	byID             map[int64]*compiled
}

func compileSet(l *Loaded, m *metrics) *set {
	s := &set{policyVersion: l.PolicyVersion, directoryVersion: l.DirectoryVersion, byID: make(map[int64]*compiled, len(l.Quotas))}
	for _, q := range l.Quotas {
		p, err := policy.ParsePattern(q.Path)
		if err != nil {
			// Validated on the way in; a row that does not parse was written
			// by hand. Matching nothing would silently lift the quota, so
			// the quota applies to every path instead: fail towards limiting.
			p = policy.MustParsePattern("/**")
		}
		c := &compiled{Quota: q, pattern: p}
		if len(q.Methods) > 0 {
			c.methods = make(map[string]bool, len(q.Methods)+1)
			for _, mth := range q.Methods {
				c.methods[strings.ToUpper(mth)] = true
			}
			// As for rules (SPEC §3): GET also covers HEAD.
			if c.methods["GET"] {
				c.methods["HEAD"] = true
			}
		}
		c.groupKey = groupKey(q.Group)
		c.admitted, c.exceeded, c.unchecked, c.dbDenied = m.perQuota(q.Name)
		s.quotas = append(s.quotas, c)
		s.byID[q.ID] = c
	}
	return s
}

// groupKey is the subject key of a per-group count: the group's Okta id once
// bound, else its case-folded name.
func groupKey(g policy.GroupRef) string {
	if g.ID != "" {
		return g.ID
	}
	return "name:" + strings.ToLower(g.Name)
}

// matches reports whether the quota covers this request (not yet whether
// the caller is in its group).
func (c *compiled) matches(method, path string) bool {
	if c.methods != nil && !c.methods[method] && !c.methods[strings.ToUpper(method)] {
		return false
	}
	return c.pattern.Match(path)
}

// inGroup has exactly the semantics of policy.Caller.InGroup (a test holds
// them together): a ref bound to an id matches a caller group with that id,
// or a caller group that has no id (from the token's claim) by name; a ref
// without id matches any caller group by name. Names compare
// case-insensitively; a name several synced groups share matches nobody.
// It avoids building a Caller's maps per request.
func inGroup(groups []policy.GroupRef, ref policy.GroupRef) bool {
	if ref.IsAmbiguous() {
		return false
	}
	for _, g := range groups {
		if ref.ID != "" {
			if g.ID == ref.ID {
				return true
			}
			if g.ID == "" && ref.TokenNameGrants(g.Name) {
				return true
			}
			continue
		}
		if ref.Name != "" && g.Name != "" && strings.EqualFold(g.Name, ref.Name) {
			return true
		}
	}
	return false
}

// moreGenerous reports whether a allows more requests per second than b;
// at equal rates the larger limit, then the smaller name, wins, so the
// choice never depends on load order. Rates compare as cross products in
// 128 bits: limit and window are both int64.
func moreGenerous(a, b *compiled) bool {
	ah, al := bits.Mul64(uint64(a.Limit), uint64(b.WindowSeconds))
	bh, bl := bits.Mul64(uint64(b.Limit), uint64(a.WindowSeconds))
	if ah != bh {
		return ah > bh
	}
	if al != bl {
		return al > bl
	}
	if a.Limit != b.Limit {
		return a.Limit > b.Limit
	}
	return a.Name < b.Name
}

// selectQuota picks the quota that applies: among quotas matching the
// request whose group the caller is in, the most generous. nil: the caller
// is not limited.
func (s *set) selectQuota(method, path string, groups []policy.GroupRef) *compiled {
	var best *compiled
	for _, c := range s.quotas {
		if best != nil && !moreGenerous(c, best) {
			continue // cheap test first: it cannot win anyway
		}
		if !c.matches(method, path) || !inGroup(groups, c.Group) {
			continue
		}
		best = c
	}
	return best
}

// subject returns the key a request is counted under and its human label.
func (c *compiled) subject(subject, userID string) (key, label string) {
	if c.Per == PerGroup {
		return c.groupKey, c.Group.String()
	}
	if userID != "" {
		return userID, subject
	}
	return subject, subject
}
