package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// readPartitionNow reads every event of partition number of count that
// readers see now, page by page, limit events scanned at a time. It fails
// when a page's Next moves backwards or a read repeats an event.
func readPartitionNow(t *testing.T, s store.Store, number, count, limit int) []event.Envelope {
	t.Helper()
	var out []event.Envelope
	f := store.PartitionFilter{Number: number, Count: count, Limit: limit}
	for reads := 0; ; reads++ {
		if reads > 100000 {
			t.Fatalf("partition %d of %d: reading never ends", number, count)
		}
		page, err := s.ReadPartition(ctxFor(t), f)
		if err != nil {
			t.Fatalf("ReadPartition(%d of %d): %v", number, count, err)
		}
		if page.Next.Less(f.After) {
			t.Fatalf("partition %d of %d: Next %v is before After %v", number, count, page.Next, f.After)
		}
		for _, e := range page.Events {
			if !f.After.Less(store.CursorOf(e)) || page.Next.Less(store.CursorOf(e)) {
				t.Fatalf("partition %d of %d: event at %v outside (%v, %v]", number, count, store.CursorOf(e), f.After, page.Next)
			}
		}
		out = append(out, page.Events...)
		if page.Next == f.After {
			if page.Full {
				t.Fatalf("partition %d of %d: a full page that does not move on", number, count)
			}
			return out
		}
		f.After = page.Next
	}
}

// testReadPartition: every event is read by exactly one partition, the one
// event.PartitionOf names, each partition in commit order, whatever the
// page size; one partition reads everything.
func testReadPartition[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	var drafts []event.Draft
	for i := range 120 {
		subject := fmt.Sprintf("learner-%d", i%23)
		if i%7 == 0 {
			subject = "" // placed by its id
		}
		drafts = append(drafts, draft("test.partition", subject, fmt.Sprintf(`{"i":%d}`, i)))
	}
	// In batches and one at a time: both append paths store the hash.
	appendOK(t, s, drafts[:60]...)
	for _, d := range drafts[60:] {
		appendOK(t, s, d)
	}
	settle(t, s)
	all := readNow(t, s, store.Filter{Limit: store.MaxLimit})
	if len(all) != len(drafts) {
		t.Fatalf("Read found %d events, want %d", len(all), len(drafts))
	}
	one := readPartitionNow(t, s, 0, 1, 0)
	if fmt.Sprint(ids(one)) != fmt.Sprint(ids(all)) {
		t.Fatalf("one partition read %d events, not every event in commit order", len(one))
	}
	for _, count := range []int{2, 4, 7} {
		for _, limit := range []int{1, 5, 1000} {
			seen := map[uuid.UUID]int{}
			for p := range count {
				got := readPartitionNow(t, s, p, count, limit)
				var want []event.Envelope
				for _, e := range all {
					if event.PartitionOf(e.Subject, e.ID, count) == p {
						want = append(want, e)
					}
				}
				if fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
					t.Fatalf("partition %d of %d (limit %d): read %v, want %v (its events in commit order)", p, count, limit, ids(got), ids(want))
				}
				for _, e := range got {
					seen[e.ID]++
				}
			}
			if len(seen) != len(all) {
				t.Fatalf("%d partitions (limit %d) read %d distinct events, want %d", count, limit, len(seen), len(all))
			}
		}
	}
	// Events stored before the store kept stream hashes are placed by
	// the reader, in the same partitions.
	if h.ForgetStreamHashes != nil {
		h.ForgetStreamHashes(t, s)
		seen := 0
		for p := range 4 {
			got := readPartitionNow(t, s, p, 4, 9)
			for _, e := range got {
				if event.PartitionOf(e.Subject, e.ID, 4) != p {
					t.Fatalf("an event without a stored hash was read by partition %d, not %d", p, event.PartitionOf(e.Subject, e.ID, 4))
				}
			}
			seen += len(got)
		}
		if seen != len(all) {
			t.Fatalf("without stored hashes the partitions read %d events, want %d", seen, len(all))
		}
	}
	// A partition count the store cannot hold is refused.
	for _, f := range []store.PartitionFilter{{Number: 4, Count: 4}, {Number: -1, Count: 4}, {Count: store.MaxPartitions + 1}} {
		if _, err := s.ReadPartition(ctxFor(t), f); err == nil {
			t.Errorf("ReadPartition(%+v) succeeded; want an error", f)
		}
	}
}

// testPartitionHeldBack: a partition's reader stops at an open transaction
// like any reader (G4): it neither returns nor passes an event committed
// after one that is still open, whichever partitions they are in.
func testPartitionHeldBack[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	const count = 3
	// a and b in different partitions.
	a := draft("test.held", "stream-a", `{"who":"a"}`)
	b := draft("test.held", "", `{"who":"b"}`)
	for event.PartitionOf(b.Subject, b.ID, count) == event.PartitionOf(a.Subject, a.ID, count) {
		b = draft("test.held", "", `{"who":"b"}`)
	}
	txA, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, txA, []event.Draft{a}); err != nil {
		t.Fatal(err)
	}
	appendB := appendAside(t, h, s, b)
	for p := range count {
		page, err := s.ReadPartition(ctx, store.PartitionFilter{Number: p, Count: count})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 0 || !page.Next.IsZero() {
			t.Fatalf("partition %d read %d events and moved to %v while an older transaction was open; want nothing", p, len(page.Events), page.Next)
		}
	}
	if appendB.committed {
		pb := event.PartitionOf(b.Subject, b.ID, count)
		n, oldest, err := s.PartitionBacklog(ctx, store.Cursor{}, pb, count, 100)
		if err != nil || n != 1 || oldest.IsZero() {
			t.Errorf("PartitionBacklog of b's partition while b is held back = %d, %v, %v; want b counted", n, oldest, err)
		}
	}
	if err := h.Commit(ctx, txA); err != nil {
		t.Fatal(err)
	}
	appendB.end(t)
	settle(t, s)
	for _, d := range []event.Draft{a, b} {
		p := event.PartitionOf(d.Subject, d.ID, count)
		got := readPartitionNow(t, s, p, count, 0)
		if len(got) != 1 || got[0].ID != d.ID {
			t.Fatalf("after commit partition %d read %v, want %s", p, ids(got), d.ID)
		}
	}
}

// testPartitionBacklog: each partition counts its own events after a
// cursor, and when the oldest was recorded.
func testPartitionBacklog[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	const count = 4
	var drafts []event.Draft
	for i := range 40 {
		drafts = append(drafts, draft("test.backlog", fmt.Sprintf("s-%d", i), `{}`))
	}
	envs := appendOK(t, s, drafts...)
	settle(t, s)
	mid := store.CursorOf(envs[19])
	total := int64(0)
	for p := range count {
		var want int64
		var oldest time.Time
		for _, e := range envs[20:] {
			if event.PartitionOf(e.Subject, e.ID, count) == p {
				want++
				if oldest.IsZero() || e.RecordedAt.Before(oldest) {
					oldest = e.RecordedAt
				}
			}
		}
		n, got, err := s.PartitionBacklog(ctx, mid, p, count, 1000)
		if err != nil || n != want || !got.Equal(oldest) {
			t.Errorf("PartitionBacklog(partition %d) = %d, %v, %v; want %d, %v", p, n, got, err, want, oldest)
		}
		total += n
		if capped, _, err := s.PartitionBacklog(ctx, store.Cursor{}, p, count, 2); err != nil || capped > 2 {
			t.Errorf("PartitionBacklog with limit 2 = %d, %v", capped, err)
		}
	}
	if total != 20 {
		t.Errorf("the partitions' backlogs add up to %d, want 20", total)
	}
	if n, _, err := s.PartitionBacklog(ctx, store.CursorOf(envs[39]), 0, 1, 10); err != nil || n != 0 {
		t.Errorf("PartitionBacklog after the last event = %d, %v; want 0", n, err)
	}
}

// testHeartbeat: the first heartbeat records the relay's partition count
// and makes its partitions; live processes are listed, a departed one is
// not; a process with another count is refused while others live, and
// once none does it changes the count, each new partition starting from
// the lowest old checkpoint, with parked events moved to their new
// partitions.
func testHeartbeat[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	const relay = "scaled"
	members, err := s.Heartbeat(ctx, relay, "proc-b", 4, 10*time.Second)
	if err != nil || len(members) != 1 || members[0].Holder != "proc-b" || !members[0].Until.After(time.Now().Add(5*time.Second)) {
		t.Fatalf("first heartbeat = %+v, %v; want proc-b alive for 10s", members, err)
	}
	if members, err = s.Heartbeat(ctx, relay, "proc-a", 4, 10*time.Second); err != nil || len(members) != 2 ||
		members[0].Holder != "proc-a" || members[1].Holder != "proc-b" {
		t.Fatalf("second process's heartbeat = %+v, %v; want proc-a and proc-b, by holder", members, err)
	}
	st, err := s.RelayState(ctx, relay)
	if err != nil || st.Partitions != 4 || len(st.Members) != 2 {
		t.Fatalf("RelayState = %+v, %v; want 4 partitions, 2 processes", st, err)
	}
	leases, err := s.Leases(ctx, relay)
	if err != nil || len(leases) != 4 {
		t.Fatalf("Leases after the first heartbeat = %+v, %v; want partitions 0 to 3", leases, err)
	}
	for i, l := range leases {
		if l.Number != i || l.Holder != "" || !l.Checkpoint.IsZero() {
			t.Fatalf("partition %d = %+v; want free, at the beginning", i, l)
		}
	}
	// Another count, while others live: refused, naming both counts.
	_, err = s.Heartbeat(ctx, relay, "proc-c", 2, 10*time.Second)
	wantErr(t, err, store.ErrPartitionCount)
	if msg := err.Error(); !strings.Contains(msg, "runs with 4 partitions") || !strings.Contains(msg, "configured with 2") {
		t.Errorf("the refusal does not name both counts: %v", err)
	}
	if st, _ := s.RelayState(ctx, relay); st.Partitions != 4 || len(st.Members) != 2 {
		t.Fatalf("a refused heartbeat changed the relay: %+v", st)
	}

	// Checkpoints of the old partitions, and a parked event.
	cps := []store.Cursor{{Order: 40, Position: 40}, {Order: 20, Position: 20}, {Order: 90, Position: 90}, {Order: 30, Position: 30}}
	for i, c := range cps {
		p := store.Partition{Relay: relay, Number: i}
		if l, err := s.Claim(ctx, p, "proc-a", time.Minute); err != nil || l.Holder != "proc-a" {
			t.Fatalf("claim %d: %+v, %v", i, l, err)
		}
		if err := s.Advance(ctx, p, "proc-a", c, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	parked := store.ParkedEvent{Partition: store.Partition{Relay: relay, Number: 3}, EventID: uuid.Must(uuid.NewV7()),
		Position: 25, Type: "test.parked", Stream: "stream-x", StreamVersion: 1, Reason: "refused"}
	if err := s.Park(ctx, parked); err != nil {
		t.Fatal(err)
	}
	// Both processes leave, but proc-a still holds leases: refused.
	for _, m := range []string{"proc-a", "proc-b"} {
		if err := s.Leave(ctx, relay, m); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Heartbeat(ctx, relay, "proc-c", 2, 10*time.Second)
	wantErr(t, err, store.ErrPartitionCount)
	for i := range cps {
		if err := s.Release(ctx, store.Partition{Relay: relay, Number: i}, "proc-a"); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody alive: the count changes.
	if members, err = s.Heartbeat(ctx, relay, "proc-c", 2, 10*time.Second); err != nil || len(members) != 1 {
		t.Fatalf("heartbeat with a new count once nobody runs = %+v, %v; want it to change the count", members, err)
	}
	if st, _ := s.RelayState(ctx, relay); st.Partitions != 2 {
		t.Fatalf("partition count after the change = %d, want 2", st.Partitions)
	}
	leases, err = s.Leases(ctx, relay)
	if err != nil || len(leases) != 2 {
		t.Fatalf("Leases after the change = %+v, %v; want partitions 0 and 1", leases, err)
	}
	lowest := store.Cursor{Order: 20, Position: 20}
	for _, l := range leases {
		if l.Checkpoint != lowest || l.Holder != "" {
			t.Errorf("partition %d after the change = %+v; want free at the lowest old checkpoint %v", l.Number, l, lowest)
		}
	}
	list, err := s.Parked(ctx, relay)
	if err != nil || len(list) != 1 {
		t.Fatalf("Parked after the change = %+v, %v", list, err)
	}
	if want := event.PartitionOf(parked.Stream, parked.EventID, 2); list[0].Number != want {
		t.Errorf("the parked event is in partition %d after the change, want %d", list[0].Number, want)
	}
	// An expired heartbeat does not count as alive.
	if _, err := s.Heartbeat(ctx, relay, "proc-short", 2, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	members, err = s.Heartbeat(ctx, relay, "proc-c", 2, 10*time.Second)
	if err != nil || slices.ContainsFunc(members, func(m store.Member) bool { return m.Holder == "proc-short" }) {
		t.Fatalf("members = %+v, %v; want proc-short gone once its heartbeat expired", members, err)
	}
	// A count out of range is refused.
	if _, err := s.Heartbeat(ctx, relay, "proc-c", store.MaxPartitions+1, time.Second); err == nil {
		t.Error("a heartbeat with too many partitions succeeded")
	}
}
