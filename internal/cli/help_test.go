package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command's --help shows an example (issue 7): walk the whole tree.
func TestEveryCommandHasAnExample(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	app := &App{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if c.Example == "" {
			t.Errorf("%q has no Example in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := app.rootCommand()
	root.InitDefaultCompletionCmd()
	walk(root)
}

// A mistyped or missing subcommand is invalid usage (exit 2), never a silent
// success: cobra's default prints help and exits 0, which would let a typo in
// a cron job (`groups snyc`) or a CI gate (`rules lnt`) pass doing nothing.
func TestUnknownSubcommandIsUsageError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rules", "lnt"}, `unknown command "lnt" for "okproxy rules"; did you mean lint`},
		{[]string{"groups", "snyc"}, `did you mean sync`},
		{[]string{"quotas", "bogus"}, `unknown command "bogus" for "okproxy quotas"`},
		{[]string{"audit", "qury", "--since", "1h"}, `unknown flag: --since`},
		{[]string{"migrate", "sideways"}, `unknown command "sideways"`},
		{[]string{"users", "list"}, `unknown command "list"`},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"rules"}, "okproxy rules needs a subcommand"},
		{[]string{"audit"}, "okproxy audit needs a subcommand"},
		{nil, "okproxy needs a subcommand"},
		{[]string{"help", "nosuch"}, `help: unknown command "nosuch"`},
		{[]string{"help", "rules", "lnt"}, `help: unknown command "rules lnt"`},
	}
	for _, c := range cases {
		r := run(t, "", nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("okproxy %q: exit %d, stdout %q, stderr %q; want exit 2, empty stdout, stderr with %q", c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
	// Help itself still succeeds, on stdout.
	for _, args := range [][]string{{"--help"}, {"rules", "--help"}, {"help", "rules"}, {"rules", "lint", "--help"}} {
		if r := run(t, "", nil, args...); r.code != ExitOK || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("okproxy %q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
}

// A runtime failure whose text contains words cobra uses for usage errors
// ("invalid argument", "accepts ") is still exit 1: only cobra's own,
// untyped errors are classified by their text.
func TestRuntimeErrorIsNotUsage(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{"dial tcp [fe80::1]:5432: connect: invalid argument", "okta: 503: Upstream accepts no more connections", "unknown flag in upstream response"} {
		root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true}
		root.AddCommand(&cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return errors.New(msg) }})
		markRuntimeErrors(root)
		root.SetArgs([]string{"sub"})
		if code := exitCode(root.Execute()); code != ExitFailure {
			t.Errorf("%q: exit %d, want %d", msg, code, ExitFailure)
		}
	}
	// Typed errors keep their code, and cobra's own argument errors are usage.
	root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(&cobra.Command{Use: "bad", RunE: func(*cobra.Command, []string) error { return usageErrorf("name: empty") }})
	root.AddCommand(&cobra.Command{Use: "one", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }})
	markRuntimeErrors(root)
	for _, args := range [][]string{{"bad"}, {"one"}, {"one", "a", "b"}} {
		root.SetArgs(args)
		if code := exitCode(root.Execute()); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
	}
	// End to end: a database address the kernel refuses with EINVAL.
	r := run(t, "", nil, "audit", "query", "--database-url", "postgres://u:secret@[fe80::1]:5432/x")
	if r.code != ExitFailure || strings.Contains(r.stderr, "secret") {
		t.Errorf("unreachable database: exit %d, stderr %q", r.code, r.stderr)
	}
}
