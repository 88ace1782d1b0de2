package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// policyCommands completes the rules command: it decorates the basic
// subcommands (shell completion of rule and group names, `rules test
// --file`) and adds the policy-as-code ones. rulesCommand calls it so that
// those commands live in their own files.
func (a *App) policyCommands(basic ...*cobra.Command) []*cobra.Command {
	for _, c := range basic {
		switch c.Name() {
		case "add":
			a.completeGroupFlags(c, "allow", "deny")
			fixedCompletion(c, "mode", "enforce", "report")
			fixedCompletion(c, "method", methodNames()...)
		case "show", "rm", "enable", "disable":
			c.ValidArgsFunction = a.completeRuleNames
		case "test":
			a.withTestFile(c)
			a.completeGroupFlags(c, "groups")
			fixedCompletion(c, "method", methodNames()...)
			fixedCompletion(c, "expect", "allow", "deny")
		}
	}
	return append(basic, a.rulesExport(), a.rulesApply(), a.rulesLint(), a.rulesHistory(), a.rulesRollback())
}

func (a *App) rulesExport() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [-o yaml|json]",
		Short: "Print the whole policy (rules and quotas) as a policy file",
		Long: `Print every rule and quota as one document that rules apply reads back: sorted by
name, lists sorted, groups with their current name and Okta id, no timestamps. The same
policy always gives the same bytes, so the file diffs cleanly in code review.`,
		Example: `  okproxy rules export > policy.yaml
  okproxy rules export -o json > policy.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "yaml", "json"); err != nil {
				return err
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			doc, v, err := st.PolicyDocument(cmd.Context())
			if err != nil {
				return err
			}
			var b []byte
			if output == "json" {
				b, err = doc.EncodeJSON()
			} else {
				b, err = doc.EncodeYAML()
			}
			if err != nil {
				return err
			}
			if _, err := a.Stdout.Write(b); err != nil {
				return err
			}
			fmt.Fprintf(a.Stderr, "exported policy version %d: %d rules, %d quotas\n", v, len(doc.Rules), len(doc.Quotas))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
