package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) auditAdmin() *cobra.Command {
	var since, until, actor, object, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "admin [flags]",
		Short: "Show admin changes (rules, quotas, syncs, prunes), newest first",
		Example: `  okproxy audit admin --since 7d
  okproxy audit admin --object rule/billing-read -o yaml
  okproxy audit admin --actor alice@laptop -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "table", "json", "yaml"); err != nil {
				return err
			}
			now := time.Now()
			var f store.AdminEventFilter
			var err error
			if f.Since, f.Until, err = timeWindow(since, until, 30*24*time.Hour, now); err != nil {
				return err
			}
			if limit < 1 {
				return usageErrorf("--limit: %d is not positive", limit)
			}
			if object != "" {
				typ, name, _ := strings.Cut(object, "/")
				stored, ok := adminObjectTypes[typ]
				if !ok {
					return usageErrorf("--object: %q: want TYPE or TYPE/NAME with TYPE one of rule, quota, sync, audit, e.g. rule/billing-read", object)
				}
				f.ObjectType, f.ObjectName = stored, name
			}
			f.Actor, f.Limit = actor, limit
			if actor != "" && actor == a.Getenv(envName("actor")) {
				// OKPROXY_ACTOR usually names who makes changes; here it
				// filters, so say so rather than silently narrow the list.
				a.warnf("filtering by actor %q (from %s)", actor, envName("actor"))
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			evs, err := st.QueryAdminEvents(cmd.Context(), f)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(a.Stdout, evs)
			case "yaml":
				return writeYAML(a.Stdout, evs)
			}
			t := newTable(a.Stdout, "TIME", "ACTOR", "ACTION", "OBJECT", "VERSION", "CHANGED")
			for _, e := range evs {
				v := ""
				if e.PolicyVersion > 0 {
					v = strconv.FormatInt(e.PolicyVersion, 10)
				}
				t.row(e.Time.Local().Format("2006-01-02 15:04:05"), e.Actor, e.Action, e.ObjectType+"/"+e.ObjectName, v,
					auditChangedKeys(e.Before, e.After))
			}
			return t.flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "oldest change: duration back from now or RFC 3339 (default 30d, or 30d before --until)")
	fl.StringVar(&until, "until", "", "newest change, exclusive (default now)")
	fl.StringVar(&actor, "actor", "", "who made the change (case-insensitive)")
	fl.StringVar(&object, "object", "", "what changed: TYPE or TYPE/NAME (rule, quota, sync, audit)")
	fl.IntVar(&limit, "limit", 100, "at most this many changes")
	fl.StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// adminObjectTypes maps the TYPE of --object to the object_type the admin
// event log stores. Syncs are recorded against what they change, the
// directory (directory/okta), so "sync" is an alias for it; an unknown type
// is refused, since it could only match nothing.
var adminObjectTypes = map[string]string{"rule": "rule", "quota": "quota", "sync": "directory", "directory": "directory", "audit": "audit"}

// auditChangedKeys names the top-level fields that differ between before
// and after, so the table says what a change touched.
func auditChangedKeys(before, after json.RawMessage) string {
	var b, a map[string]json.RawMessage
	json.Unmarshal(before, &b)
	json.Unmarshal(after, &a)
	switch {
	case b == nil && a == nil:
		return ""
	case b == nil:
		return "(created)"
	case a == nil:
		return "(removed)"
	}
	var keys []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (a *App) auditPrune() *cobra.Command {
	var olderThan, output string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune --older-than DURATION",
		Short: "Drop audit partitions older than a retention period",
		Long: `Drops every daily audit partition that lies entirely before now minus --older-than
(fast: no row-by-row delete, space is returned at once) and deletes older rows from
the default partition. Reports the partitions and row counts it removed and records
the prune in the admin event log. Run it daily from cron (scripts/audit-prune.cron).`,
		Example: `  okproxy audit prune --older-than 90d
  okproxy audit prune --older-than 30d --dry-run -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "text", "json"); err != nil {
				return err
			}
			if olderThan == "" {
				return usageErrorf("--older-than: required, e.g. --older-than 90d")
			}
			d, err := audit.ParseDuration(olderThan)
			if err != nil {
				return usageErrorf("--older-than: %v", err)
			}
			if d < 24*time.Hour {
				return usageErrorf("--older-than: %s is less than a day; that would prune today's events", olderThan)
			}
			st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.PruneAudit(cmd.Context(), time.Now().Add(-d), dryRun, a.actorName())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(a.Stdout, res)
			}
			verb := "dropped"
			if dryRun {
				verb = "would drop"
			}
			for _, p := range res.Partitions {
				fmt.Fprintf(a.Stdout, "%s partition %s (%s .. %s): %d rows\n", verb, p.Name,
					p.From.Format("2006-01-02"), p.To.Format("2006-01-02"), p.Rows)
			}
			if res.DefaultRows > 0 {
				fmt.Fprintf(a.Stdout, "%s %d rows from audit_events_default\n", strings.Replace(verb, "drop", "delete", 1), res.DefaultRows)
			}
			fmt.Fprintf(a.Stdout, "%d partitions, %d events older than %s %s\n", len(res.Partitions), res.Rows,
				res.Cutoff.Format(time.RFC3339), map[bool]string{true: "would be removed (dry run)", false: "removed"}[dryRun])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&olderThan, "older-than", "", "retention: remove events older than this (e.g. 90d; at least 1d)")
	fl.BoolVar(&dryRun, "dry-run", false, "report what would be removed, change nothing")
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
