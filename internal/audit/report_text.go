package audit

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// bucketLabel formats a bucket start for its width.
func (r *Report) bucketLabel(t time.Time) string {
	if r.Bucket == "hour" {
		return t.UTC().Format("01-02 15:00")
	}
	return t.UTC().Format("2006-01-02")
}

// Window describes the report's window for headings.
func (r *Report) Window() string {
	width := "daily"
	if r.Bucket == "hour" {
		width = "hourly"
	}
	return fmt.Sprintf("%s .. %s UTC, %s buckets", r.Since.Format("2006-01-02 15:04"), r.Until.Format("2006-01-02 15:04"), width)
}

var sparkRunes = []rune("▁▂▃▄▅▆▇█")

// spark draws a series as a one-line chart scaled to its own maximum.
func spark(vals []int64) string {
	var hi int64
	for _, v := range vals {
		hi = max(hi, v)
	}
	var b strings.Builder
	for _, v := range vals {
		switch {
		case v == 0:
			b.WriteRune(' ')
		default:
			b.WriteRune(sparkRunes[int((v*int64(len(sparkRunes)-1))/max(hi, 1))])
		}
	}
	return b.String()
}

func requestsOf(s []BucketStat) []int64 {
	out := make([]int64, len(s))
	for i, b := range s {
		out[i] = b.Requests
	}
	return out
}

func deniedOf(s []BucketStat) []int64 {
	out := make([]int64, len(s))
	for i, b := range s {
		out[i] = b.Denied
	}
	return out
}

func pct(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
}

// WriteText renders the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	section := func(title string) {
		tw.Flush()
		fmt.Fprintf(tw, "\n%s\n%s\n", title, strings.Repeat("-", len([]rune(title))))
	}
	t := r.Totals
	p("okproxy audit report: %s", r.Window())
	p("%d requests: %d allowed, %d denied (%s), %d errors; %d users, %d client IPs",
		t.Requests, t.Allowed, t.Denied, pct(t.Denied, t.Requests), t.Errors, t.Users, t.ClientIPs)

	section("Requests over time")
	p("BUCKET\tREQUESTS\tDENIED\tERRORS\tUSERS\t")
	for _, b := range r.Series {
		p("%s\t%d\t%d\t%d\t%d\t", r.bucketLabel(b.Start), b.Requests, b.Denied, b.Errors, b.Users)
	}

	for _, k := range []struct {
		title string
		rows  []KeyUsage
	}{{"Groups (by requests; trend per bucket)", r.Groups}, {"Rules (matched; by requests)", r.Rules}} {
		section(k.title)
		p("NAME\tREQUESTS\tDENIED\tUSERS\tREQUESTS/BUCKET\tDENIED/BUCKET")
		for _, u := range k.rows {
			p("%s\t%d\t%d\t%d\t%s\t%s", u.Name, u.Requests, u.Denied, u.Users, spark(requestsOf(u.Series)), spark(deniedOf(u.Series)))
		}
		if len(k.rows) == 0 {
			p("(none)")
		}
	}

	section("Top users")
	p("USER\tREQUESTS\tDENIED\tTOP DENIAL REASON")
	for _, c := range r.Users {
		p("%s\t%d\t%d\t%s", c.Caller, c.Requests, c.Denied, dash(c.TopReason))
	}
	section("Top denied callers")
	p("CALLER\tDENIED\tREQUESTS\tTOP REASON")
	for _, c := range r.TopDenied {
		p("%s\t%d\t%d\t%s", c.Caller, c.Denied, c.Requests, dash(c.TopReason))
	}
	if len(r.TopDenied) == 0 {
		p("(no denials)")
	}

	a := r.Anomalies
	o := r.Options.Defaults()
	section(fmt.Sprintf("Anomaly: denial spikes (last bucket > mean + %g sigma of earlier buckets, at least %d)", o.SpikeSigma, o.SpikeMin))
	if len(a.DenialSpikes) == 0 {
		p("none")
	} else {
		p("CALLER\tBUCKET\tDENIED\tBASELINE MEAN\tSTDDEV\tTHRESHOLD")
		for _, s := range a.DenialSpikes {
			p("%s\t%s\t%d\t%.1f\t%.1f\t%.1f", s.Caller, r.bucketLabel(s.Bucket), s.Count, s.Mean, s.Stddev, s.Threshold)
		}
	}
	section(fmt.Sprintf("Anomaly: invalid-token bursts (at least %d from one client IP in a bucket)", o.BurstMin))
	if len(a.InvalidTokenBursts) == 0 {
		p("none")
	} else {
		p("CLIENT IP\tBUCKET\tINVALID TOKENS")
		for _, b := range a.InvalidTokenBursts {
			p("%s\t%s\t%d", b.ClientIP, r.bucketLabel(b.Bucket), b.Count)
		}
	}
	section("Anomaly: enabled rules that matched no request")
	if len(a.UnmatchedRules) == 0 {
		p("none")
	}
	for _, rr := range a.UnmatchedRules {
		p("%s\t(%s)", rr.Name, rr.Mode)
	}
	section("Anomaly: groups seen in tokens that no rule mentions")
	if len(a.UnmentionedGroups) == 0 {
		p("none")
	} else {
		p("GROUP\tREQUESTS\tUSERS")
		for _, g := range a.UnmentionedGroups {
			p("%s\t%d\t%d", g.Name, g.Requests, g.Users)
		}
	}

	sh := r.Shadow
	section("What would change if report-only rules were enforced")
	p("%d requests matched a report-only rule; %d would flip (%d allowed -> denied, %d denied -> allowed), %d callers affected",
		sh.Evaluated, sh.Changed, sh.WouldDeny, sh.WouldAllow, sh.Callers)
	if len(sh.ByRule) > 0 {
		p("RULE\tWOULD DENY\tWOULD ALLOW\tCALLERS")
		for _, s := range sh.ByRule {
			p("%s\t%d\t%d\t%d", s.Rule, s.WouldDeny, s.WouldAllow, s.Callers)
		}
	}
	if len(sh.TopCallers) > 0 {
		p("")
		p("CALLER\tWOULD DENY\tWOULD ALLOW")
		for _, c := range sh.TopCallers {
			p("%s\t%d\t%d", c.Caller, c.WouldDeny, c.WouldAllow)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
