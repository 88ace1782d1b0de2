package lint

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

// groupUse collects, for one group, the rules and quotas naming it.
type groupUse struct {
	ref    policy.GroupRef
	state  state
	cur    string
	rules  []string
	quotas []string
}

// groups reports every group that is unknown, deleted or renamed, once per
// group with everything that names it. Before the first sync no group is
// known (SPEC: a name not yet known is reported by lint), so every one is
// reported as unknown: a typo must not pass as clean just because the
// directory is empty.
func (l *linter) groups() []Finding {
	uses := map[string]*groupUse{}
	var keys []string
	use := func(g policy.GroupRef, ruleName, quotaName string) {
		st, cur := l.state(g)
		if !l.in.Directory.Synced {
			st, cur = unknown, ""
		}
		if st == known {
			return
		}
		k := g.ID + "\x00" + strings.ToLower(g.Name)
		u, ok := uses[k]
		if !ok {
			u = &groupUse{ref: g, state: st, cur: cur}
			uses[k] = u
			keys = append(keys, k)
		}
		if ruleName != "" && !slices.Contains(u.rules, ruleName) {
			u.rules = append(u.rules, ruleName)
		}
		if quotaName != "" {
			u.quotas = append(u.quotas, quotaName)
		}
	}
	for _, r := range l.rules {
		for _, g := range r.Allow {
			use(g, r.Name, "")
		}
		for _, g := range r.Deny {
			use(g, r.Name, "")
		}
	}
	for _, q := range l.in.Quotas {
		use(q.Group, "", q.Name)
	}
	var out []Finding
	for _, k := range keys {
		u := uses[k]
		f := Finding{Severity: Warning, Rules: u.rules, Quotas: u.quotas, Groups: []string{u.ref.String()}}
		users := usedBy(u.rules, u.quotas)
		switch u.state {
		case unknown:
			f.Check = UnknownGroup
			if !l.in.Directory.Synced {
				f.Message = fmt.Sprintf("group %q is not known: the Okta directory has never been synced (%s)", u.ref.String(), users)
				f.Fix = "Run okproxy groups sync; lint then checks the name against Okta. " +
					"Until then it only matches tokens whose groups claim carries that name (compared case-insensitively, as every group name is)."
				break
			}
			f.Message = fmt.Sprintf("group %q is not in the synced Okta directory (%s)", u.ref.Name, users)
			f.Fix = "Correct the name (okproxy groups list shows the synced groups), or create the group in Okta and run okproxy groups sync. " +
				"Until then it only matches tokens whose groups claim carries that name (compared case-insensitively, as every group name is)."
		case deleted:
			f.Check = DeletedGroup
			f.Message = fmt.Sprintf("group %q (%s) is no longer in the synced Okta directory: deleted in Okta or filtered out of the sync (%s)", u.ref.Name, u.ref.ID, users)
			f.Fix = "Remove the group from these rules and quotas, or rebind them to the group that replaced it (okproxy rules apply with the new name); " +
				"if the group still exists in Okta, check the sync's --group-filter."
			if id, name, ok := l.idIgnoringCase(u.ref.ID); ok {
				// Never a synced group: a mistyped id, not a deleted group.
				f.Message = fmt.Sprintf("group id %q is not a synced group; the synced group %q has id %s, which differs only in letter case, and Okta ids are case-sensitive (%s)", u.ref.ID, name, id, users)
				f.Fix = fmt.Sprintf("Write the id exactly as Okta does, %s (okproxy rules apply with the corrected id, or rules rm and rules add).", id)
			}
		case renamed:
			f.Check = RenamedGroup
			f.Severity = Info
			f.Groups = []string{u.ref.ID}
			f.Message = fmt.Sprintf("group %s was %q when the rules were written and is now %q in Okta (%s)", u.ref.ID, u.ref.Name, u.cur, users)
			f.Fix = "Nothing to do if it is the same team under a new name: rules follow the group's id. If the group was repurposed, review the rules."
		case ambiguous:
			f.Check = AmbiguousGroup
			f.Groups = append(f.Groups, strings.Split(u.cur, ", ")...)
			f.Message = fmt.Sprintf("group %q is named by name only, and %d synced groups have that name (%s), so which one is meant is unknown: "+
				"as an allow or a quota it applies to nobody, as a deny to the members of each (%s)", u.ref.Name, strings.Count(u.cur, ",")+1, u.cur, users)
			f.Fix = fmt.Sprintf("Name the group meant by its id (okproxy groups show ID tells them apart: %s). For a rule: okproxy rules export > policy.yaml, "+
				"replace %q with that id in the rule's allow or deny, then okproxy rules apply -f policy.yaml "+
				"(apply refuses the name as it stands, so export | apply alone fails); or okproxy rules rm NAME and okproxy rules add NAME ... with the id. "+
				"For a quota: okproxy quotas rm NAME and okproxy quotas add NAME --group ID ..., or the same edit in the exported file.", u.cur, u.ref.Name)
		case unbound:
			f.Check = UnboundGroup
			f.Severity = Info
			f.Message = fmt.Sprintf("group %q is named by name only, although the synced directory has it (%s) (%s)", u.ref.Name, u.cur, users)
			f.Fix = "Bind it to the id, so that a rename in Okta cannot break the rule: okproxy rules export | okproxy rules apply -f - (apply binds names to ids)."
		}
		out = append(out, f)
	}
	return out
}

func usedBy(rules, quotas []string) string {
	var parts []string
	if len(rules) > 0 {
		parts = append(parts, plural(len(rules), "rule ", "rules ")+quote(rules))
	}
	if len(quotas) > 0 {
		parts = append(parts, plural(len(quotas), "quota ", "quotas ")+quote(quotas))
	}
	return "used by " + strings.Join(parts, " and ")
}

// neverGrants reports enabled rules that grant only through allow groups
// when every such group is gone from Okta, or is denied on every request
// the rule matches by enforced deny rules that cover it (same or wider
// path, methods and hosts): an explicit deny always wins.
func (l *linter) neverGrants() []Finding {
	var out []Finding
	for i, r := range l.rules {
		if !r.Enabled || r.Public || r.AllowAuthenticated || len(r.Allow) == 0 {
			continue
		}
		var goneNames, live []string
		var liveRefs []policy.GroupRef
		anyAmbiguous := false
		for _, g := range r.Allow {
			if l.grantsNobody(g) {
				anyAmbiguous = anyAmbiguous || l.ambiguous(g)
				goneNames = append(goneNames, g.String())
			} else {
				live = append(live, l.name(g))
				liveRefs = append(liveRefs, g)
			}
		}
		var deniers []string
		allDenied := len(liveRefs) > 0
		for _, g := range liveRefs {
			denied := false
			for j, d := range l.rules {
				if j == i || !d.enforcing() || len(d.Deny) == 0 || !d.covers(r) {
					continue
				}
				if slices.ContainsFunc(d.Deny, func(x policy.GroupRef) bool { return l.same(x, g) }) {
					denied = true
					if !slices.Contains(deniers, d.Name) {
						deniers = append(deniers, d.Name)
					}
				}
			}
			allDenied = allDenied && denied
		}
		var msg string
		switch {
		case len(liveRefs) == 0 && anyAmbiguous:
			msg = fmt.Sprintf("rule %q can never grant anyone: all its allow groups (%s) are unknown to or deleted from Okta, or named by a name several synced groups share", r.Name, quote(goneNames))
		case len(liveRefs) == 0:
			msg = fmt.Sprintf("rule %q can never grant anyone: all its allow groups (%s) are unknown to or deleted from Okta", r.Name, quote(goneNames))
		case allDenied:
			msg = fmt.Sprintf("rule %q can never grant anyone: every group it allows (%s) is denied by %s %s on the same or a wider route",
				r.Name, quote(live), plural(len(deniers), "rule", "rules"), quote(deniers))
			if len(goneNames) > 0 {
				msg += fmt.Sprintf(", and its other allow groups (%s) are gone from Okta", quote(goneNames))
			}
		default:
			continue
		}
		slices.Sort(deniers)
		out = append(out, Finding{
			Check: NeverGrants, Severity: Warning, Rules: append([]string{r.Name}, deniers...), Message: msg,
			Fix: "An explicit deny always wins and a group Okta does not have has no members: fix the allow groups, " +
				"narrow or correct the deny rules, or remove the rule.",
		})
	}
	return out
}

// duplicates reports sets of rules identical in everything that affects
// decisions (name and description aside).
func (l *linter) duplicates() []Finding {
	byKey := map[string][]string{}
	var keys []string
	for _, r := range l.rules {
		k := l.contentKey(r)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], r.Name)
	}
	var out []Finding
	for _, k := range keys {
		names := byKey[k]
		if len(names) < 2 {
			continue
		}
		out = append(out, Finding{
			Check: Duplicate, Severity: Warning, Rules: names,
			Message: fmt.Sprintf("rules %s are identical apart from their names", quote(names)),
			Fix:     "Keep one and remove the others (okproxy rules rm NAME), so that a later edit to one cannot silently leave the old behaviour in another.",
		})
	}
	return out
}

func (l *linter) contentKey(r rule) string {
	refs := func(gs []policy.GroupRef) string {
		s := make([]string, len(gs))
		for i, g := range gs {
			if g.ID != "" {
				s[i] = "id:" + g.ID
			} else {
				s[i] = "name:" + strings.ToLower(g.Name)
			}
		}
		slices.Sort(s)
		return strings.Join(s, ",")
	}
	return strings.Join([]string{r.Path, strings.Join(r.Methods, ","), strings.Join(r.Hosts, ","), refs(r.Allow),
		fmt.Sprint(r.AllowAuthenticated, r.Public), refs(r.Deny), strings.Join(r.Scopes, ","), string(r.Mode), fmt.Sprint(r.Enabled)}, "|")
}

// publicOverDeny reports enforced deny rules that match requests an
// enforced public rule admits. The deny still stops callers who present a
// token with the group, but anonymous callers are in no group, so the route
// stays open to anyone who simply sends no token.
func (l *linter) publicOverDeny() []Finding {
	var out []Finding
	for _, p := range l.rules {
		if !p.enforcing() || !p.Public {
			continue
		}
		for _, d := range l.rules {
			if !d.enforcing() || len(d.Deny) == 0 || !p.overlaps(d) {
				continue
			}
			groups := make([]string, len(d.Deny))
			for i, g := range d.Deny {
				groups[i] = l.name(g)
			}
			out = append(out, Finding{
				Check: PublicOverDeny, Severity: Warning, Rules: []string{p.Name, d.Name}, Groups: groups,
				Message: fmt.Sprintf("public rule %q and deny rule %q match some of the same requests: the deny of %s only stops callers who send a token; anyone without one is still admitted by %q",
					p.Name, d.Name, quote(groups), p.Name),
				Fix: "If those requests must be closed to these groups they cannot be public: use allow_authenticated or allow groups instead; " +
					"otherwise narrow the public rule's path, methods or hosts so that it no longer overlaps the deny.",
			})
		}
	}
	return out
}

// staleReportOnly reports rules left in report mode longer than the
// threshold since they were last changed: a watched rule is meant to be
// promoted or dropped, not to linger.
func (l *linter) staleReportOnly() []Finding {
	var out []Finding
	for _, r := range l.rules {
		if r.Mode != policy.ModeReport {
			continue
		}
		since := r.UpdatedAt
		if since.IsZero() {
			since = r.CreatedAt
		}
		if since.IsZero() || l.in.Now.Sub(since) <= l.in.ReportMaxAge {
			continue
		}
		out = append(out, Finding{
			Check: StaleReportOnly, Severity: Warning, Rules: []string{r.Name},
			Message: fmt.Sprintf("rule %q has been report-only for %s (since %s), longer than %s",
				r.Name, days(l.in.Now.Sub(since)), since.UTC().Format("2006-01-02"), days(l.in.ReportMaxAge)),
			Fix: "Check what enforcing it would change (okproxy audit report), then set mode: enforce, or remove the rule.",
		})
	}
	return out
}

func days(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// quotasNotGranted reports quotas whose group no enforced rule admits on
// the quota's path and methods: quotas are checked after authorisation, so
// such a quota never counts a request.
func (l *linter) quotasNotGranted() []Finding {
	var out []Finding
	for _, q := range l.in.Quotas {
		if l.ambiguous(q.Group) {
			continue // it applies to nobody: ambiguous-group says so, and how to fix it
		}
		qr := rule{path: parsePattern(q.Path), methods: newMethodSet(q.Methods)}
		granted := false
		for _, r := range l.rules {
			if r.enforcing() && r.overlaps(qr) && l.grantsGroup(r, q.Group) {
				granted = true
				break
			}
		}
		if granted {
			continue
		}
		out = append(out, Finding{
			Check: QuotaNotGranted, Severity: Warning, Quotas: []string{q.Name}, Groups: []string{l.name(q.Group)},
			Message: fmt.Sprintf("quota %q limits group %q on %s, but no enabled, enforced rule grants that group anything there: the quota never applies",
				q.Name, l.name(q.Group), q.Path),
			Fix: "Fix the quota's group or path, or remove the quota (okproxy quotas rm NAME).",
		})
	}
	return out
}

// idIgnoringCase finds the synced group whose id equals id ignoring case.
func (l *linter) idIgnoringCase(id string) (string, string, bool) {
	for gid, name := range l.in.Directory.Groups {
		if strings.EqualFold(gid, id) {
			return gid, name, true
		}
	}
	return "", "", false
}

// regexLike reports path patterns that read like regular expressions
// ("/admin/(users|groups)", "/v[0-9]+/x", "/a/.*"). Patterns are literal
// apart from * and **, so such a rule matches only that exact text: a deny
// written that way never fires, an allow never grants.
func (l *linter) regexLike() []Finding {
	var out []Finding
	for _, r := range l.rules {
		p := r.Path
		// "$" only at the end and "^" only at the start of a segment: a
		// literal "/v1/$metadata" (OData) is a path, not an anchor. "{id}"
		// is a path template, which never matches literally either.
		if !(strings.ContainsAny(p, "()|[]{}") || strings.Contains(p, ".*") || strings.Contains(p, ".+") ||
			strings.HasSuffix(p, "$") || strings.Contains(p, "/^")) {
			continue
		}
		out = append(out, Finding{
			Check: RegexLike, Severity: Warning, Rules: []string{r.Name},
			Message: fmt.Sprintf("rule %q has the path pattern %q, which looks like a regular expression or a path template; patterns are literal apart from * and **, "+
				"so it matches only a path spelled exactly like that", r.Name, p),
			Fix: "Write one rule per literal path, or use * (one segment) and a trailing ** (any depth): /admin/(users|groups) becomes /admin/users and /admin/groups, or /admin/*; /users/{id} becomes /users/*.",
		})
	}
	return out
}
