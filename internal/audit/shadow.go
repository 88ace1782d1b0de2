package audit

import (
	"strings"

	"github.com/okproxy/okproxy/internal/policy"
)

// shadowChanged marks a shadow outcome that differs from the real one.
const shadowChanged = " (changed)"

// FormatShadow renders the report-only outcome of a decision for
// Event.Shadow: "EFFECT:REASON:RULE[,RULE...]" naming the report-only rules
// that matched, with " (changed)" appended when enforcing them would have
// flipped the response, e.g. "deny:forbidden:new-export (changed)". Empty
// when no report-only rule matched. `audit report` parses this format to
// show what enforcing report-only rules would change.
func FormatShadow(s *policy.Shadow) string {
	if s == nil {
		return ""
	}
	out := string(s.Effect) + ":" + string(s.Reason) + ":" + strings.Join(s.Matched, ",")
	if s.Changed {
		out += shadowChanged
	}
	return out
}

// Shadow is a parsed Event.Shadow.
type Shadow struct {
	Effect  string   `json:"effect"`
	Reason  string   `json:"reason"`
	Rules   []string `json:"rules"`
	Changed bool     `json:"changed"`
}

// ParseShadow parses FormatShadow's output; ok is false for "" and for
// strings not in that format.
func ParseShadow(s string) (sh Shadow, ok bool) {
	rest, changed := strings.CutSuffix(s, shadowChanged)
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[0] == "" {
		return Shadow{}, false
	}
	sh = Shadow{Effect: parts[0], Reason: parts[1], Changed: changed}
	if parts[2] != "" {
		sh.Rules = strings.Split(parts[2], ",")
	}
	return sh, true
}
