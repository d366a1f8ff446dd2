package storetest

import (
	"testing"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// testParked: parked events are recorded per relay partition, listed by
// position, marked for retry with the events parked before them in their
// streams, parked again with their attempts added up, and unparked.
func testParked[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	p0 := store.Partition{Relay: "default", Number: 0}
	p1 := store.Partition{Relay: "default", Number: 1}

	if got, err := s.Parked(ctx, "default"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Parked on a new store = %#v, %v; want an empty, non-nil list", got, err)
	}
	park := func(p store.Partition, pos int64, stream string, version int64, reason string) store.ParkedEvent {
		t.Helper()
		e := store.ParkedEvent{Partition: p, EventID: uuid.Must(uuid.NewV7()), Position: pos, Type: "test.parked",
			Stream: stream, StreamVersion: version, Reason: reason, Attempts: 1}
		if err := s.Park(ctx, e); err != nil {
			t.Fatalf("Park: %v", err)
		}
		return e
	}
	// Parked out of position order, to see that listing sorts.
	a2 := park(p0, 20, "s-a", 2, "behind a1")
	a1 := park(p0, 10, "s-a", 1, "refused")
	a3 := park(p0, 30, "s-a", 3, "behind a1")
	lone := park(p0, 15, "", 0, "refused")
	b1 := park(p1, 12, "s-b", 1, "refused")
	other := park(store.Partition{Relay: "other"}, 11, "s-a", 1, "refused")

	got, err := s.Parked(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "Parked", got, a1, b1, lone, a2, a3)
	first := got[0]
	if first.Partition != p0 || first.Position != 10 || first.Type != "test.parked" || first.Stream != "s-a" ||
		first.StreamVersion != 1 || first.Reason != "refused" || first.Attempts != 1 || first.RetryRequested ||
		first.ParkedAt.IsZero() || first.LastAttemptAt.Before(first.ParkedAt) {
		t.Fatalf("Parked()[0] = %+v; want a1 as parked", first)
	}

	// A retry of a2 takes a1, parked before it in its stream, along; not a3,
	// not other streams, not other relays.
	marked, err := s.RequestRetry(ctx, "default", []uuid.UUID{a2.EventID, uuid.Must(uuid.NewV7())}, false)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "RequestRetry(a2)", marked, a1, a2)
	for _, e := range marked {
		if !e.RetryRequested {
			t.Fatalf("RequestRetry returned %+v without RetryRequested", e)
		}
	}
	// Parking again adds the attempts, takes the new reason and clears the
	// retry mark; ParkedAt stays.
	again := a1
	again.Reason, again.Attempts = "refused again", 1
	if err := s.Park(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Parked(ctx, "default")
	if e := got[0]; e.EventID != a1.EventID || e.Attempts != 2 || e.Reason != "refused again" || e.RetryRequested ||
		!e.ParkedAt.Equal(first.ParkedAt) || e.LastAttemptAt.Before(first.LastAttemptAt) {
		t.Fatalf("a1 after parking again = %+v; want attempts 2, the new reason, no retry mark, ParkedAt %v", e, first.ParkedAt)
	}
	if e := got[3]; e.EventID != a2.EventID || !e.RetryRequested {
		t.Fatalf("a2 = %+v; want it still marked for retry", e)
	}

	// all marks every event of the relay, and nothing of another relay.
	marked, err = s.RequestRetry(ctx, "default", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "RequestRetry(all)", marked, a1, b1, lone, a2, a3)
	if marked, err = s.RequestRetry(ctx, "default", nil, false); err != nil || len(marked) != 0 {
		t.Fatalf("RequestRetry of nothing = %v, %v; want nothing marked", marked, err)
	}

	// Unpark forgets one event of one partition.
	if err := s.Unpark(ctx, p1, a1.EventID); err != nil { // the wrong partition: nothing
		t.Fatal(err)
	}
	if err := s.Unpark(ctx, p0, a1.EventID); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Parked(ctx, "default")
	wantIDs(t, "Parked after Unpark(a1)", got, b1, lone, a2, a3)
	if got, _ = s.Parked(ctx, "other"); len(got) != 1 || got[0].EventID != other.EventID || got[0].RetryRequested {
		t.Fatalf("Parked(other) = %+v; want its one event, not marked", got)
	}
}

func wantIDs(t *testing.T, what string, got []store.ParkedEvent, want ...store.ParkedEvent) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].EventID == want[i].EventID && got[i].Partition == want[i].Partition
	}
	if !ok {
		g := make([]int64, len(got))
		for i, e := range got {
			g[i] = e.Position
		}
		w := make([]int64, len(want))
		for i, e := range want {
			w[i] = e.Position
		}
		t.Fatalf("%s = events at positions %v; want %v", what, g, w)
	}
}
