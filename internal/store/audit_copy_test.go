package store_test

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
)

// Every field of every kind of event survives the binary COPY (direct and
// replay paths) exactly as audit query reads it back, and each path reads
// like a row PostgreSQL parsed from text.
func TestAuditCopyRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	if _, err := st.EnsureAuditPartitions(ctx, 2); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	mk := func(i int, f func(e *audit.Event)) *audit.Event {
		e := &audit.Event{ID: audit.NewID(), Time: now.Add(-time.Duration(i) * time.Millisecond), RequestID: "req-" + string(rune('a'+i)),
			Replica: "r1", Method: "GET", Host: "api.example.com", Path: "/billing/x", Status: 200, Decision: "allow", Reason: "ok",
			PolicyVersion: 7, Rules: []string{"billing-read"}, Rule: "billing-read", Subject: "alice@example.com", UserID: "00u1",
			Email: "alice@example.com", Groups: []string{"Finance"}, ClientIP: "10.0.0.1", UserAgent: "curl/8", JTI: "AT.1",
			ClientID: "0oa1", LatencyMS: 1.5}
		if f != nil {
			f(e)
		}
		return e
	}
	events := []*audit.Event{
		mk(0, nil),
		mk(1, func(e *audit.Event) { // anonymous refusal: empty strings, nil and empty arrays
			e.Subject, e.UserID, e.Email, e.JTI, e.ClientID, e.Rule = "", "", "", "", "", ""
			e.Rules, e.Groups, e.Status, e.Decision, e.Reason, e.LatencyMS = nil, []string{}, 401, "deny", "unauthorized", 0
		}),
		mk(2, func(e *audit.Event) { // unicode, long values, many groups, extremes
			e.Path, e.Subject, e.UserAgent = "/caf\u00e9/\u65e5\u672c/\U0001F600", "j\u00f6rg@example.com", strings.Repeat("\u00e9", 256)
			e.Groups = make([]string, 100)
			for j := range e.Groups {
				e.Groups[j] = "Team-\u00df-" + string(rune('A'+j%26))
			}
			e.Rules, e.Shadow = []string{"a", "", "c"}, "deny:forbidden:new-export (changed)"
			e.PolicyVersion, e.Status, e.LatencyMS = math.MaxInt64, 599, 123456.789
		}),
		mk(3, func(e *audit.Event) { // a time given in another zone
			e.Time = now.Add(-3 * time.Millisecond).In(time.FixedZone("X", -7*3600))
			e.PolicyVersion, e.LatencyMS = 0, math.SmallestNonzeroFloat64
		}),
	}
	n, err := st.InsertAuditEvents(ctx, events[:2])
	if err != nil || n != 2 {
		t.Fatalf("direct insert: %d, %v", n, err)
	}
	// The replay path, with one event already stored: only the new ones count.
	n, err = st.InsertAuditEventsIdempotent(ctx, events[1:])
	if err != nil || n != 2 {
		t.Fatalf("replay: %d inserted, %v (want 2)", n, err)
	}
	// A duplicate in a direct insert falls back to the idempotent path.
	if n, err := st.InsertAuditEvents(ctx, events[3:]); err != nil || n != 0 {
		t.Fatalf("direct insert of a stored event: %d, %v", n, err)
	}
	got, err := st.QueryAuditEvents(ctx, audit.Filter{Since: now.Add(-time.Minute), Limit: 10})
	if err != nil || len(got) != len(events) {
		t.Fatalf("query: %d events, %v", len(got), err)
	}
	for i, want := range events { // newest first, as inserted
		g := got[i]
		w := *want
		w.Time = w.Time.UTC()
		g.Time = g.Time.UTC()
		if w.Rules == nil {
			w.Rules = []string{}
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// The server's own view agrees with what text input would have made.
	var arr, ts string
	err = st.Pool().QueryRow(ctx, `SELECT array_to_string(groups, '|'), to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
		FROM audit_events WHERE request_id = 'req-c'`).Scan(&arr, &ts)
	if err != nil || !strings.HasPrefix(arr, "Team-\u00df-A|Team-\u00df-B") || ts != events[2].Time.UTC().Format("2006-01-02 15:04:05.000000") {
		t.Fatalf("server view: %q %q %v", arr, ts, err)
	}
	var dims string
	if err := st.Pool().QueryRow(ctx, `SELECT coalesce(array_dims(rules), 'none') FROM audit_events WHERE request_id = 'req-b'`).Scan(&dims); err != nil || dims != "none" {
		t.Fatalf("empty rules should be '{}' (no dimensions): %q %v", dims, err)
	}
}
