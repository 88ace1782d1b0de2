package cli

import (
	"fmt"
	"github.com/okproxy/okproxy/internal/duration"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/lint"
)

func (a *App) rulesLint() *cobra.Command {
	var output, maxAge string
	cmd := &cobra.Command{
		Use:   "lint [--report-max-age 14d] [-o text|json|yaml]",
		Short: "Find rules and quotas that are wrong or pointless",
		Long: `Check the stored policy against itself and the synced Okta directory:
  ambiguous-group        a group named by a name several synced groups share: an allow or
                         a quota by it applies to nobody, a deny to each; name it by id
  unknown-group          a group the synced directory does not have
  deleted-group          a bound group that is gone from Okta (or from the sync)
  never-grants           a rule whose allow groups are all gone or ambiguous, or all
                         denied by a deny rule on the same or a wider route
  regex-like-path        a path pattern that reads like a regular expression or a
                         {template}; patterns are literal apart from * and **, so it
                         matches only that text
  duplicate              rules identical apart from their names
  public-overlaps-deny   a deny rule on requests a public rule admits (anonymous callers
                         are in no group, so the deny cannot stop them)
  stale-report-only      a rule report-only for longer than --report-max-age
  quota-never-applies    a quota on a group no rule grants on the quota's route
  renamed-group          (info) a bound group renamed in Okta; rules follow the id
  unbound-group          (info) a group named by name only that the directory now has;
                         rules export | rules apply -f - binds it to its id

Each finding names the rules and says what to do. Exit code 3 when there is any
warning, 0 when there are none (info findings alone do not fail).`,
		Example: `  okproxy rules lint
  okproxy rules lint --report-max-age 30d -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "text", "json", "yaml"); err != nil {
				return err
			}
			age, err := duration.Parse(maxAge)
			if err != nil || age <= 0 {
				return usageErrorf("report-max-age: %q is not a positive duration (e.g. 14d, 72h)", maxAge)
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			in, err := st.LintInput(cmd.Context())
			if err != nil {
				return err
			}
			in.Now, in.ReportMaxAge = time.Now(), age
			if !in.Directory.Synced {
				fmt.Fprintln(a.Stderr, "note: the Okta directory has never been synced, so no group name can be checked: each is reported as unknown (run okproxy groups sync)")
			}
			findings := lint.Run(in)
			if findings == nil {
				findings = []lint.Finding{}
			}
			switch output {
			case "json":
				err = writeJSON(a.Stdout, findings)
			case "yaml":
				err = writeYAML(a.Stdout, findings)
			default:
				writeFindings(a, findings, len(in.Rules), len(in.Quotas))
			}
			if err != nil {
				return err
			}
			if lint.Failed(findings) {
				return checkFailedf("rules lint: %d finding(s) need attention", countWarnings(findings))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or yaml")
	cmd.Flags().StringVar(&maxAge, "report-max-age", "14d", "how long a rule may stay report-only before lint flags it")
	return cmd
}

func countWarnings(fs []lint.Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity == lint.Warning {
			n++
		}
	}
	return n
}

func writeFindings(a *App, fs []lint.Finding, rules, quotas int) {
	for _, f := range fs {
		textf(a.Stdout, "%s [%s] %s\n", string(f.Severity), string(f.Check), f.Message)
		textf(a.Stdout, "    fix: %s\n", f.Fix)
	}
	if len(fs) == 0 {
		fmt.Fprintf(a.Stdout, "no findings (%d rules, %d quotas checked)\n", rules, quotas)
		return
	}
	w := countWarnings(fs)
	parts := []string{fmt.Sprintf("%d warning(s)", w)}
	if info := len(fs) - w; info > 0 {
		parts = append(parts, fmt.Sprintf("%d info", info))
	}
	fmt.Fprintf(a.Stdout, "%d finding(s): %s (%d rules, %d quotas checked)\n", len(fs), strings.Join(parts, ", "), rules, quotas)
}
