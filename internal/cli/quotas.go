package cli

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) quotasCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "quotas",
		Example: "  okproxy quotas add dev-tier --group Developers --limit 1000 --window 1h\n  okproxy quotas usage dev-tier",
		Short:   "Manage per-group request quotas",
		Long: `A quota gives the members of an Okta group a budget of requests per fixed window,
aligned to the Unix epoch (a 1h window starts on the hour, UTC), counted per user
(default) or shared by the whole group. It applies after authorisation to requests
matching its path and methods. A caller in several quota groups gets the most generous
quota (highest limit per second); a caller in none is not limited. All replicas
together never admit more than the limit in a window.

Every change is one transaction and one policy version, recorded with its actor, and
reaches running replicas within a second.`,
	}
	add, show, rm, usage := a.quotasAdd(), a.quotasShow(), a.quotasRemove(), a.quotasUsage()
	a.completeGroupFlags(add, "group")
	fixedCompletion(add, "per", "user", "group")
	fixedCompletion(add, "method", methodNames()...)
	for _, c := range []*cobra.Command{show, rm, usage} {
		c.ValidArgsFunction = a.completeQuotaNames
	}
	cmd.AddCommand(add, a.quotasList(), show, rm, usage)
	return cmd
}

type quotaAddOptions struct {
	group   string
	limit   int64
	window  string
	path    string
	methods []string
	per     string
}

// quota builds and validates the quota from the flags (exit 2 on error).
func (o *quotaAddOptions) quota(cmd *cobra.Command, name string) (quota.Quota, error) {
	for _, f := range []string{"group", "limit", "window"} {
		if !cmd.Flags().Changed(f) {
			return quota.Quota{}, usageErrorf("%s: --%s is required", f, f)
		}
	}
	for _, f := range []string{"path", "per"} {
		// An empty value would silently become the default ("/**", "user").
		if v, _ := cmd.Flags().GetString(f); cmd.Flags().Changed(f) && strings.TrimSpace(v) == "" {
			return quota.Quota{}, usageErrorf("%s: --%s is empty (leave it out for the default)", f, f)
		}
	}
	secs, err := quota.ParseWindow(o.window)
	if err != nil {
		return quota.Quota{}, usageErrorf("window: %v", err)
	}
	q := quota.Quota{Name: name, Group: policy.GroupRef{Name: o.group}, Limit: o.limit, WindowSeconds: secs,
		Path: o.path, Methods: splitList(o.methods), Per: quota.Per(o.per)}
	if cmd.Flags().Changed("method") && len(q.Methods) == 0 {
		return quota.Quota{}, usageErrorf("method: --method is empty (leave it out for all methods)")
	}
	q.Normalize()
	if err := q.Validate(); err != nil {
		return quota.Quota{}, usageErrorf("invalid quota %q: %v", name, err)
	}
	return q, nil
}

func (a *App) quotasAdd() *cobra.Command {
	var o quotaAddOptions
	cmd := &cobra.Command{
		Use:   "add NAME --group G --limit N --window D [flags]",
		Short: "Add a quota",
		Example: `  okproxy quotas add dev-tier --group Developers --limit 1000 --window 1h --path '/api/**'
  okproxy quotas add free --group Free --limit 10 --window 1m
  okproxy quotas add pro --group Pro --limit 100 --window 1m
  okproxy quotas add team-export --group Analytics --limit 50 --window 1d --method POST --per group`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := o.quota(cmd, args[0])
			if err != nil {
				return err
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			refs, unknown, err := st.ResolveGroups(cmd.Context(), []string{q.Group.Name})
			var amb *store.AmbiguousGroupError
			if errors.As(err, &amb) {
				return usageErrorf("group: %v", err)
			}
			if err != nil {
				return err
			}
			q.Group = refs[0]
			v, err := st.AddQuota(cmd.Context(), q, a.actorName())
			if errors.Is(err, store.ErrExists) {
				return usageErrorf("name: quota %q already exists (use quotas rm first)", q.Name)
			}
			if err == nil && len(unknown) > 0 {
				a.warnf("group %q is not in the synced directory; stored by name and matched by name until then (run okproxy groups sync)", unknown[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "quota %s added: %d requests per %s per %s of %s (policy version %d)\n",
				q.Name, q.Limit, quota.FormatWindow(q.WindowSeconds), q.Per, q.Group, v)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.group, "group", "", "Okta group (name or 00g… id) whose members the quota applies to (required)")
	f.Int64Var(&o.limit, "limit", 0, "requests admitted per window (required)")
	f.StringVar(&o.window, "window", "", "window length, epoch-aligned: 30s, 1m, 1h, 1d (required)")
	f.StringVar(&o.path, "path", "/**", "path pattern the quota applies to (as for rules)")
	f.StringSliceVar(&o.methods, "method", nil, "HTTP method (repeatable or comma-separated; default all; GET also matches HEAD)")
	f.StringVar(&o.per, "per", "user", "user: each caller has their own count; group: members share one count")
	return cmd
}

// quotaView is a quota as the CLI prints it: the window in both forms.
type quotaView struct {
	quota.Quota
	Window string `json:"window" yaml:"window"`
}

func viewQuota(q quota.Quota) quotaView {
	return quotaView{Quota: q, Window: quota.FormatWindow(q.WindowSeconds)}
}

func (a *App) quotasList() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List quotas",
		Example: "  okproxy quotas list\n  okproxy quotas list -o json\n  okproxy quotas list -o csv",
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
			qs, err := st.ListQuotas(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]quotaView, len(qs))
			for i, q := range qs {
				views[i] = viewQuota(q)
			}
			if output == "csv" {
				rows := make([][]string, 0, len(qs))
				for _, q := range qs {
					rows = append(rows, []string{q.Name, q.Group.String(), strconv.FormatInt(q.Limit, 10), quota.FormatWindow(q.WindowSeconds),
						strconv.FormatInt(q.WindowSeconds, 10), string(q.Per), q.Path, strings.Join(q.Methods, ";"), csvTime(q.CreatedAt)})
				}
				return writeCSV(a.Stdout, []string{"name", "group", "limit", "window", "window_seconds", "per", "path", "methods", "created_at"}, rows)
			}
			return writeAs(a.Stdout, output, views, func() error {
				t := newTable(a.Stdout, "NAME", "GROUP", "LIMIT", "WINDOW", "PER", "PATH", "METHODS")
				for _, q := range qs {
					t.row(q.Name, q.Group.String(), strconv.FormatInt(q.Limit, 10), quota.FormatWindow(q.WindowSeconds),
						string(q.Per), q.Path, strings.Join(q.Methods, ","))
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, yaml or csv")
	return cmd
}

func (a *App) quotasShow() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one quota",
		Example: "  okproxy quotas show dev-tier -o yaml",
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
			q, err := st.GetQuota(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("name: unknown quota %q", args[0])
			}
			if err != nil {
				return err
			}
			return writeAs(a.Stdout, output, viewQuota(q), func() error {
				t := newTable(a.Stdout, "FIELD", "VALUE")
				t.row("name", q.Name)
				t.row("group", refsDetail([]policy.GroupRef{q.Group}))
				t.row("limit", strconv.FormatInt(q.Limit, 10))
				t.row("window", quota.FormatWindow(q.WindowSeconds)+" (epoch-aligned)")
				t.row("per", string(q.Per))
				t.row("path", q.Path)
				t.row("methods", cmp.Or(strings.Join(q.Methods, ","), "all"))
				t.row("created", q.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func (a *App) quotasRemove() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove a quota and its counts",
		Example: "  okproxy quotas rm dev-tier --actor alice",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			v, err := st.RemoveQuota(cmd.Context(), args[0], a.actorName())
			if errors.Is(err, store.ErrNotFound) {
				return usageErrorf("name: unknown quota %q", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "quota %s removed (policy version %d)\n", args[0], v)
			return nil
		},
	}
}

func (a *App) quotasUsage() *cobra.Command {
	var output, user string
	cmd := &cobra.Command{
		Use:   "usage [NAME] [--user LOGIN]",
		Short: "Show current-window counts per quota and user or group",
		Long: `usage shows, for the current window of each quota (by the database's clock), every
user or group that has a count:

  GRANTED    budget leased to serve replicas: an upper bound on the requests admitted
             (it includes budget a live replica holds unspent, and budget lost with a
             replica that died holding it)
  USED       admissions replicas have reported: a lower bound, at most a few seconds
             behind (replicas report every 5s, on every lease and on every return)
  REMAINING  limit - granted: budget no replica holds yet

--user LOGIN shows that user's own counts and the counts of per-group quotas whose
group the user is in (per the synced directory).`,
		Example: "  okproxy quotas usage\n  okproxy quotas usage dev-tier --user alice@example.com -o json",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("%s takes at most one quota NAME, got %q", cmd.CommandPath(), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, "table", "json", "yaml", "csv"); err != nil {
				return err
			}
			if cmd.Flags().Changed("user") && strings.TrimSpace(user) == "" {
				return usageErrorf("user: --user is empty")
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			f := quota.UsageFilter{User: strings.TrimSpace(user)}
			if len(args) == 1 {
				f.Quota = args[0]
				if _, err := st.GetQuota(cmd.Context(), f.Quota); errors.Is(err, store.ErrNotFound) {
					return usageErrorf("name: unknown quota %q", f.Quota)
				} else if err != nil {
					return err
				}
			}
			us, err := st.QuotaUsage(cmd.Context(), f)
			if err != nil {
				return err
			}
			if output == "csv" {
				rows := make([][]string, 0, len(us))
				for _, u := range us {
					rows = append(rows, []string{u.Quota, string(u.Per), u.Key, u.Subject, strconv.FormatInt(u.Limit, 10), strconv.FormatInt(u.Granted, 10),
						strconv.FormatInt(u.Used, 10), strconv.FormatInt(u.Remaining, 10), csvTime(u.WindowStart), csvTime(u.WindowEnd)})
				}
				return writeCSV(a.Stdout, []string{"quota", "per", "key", "subject", "limit", "granted", "used", "remaining", "window_start", "window_end"}, rows)
			}
			return writeAs(a.Stdout, output, us, func() error {
				t := newTable(a.Stdout, "QUOTA", "PER", "SUBJECT", "LIMIT", "GRANTED", "USED", "REMAINING", "WINDOW_START", "RESETS_IN")
				now := time.Now()
				for _, u := range us {
					t.row(u.Quota, string(u.Per), cmp.Or(u.Subject, u.Key), strconv.FormatInt(u.Limit, 10), strconv.FormatInt(u.Granted, 10),
						strconv.FormatInt(u.Used, 10), strconv.FormatInt(u.Remaining, 10), u.WindowStart.Format(time.RFC3339),
						max(u.WindowEnd.Sub(now), 0).Round(time.Second).String())
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, yaml or csv")
	cmd.Flags().StringVar(&user, "user", "", "only this user (login or Okta user id)")
	return cmd
}
