package cli

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/policyfile"
	"github.com/okproxy/okproxy/internal/proxy"
	"github.com/okproxy/okproxy/internal/store"
)

// caseResult is one case of `rules test --file -o json`.
type caseResult struct {
	Name        string        `json:"name"`
	Line        int           `json:"line"`
	Passed      bool          `json:"passed"`
	Expect      string        `json:"expect"`
	ExpectRsn   string        `json:"expect_reason,omitempty"`
	Decision    policy.Effect `json:"decision"`
	Reason      policy.Reason `json:"reason"`
	Granted     string        `json:"granted,omitempty"`
	Denied      string        `json:"denied,omitempty"`
	Explanation string        `json:"explanation"`
}

// caseReport is `rules test --file -o json`.
type caseReport struct {
	Policy string       `json:"policy"`
	Passed int          `json:"passed"`
	Failed int          `json:"failed"`
	Cases  []caseResult `json:"cases"`
}

// withTestFile adds --file and --policy to `rules test`: with --file it runs
// a table of cases instead of the one request the other flags describe.
func (a *App) withTestFile(cmd *cobra.Command) {
	var file, policyPath string
	cmd.Flags().StringVar(&file, "file", "", "run the cases of this file (YAML) instead of one request; exit 3 if any fails")
	cmd.Flags().StringVar(&policyPath, "policy", "", "with --file: test against this policy file instead of the database (groups match by name)")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml")
	_ = cmd.MarkFlagFilename("policy", "yaml", "yml", "json")
	cmd.Use = "test (--path PATH [flags] | --file CASES [--policy FILE])"
	cmd.Example += `
  okproxy rules test --file testdata/policy/cases.yaml                  # against the stored policy
  okproxy rules test --file cases.yaml --policy policy.yaml             # in CI, no database`
	single := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if file == "" {
			if policyPath != "" {
				return usageErrorf("policy: --policy only works with --file")
			}
			return single(c, args)
		}
		for _, f := range []string{"path", "method", "host", "scope", "user", "groups", "token", "issuer", "audience", "groups-claim", "expect"} {
			if c.Flags().Changed(f) {
				return usageErrorf("%s: --%s describes one request; with --file each case says it", f, f)
			}
		}
		output, _ := c.Flags().GetString("output")
		return a.runTestFile(c, file, policyPath, output)
	}
}

// casePolicy is what the cases run against.
type casePolicy struct {
	pol   *policy.Policy
	label string
	st    *store.Store // nil with --policy: no directory, groups by name
}

func (a *App) loadCasePolicy(cmd *cobra.Command, policyPath string) (*casePolicy, func(), error) {
	if policyPath != "" {
		data, err := readInput(cmd, policyPath)
		if err != nil {
			return nil, nil, err
		}
		f, err := policyfile.Load(policyPath, data)
		if err != nil {
			return nil, nil, problemsError(policyPath, err, "no case was run")
		}
		rules := make([]policy.Rule, len(f.Doc.Rules))
		for i, r := range f.Doc.Rules {
			rules[i] = r.Policy()
		}
		pol, err := policy.Compile(rules)
		if err != nil {
			return nil, nil, usageErrorf("policy: %v", err)
		}
		return &casePolicy{pol: pol, label: "file " + policyPath}, func() {}, nil
	}
	st, err := a.openStore(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	snap, err := st.LoadSnapshot(cmd.Context())
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	pol, err := policy.Compile(snap.Rules)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("compile stored policy: %w", err)
	}
	return &casePolicy{pol: pol, label: fmt.Sprintf("stored policy version %d", snap.PolicyVersion), st: st}, st.Close, nil
}

// caseCaller is a case's caller made ready for Decide.
type caseCaller struct {
	caller   *policy.Caller
	inactive string // "login (STATUS)" of a synced user who is not ACTIVE
	label    string
}

// callerFor builds the caller as `rules test` would: a user alone is looked
// up in the synced directory (database only); groups are resolved through the
// directory against the database, and taken as names (or ids, if they look
// like one) against a policy file.
func (a *App) callerFor(cmd *cobra.Command, cp *casePolicy, c policyfile.Case) (caseCaller, error) {
	cl := c.Caller
	if cl.IsAnonymous() {
		return caseCaller{label: "anonymous"}, nil
	}
	label := fmt.Sprintf("%s groups=[%s] scopes=[%s]", cmp.Or(cl.User, "(caller)"), strings.Join(cl.Groups, ", "), strings.Join(cl.Scopes, " "))
	if cl.User != "" && len(cl.Groups) == 0 {
		if cp.st == nil {
			return caseCaller{}, fmt.Errorf("caller.user alone needs the synced directory: list the caller's groups too, or run without --policy")
		}
		u, err := cp.st.GetUser(cmd.Context(), cl.User)
		if errors.Is(err, store.ErrNotFound) {
			return caseCaller{}, fmt.Errorf("caller.user %q is not in the synced directory (run okproxy groups sync)", cl.User)
		}
		if err != nil {
			return caseCaller{}, err
		}
		cc := caseCaller{caller: policy.NewCaller(u.Login, u.Groups, cl.Scopes), label: label}
		if !u.Active() {
			cc.inactive = u.Login + " (" + u.Status + ")"
		}
		return cc, nil
	}
	var refs []policy.GroupRef
	if cp.st != nil && len(cl.Groups) > 0 {
		var err error
		refs, _, err = cp.st.ResolveGroups(cmd.Context(), cl.Groups)
		if err != nil {
			return caseCaller{}, fmt.Errorf("caller.groups: %w", err)
		}
	} else {
		for _, g := range cl.Groups {
			if store.IsGroupID(g) {
				refs = append(refs, policy.GroupRef{ID: g})
			} else {
				refs = append(refs, policy.GroupRef{Name: g})
			}
		}
	}
	return caseCaller{caller: policy.NewCaller(cl.User, refs, cl.Scopes), label: label}, nil
}

func (a *App) runTestFile(cmd *cobra.Command, file, policyPath, output string) error {
	if err := checkFormat(output, "text", "json"); err != nil {
		return err
	}
	data, err := readInput(cmd, file)
	if err != nil {
		return err
	}
	cf, err := policyfile.LoadCases(file, data)
	if err != nil {
		return problemsError(file, err, "no case was run")
	}
	cp, closeFn, err := a.loadCasePolicy(cmd, policyPath)
	if err != nil {
		return err
	}
	defer closeFn()
	// Resolve every caller first, so that bad input is reported in full
	// (exit 2) before any case runs.
	callers := make([]caseCaller, len(cf.Cases))
	var bad policyfile.Problems
	for i, c := range cf.Cases {
		cc, err := a.callerFor(cmd, cp, c)
		if err != nil {
			bad = append(bad, policyfile.Problem{File: file, Line: c.Line, Object: c.Label(), Message: err.Error()})
		}
		callers[i] = cc
	}
	if len(bad) > 0 {
		return problemsError(file, bad, "no case was run")
	}
	rep := caseReport{Policy: cp.label, Cases: []caseResult{}}
	for i, c := range cf.Cases {
		r := evaluateCase(cp.pol, c, callers[i])
		if r.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Cases = append(rep.Cases, r)
		if output == "text" && !r.Passed {
			writeCaseFailure(a, file, c, callers[i], r)
		}
	}
	if output == "json" {
		if err := writeJSON(a.Stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.Stdout, "%d cases: %d passed, %d failed (%s)\n", len(cf.Cases), rep.Passed, rep.Failed, cp.label)
	}
	if rep.Failed > 0 {
		return checkFailedf("%d of %d cases failed", rep.Failed, len(cf.Cases))
	}
	return nil
}

// evaluateCase decides the case's request as serve would: canonical path
// first (a path serve refuses is bad_request), host without port, then the
// user's Okta status, then the rules.
func evaluateCase(pol *policy.Policy, c policyfile.Case, cc caseCaller) caseResult {
	r := caseResult{Name: c.Name, Line: c.Line, Expect: c.Expect, ExpectRsn: c.Reason}
	decoded, perr := policy.CanonicalPath(c.Path)
	if perr != nil {
		r.Decision, r.Reason = policy.Deny, policy.ReasonBadRequest
		r.Explanation = "request refused before any rule is evaluated: " + perr.Error()
	} else {
		d := pol.Decide(policy.Request{Host: proxy.NormalizeHost(c.Host), Method: c.Method, Path: decoded}, cc.caller)
		r.Decision, r.Reason, r.Granted, r.Denied = d.Effect, d.Reason, d.Granted, d.Denied
		r.Explanation = d.Explain()
		if cc.inactive != "" {
			r.Decision, r.Reason, r.Granted = policy.Deny, policy.ReasonUserInactive, ""
			r.Explanation = "user " + cc.inactive + " is not active in Okta: refused before rules apply (rules alone would say: " + string(d.Effect) + ")"
		}
	}
	r.Passed = string(r.Decision) == c.Expect && (c.Reason == "" || string(r.Reason) == c.Reason)
	return r
}

func writeCaseFailure(a *App, file string, c policyfile.Case, cc caseCaller, r caseResult) {
	want := c.Expect
	if c.Reason != "" {
		want += " (" + c.Reason + ")"
	}
	fmt.Fprintf(a.Stdout, "FAIL %s:%d %s: expected %s, got %s (%s)\n", file, c.Line, c.Label(), want, r.Decision, r.Reason)
	fmt.Fprintf(a.Stdout, "     request: %s %s%s as %s\n", c.Method, proxy.NormalizeHost(c.Host), c.Path, cc.label)
	fmt.Fprintf(a.Stdout, "     why:     %s\n", strings.ReplaceAll(strings.TrimSpace(r.Explanation), "\n", "\n              "))
}
