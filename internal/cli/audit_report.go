package cli

import (
	"cmp"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) auditReport() *cobra.Command {
	var since, until, output string
	var o audit.ReportOptions
	cmd := &cobra.Command{
		Use:   "report [flags]",
		Short: "Usage, denials and anomalies over a window",
		Long: `Requests, denials and distinct users per group and per rule over time (hourly
buckets for windows up to two days, else daily; UTC), top users and denied callers,
and anomalies: callers whose denials in the last bucket exceed their own baseline,
bursts of invalid tokens from one client IP, enabled rules that matched nothing,
groups seen in tokens that no rule mentions; and what enforcing the report-only
rules would change. -o html writes one self-contained page with charts.`,
		Example: `  okproxy audit report
  okproxy audit report --since 24h -o json | jq .anomalies
  okproxy audit report --since 30d -o html > audit-report.html`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "text", "json", "html"); err != nil {
				return err
			}
			now := time.Now()
			var err error
			if o.Since, o.Until, err = timeWindow(since, until, 7*24*time.Hour, now); err != nil {
				return err
			}
			o.Until = cmp.Or(o.Until, now)
			if !o.Until.After(o.Since) { // --since in the future
				return usageErrorf("--since: %s is not before now", o.Since.Format(time.RFC3339))
			}
			if !(o.SpikeSigma >= 0 && o.SpikeSigma <= 1e6) { // NaN or ±Inf would silently never report a spike
				return usageErrorf("--sigma: %v is not a number from 0 to 1e6", o.SpikeSigma)
			}
			if o.SpikeMin < 0 || o.BurstMin < 0 {
				return usageErrorf("--min-denials and --burst must not be negative")
			}
			if o.Top < 1 || o.Top > 10000 {
				return usageErrorf("--top: %d is not between 1 and 10000", o.Top)
			}
			if a.databaseURL == "" {
				return usageErrorf("no database: set --database-url, OKPROXY_DATABASE_URL or DATABASE_URL")
			}
			// A report scans the whole window several times; the default
			// statement timeout is sized for interactive commands.
			st, err := store.Open(cmd.Context(), store.Config{URL: a.databaseURL, ApplicationName: "okproxy-cli",
				StatementTimeout: 15 * time.Minute})
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := st.AuditReport(cmd.Context(), o)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(a.Stdout, r)
			case "html":
				return r.WriteHTML(a.Stdout)
			}
			return r.WriteText(a.Stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "window start: duration back from now or RFC 3339 (default 7d, or 7d before --until)")
	fl.StringVar(&until, "until", "", "window end, exclusive (default now)")
	fl.Float64Var(&o.SpikeSigma, "sigma", 3, "denial spike: last bucket above mean + sigma × stddev of the caller's earlier buckets")
	fl.IntVar(&o.SpikeMin, "min-denials", 5, "denial spike: at least this many denials in the last bucket")
	fl.IntVar(&o.BurstMin, "burst", 20, "invalid-token burst: at least this many from one client IP in one bucket")
	fl.IntVar(&o.Top, "top", 20, "groups, rules and callers listed")
	fl.StringVarP(&output, "output", "o", "text", "output format: text, json or html")
	return cmd
}
