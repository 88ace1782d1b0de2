// Package cli wires okproxy's cobra commands: flags and environment into
// typed configs, the database pool, the services, and exit codes.
//
// Exit codes (SPEC §2): 0 success; 1 runtime failure; 2 invalid usage or
// input (nothing written); 3 a check that ran and said no.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/okproxy/okproxy/internal/store"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitCheck   = 3
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is invalid usage or input: exit 2.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// checkFailedf is a check that ran and said no: exit 3.
func checkFailedf(format string, a ...any) error {
	return &exitError{code: ExitCheck, err: fmt.Errorf(format, a...)}
}

// App holds what every command shares: where output goes and how the
// environment is read. Tests build one with buffers and a map.
type App struct {
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv by default).
	Getenv func(string) string
	// Logger for long-running commands; built from Stderr when nil.
	Logger *slog.Logger

	databaseURL string
	actor       string
	output      string
}

// Run executes okproxy with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &App{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	return app.Run(ctx, args)
}

// Run executes the root command with args.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	if a.Logger == nil {
		a.Logger = slog.New(slog.NewJSONHandler(a.Stderr, nil))
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(a.Stderr, "okproxy: %v\n", err)
	return exitCode(err)
}

// exitCode is the process exit code for a command's error.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case isCobraUsageError(err):
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognises the errors cobra itself returns for bad
// commands and arguments, which carry no type.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *App) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "okproxy",
		Short: "Okta-group access control in front of HTTP APIs",
		Long: `okproxy verifies Okta access tokens, enforces per-route rules on Okta groups,
and records every decision in an audit trail kept in PostgreSQL.`,
		Example: `  okproxy migrate up
  okproxy rules add billing-read --path '/billing/**' --method GET --allow Finance
  okproxy serve --upstream http://127.0.0.1:9000 --issuer https://example.okta.com/oauth2/default --audience api://default`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.bindEnv(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL URL (env OKPROXY_DATABASE_URL, else DATABASE_URL)")
	pf.StringVar(&a.actor, "actor", "", "who is making the change, recorded in the admin event log: one line, at most 200 bytes (default user@host)")
	root.AddCommand(a.migrateCommand(), a.rulesCommand(), a.serveCommand(), a.groupsCommand(), a.usersCommand())
	root.AddCommand(a.quotasCommand())
	root.AddCommand(a.completionCommand())
	root.AddCommand(a.auditCommand())
	root.SetHelpCommand(&cobra.Command{
		Use:     "help [command]",
		Short:   "Help about any command",
		Example: `  okproxy help rules add`,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				// cobra's own help prints "Unknown help topic" and exits 0.
				return usageErrorf("help: unknown command %q (see okproxy --help)", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	})
	requireSubcommands(root)
	markRuntimeErrors(root)
	return root
}

// markRuntimeErrors makes every error a command's own code returns without
// an exit code a runtime failure (exit 1). Only cobra's own errors (unknown
// command, wrong argument count), which carry no type, are then recognised
// by their text as usage errors: a runtime error that happens to contain
// such words ("connect: invalid argument", an Okta message) must not become
// exit 2.
func markRuntimeErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var ee *exitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			return &exitError{code: ExitFailure, err: err}
		}
	}
	for _, sub := range c.Commands() {
		markRuntimeErrors(sub)
	}
}

// requireSubcommands makes every command that only groups others (root,
// rules, quotas, ...) refuse to run without a known subcommand. Cobra's own
// behaviour is to print help and exit 0 for `okproxy rules lnt`, so a
// mistyped command in a cron job or CI gate would pass silently; here it is
// invalid usage (exit 2), with the help on stderr.
func requireSubcommands(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				cmd.SuggestionsMinimumDistance = 2
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += "; did you mean " + strings.Join(s, " or ") + "?"
				}
				return usageErrorf("%s (see %s --help)", msg, cmd.CommandPath())
			}
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usageErrorf("%s needs a subcommand", cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		requireSubcommands(sub)
	}
}

// envName is the environment variable for a flag: OKPROXY_<FLAG>.
func envName(flag string) string {
	return "OKPROXY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag the user did not pass from OKPROXY_<FLAG>.
func (a *App) bindEnv(cmd *cobra.Command) error {
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || f.Name == "help" {
			return
		}
		v := a.Getenv(envName(f.Name))
		if v == "" {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			firstErr = usageErrorf("invalid %s=%q: %v", envName(f.Name), v, err)
		}
	})
	if firstErr != nil {
		return firstErr
	}
	if err := checkActor(a.actor); err != nil {
		return err
	}
	if a.databaseURL == "" {
		a.databaseURL = a.Getenv("DATABASE_URL")
	}
	return nil
}

// actorName is --actor or user@host.
func (a *App) actorName() string {
	if a.actor != "" {
		return a.actor
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + cmp.Or(host, "localhost")
}

// openStore opens the database named by the flags/environment.
func (a *App) openStore(ctx context.Context) (*store.Store, error) {
	if a.databaseURL == "" {
		return nil, usageErrorf("no database: set --database-url, OKPROXY_DATABASE_URL or DATABASE_URL")
	}
	return store.Open(ctx, store.Config{URL: a.databaseURL, ApplicationName: "okproxy-cli"})
}

// warnf prints a diagnostic to stderr.
func (a *App) warnf(format string, args ...any) {
	fmt.Fprintf(a.Stderr, "warning: "+format+"\n", args...)
}
