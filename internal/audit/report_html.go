package audit

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"strings"
	"time"
)

// WriteHTML renders the report as one self-contained page: inline CSS and
// SVG charts, no scripts, no external assets, so it can be mailed or
// archived and opens the same anywhere.
func (r *Report) WriteHTML(w io.Writer) error {
	return reportTemplate.Execute(w, reportView{Report: r, Bars: r.svgBars()})
}

// reportView is the template's data: the report plus its main chart.
type reportView struct {
	*Report
	Bars template.HTML
}

// svgBars draws the request series as stacked bars (allowed, denied,
// errors) with a labelled y axis and thinned x labels.
func (r *Report) svgBars() template.HTML {
	const W, H, left, bottom, top = 1100.0, 260.0, 56.0, 44.0, 12.0
	n := len(r.Series)
	if n == 0 {
		return ""
	}
	var hi int64
	for _, b := range r.Series {
		hi = max(hi, b.Requests)
	}
	step := niceStep(hi)
	scale := 4 * step
	plotW, plotH := W-left-10, H-bottom-top
	slot := plotW / float64(n)
	barW := max(slot*0.72, 1)
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="requests per %s">`, W, H, html.EscapeString(r.Bucket))
	for i := 0; i <= 4; i++ {
		v := step * int64(i)
		y := top + plotH - plotH*float64(i)/4
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`, left, y, W-10, y)
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" class="ylab">%d</text>`, left-6, y+4, v)
	}
	every := max(1, (n+13)/14)
	for i, b := range r.Series {
		x := left + float64(i)*slot + (slot-barW)/2
		y := top + plotH
		allowed := b.Requests - b.Denied - b.Errors
		for _, part := range []struct {
			v     int64
			class string
		}{{allowed, "allow"}, {b.Denied, "deny"}, {b.Errors, "error"}} {
			if part.v <= 0 || scale == 0 {
				continue
			}
			h := plotH * float64(part.v) / float64(scale)
			y -= h
			fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="%s"><title>%s: %d %s</title></rect>`,
				x, y, barW, h, part.class, html.EscapeString(r.bucketLabel(b.Start)), part.v, part.class)
		}
		if i%every == 0 {
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" class="xlab">%s</text>`, x+barW/2, top+plotH+18, html.EscapeString(r.bucketLabel(b.Start)))
		}
	}
	fmt.Fprintf(&s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="axis"/>`, left, top+plotH, W-10, top+plotH)
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

// svgSpark draws one group's or rule's series: requests as bars, denials
// as a red line, scaled to the row's own maximum.
func svgSpark(series []BucketStat) template.HTML {
	const W, H = 240.0, 34.0
	n := len(series)
	if n == 0 {
		return ""
	}
	var hi int64
	for _, b := range series {
		hi = max(hi, b.Requests)
	}
	hi = max(hi, 1)
	slot := W / float64(n)
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="spark" viewBox="0 0 %.0f %.0f" preserveAspectRatio="none">`, W, H)
	for i, b := range series {
		h := (H - 2) * float64(b.Requests) / float64(hi)
		fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="allow"/>`, float64(i)*slot+slot*0.1, H-h, slot*0.8, h)
	}
	var pts []string
	for i, b := range series {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(i)*slot+slot/2, H-(H-2)*float64(b.Denied)/float64(hi)))
	}
	fmt.Fprintf(&s, `<polyline points="%s" class="denyline"/></svg>`, strings.Join(pts, " "))
	return template.HTML(s.String())
}

// svgShare draws a horizontal bar of part/whole for tables.
func svgShare(part, whole int64, class string) template.HTML {
	f := 0.0
	if whole > 0 {
		f = float64(part) / float64(whole)
	}
	return template.HTML(fmt.Sprintf(`<svg class="share" viewBox="0 0 100 10" preserveAspectRatio="none"><rect width="100" height="10" class="track"/><rect width="%.1f" height="10" class="%s"/></svg>`, 100*f, class))
}

// niceStep is the axis step (1, 2 or 5 times a power of ten) for which four
// steps cover v.
func niceStep(v int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if 4*m*p >= v {
				return m * p
			}
		}
	}
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"spark": svgSpark,
	"share": svgShare,
	"pct":   pct,
	"dash":  dash,
	"label": func(r *Report, t time.Time) string { return r.bucketLabel(t) },
}).Parse(reportHTML))

const reportHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>okproxy audit report {{.Since.Format "2006-01-02"}} – {{.Until.Format "2006-01-02"}}</title>
<style>
:root{--fg:#1d2430;--muted:#5d6b7e;--line:#dfe4ea;--allow:#3b82c4;--deny:#d9534f;--error:#f0a030;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:10px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:20px}
.card span{color:var(--muted);font-size:12px}
.panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin-bottom:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.02em}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.chart{width:100%;height:auto;display:block}
.spark{width:240px;height:34px;display:block}
.share{width:90px;height:10px;display:inline-block;vertical-align:middle;margin-left:6px}
.grid{stroke:var(--line);stroke-width:1}
.axis{stroke:#98a2b3;stroke-width:1}
.ylab{font-size:11px;fill:var(--muted);text-anchor:end}
.xlab{font-size:11px;fill:var(--muted);text-anchor:middle}
.allow{fill:var(--allow)}
.deny{fill:var(--deny)}
.error{fill:var(--error)}
.track{fill:#edf0f3}
.denyline{fill:none;stroke:var(--deny);stroke-width:1.5}
.legend span{display:inline-block;margin-right:14px;color:var(--muted);font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px;vertical-align:-1px}
.flag{display:inline-block;min-width:22px;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;text-align:center;background:#e7f5ec;color:#1e7b43}
.flag.hot{background:#fde8e7;color:#b3261e}
.none{color:var(--muted)}
.two{display:grid;grid-template-columns:1fr 1fr;gap:12px}
footer{color:var(--muted);font-size:12px;margin-top:28px}
@media (max-width:800px){.cards{grid-template-columns:repeat(2,1fr)}.two{grid-template-columns:1fr}}
</style></head>
<body><main>
<h1>okproxy audit report</h1>
<p class="sub">{{.Window}}</p>
<div class="cards">
<div class="card"><b>{{.Totals.Requests}}</b><span>requests</span></div>
<div class="card"><b>{{.Totals.Allowed}}</b><span>allowed</span></div>
<div class="card"><b>{{.Totals.Denied}}</b><span>denied ({{pct .Totals.Denied .Totals.Requests}})</span></div>
<div class="card"><b>{{.Totals.Errors}}</b><span>errors (5xx by the proxy)</span></div>
<div class="card"><b>{{.Totals.Users}}</b><span>distinct users</span></div>
<div class="card"><b>{{.Totals.ClientIPs}}</b><span>client IPs</span></div>
</div>

<h2>Requests per {{.Bucket}}</h2>
<div class="panel">
<div class="legend"><span><i class="allow" style="background:var(--allow)"></i>allowed</span><span><i style="background:var(--deny)"></i>denied</span><span><i style="background:var(--error)"></i>errors</span></div>
{{.Bars}}
</div>

{{with .Anomalies}}
<h2>Anomalies</h2>
<div class="two">
<div class="panel"><h3>Denial spikes <span class="flag{{if .DenialSpikes}} hot{{end}}">{{len .DenialSpikes}}</span></h3>
{{if .DenialSpikes}}<table><tr><th>Caller</th><th>Bucket</th><th>Denied</th><th>Baseline</th><th>Threshold</th></tr>
{{range .DenialSpikes}}<tr><td>{{.Caller}}</td><td>{{label $.Report .Bucket}}</td><td class="n">{{.Count}}</td><td class="n">{{printf "%.1f ± %.1f" .Mean .Stddev}}</td><td class="n">{{printf "%.1f" .Threshold}}</td></tr>
{{end}}</table>{{else}}<p class="none">No caller's denials in the last bucket exceed its own baseline.</p>{{end}}</div>
<div class="panel"><h3>Invalid-token bursts <span class="flag{{if .InvalidTokenBursts}} hot{{end}}">{{len .InvalidTokenBursts}}</span></h3>
{{if .InvalidTokenBursts}}<table><tr><th>Client IP</th><th>Bucket</th><th>Invalid tokens</th></tr>
{{range .InvalidTokenBursts}}<tr><td>{{.ClientIP}}</td><td>{{label $.Report .Bucket}}</td><td class="n">{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="none">No client IP sent a burst of invalid tokens.</p>{{end}}</div>
<div class="panel"><h3>Enabled rules never matched <span class="flag{{if .UnmatchedRules}} hot{{end}}">{{len .UnmatchedRules}}</span></h3>
{{if .UnmatchedRules}}<table><tr><th>Rule</th><th>Mode</th></tr>
{{range .UnmatchedRules}}<tr><td>{{.Name}}</td><td>{{.Mode}}</td></tr>
{{end}}</table>{{else}}<p class="none">Every enabled rule matched at least one request.</p>{{end}}</div>
<div class="panel"><h3>Groups no rule mentions <span class="flag{{if .UnmentionedGroups}} hot{{end}}">{{len .UnmentionedGroups}}</span></h3>
{{if .UnmentionedGroups}}<table><tr><th>Group (from tokens)</th><th>Requests</th><th>Users</th></tr>
{{range .UnmentionedGroups}}<tr><td>{{.Name}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Users}}</td></tr>
{{end}}</table>{{else}}<p class="none">Every group seen in tokens is mentioned by a rule.</p>{{end}}</div>
</div>
{{end}}

{{with .Shadow}}
<h2>What would change if report-only rules were enforced</h2>
<div class="panel">
<p>{{.Evaluated}} requests matched a report-only rule; <b>{{.Changed}}</b> would flip:
<b>{{.WouldDeny}}</b> allowed requests would be denied, <b>{{.WouldAllow}}</b> denied requests would be allowed,
affecting <b>{{.Callers}}</b> callers.</p>
{{if .ByRule}}<div class="two"><table><tr><th>Report-only rule</th><th>Would deny</th><th>Would allow</th><th>Callers</th></tr>
{{range .ByRule}}<tr><td>{{.Rule}}</td><td class="n">{{.WouldDeny}}</td><td class="n">{{.WouldAllow}}</td><td class="n">{{.Callers}}</td></tr>
{{end}}</table>
<table><tr><th>Caller</th><th>Would deny</th><th>Would allow</th></tr>
{{range .TopCallers}}<tr><td>{{.Caller}}</td><td class="n">{{.WouldDeny}}</td><td class="n">{{.WouldAllow}}</td></tr>
{{end}}</table></div>{{end}}
</div>
{{end}}

<h2>Groups</h2>
<div class="panel"><table><tr><th>Group</th><th>Requests</th><th>Denied</th><th>Users</th><th>Per {{.Bucket}} (bars: requests, line: denied)</th></tr>
{{range .Groups}}<tr><td>{{.Name}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Denied}} {{share .Denied .Requests "deny"}}</td><td class="n">{{.Users}}</td><td>{{spark .Series}}</td></tr>
{{else}}<tr><td colspan="5" class="none">No group seen.</td></tr>{{end}}</table></div>

<h2>Rules</h2>
<div class="panel"><table><tr><th>Rule (matched)</th><th>Requests</th><th>Denied</th><th>Users</th><th>Per {{.Bucket}} (bars: requests, line: denied)</th></tr>
{{range .Rules}}<tr><td>{{.Name}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Denied}} {{share .Denied .Requests "deny"}}</td><td class="n">{{.Users}}</td><td>{{spark .Series}}</td></tr>
{{else}}<tr><td colspan="5" class="none">No rule matched.</td></tr>{{end}}</table></div>

<div class="two">
<div><h2>Top users</h2><div class="panel"><table><tr><th>User</th><th>Requests</th><th>Denied</th></tr>
{{range .Users}}<tr><td>{{.Caller}}</td><td class="n">{{.Requests}}</td><td class="n">{{.Denied}}</td></tr>
{{else}}<tr><td colspan="3" class="none">No authenticated requests.</td></tr>{{end}}</table></div></div>
<div><h2>Top denied callers</h2><div class="panel"><table><tr><th>Caller</th><th>Denied</th><th>Top reason</th></tr>
{{range .TopDenied}}<tr><td>{{.Caller}}</td><td class="n">{{.Denied}}</td><td>{{dash .TopReason}}</td></tr>
{{else}}<tr><td colspan="3" class="none">No denials.</td></tr>{{end}}</table></div></div>
</div>

<footer>Generated {{.GeneratedAt.Format "2006-01-02 15:04:05 UTC"}} by okproxy audit report. Times and buckets are UTC.</footer>
</main></body></html>
`
