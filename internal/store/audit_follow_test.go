package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/store"
)

// FollowAuditEvents pages through events in ingestion order, events of one
// insert in time order, however many share one ingestion time; late events
// (old time, ingested now, on both insert paths) come after earlier
// arrivals; filters apply and time bounds do not.
func TestFollowAuditEventsIngestionOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	if _, err := st.EnsureAuditPartitions(ctx, 2); err != nil {
		t.Fatal(err)
	}
	start, err := st.DatabaseNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	mk := func(id string, at time.Time, decision string) *audit.Event {
		return &audit.Event{ID: audit.NewID(), Time: at, RequestID: id, Method: "GET", Path: "/x", Status: 200,
			Decision: decision, Reason: "ok"}
	}
	var batch []*audit.Event
	for i := range 25 { // one COPY: one ingestion time; inserted out of time order
		batch = append(batch, mk(fmt.Sprintf("b%02d", i), now.Add(-time.Duration(25-i)*time.Millisecond), "deny"))
	}
	slices.Reverse(batch)
	batch = append(batch, mk("b-allow", now, "allow"))
	if _, err := st.InsertAuditEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Two days old (the default partition), through the replay path.
	late := []*audit.Event{mk("late", now.Add(-48*time.Hour), "deny")}
	if _, err := st.InsertAuditEventsIdempotent(ctx, late); err != nil {
		t.Fatal(err)
	}

	f := audit.Filter{Decision: "deny", Since: now.Add(-time.Minute), Until: now.Add(-30 * time.Second)}
	var got []string
	var last []store.FollowedEvent
	for pos, pages := (store.FollowPos{}), 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("no end after %d pages: %v", pages, got)
		}
		evs, err := st.FollowAuditEvents(ctx, f, start.Add(-time.Second), pos, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.RequestID)
		}
		last = append(last, evs...)
		if len(evs) < 10 {
			break
		}
		pos = evs[len(evs)-1].Pos()
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("b%02d", i))
	}
	want = append(want, "late")
	if !slices.Equal(got, want) {
		t.Fatalf("followed %v\nwant %v", got, want)
	}
	if a, b := last[0].Ingested, last[24].Ingested; !a.Equal(b) || a.Before(start) {
		t.Errorf("one insert, ingestion times %v and %v (start %v)", a, b, start)
	}
	if !last[25].Ingested.After(last[0].Ingested) {
		t.Errorf("late event ingested %v, not after the batch %v", last[25].Ingested, last[0].Ingested)
	}
	// Nothing ingested after the newest one.
	evs, err := st.FollowAuditEvents(ctx, f, last[25].Ingested.Add(time.Microsecond), store.FollowPos{}, 10)
	if err != nil || len(evs) != 0 {
		t.Errorf("after the newest: %d events, %v", len(evs), err)
	}
}
