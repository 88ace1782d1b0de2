package policy

import (
	"strconv"
	"strings"
)

// Explain describes the decision for a human in a few lines: the effect and
// reason, which rule granted or which rule denied for which group (or that
// none granted), the rules that matched, and the report-only outcome. It
// names groups, so it is for operators (`okproxy rules test`), never for the
// client being refused.
func (d Decision) Explain() string {
	var b strings.Builder
	b.WriteString(string(d.Effect) + " (" + string(d.Reason) + ")\n")
	explainOutcome(&b, d.Reason, d.Granted, d.Denied, d.DeniedGroup, d.Matched, "matched")
	if d.AmbiguousRule != "" {
		b.WriteString("  rule " + d.AmbiguousRule + " allows group " + strconv.Quote(d.AmbiguousGroup) + " by a name that " +
			strconv.Itoa(len(d.AmbiguousIDs)) + " synced groups share (" + strings.Join(d.AmbiguousIDs, ", ") +
			"): it grants nobody until the rule names the group by id (see okproxy rules lint)\n")
	}
	if s := d.Shadow; s != nil {
		change := "same outcome"
		if s.Changed {
			change = "would change the outcome"
		}
		b.WriteString("report-only rules: would " + string(s.Effect) + " (" + string(s.Reason) + "), " + change + "\n")
		explainOutcome(&b, s.Reason, s.Granted, s.Denied, s.DeniedGroup, s.Matched, "report-only matched")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func explainOutcome(b *strings.Builder, reason Reason, granted, denied, deniedGroup string, matched []string, label string) {
	switch {
	case denied != "":
		b.WriteString("  denied by rule " + denied + ": caller is in deny group " + deniedGroup + "\n")
	case granted != "":
		b.WriteString("  granted by rule " + granted + "\n")
	case reason == ReasonBadRequest:
		b.WriteString("  the path is not canonical; no rule was evaluated\n")
	case reason == ReasonUnauthorized:
		b.WriteString("  no public rule matched, so a token is required\n")
	case reason == ReasonInsufficientScope:
		b.WriteString("  no rule granted: a matching rule would, but the token lacks a scope it requires\n")
	default:
		b.WriteString("  no matching rule grants access to this caller\n")
	}
	if reason == ReasonBadRequest {
		return
	}
	if len(matched) == 0 {
		b.WriteString("  " + label + ": no rule\n")
		return
	}
	b.WriteString("  " + label + ": " + strings.Join(matched, ", ") + "\n")
}
