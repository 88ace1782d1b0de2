package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) rulesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rules",
		Example: "  okproxy rules add billing-read --path '/billing/**' --method GET --allow Finance\n  okproxy rules test --path /billing/x --groups Finance --expect allow",
		Short:   "Manage access rules",
		Long: `Rules decide who may call which route. A request is allowed if and only if at least
one enabled matching rule grants it to the caller and no enabled matching rule denies
the caller. Every change is one transaction and one policy version, recorded with its
actor, and reaches running replicas within a second.`,
	}
	cmd.AddCommand(a.policyCommands(a.rulesAdd(), a.rulesList(), a.rulesShow(), a.rulesRemove(),
		a.rulesSetEnabled(true), a.rulesSetEnabled(false), a.rulesTest())...)
	return cmd
}

type ruleAddOptions struct {
	path               string
	methods            []string
	hosts              []string
	allow              []string
	allowAuthenticated bool
	public             bool
	deny               []string
	scopes             []string
	description        string
	mode               string
	disabled           bool
}

// rule builds the policy rule from the flags; validation happens in Validate.
// An empty value (--host "" from an unset variable) is refused rather than
// dropped: dropping it would widen the rule to every host, method or scope.
// Group names are taken whole: Okta names may contain commas, and splitting
// "Developers, EMEA" into two groups would grant both.
func (o *ruleAddOptions) rule(name string) (policy.Rule, error) {
	r := policy.Rule{
		Name:               name,
		Path:               o.path,
		AllowAuthenticated: o.allowAuthenticated,
		Public:             o.public,
		Description:        o.description,
		Enabled:            !o.disabled,
		Mode:               policy.Mode(o.mode),
	}
	var err error
	if r.Methods, err = strictList("method", o.methods); err != nil {
		return r, err
	}
	if r.Hosts, err = strictList("host", o.hosts); err != nil {
		return r, err
	}
	if r.Scopes, err = strictList("scope", o.scopes); err != nil {
		return r, err
	}
	for _, g := range o.allow {
		if strings.TrimSpace(g) == "" {
			return r, usageErrorf("allow: empty group name")
		}
	}
	for _, g := range o.deny {
		if strings.TrimSpace(g) == "" {
			return r, usageErrorf("deny: empty group name")
		}
	}
	for _, g := range o.allow {
		r.Allow = append(r.Allow, policy.GroupRef{Name: strings.TrimSpace(g)})
	}
	for _, g := range o.deny {
		r.Deny = append(r.Deny, policy.GroupRef{Name: strings.TrimSpace(g)})
	}
	return r, nil
}

// strictList is splitList for flags where an empty item must not silently
// mean "all": "GET,,POST", "" and " " are refused, naming the field.
func strictList(field string, in []string) ([]string, error) {
	var out []string
	for _, v := range in {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p == "" {
				return nil, usageErrorf("%s: empty value in %q (leave the flag out to mean all)", field, v)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// splitList accepts repeated and comma-separated values alike.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (a *App) rulesAdd() *cobra.Command {
	var o ruleAddOptions
	cmd := &cobra.Command{
		Use:   "add NAME --path PATTERN [flags]",
		Short: "Add a rule",
		Example: `  okproxy rules add billing-read --path '/billing/**' --method GET --allow Finance --allow Auditors
  okproxy rules add no-contractors --path '/billing/**' --deny Contractors
  okproxy rules add health --path /healthz --method GET --public
  okproxy rules add me --path /me --allow-authenticated --host api.example.com --scope profile:read
  okproxy rules add new-export --path '/export/**' --allow Finance --mode report`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !cmd.Flags().Changed("path") && o.path == "" {
				return usageErrorf("path: --path is required")
			}
			for _, f := range []string{"method", "host", "scope"} {
				// pflag reads --host '' as no values at all.
				if v, _ := cmd.Flags().GetStringSlice(f); cmd.Flags().Changed(f) && len(v) == 0 {
					return usageErrorf("%s: --%s is empty (leave it out to mean all)", f, f)
				}
			}
			r, err := o.rule(args[0])
			if err != nil {
				return err
			}
			r.Normalize()
			if err := r.Validate(); err != nil {
				return usageErrorf("invalid rule %q: %v", r.Name, err)
			}
			st, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			var warnings, more []string
			if r.Allow, warnings, err = resolveGroups(cmd, st, "allow", r.Allow); err != nil {
				return err
			}
			if r.Deny, more, err = resolveGroups(cmd, st, "deny", r.Deny); err != nil {
				return err
			}
			v, err := st.AddRule(ctx, r, a.actorName())
			if errors.Is(err, store.ErrExists) {
				return usageErrorf("name: rule %q already exists (use rules rm first, or rules apply)", r.Name)
			}
			if err != nil {
				return err
			}
			// Warnings about what was stored, once it is.
			for _, w := range append(warnings, more...) {
				a.warnf("%s", w)
			}
			fmt.Fprintf(a.Stdout, "rule %s added (policy version %d)\n", r.Name, v)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.path, "path", "", "path pattern: /literal, * = one segment, trailing ** = any depth (required)")
	f.StringSliceVar(&o.methods, "method", nil, "HTTP method (repeatable or comma-separated; default all; GET also matches HEAD)")
	f.StringSliceVar(&o.hosts, "host", nil, "host the rule applies to (repeatable; default all)")
	f.StringArrayVar(&o.allow, "allow", nil, "Okta group (name or 00g… id) granted access (repeatable)")
	f.BoolVar(&o.allowAuthenticated, "allow-authenticated", false, "grant any caller with a valid token")
	f.BoolVar(&o.public, "public", false, "grant everyone, no token needed")
	f.StringArrayVar(&o.deny, "deny", nil, "Okta group denied access; a deny always wins (repeatable)")
	f.StringSliceVar(&o.scopes, "scope", nil, "scope the token's scp must contain (repeatable; all required)")
	f.StringVar(&o.description, "description", "", "free text shown in lists")
	f.StringVar(&o.mode, "mode", "enforce", "enforce, or report: evaluate and audit the would-be effect without changing responses")
	f.BoolVar(&o.disabled, "disabled", false, "store the rule disabled")
	return cmd
}

// resolveGroups binds group names to the synced directory and returns a
// warning for each name it does not know.
func resolveGroups(cmd *cobra.Command, st *store.Store, field string, refs []policy.GroupRef) ([]policy.GroupRef, []string, error) {
	if len(refs) == 0 {
		return nil, nil, nil
	}
	names := make([]string, len(refs))
	for i, g := range refs {
		names[i] = g.Name
	}
	out, unknown, err := st.ResolveGroups(cmd.Context(), names)
	var amb *store.AmbiguousGroupError
	if errors.As(err, &amb) {
		return nil, nil, usageErrorf("%s: %v", field, err)
	}
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	for _, u := range unknown {
		w := fmt.Sprintf("%s group %q is not in the synced directory; stored by name (run okproxy groups sync, then okproxy rules lint)", field, u)
		if strings.Contains(u, ",") {
			w += fmt.Sprintf("; a group name is never split on commas: for several groups repeat --%s", field)
		}
		warnings = append(warnings, w)
	}
	return out, warnings, nil
}

func groupNames(refs []policy.GroupRef) string {
	s := make([]string, len(refs))
	for i, g := range refs {
		s[i] = g.Name
	}
	return strings.Join(s, ",")
}

func grants(r policy.Rule) string {
	switch {
	case r.Public:
		return "public"
	case r.AllowAuthenticated:
		return "authenticated"
	}
	return groupNames(r.Allow)
}

func (a *App) rulesList() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List rules",
		Example: "  okproxy rules list\n  okproxy rules list -o json\n  okproxy rules list -o csv > rules.csv",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "table", "json", "yaml", "csv"); err != nil {
				return err
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			rs, err := st.ListRules(cmd.Context())
			if err != nil {
				return err
			}
			if rs == nil {
				rs = []store.Rule{}
			}
			if output == "csv" {
				return writeRulesCSV(a.Stdout, rs)
			}
			return writeAs(a.Stdout, output, rs, func() error {
				t := newTable(a.Stdout, "NAME", "PATH", "METHODS", "HOSTS", "GRANTS", "DENY", "SCOPES", "MODE", "ENABLED")
				for _, r := range rs {
					t.row(r.Name, r.Path, strings.Join(r.Methods, ","), strings.Join(r.Hosts, ","), grants(r.Rule),
						groupNames(r.Deny), strings.Join(r.Scopes, ","), string(r.Mode), strconv.FormatBool(r.Enabled))
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, yaml or csv")
	return cmd
}

// writeRulesCSV writes one row per rule with the JSON field names as
// header; lists are joined with ";" as in audit CSV, groups by name (their
// Okta id when no name is known).
func writeRulesCSV(w io.Writer, rs []store.Rule) error {
	refs := func(gs []policy.GroupRef) string {
		s := make([]string, len(gs))
		for i, g := range gs {
			s[i] = g.String()
		}
		return strings.Join(s, ";")
	}
	rows := make([][]string, 0, len(rs))
	for _, r := range rs {
		rows = append(rows, []string{r.Name, r.Path, strings.Join(r.Methods, ";"), strings.Join(r.Hosts, ";"), refs(r.Allow),
			strconv.FormatBool(r.AllowAuthenticated), strconv.FormatBool(r.Public), refs(r.Deny), strings.Join(r.Scopes, ";"),
			r.Description, strconv.FormatBool(r.Enabled), string(r.Mode), csvTime(r.CreatedAt), csvTime(r.UpdatedAt)})
	}
	return writeCSV(w, []string{"name", "path", "methods", "hosts", "allow", "allow_authenticated", "public", "deny", "scopes",
		"description", "enabled", "mode", "created_at", "updated_at"}, rows)
}

func (a *App) rulesShow() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one rule",
		Example: "  okproxy rules show billing-read -o yaml",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, "table", "json", "yaml"); err != nil {
				return err
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := st.GetRule(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("name: unknown rule %q", args[0])
			}
			if err != nil {
				return err
			}
			return writeAs(a.Stdout, output, r, func() error { return printRule(a.Stdout, r) })
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func refsDetail(refs []policy.GroupRef) string {
	s := make([]string, len(refs))
	for i, g := range refs {
		if g.ID != "" && g.ID != g.Name {
			s[i] = g.Name + " (" + g.ID + ")"
		} else if g.ID == "" {
			s[i] = g.Name + " (by name only, not bound to a synced group: see rules lint)"
		} else {
			s[i] = g.Name
		}
	}
	return strings.Join(s, ", ")
}

func printRule(w io.Writer, r store.Rule) error {
	t := newTable(w, "FIELD", "VALUE")
	t.row("name", r.Name)
	t.row("path", r.Path)
	t.row("methods", cmp.Or(strings.Join(r.Methods, ","), "all"))
	t.row("hosts", cmp.Or(strings.Join(r.Hosts, ","), "all"))
	t.row("allow", refsDetail(r.Allow))
	t.row("allow_authenticated", strconv.FormatBool(r.AllowAuthenticated))
	t.row("public", strconv.FormatBool(r.Public))
	t.row("deny", refsDetail(r.Deny))
	t.row("scopes", strings.Join(r.Scopes, ","))
	t.row("description", r.Description)
	t.row("mode", string(r.Mode))
	t.row("enabled", strconv.FormatBool(r.Enabled))
	t.row("created", r.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	t.row("updated", r.UpdatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	return t.flush()
}

func (a *App) rulesRemove() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove a rule",
		Example: "  okproxy rules rm billing-read --actor alice",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			v, err := st.RemoveRule(cmd.Context(), args[0], a.actorName())
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("name: unknown rule %q", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "rule %s removed (policy version %d)\n", args[0], v)
			return nil
		},
	}
}

func (a *App) rulesSetEnabled(enabled bool) *cobra.Command {
	verb := "disable"
	if enabled {
		verb = "enable"
	}
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   strings.ToUpper(verb[:1]) + verb[1:] + " a rule",
		Example: "  okproxy rules " + verb + " billing-read",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			v, changed, err := st.SetRuleEnabled(cmd.Context(), args[0], enabled, a.actorName())
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("name: unknown rule %q", args[0])
			}
			if err != nil {
				return err
			}
			if !changed {
				fmt.Fprintf(a.Stdout, "rule %s is already %sd; nothing changed\n", args[0], verb)
				return nil
			}
			fmt.Fprintf(a.Stdout, "rule %s %sd (policy version %d)\n", args[0], verb, v)
			return nil
		},
	}
}
