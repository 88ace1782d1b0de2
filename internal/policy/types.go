// Package policy is okproxy's pure decision core: rules, path patterns, path
// canonicalisation and the combining algorithm of SPEC §3, with the reason
// codes that the log, the audit row and `rules test` share.
//
// It does no I/O: no database, no net/http, no clock. A test enforces that.
package policy

// Mode says whether a rule changes responses (enforce) or is only watched
// against traffic (report).
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeReport  Mode = "report"
)

// GroupRef names an Okta group in a rule. Once the directory has been
// synced, ID is the group's Okta id (00g…) and Name its current name; a
// group not (yet) known to the directory has only a Name.
type GroupRef struct {
	ID   string `json:"id,omitempty" yaml:"id,omitempty"`
	Name string `json:"name" yaml:"name"`
	// amb, set only by Groups.Mark on a ref without an ID, holds the ids of
	// the two or more synced groups whose names all compare equal to Name.
	// No one can tell which of them the rule meant, so such a ref in an
	// allow list (or a quota) applies to nobody, and in a deny list to the
	// members of every one of them. It is derived from the directory when
	// rules are loaded, never stored or serialised; a pointer keeps GroupRef
	// comparable.
	amb *[]string
	// nameMatch, set only by Groups.Mark on a ref bound to an ID whose
	// name another synced group shares ignoring case ("Sales" and "SALES"),
	// says how a caller group known only by name (a token's claim) may match
	// it as an allow or a quota: by the exact name (nameExact), or not at all
	// when even the exact name is shared (nameNever). Zero: by name compared
	// case-insensitively. A deny still matches case-insensitively.
	nameMatch uint8
}

const (
	nameFold  uint8 = iota // the default
	nameExact              // the folded name is shared, the exact one is not
	nameNever              // the exact name is shared too
)

// Rule is one access rule as stored and as shown to users.
type Rule struct {
	Name               string     `json:"name" yaml:"name"`
	Path               string     `json:"path" yaml:"path"`
	Methods            []string   `json:"methods,omitempty" yaml:"methods,omitempty"` // upper case; empty: all
	Hosts              []string   `json:"hosts,omitempty" yaml:"hosts,omitempty"`     // lower case; empty: all
	Allow              []GroupRef `json:"allow,omitempty" yaml:"allow,omitempty"`
	AllowAuthenticated bool       `json:"allow_authenticated,omitempty" yaml:"allow_authenticated,omitempty"`
	Public             bool       `json:"public,omitempty" yaml:"public,omitempty"`
	Deny               []GroupRef `json:"deny,omitempty" yaml:"deny,omitempty"`
	Scopes             []string   `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	Description        string     `json:"description,omitempty" yaml:"description,omitempty"`
	Enabled            bool       `json:"enabled" yaml:"enabled"`
	Mode               Mode       `json:"mode" yaml:"mode"`
}

// Reason is the machine-readable code carried by every decision. The same
// string appears in logs, audit rows, metrics and `rules test` output, and
// (for refusals) as the "error" field of the proxy's JSON responses.
type Reason string

const (
	ReasonOK                Reason = "ok"
	ReasonUnauthorized      Reason = "unauthorized"       // no token and no public grant
	ReasonInvalidToken      Reason = "invalid_token"      // token present but not valid
	ReasonForbidden         Reason = "forbidden"          // a rule denies, or no rule grants
	ReasonInsufficientScope Reason = "insufficient_scope" // a rule would grant but a scope is missing
	ReasonUserInactive      Reason = "user_inactive"      // synced Okta user is not ACTIVE
	ReasonQuotaExceeded     Reason = "quota_exceeded"
	ReasonQuotaUnchecked    Reason = "quota_unchecked" // quota store unreachable, admitted by policy
	ReasonBadRequest        Reason = "bad_request"
	ReasonBadGateway        Reason = "bad_gateway"
	ReasonGatewayTimeout    Reason = "gateway_timeout"
	ReasonUnavailable       Reason = "unavailable"
)

// Effect is the outcome of a decision.
type Effect string

const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Request is what a decision is about. Path must already be canonical (see
// CanonicalPath); Method is upper case; Host is lower case without port.
type Request struct {
	Host   string
	Method string
	Path   string
}

// Decision is the result of evaluating a request, with its explanation.
type Decision struct {
	Effect Effect
	Reason Reason
	// Matched lists the names of the enabled, enforced rules whose path,
	// method and host matched, in rule-name order.
	Matched []string
	// Granted is the rule that granted access (first by name when several do).
	// It is empty on a denial: nothing granted the request then.
	Granted string
	// Denied is the rule whose deny list holds the caller, and DeniedGroup the
	// group (as named in the rule) that put the caller there.
	Denied      string
	DeniedGroup string
	// AmbiguousRule is set on a refusal that nothing denied when a matching
	// rule would have granted the caller through an allow group it names by
	// a name several synced groups share (GroupRef.IsAmbiguous): such a
	// reference grants nobody until it is bound by id. AmbiguousGroup is that
	// name and AmbiguousIDs the groups it could mean (do not modify).
	AmbiguousRule  string
	AmbiguousGroup string
	AmbiguousIDs   []string
	// Shadow is set when at least one enabled report-only rule matched: what
	// the decision would have been if report-only rules were enforced.
	Shadow *Shadow
}

// Shadow is the would-be outcome of report-only rules.
type Shadow struct {
	Effect      Effect
	Reason      Reason
	Matched     []string // the report-only rules that matched
	Granted     string
	Denied      string
	DeniedGroup string
	// Changed is true when enforcing report-only rules would flip the effect.
	Changed bool
}
