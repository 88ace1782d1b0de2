package cli

import (
	"cmp"
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/store"
)

// completionTimeout bounds the database look-up behind a <TAB>: a shell
// that hangs on an unreachable database is worse than no suggestions.
const completionTimeout = 2 * time.Second

func (a *App) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script for bash, zsh or fish. Besides commands and flags it
completes rule names (rules show, rm, enable, disable, history) and group names
(--allow, --deny, --groups) from the database when one is configured and reachable
(--database-url, OKPROXY_DATABASE_URL or DATABASE_URL in the shell's environment).`,
		Example: `  source <(okproxy completion bash)                                   # this shell
  okproxy completion bash > /etc/bash_completion.d/okproxy            # every shell
  okproxy completion zsh > "${fpath[1]}/_okproxy"
  okproxy completion fish > ~/.config/fish/completions/okproxy.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("%s needs one argument: bash, zsh or fish", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.Stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.Stdout)
			case "fish":
				return root.GenFishCompletion(a.Stdout, true)
			}
			return usageErrorf("shell: %q is not bash, zsh or fish", args[0])
		},
	}
}

// completionStore opens the database for a completion, or returns nil. The
// root's PersistentPreRun does not bind the environment for cobra's hidden
// __complete command, so the URL is looked up here the same way bindEnv does.
func (a *App) completionStore(cmd *cobra.Command) (*store.Store, context.Context, context.CancelFunc) {
	url := a.databaseURL
	if url == "" {
		if f := cmd.Flags().Lookup("database-url"); f != nil {
			url = f.Value.String()
		}
	}
	getenv := a.Getenv
	if getenv == nil {
		return nil, nil, nil
	}
	url = cmp.Or(url, cmp.Or(getenv(envName("database-url")), getenv("DATABASE_URL")))
	if url == "" {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(contextOrBackground(cmd), completionTimeout)
	st, err := store.Open(ctx, store.Config{URL: url, ApplicationName: "okproxy-completion"})
	if err != nil {
		cancel()
		return nil, nil, nil
	}
	return st, ctx, cancel
}

// completeFromDB offers the names list returns that start with toComplete.
func (a *App) completeFromDB(cmd *cobra.Command, toComplete string, list func(context.Context, *store.Store) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	st, ctx, cancel := a.completionStore(cmd)
	if st == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer cancel()
	defer st.Close()
	names, err := list(ctx, st)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(strings.ToLower(n), strings.ToLower(toComplete)) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeRuleNames completes the NAME argument of rule commands.
func (a *App) completeRuleNames(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeFromDB(cmd, toComplete, func(ctx context.Context, st *store.Store) ([]string, error) {
		return st.RuleNames(ctx)
	})
}

// completeQuotaNames completes the NAME argument of quota commands.
func (a *App) completeQuotaNames(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeFromDB(cmd, toComplete, func(ctx context.Context, st *store.Store) ([]string, error) {
		qs, err := st.ListQuotas(ctx)
		names := make([]string, 0, len(qs))
		for _, q := range qs {
			names = append(names, q.Name)
		}
		return names, err
	})
}

// completeGroupFlags completes group names for the given flags.
func (a *App) completeGroupFlags(cmd *cobra.Command, flags ...string) {
	for _, f := range flags {
		_ = cmd.RegisterFlagCompletionFunc(f, func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			// --groups takes a comma-separated list: complete its last item.
			done, last := "", toComplete
			if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
				done, last = toComplete[:i+1], toComplete[i+1:]
			}
			names, dir := a.completeFromDB(cmd, last, func(ctx context.Context, st *store.Store) ([]string, error) {
				return st.GroupNames(ctx)
			})
			for i := range names {
				names[i] = done + names[i]
			}
			return names, dir
		})
	}
}

// fixedCompletion completes a flag from a fixed list.
func fixedCompletion(cmd *cobra.Command, flag string, values ...string) {
	if cmd.Flags().Lookup(flag) == nil {
		return
	}
	_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

func methodNames() []string { return policy.KnownMethods() }

// contextOrBackground keeps completion helpers usable from tests that call
// them without a command context.
func contextOrBackground(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
