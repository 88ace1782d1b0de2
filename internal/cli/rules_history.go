package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policyfile"
	"github.com/okproxy/okproxy/internal/store"
)

// historyEntry is one policy version as `rules history` shows it.
type historyEntry struct {
	store.PolicyVersion
	Changes []historyChange `json:"changes" yaml:"changes"`
}

// historyChange is one admin event with its field-by-field diff.
type historyChange struct {
	store.PolicyChange
	Op     policyfile.Op            `json:"op" yaml:"op"`
	Fields []policyfile.FieldChange `json:"fields" yaml:"fields"`
}

// maxShownChanges bounds the human output of one version: an apply of
// thousands of rules is one version, and -o json has them all.
const maxShownChanges = 25

func (a *App) rulesHistory() *cobra.Command {
	var output string
	var limit int
	cmd := &cobra.Command{
		Use:   "history [NAME] [--limit N] [-o table|json|yaml]",
		Short: "Show policy versions: who changed what, when, field by field",
		Long: `List policy versions newest first, each with its actor, time, action and the changes
it made (from the admin event log's before/after values). With NAME, only the versions
that changed that rule (or quota), and only those changes; a name no rule or quota
has ever had is refused (exit 2). A version marked
"restorable" can be the target of rules rollback --to.`,
		Example: `  okproxy rules history
  okproxy rules history billing-read --limit 5
  okproxy rules history -o json`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeRuleNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, "table", "json", "yaml"); err != nil {
				return err
			}
			if limit <= 0 {
				return usageErrorf("limit: must be positive, got %d", limit)
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
				if strings.TrimSpace(name) == "" {
					return usageErrorf("name: empty rule or quota name (leave it out for the whole history)")
				}
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			vs, err := st.PolicyHistory(cmd.Context(), name, limit)
			if err != nil {
				return err
			}
			if name != "" && len(vs) == 0 {
				// SPEC §2: an unknown rule name is invalid input. A removed
				// rule or quota is not unknown: the log remembers it.
				known, err := st.PolicyObjectKnown(cmd.Context(), name)
				if err != nil {
					return err
				}
				if !known {
					return usageErrorf("unknown rule %q: no rule or quota has that name or ever had it (see okproxy rules list)", name)
				}
			}
			entries := make([]historyEntry, 0, len(vs))
			for _, v := range vs {
				e := historyEntry{PolicyVersion: v, Changes: make([]historyChange, 0, len(v.Changes))}
				for _, c := range v.Changes {
					hc := historyChange{PolicyChange: c, Op: changeOp(c.Before, c.After)}
					if hc.Fields, err = policyfile.DiffJSON(c.Before, c.After); err != nil {
						return fmt.Errorf("version %d: %s %s: %w", v.Version, c.ObjectType, c.ObjectName, err)
					}
					if hc.Fields == nil {
						hc.Fields = []policyfile.FieldChange{}
					}
					e.Changes = append(e.Changes, hc)
				}
				entries = append(entries, e)
			}
			switch output {
			case "json":
				return writeJSON(a.Stdout, entries)
			case "yaml":
				return writeYAML(a.Stdout, entries)
			}
			if len(entries) == 0 {
				if name != "" {
					fmt.Fprintf(a.Stdout, "no policy version changed %q\n", name)
				} else {
					fmt.Fprintln(a.Stdout, "no policy versions yet")
				}
				return nil
			}
			for _, e := range entries {
				writeHistoryEntry(a, e)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many versions to show")
	return cmd
}

func changeOp(before, after json.RawMessage) policyfile.Op {
	switch {
	case len(before) == 0:
		return policyfile.OpAdd
	case len(after) == 0:
		return policyfile.OpRemove
	}
	return policyfile.OpChange
}

func writeHistoryEntry(a *App, e historyEntry) {
	restorable := ""
	if !e.Restorable {
		restorable = "  (no snapshot: not restorable)"
	}
	textf(a.Stdout, "version %d  %s  %s  %s%s\n", e.Version, e.Time.Local().Format("2006-01-02 15:04:05 MST"), e.Actor, e.Action, restorable)
	for i, c := range e.Changes {
		if i == maxShownChanges {
			textf(a.Stdout, "  … and %d more changes (-o json lists them all)\n", len(e.Changes)-i)
			break
		}
		sign := map[policyfile.Op]string{policyfile.OpAdd: "+", policyfile.OpRemove: "-", policyfile.OpChange: "~"}[c.Op]
		textf(a.Stdout, "  %s %s %s (%s)\n", sign, c.ObjectType, c.ObjectName, c.Action)
		if c.Op == policyfile.OpRemove {
			continue
		}
		for _, f := range c.Fields {
			if c.Op == policyfile.OpAdd {
				textf(a.Stdout, "      %s: %s\n", f.Field, f.After)
			} else {
				textf(a.Stdout, "      %s: %s → %s\n", f.Field, orEmpty(f.Before), orEmpty(f.After))
			}
		}
	}
}

func orEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func (a *App) rulesRollback() *cobra.Command {
	var to int64
	var dryRun bool
	var output string
	cmd := &cobra.Command{
		Use:   "rollback --to VERSION [--dry-run]",
		Short: "Restore the rules and quotas of an earlier policy version, as a new version",
		Long: `Make the stored rules and quotas exactly what they were right after policy version
VERSION (from the snapshot kept of every version), as a new policy version: in one
transaction, with one admin event (rule.rollback, quota.rollback) per restored object.
Rules and quotas added since are removed. Nothing changes, and no version is made, when
the policy already matches. rules history shows the versions.`,
		Example: `  okproxy rules history --limit 5
  okproxy rules rollback --to 41 --dry-run
  okproxy rules rollback --to 41 --actor alice`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkFormat(output, "text", "json"); err != nil {
				return err
			}
			if !cmd.Flags().Changed("to") && to == 0 {
				return usageErrorf("to: --to VERSION is required (see okproxy rules history)")
			}
			if to <= 0 {
				return usageErrorf("to: %d is not a policy version", to)
			}
			st, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			doc, err := st.PolicySnapshot(ctx, to)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return usageErrorf("to: there is no policy version %d (see okproxy rules history)", to)
			case errors.Is(err, store.ErrNoSnapshot):
				return usageErrorf("to: policy version %d has no snapshot (it predates snapshots, migration 00008), so it cannot be restored", to)
			case err != nil:
				return err
			}
			res, err := st.ApplyPolicy(ctx, doc, store.ApplyOptions{
				Diff:   policyfile.DiffOptions{Prune: true, Rules: true, Quotas: true},
				Actor:  a.actorName(),
				Action: "rules rollback --to " + strconv.FormatInt(to, 10),
				Verb:   "rollback",
				DryRun: dryRun,
			})
			if err != nil {
				return err
			}
			if err := a.reportApply(res, policyfile.Problems{}, dryRun, output, "the stored policy already matches version "+strconv.FormatInt(to, 10)); err != nil {
				return err
			}
			if output == "text" && res.Applied {
				fmt.Fprintf(a.Stdout, "rolled back to version %d as policy version %d\n", to, res.Version)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to", 0, "the policy version to restore (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff and write nothing")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
