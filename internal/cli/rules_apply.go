package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policyfile"
	"github.com/okproxy/okproxy/internal/store"
)

type applyOptions struct {
	file   string
	dryRun bool
	prune  bool
	output string
}

// applyReport is `rules apply -o json` and `rules rollback -o json`.
type applyReport struct {
	Plan     policyfile.Plan     `json:"plan"`
	Warnings policyfile.Problems `json:"warnings"`
	DryRun   bool                `json:"dry_run"`
	Applied  bool                `json:"applied"`
	Version  int64               `json:"policy_version"`
}

func (a *App) rulesApply() *cobra.Command {
	var o applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--dry-run] [--prune]",
		Short: "Make the stored policy match a policy file, showing the diff",
		Long: `Validate the whole file first (every problem is reported with its line; on any problem
nothing is written and the exit code is 2), print what changes (added, changed field by
field, removed), then apply it in one transaction as one policy version, with one admin
event per changed object. Applying a file that matches the stored policy writes nothing.

Rules and quotas that are stored but not in the file are kept, and listed as "not in
file", unless --prune is given. A file without a quotas: (or rules:) section leaves
quotas (rules) alone even with --prune. Group names are bound to Okta ids through the
synced directory; unknown groups are accepted with a warning. FILE - reads stdin.`,
		Example: `  okproxy rules apply -f policy.yaml --dry-run
  okproxy rules apply -f policy.yaml --actor "ci@$(hostname)"
  okproxy rules apply -f policy.yaml --prune -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runApply(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "policy file (YAML or JSON; - for stdin) (required)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the diff and write nothing")
	f.BoolVar(&o.prune, "prune", false, "remove stored rules and quotas that are not in the file")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml", "json")
	return cmd
}

// readInput reads a file, or stdin for "-".
func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("file: %v", err)
	}
	return b, nil
}

// problemsError turns parse and validation problems into one exit-2 error
// that lists every one of them; outcome says what did not happen.
func problemsError(what string, err error, outcome string) error {
	var ps policyfile.Problems
	if !errors.As(err, &ps) {
		return usageErrorf("%s: %v", what, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s has %d problem(s); %s:", what, len(ps), outcome)
	for _, p := range ps {
		b.WriteString("\n  " + p.Error())
	}
	return usageErrorf("%s", b.String())
}

const nothingWritten = "nothing was written"

func (a *App) runApply(cmd *cobra.Command, o *applyOptions) error {
	ctx := cmd.Context()
	if err := checkFormat(o.output, "text", "json"); err != nil {
		return err
	}
	if o.file == "" {
		return usageErrorf("file: -f/--file is required")
	}
	data, err := readInput(cmd, o.file)
	if err != nil {
		return err
	}
	name := o.file
	if name == "-" {
		name = "stdin"
	}
	f, err := policyfile.Load(name, data)
	if err != nil {
		return problemsError(name, err, nothingWritten)
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	dir, err := st.PolicyDirectory(ctx)
	if err != nil {
		return err
	}
	warnings, err := f.Resolve(dir)
	if err != nil {
		return problemsError(name, err, nothingWritten)
	}
	if warnings == nil {
		warnings = policyfile.Problems{}
	}
	for _, w := range warnings {
		a.warnf("%s", w.Error())
	}
	if !f.HasRules {
		fmt.Fprintf(a.Stderr, "note: %s has no rules: section; stored rules are left alone\n", name)
	}
	if !f.HasQuotas {
		fmt.Fprintf(a.Stderr, "note: %s has no quotas: section; stored quotas are left alone\n", name)
	}
	action := "rules apply -f " + o.file
	if o.prune {
		action += " --prune"
	}
	res, err := st.ApplyPolicy(ctx, f.Doc, store.ApplyOptions{
		Diff:   policyfile.DiffOptions{Prune: o.prune, Rules: f.HasRules, Quotas: f.HasQuotas},
		Actor:  a.actorName(),
		Action: action,
		Verb:   "apply",
		DryRun: o.dryRun,
	})
	if err != nil {
		return err
	}
	return a.reportApply(res, warnings, o.dryRun, o.output, "the stored policy already matches "+name)
}

// reportApply prints the plan and what became of it.
func (a *App) reportApply(res store.ApplyResult, warnings policyfile.Problems, dryRun bool, output, same string) error {
	if output == "json" {
		return writeJSON(a.Stdout, applyReport{Plan: res.Plan, Warnings: warnings, DryRun: dryRun, Applied: res.Applied, Version: res.Version})
	}
	if err := res.Plan.WriteText(a.Stdout); err != nil {
		return err
	}
	switch {
	case res.Plan.Empty():
		fmt.Fprintf(a.Stdout, "no changes: %s (policy version %d); nothing written\n", same, res.Version)
	case dryRun:
		fmt.Fprintf(a.Stdout, "dry run: nothing written (policy version stays %d)\n", res.Version)
	default:
		fmt.Fprintf(a.Stdout, "applied as policy version %d\n", res.Version)
	}
	return nil
}
