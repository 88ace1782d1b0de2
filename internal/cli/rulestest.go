package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/proxy"
	"github.com/okproxy/okproxy/internal/store"
)

type ruleTestOptions struct {
	method string
	path   string
	host   string
	scopes []string
	user   string
	groups []string
	token  string
	expect string
	output string
	// issuer, audiences and groupsClaim verify --token as serve would.
	issuer      string
	audiences   []string
	groupsClaim string
}

// testResult is `rules test` output in machine form.
type testResult struct {
	Decision    policy.Effect `json:"decision"`
	Reason      policy.Reason `json:"reason"`
	Status      int           `json:"status"`
	Method      string        `json:"method"`
	Host        string        `json:"host,omitempty"`
	Path        string        `json:"path"`
	Subject     string        `json:"subject,omitempty"`
	Groups      []string      `json:"groups"`
	Matched     []string      `json:"matched"`
	Granted     string        `json:"granted,omitempty"`
	Denied      string        `json:"denied,omitempty"`
	DeniedGroup string        `json:"denied_group,omitempty"`
	// Ambiguous*: a matching rule allows the caller's group only by a name
	// several synced groups share, so it granted nothing (see policy.Decision).
	AmbiguousRule  string         `json:"ambiguous_rule,omitempty"`
	AmbiguousGroup string         `json:"ambiguous_group,omitempty"`
	AmbiguousIDs   []string       `json:"ambiguous_group_ids,omitempty"`
	Shadow         *policy.Shadow `json:"shadow,omitempty"`
	PolicyVersion  int64          `json:"policy_version"`
	Explanation    string         `json:"explanation"`
}

func (a *App) rulesTest() *cobra.Command {
	var o ruleTestOptions
	cmd := &cobra.Command{
		Use:   "test --path PATH [--method M] [--user LOGIN | --groups A,B | --token JWT] [--expect allow|deny]",
		Short: "Evaluate a request against the stored rules exactly as serve does, and say why",
		Example: `  okproxy rules test --method GET --path /billing/x --groups Finance
  okproxy rules test --path /billing/x --user alice@example.com --expect allow
  okproxy rules test --path /healthz                       # anonymous caller`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// An empty --user, --groups, --token or --expect (an unset
			// variable in CI) would test an anonymous caller, or check
			// nothing, and pass for the wrong reason.
			for _, f := range []string{"user", "groups", "token", "expect", "scope"} {
				if fl := cmd.Flags().Lookup(f); fl != nil && fl.Changed && strings.Trim(strings.TrimSpace(fl.Value.String()), "[]") == "" {
					return usageErrorf("%s: --%s is empty", f, f)
				}
			}
			return a.runRulesTest(cmd.Context(), &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.method, "method", "GET", "HTTP method")
	f.StringVar(&o.path, "path", "", "request path as a client would send it, percent-encoding and all (required)")
	f.StringVar(&o.host, "host", "", "request host")
	f.StringSliceVar(&o.scopes, "scope", nil, "token scope (repeatable)")
	f.StringVar(&o.user, "user", "", "evaluate as this synced Okta user (login or id)")
	f.StringSliceVar(&o.groups, "groups", nil, "evaluate as a caller in these groups (names or ids)")
	f.StringVar(&o.token, "token", "", "evaluate as the caller of this access token, verified like serve does (needs --issuer and --audience)")
	f.StringVar(&o.issuer, "issuer", "", "with --token: the Okta issuer serve uses")
	f.StringSliceVar(&o.audiences, "audience", nil, "with --token: accepted audience (repeatable)")
	f.StringVar(&o.groupsClaim, "groups-claim", "groups", "with --token: claim holding the groups")
	f.StringVar(&o.expect, "expect", "", "allow or deny (any case): exit 3 when the decision differs")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (a *App) runRulesTest(ctx context.Context, o *ruleTestOptions) error {
	if err := checkFormat(o.output, "text", "json"); err != nil {
		return err
	}
	if o.path == "" {
		return usageErrorf("path: --path is required")
	}
	o.expect = strings.ToLower(strings.TrimSpace(o.expect)) // as a case file reads expect:
	if o.expect != "" && o.expect != "allow" && o.expect != "deny" {
		return usageErrorf("expect: %q is not allow or deny", o.expect)
	}
	n := 0
	for _, set := range []bool{o.user != "", len(o.groups) > 0, o.token != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usageErrorf("--user, --groups and --token are alternatives: give at most one")
	}
	if o.token != "" && (o.issuer == "" || len(o.audiences) == 0) {
		return usageErrorf("token: --token needs --issuer and --audience to be verified as serve would")
	}
	method := strings.ToUpper(strings.TrimSpace(o.method))
	if method == "" || strings.ContainsAny(method, " \t/") {
		return usageErrorf("method: %q is not an HTTP method", o.method)
	}
	res := testResult{Method: method, Host: proxy.NormalizeHost(o.host), Path: o.path, Groups: []string{}, Matched: []string{}}
	decoded, perr := policy.CanonicalPath(o.path)
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	snap, err := st.LoadSnapshot(ctx)
	if err != nil {
		return err
	}
	res.PolicyVersion = snap.PolicyVersion
	var caller *policy.Caller
	var inactive *directory.User
	scopes := splitList(o.scopes)
	switch {
	case o.user != "":
		u, err := st.GetUser(ctx, o.user)
		if errors.Is(err, store.ErrNotFound) {
			return usageErrorf("user: %q is not in the synced directory (run okproxy groups sync)", o.user)
		}
		if err != nil {
			return err
		}
		if !u.Active() {
			inactive = &u
		}
		res.Subject = u.Login
		caller = policy.NewCaller(u.Login, u.Groups, scopes)
		for _, g := range u.Groups {
			res.Groups = append(res.Groups, g.Name)
		}
	case o.token != "":
		ac := authn.Config{Issuer: o.issuer, Audiences: splitList(o.audiences), GroupsClaim: o.groupsClaim, CacheSize: -1}
		if err := ac.Validate(); err != nil {
			return usageErrorf("%v", err)
		}
		v, err := authn.New(ctx, ac)
		if err != nil { // the issuer is unreachable or its discovery is broken: a runtime failure
			return fmt.Errorf("issuer: %w", err)
		}
		defer v.Close()
		id, err := v.Verify(ctx, o.token)
		if err != nil {
			// serve answers 401 invalid_token; say why (the detail is safe: it never holds the token).
			res.Decision, res.Reason = policy.Deny, policy.ReasonInvalidToken
			res.Status = proxy.StatusFor(res.Reason)
			res.Explanation = err.Error()
			return a.printTestResult(&res, o, scopes)
		}
		res.Subject = id.Subject
		dir, err := st.LoadDirectory(ctx)
		if err != nil {
			return err
		}
		// serve's default groups source; a user whose Okta status is not
		// ACTIVE is refused below, as serve refuses them.
		refs, u := proxy.ResolveGroups(proxy.GroupsAuto, id, dir)
		if u != nil && !u.Active() {
			inactive = u
		}
		scopes = append(scopes, id.Scopes...)
		caller = policy.NewCaller(id.Subject, refs, scopes)
		for _, g := range refs {
			res.Groups = append(res.Groups, g.Name)
		}
	case len(o.groups) > 0:
		names := splitList(o.groups)
		refs, _, err := st.ResolveGroups(ctx, names)
		var amb *store.AmbiguousGroupError
		if errors.As(err, &amb) {
			// A name several synced groups share cannot be bound to one:
			// evaluate the names as a token's groups claim carries them,
			// exactly as serve would.
			a.warnf("groups: %v; evaluated as a token's groups claim naming them", err)
			refs, err = nil, nil
			for _, n := range names {
				refs = append(refs, policy.GroupRef{Name: n})
			}
		}
		if err != nil {
			return err
		}
		caller = policy.NewCaller("", refs, scopes)
		for _, g := range refs {
			res.Groups = append(res.Groups, g.Name)
		}
	case len(scopes) > 0:
		// SPEC §3: no identity (--user, --groups, --token) means anonymous,
		// and an anonymous caller has no token to carry scopes.
		a.warnf("--scope is ignored without --user, --groups or --token: the caller is anonymous")
		scopes = nil
	}
	switch {
	case perr != nil:
		res.Decision, res.Reason = policy.Deny, policy.ReasonBadRequest
		res.Explanation = "request refused before any rule is evaluated: " + perr.Error()
	default:
		res.Path = decoded
		pol, err := policy.Compile(snap.Rules)
		if err != nil {
			return fmt.Errorf("compile stored policy: %w", err)
		}
		d := pol.Decide(policy.Request{Host: res.Host, Method: method, Path: decoded}, caller)
		res.Decision, res.Reason = d.Effect, d.Reason
		res.Matched = append(res.Matched, d.Matched...)
		res.Granted, res.Denied, res.DeniedGroup, res.Shadow = d.Granted, d.Denied, d.DeniedGroup, d.Shadow
		res.AmbiguousRule, res.AmbiguousGroup, res.AmbiguousIDs = d.AmbiguousRule, d.AmbiguousGroup, d.AmbiguousIDs
		res.Explanation = d.Explain()
		if inactive != nil {
			res.Decision, res.Reason = policy.Deny, policy.ReasonUserInactive
			res.Explanation = fmt.Sprintf("user %s is %s in Okta: refused before rules apply (rules alone would say: %s)",
				inactive.Login, inactive.Status, d.Effect)
		}
	}
	res.Status = proxy.StatusFor(res.Reason)
	return a.printTestResult(&res, o, scopes)
}

func (a *App) printTestResult(res *testResult, o *ruleTestOptions, scopes []string) error {
	method := res.Method
	if o.output == "json" {
		if err := writeJSON(a.Stdout, res); err != nil {
			return err
		}
	} else {
		caller := "anonymous"
		if res.Subject != "" || len(res.Groups) > 0 || len(scopes) > 0 {
			caller = fmt.Sprintf("%sgroups=[%s] scopes=[%s]", prefixed(res.Subject), strings.Join(res.Groups, ", "), strings.Join(scopes, " "))
		}
		// Group names and subjects come from Okta and tokens: escaped, so
		// they cannot drive the terminal or forge a line.
		fmt.Fprintf(a.Stdout, "decision: %s (%s, HTTP %d)\n", res.Decision, res.Reason, res.Status)
		textf(a.Stdout, "request:  %s %s%s\n", method, res.Host, res.Path)
		textf(a.Stdout, "caller:   %s\n", caller)
		fmt.Fprintf(a.Stdout, "policy:   version %d\n", res.PolicyVersion)
		why := strings.Split(strings.TrimSpace(res.Explanation), "\n")
		for i := range why {
			why[i] = escapeText(why[i])
		}
		fmt.Fprintf(a.Stdout, "why:      %s\n", strings.Join(why, "\n          "))
	}
	if o.expect != "" && string(res.Decision) != o.expect {
		return checkFailedf("expected %s, got %s (%s)", o.expect, res.Decision, res.Reason)
	}
	return nil
}

// prefixed is "NAME " or "" for an unnamed caller.
func prefixed(name string) string {
	if name == "" {
		return ""
	}
	return name + " "
}
