package cli

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/store"
)

func (a *App) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "audit",
		Example: "  okproxy audit query --since 1h --decision deny\n  okproxy audit report --since 7d -o html > report.html",
		Short:   "Query, report on and prune the audit trail",
		Long: `Every request okproxy answers is one audit event (SPEC §6); every admin change is
one admin event. Times accept a duration back from now (90m, 36h, 7d) or RFC 3339.`,
	}
	cmd.AddCommand(a.auditQuery(), a.auditAdmin(), a.auditReport(), a.auditPrune())
	return cmd
}

// auditFields are the machine field names of an event, in output order
// (SPEC §6); the JSON tags of audit.Event carry the same names.
var auditFields = []string{"time", "request_id", "replica", "method", "host", "path", "status", "decision",
	"reason", "policy_version", "rules", "rule", "shadow", "subject", "user_id", "email", "groups",
	"client_ip", "user_agent", "jti", "client_id", "latency_ms"}

type auditQueryOptions struct {
	since, until, user, group, decision, reason, rule, pathPrefix string
	status, limit                                                 int
	output                                                        string
	follow                                                        bool
	statusSet                                                     bool // --status given, even as 0
}

// filter validates the flags; every error names its flag and exits 2.
func (o *auditQueryOptions) filter(now time.Time) (audit.Filter, error) {
	var f audit.Filter
	if err := checkFormat(o.output, "table", "json", "yaml", "csv"); err != nil {
		return f, err
	}
	if o.follow && o.output == "yaml" {
		return f, usageErrorf("-o/--output: yaml is one document and cannot be followed; use json (JSON Lines), csv or table with --follow")
	}
	if o.until != "" && o.follow {
		return f, usageErrorf("--until: cannot be combined with --follow")
	}
	var err error
	if f.Since, f.Until, err = timeWindow(o.since, o.until, time.Hour, now); err != nil {
		return f, err
	}
	if o.decision != "" && !audit.ValidDecision(o.decision) {
		return f, usageErrorf("--decision: %q is not one of %s", o.decision, strings.Join(audit.Decisions, ", "))
	}
	if o.reason != "" && !audit.ValidReason(o.reason) {
		return f, usageErrorf("--reason: %q is not one of %s", o.reason, strings.Join(audit.Reasons, ", "))
	}
	if o.pathPrefix != "" && !strings.HasPrefix(o.pathPrefix, "/") {
		return f, usageErrorf("--path-prefix: %q does not start with /", o.pathPrefix)
	}
	if (o.statusSet || o.status != 0) && (o.status < 100 || o.status > 599) {
		return f, usageErrorf("--status: %d is not an HTTP status (100-599)", o.status)
	}
	if o.limit < 1 || o.limit > 100000 {
		return f, usageErrorf("--limit: %d is not between 1 and 100000", o.limit)
	}
	f.User, f.Group, f.Decision, f.Reason = o.user, o.group, o.decision, o.reason
	f.Rule, f.PathPrefix, f.Status, f.Limit = o.rule, o.pathPrefix, o.status, o.limit
	return f, nil
}

// timeWindow reads --since and --until. An empty since is def before until,
// or before now without until: --until alone moves the default window back
// with it rather than leaving it empty or inverted. until is zero when not
// given (open-ended); a window that is not after since is refused.
func timeWindow(since, until string, def time.Duration, now time.Time) (from, to time.Time, err error) {
	if until != "" {
		if to, err = audit.ParseTimeBound(until, now); err != nil {
			return from, to, usageErrorf("--until: %v", err)
		}
	}
	if since == "" {
		return cmp.Or(to, now).Add(-def), to, nil
	}
	if from, err = audit.ParseTimeBound(since, now); err != nil {
		return from, to, usageErrorf("--since: %v", err)
	}
	if !to.IsZero() && !to.After(from) {
		return from, to, usageErrorf("--until: %s is not after --since %s", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return from, to, nil
}

func (a *App) auditQuery() *cobra.Command {
	o := auditQueryOptions{}
	cmd := &cobra.Command{
		Use:   "query [flags]",
		Short: "Show audit events, newest first",
		Long: `Show the audit events matching every given filter, newest first.

-o json prints JSON Lines (one event per line) with SPEC §6 field names, -o yaml one
list of events with the same names; json, yaml and csv times are RFC 3339 UTC, table
times are local. --follow prints the newest
--limit events oldest first, then new ones as they arrive, until interrupted.`,
		Example: `  okproxy audit query --since 24h --decision deny
  okproxy audit query --user alice@example.com --since 7d -o json | jq .path
  okproxy audit query --group Finance --path-prefix /billing/ --status 403 -o csv
  okproxy audit query --reason invalid_token --follow`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.statusSet = cmd.Flags().Changed("status")
			f, err := o.filter(time.Now())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := a.openStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			out := newAuditPrinter(a.Stdout, o.output)
			if o.follow {
				return auditFollow(ctx, st, f, out, 500*time.Millisecond)
			}
			evs, err := st.QueryAuditEvents(ctx, f)
			if err != nil {
				return err
			}
			return out.print(evs)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.since, "since", "", "oldest event: duration back from now (90m, 7d) or RFC 3339 (default 1h, or 1h before --until)")
	fl.StringVar(&o.until, "until", "", "newest event, exclusive: duration back from now or RFC 3339 (default now)")
	fl.StringVar(&o.user, "user", "", "caller: subject or email (case-insensitive) or Okta user id")
	fl.StringVar(&o.group, "group", "", "a group in the caller's token, by name (case-insensitive for groups the directory or rules know) or Okta id 00g… (its current and earlier names)")
	fl.StringVar(&o.decision, "decision", "", "allow, deny or error")
	fl.StringVar(&o.reason, "reason", "", "reason code, e.g. forbidden, invalid_token, quota_exceeded")
	fl.StringVar(&o.rule, "rule", "", "rule that matched (including the one that granted or denied)")
	fl.StringVar(&o.pathPrefix, "path-prefix", "", "path starts with this (literal, no patterns)")
	fl.IntVar(&o.status, "status", 0, "HTTP status answered")
	fl.IntVar(&o.limit, "limit", 100, "at most this many events")
	fl.StringVarP(&o.output, "output", "o", "table", "output format: table, json (JSON Lines), yaml or csv")
	fl.BoolVar(&o.follow, "follow", false, "keep printing new events as they arrive (poll every 0.5 s)")
	return cmd
}

// auditPrinter writes events as a table, JSON Lines or CSV. The table and
// CSV header are written once, before the first batch.
type auditPrinter struct {
	w       io.Writer
	format  string
	started bool
	csv     *csv.Writer
}

func newAuditPrinter(w io.Writer, format string) *auditPrinter {
	return &auditPrinter{w: w, format: format}
}

func (p *auditPrinter) print(evs []audit.Event) error {
	switch p.format {
	case "json":
		enc := json.NewEncoder(p.w)
		for i := range evs {
			e := evs[i]
			e.Time = e.Time.UTC()
			if err := enc.Encode(&e); err != nil {
				return err
			}
		}
		return nil
	case "yaml":
		// One list; --follow refuses yaml, so print is called once.
		out := make([]audit.Event, len(evs))
		for i, e := range evs {
			e.Time = e.Time.UTC()
			out[i] = e
		}
		return writeYAML(p.w, out)
	case "csv":
		if p.csv == nil {
			p.csv = csv.NewWriter(p.w)
			p.csv.Write(auditFields)
		}
		for _, e := range evs {
			p.csv.Write(auditCSVRow(e))
		}
		p.csv.Flush()
		return p.csv.Error()
	}
	t := &table{tw: tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)}
	if !p.started {
		t = newTable(p.w, "TIME", "STATUS", "DECISION", "REASON", "METHOD", "HOST", "PATH", "SUBJECT", "RULE", "CLIENT_IP", "MS")
	}
	p.started = true
	for _, e := range evs {
		t.row(e.Time.Local().Format("2006-01-02 15:04:05"), strconv.Itoa(e.Status), e.Decision, e.Reason, e.Method,
			e.Host, e.Path, cmp.Or(e.Subject, cmp.Or(e.Email, e.UserID)), e.Rule, e.ClientIP, strconv.FormatFloat(e.LatencyMS, 'f', 1, 64))
	}
	return t.flush()
}

func auditCSVRow(e audit.Event) []string {
	row := []string{e.Time.UTC().Format(time.RFC3339Nano), e.RequestID, e.Replica, e.Method, e.Host, e.Path,
		strconv.Itoa(e.Status), e.Decision, e.Reason, strconv.FormatInt(e.PolicyVersion, 10),
		strings.Join(e.Rules, ";"), e.Rule, e.Shadow, e.Subject, e.UserID, e.Email, strings.Join(e.Groups, ";"),
		e.ClientIP, e.UserAgent, e.JTI, e.ClientID, strconv.FormatFloat(e.LatencyMS, 'f', -1, 64)}
	for i, c := range row {
		row[i] = csvSafe(c)
	}
	return row
}

// csvSafe defuses spreadsheet formula injection: paths, user agents and
// group names are chosen by callers, and a cell starting with = + - @ (or a
// tab or carriage return) would be evaluated by a spreadsheet that opens
// the export. Such cells get a leading apostrophe (OWASP's advice). Plain
// negative numbers are not affected: okproxy writes none.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// followOverlap is how far back in ingestion time each poll looks before
// the newest event already seen. An event is stamped with the start of the
// transaction that inserts it (ingested_at) and is visible once that
// transaction commits; the audit writer bounds every insert to 10 s, so an
// event is never visible later than that after its ingested_at. Event ids
// seen within the overlap are remembered so nothing prints twice.
const followOverlap = 15 * time.Second

// followPage bounds one poll's statement; a poll reads pages until it is
// caught up.
const followPage = 5000

// auditFollow prints the newest page oldest first, then, until ctx ends,
// every matching event that becomes visible after it started, in the order
// PostgreSQL took them in. That includes events older than the page that
// arrive late, such as a batch serve replays from its spool after a
// database outage.
func auditFollow(ctx context.Context, st *store.Store, f audit.Filter, out *auditPrinter, every time.Duration) error {
	start, err := st.DatabaseNow(ctx)
	if err != nil {
		return err
	}
	// seen holds the events of the last followOverlap of ingestion that
	// were already visible or printed, with their ingestion time (or a
	// later time: an entry is forgotten once polls can no longer return it).
	seen := map[[16]byte]time.Time{}
	cursor := start // the newest ingestion time seen
	poll := func(printing bool) error {
		from := cursor.Add(-followOverlap)
		for pos := (store.FollowPos{}); ; {
			evs, err := st.FollowAuditEvents(ctx, f, from, pos, followPage)
			if err != nil {
				return err
			}
			var fresh []audit.Event
			for _, e := range evs {
				if _, ok := seen[e.ID]; !ok {
					seen[e.ID] = e.Ingested
					fresh = append(fresh, e.Event)
				}
				if e.Ingested.After(cursor) {
					cursor = e.Ingested
				}
			}
			if printing {
				if err := out.print(fresh); err != nil {
					return err
				}
			}
			if len(evs) < followPage {
				break
			}
			pos = evs[len(evs)-1].Pos()
		}
		for id, at := range seen {
			if at.Before(cursor.Add(-followOverlap)) {
				delete(seen, id)
			}
		}
		return nil
	}
	// What was visible when we started is the page's business (or
	// `audit query`'s), not the follow's.
	if err := poll(false); err != nil {
		return err
	}
	first, err := st.QueryAuditEvents(ctx, f)
	if err != nil {
		return err
	}
	pageEnd, err := st.DatabaseNow(ctx) // no event of the page was ingested later
	if err != nil {
		return err
	}
	slices.Reverse(first)
	for _, e := range first {
		seen[e.ID] = pageEnd
	}
	if err := out.print(first); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := poll(true); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}
