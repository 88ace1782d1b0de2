package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply or inspect the embedded database migrations",
		Example: `  okproxy migrate up
  okproxy migrate status
  okproxy migrate down    # one step`,
	}
	run := func(f func(ctx context.Context, a *App) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error { return f(cmd.Context(), a) }
	}
	cmd.AddCommand(
		&cobra.Command{Use: "up", Short: "Apply all pending migrations", Args: noArgs, RunE: run(migrateUp),
			Example: "  OKPROXY_DATABASE_URL=postgres://okproxy@db/okproxy okproxy migrate up"},
		&cobra.Command{Use: "down", Short: "Roll back the most recent migration (one step)", Args: noArgs, RunE: run(migrateDown),
			Example: "  okproxy migrate down && okproxy migrate status"},
		a.migrateStatusCommand(),
	)
	return cmd
}

func (a *App) migrateStatusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{Use: "status", Short: "Show applied and pending migrations", Args: noArgs,
		Example: "  okproxy migrate status\n  okproxy migrate status -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "table", "json", "yaml"); err != nil {
				return err
			}
			return a.migrateStatus(cmd.Context(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// migrationView is one migration as `migrate status -o json|yaml` prints it.
type migrationView struct {
	Version   int64      `json:"version"`
	File      string     `json:"file"`
	State     string     `json:"state"` // applied or pending
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// withMigrator opens the store and a goose provider over it for f.
func (a *App) withMigrator(ctx context.Context, f func(p *store.Migrations) error) error {
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	p, db, err := st.Migrator()
	if err != nil {
		return err
	}
	defer db.Close()
	return f(p)
}

func migrateUp(ctx context.Context, a *App) error {
	return a.withMigrator(ctx, func(p *store.Migrations) error {
		res, err := p.Up(ctx)
		for _, r := range res {
			fmt.Fprintf(a.Stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(a.Stdout, "no pending migrations")
		}
		return nil
	})
}

func migrateDown(ctx context.Context, a *App) error {
	return a.withMigrator(ctx, func(p *store.Migrations) error {
		r, err := p.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintf(a.Stdout, "rolled back %s\n", r.Source.Path)
		return nil
	})
}

func (a *App) migrateStatus(ctx context.Context, output string) error {
	return a.withMigrator(ctx, func(p *store.Migrations) error {
		ss, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		views := make([]migrationView, 0, len(ss))
		for _, s := range ss {
			v := migrationView{Version: s.Source.Version, File: s.Source.Path, State: string(s.State)}
			if !s.AppliedAt.IsZero() {
				at := s.AppliedAt.UTC()
				v.AppliedAt = &at
			}
			views = append(views, v)
		}
		return writeAs(a.Stdout, output, views, func() error {
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
			for _, v := range views {
				at := "-"
				if v.AppliedAt != nil {
					at = v.AppliedAt.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.Version, v.State, at, v.File)
			}
			return tw.Flush()
		})
	})
}

// noArgs rejects positional arguments with exit code 2.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// exactArgs wants n positional arguments, named in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s needs %d argument(s): %v (got %d)", cmd.CommandPath(), len(names), names, len(args))
		}
		return nil
	}
}
