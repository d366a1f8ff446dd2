package storetest

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// testHeldBack: while a transaction that appended is open, readers must not
// see events committed after it, or they would skip it when it commits.
func testHeldBack[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	began := time.Now().Add(-time.Second) // the servers' clocks may differ a little
	txA, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	a := draft("test.held", "", `{"who":"a"}`)
	if _, err := s.AppendTx(ctx, txA, []event.Draft{a}); err != nil {
		t.Fatal(err)
	}
	b := draft("test.held", "", `{"who":"b"}`)
	// On PostgreSQL b commits while a is open; on SQLite b waits for the
	// single writer. Either way no reader may see b before a.
	appendB := appendAside(t, h, s, b)
	if got := readNow(t, s, store.Filter{}); len(got) != 0 {
		t.Fatalf("reader saw %d events while an older transaction was open; want 0", len(got))
	}
	if appendB.committed {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.HeldBack < 1 {
			t.Errorf("Stats.HeldBack = %d while b is committed but hidden; want >= 1", st.HeldBack)
		}
		// b is the only event held back: when it was recorded.
		if st.OldestHeldBack.IsZero() || st.OldestHeldBack.Before(began) || st.OldestHeldBack.After(time.Now()) {
			t.Errorf("Stats.OldestHeldBack = %v while b is held back; want between %v and now", st.OldestHeldBack, began)
		}
		if st.OldestTxAge <= 0 {
			t.Errorf("Stats.OldestTxAge = %v with a transaction open; want > 0", st.OldestTxAge)
		}
	}
	if err := h.Commit(ctx, txA); err != nil {
		t.Fatal(err)
	}
	appendB.end(t)
	got := readAll(t, s, store.Filter{})
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("after commit read %v, want a then b", ids(got))
	}
}

// testStreamOrderAcrossLateLock: transaction B gets its place in commit
// order early (it writes first), then appends to a stream only after A has
// appended to that stream and committed. Readers must still see the stream in
// version order: A's event, then B's.
func testStreamOrderAcrossLateLock[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	txB, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendTx(ctx, txB, []event.Draft{draft("test.early", "", `{}`)}); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL: A commits while B is open; SQLite: A waits for B.
	appendA := appendAside(t, h, s, draft("test.late", "shared", `{"by":"a"}`))
	if _, err := s.AppendTx(ctx, txB, []event.Draft{draft("test.late", "shared", `{"by":"b"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := h.Commit(ctx, txB); err != nil {
		t.Fatal(err)
	}
	appendA.end(t)
	var versions []int64
	for _, e := range readAll(t, s, store.Filter{Subject: "shared"}) {
		versions = append(versions, e.StreamVersion)
	}
	if fmt.Sprint(versions) != "[1 2]" {
		t.Fatalf("stream read in commit order has versions %v, want [1 2]", versions)
	}
}

// testTailUnderConcurrency is the G4 property: a reader that tails the store
// while 16 writers commit with random delays, some holding their
// transaction open a while and some rolling back, sees every committed event
// exactly once, nothing rolled back, each stream in version order, and a
// transaction that committed before another began ahead of it.
//
// The schedule is random; the seed is logged, and EVENTBUS_TEST_SEED replays
// it.
func testTailUnderConcurrency[TTx any](t *testing.T, h Harness[TTx]) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("EVENTBUS_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d (EVENTBUS_TEST_SEED=%d replays this schedule)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: rerun with EVENTBUS_TEST_SEED=%d", seed, seed)
		}
	})
	s := h.open(t)
	ctx := ctxFor(t)

	type txRecord struct {
		began, committed time.Time
		ids              []uuid.UUID
	}
	const writers, txPerWriter = 16, 12
	var (
		mu         sync.Mutex
		committed  []txRecord
		rolledBack = map[uuid.UUID]bool{}
	)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		rng := rand.New(rand.NewSource(seed + int64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < txPerWriter; i++ {
				rec := txRecord{began: time.Now()}
				tx, err := h.Begin(ctx, s)
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
				n := 1 + rng.Intn(3)
				drafts := make([]event.Draft, n)
				for j := range drafts {
					drafts[j] = draft("test.tail", "stream-"+strconv.Itoa(rng.Intn(8)), `{}`)
					rec.ids = append(rec.ids, drafts[j].ID)
				}
				if _, err := s.AppendTx(ctx, tx, drafts); err != nil {
					_ = h.Rollback(ctx, tx)
					errs <- fmt.Errorf("append: %w", err)
					return
				}
				switch p := rng.Intn(100); {
				case p < 10: // hold the transaction open for a while
					time.Sleep(time.Duration(30+rng.Intn(150)) * time.Millisecond)
				case p < 20:
					time.Sleep(time.Duration(rng.Intn(5)) * time.Millisecond)
				}
				if rng.Intn(100) < 10 {
					if err := h.Rollback(ctx, tx); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, id := range rec.ids {
						rolledBack[id] = true
					}
					mu.Unlock()
					continue
				}
				if err := h.Commit(ctx, tx); err != nil {
					errs <- fmt.Errorf("commit: %w", err)
					return
				}
				rec.committed = time.Now()
				mu.Lock()
				committed = append(committed, rec)
				mu.Unlock()
			}
		}()
	}

	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	var seen []event.Envelope
	cursor := store.Cursor{}
	rng := rand.New(rand.NewSource(seed))
	// settled is set once the writers are done and nothing is held back:
	// every committed event is visible from then on, so the next empty page
	// is the end. The order matters: Stats first, then a read. A read that
	// came back empty before Stats said "nothing held back" proves nothing,
	// since another package's transaction may have ended in between and
	// released the events that read could not see.
	for finished, settled := false, false; ; {
		select {
		case <-writersDone:
			finished = true
		default:
		}
		page, err := s.Read(ctx, store.Filter{After: cursor, Limit: 1 + rng.Intn(20)})
		if err != nil {
			t.Fatalf("tail: %v", err)
		}
		seen = append(seen, page.Events...)
		cursor = page.Next
		if len(page.Events) > 0 {
			continue
		}
		if settled {
			break
		}
		if finished {
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			if st.HeldBack == 0 {
				settled = true
				continue
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}

	index := map[uuid.UUID]int{}
	lastVersion := map[string]int64{}
	for i, e := range seen {
		if _, dup := index[e.ID]; dup {
			t.Fatalf("event %s seen twice", e.ID)
		}
		index[e.ID] = i
		if rolledBack[e.ID] {
			t.Fatalf("rolled-back event %s was read", e.ID)
		}
		if e.StreamVersion <= lastVersion[e.Subject] {
			t.Fatalf("stream %s read out of order: version %d after %d", e.Subject, e.StreamVersion, lastVersion[e.Subject])
		}
		lastVersion[e.Subject] = e.StreamVersion
	}
	total := 0
	for _, rec := range committed {
		for _, id := range rec.ids {
			total++
			if _, ok := index[id]; !ok {
				t.Fatalf("committed event %s was never read: skipped", id)
			}
		}
	}
	if total != len(seen) {
		t.Fatalf("read %d events, %d committed", len(seen), total)
	}
	sort.Slice(committed, func(i, j int) bool { return committed[i].committed.Before(committed[j].committed) })
	for i, x := range committed {
		lastX := 0
		for _, id := range x.ids {
			lastX = max(lastX, index[id])
		}
		for _, y := range committed[i+1:] {
			if !x.committed.Before(y.began) {
				continue
			}
			for _, id := range y.ids {
				if index[id] < lastX {
					t.Fatalf("a transaction that began after another committed was read before it")
				}
			}
		}
	}
	t.Logf("%d transactions committed, %d rolled back, %d events read in commit order", len(committed), len(rolledBack), len(seen))
}

func testFilters[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	base := time.Now().Add(-time.Hour).Truncate(event.TimePrecision)
	corr := uuid.Must(uuid.NewV7())
	var drafts []event.Draft
	for i := 0; i < 12; i++ {
		typ := []string{"quiz.submitted", "lesson.published", "badge.awarded"}[i%3]
		d := draft(typ, "subject-"+strconv.Itoa(i%2), `{"i":`+strconv.Itoa(i)+`}`)
		d.OccurredAt = base.Add(time.Duration(i) * time.Minute)
		if i < 4 {
			d.CorrelationID = corr
		}
		drafts = append(drafts, d)
	}
	all := appendOK(t, s, drafts...)
	pick := func(keep func(i int) bool) []uuid.UUID {
		var out []uuid.UUID
		for i, e := range all {
			if keep(i) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	cases := []struct {
		name string
		f    store.Filter
		want []uuid.UUID
	}{
		{"type", store.Filter{Types: []string{"quiz.submitted"}}, pick(func(i int) bool { return i%3 == 0 })},
		{"types", store.Filter{Types: []string{"quiz.submitted", "badge.awarded"}}, pick(func(i int) bool { return i%3 != 1 })},
		{"correlation", store.Filter{CorrelationID: corr}, pick(func(i int) bool { return i < 4 })},
		{"subject", store.Filter{Subject: "subject-1"}, pick(func(i int) bool { return i%2 == 1 })},
		{"since", store.Filter{Since: base.Add(10 * time.Minute)}, pick(func(i int) bool { return i >= 10 })},
		{"until", store.Filter{Until: base.Add(2 * time.Minute)}, pick(func(i int) bool { return i < 2 })},
		{"range", store.Filter{Since: base.Add(3 * time.Minute), Until: base.Add(6 * time.Minute)}, pick(func(i int) bool { return i >= 3 && i < 6 })},
		{"combined", store.Filter{Types: []string{"quiz.submitted"}, Subject: "subject-0", Since: base.Add(time.Minute)}, pick(func(i int) bool { return i%3 == 0 && i%2 == 0 && i >= 1 })},
		{"position range", store.Filter{FromPosition: all[2].Position, ToPosition: all[5].Position}, pick(func(i int) bool { return i >= 2 && i <= 5 })},
		{"from position", store.Filter{FromPosition: all[10].Position}, pick(func(i int) bool { return i >= 10 })},
		{"no match", store.Filter{Types: []string{"nothing.here"}}, nil},
		{"sql in filter", store.Filter{Subject: "x' OR '1'='1", Types: []string{"a'; DROP TABLE event_store; --"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.f.Limit = 2 // page through, to check the filters hold across pages
			got := ids(readAll(t, s, c.f))
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v\nwant %v", got, c.want)
			}
			n, err := s.Count(ctxFor(t), c.f)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(c.want)) {
				t.Fatalf("Count = %d, want %d", n, len(c.want))
			}
			c.f.After = store.CursorOf(all[5])
			if n, err = s.Count(ctxFor(t), c.f); err != nil || n != int64(len(readAll(t, s, c.f))) {
				t.Fatalf("Count after a cursor = %d, %v; want what Read returns", n, err)
			}
		})
	}
}

func testPaging[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	var drafts []event.Draft
	for i := 0; i < 10; i++ {
		drafts = append(drafts, draft("test.page", "", `{}`))
	}
	all := appendOK(t, s, drafts...)
	settle(t, s)
	var got []uuid.UUID
	cursor := ""
	for pages := 0; ; pages++ {
		after, err := store.ParseCursor(cursor)
		if err != nil {
			t.Fatalf("ParseCursor(%q): %v", cursor, err)
		}
		page, err := s.Read(ctxFor(t), store.Filter{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) > 3 {
			t.Fatalf("page of %d events with limit 3", len(page.Events))
		}
		if len(page.Events) == 0 {
			if page.Next != after {
				t.Fatalf("an empty page moved the cursor")
			}
			break
		}
		got = append(got, ids(page.Events)...)
		cursor = page.Next.String()
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids(all)) {
		t.Fatalf("paged %v, want %v", got, ids(all))
	}
	// A cursor just before an event, made by lowering its position, reads
	// from that event on (tail --from uses one).
	before := store.CursorOf(all[4])
	before.Position--
	page, err := s.Read(ctxFor(t), store.Filter{After: before, Limit: 2})
	if err != nil {
		t.Fatalf("Read just before an event: %v", err)
	}
	if len(page.Events) != 2 || page.Events[0].ID != all[4].ID || page.Events[1].ID != all[5].ID {
		t.Fatalf("Read just before event 4 returned %v, want events 4 and 5", ids(page.Events))
	}
	if _, err := store.ParseCursor("not-a-cursor"); !errors.Is(err, store.ErrBadCursor) {
		t.Fatalf("ParseCursor(garbage) = %v, want ErrBadCursor", err)
	}
}

func testReadStream[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	for i := 0; i < 5; i++ {
		appendOK(t, s, draft("test.stream", "mine", `{}`), draft("test.stream", "theirs", `{}`))
	}
	evs, err := s.ReadStream(ctxFor(t), "mine", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("ReadStream returned %d events, want 3", len(evs))
	}
	for i, e := range evs {
		if e.Subject != "mine" || e.StreamVersion != int64(i+2) {
			t.Fatalf("event %d: %s v%d, want mine v%d", i, e.Subject, e.StreamVersion, i+2)
		}
	}
	if evs, err := s.ReadStream(ctxFor(t), "none", 1, 10); err != nil || len(evs) != 0 {
		t.Fatalf("ReadStream(missing) = %d, %v; want none", len(evs), err)
	}
}

func testGetNotFound[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	_, err := s.Get(ctxFor(t), uuid.Must(uuid.NewV7()))
	wantErr(t, err, store.ErrNotFound)
}

func testStatsAndBacklog[TTx any](t *testing.T, h Harness[TTx]) {
	s := h.open(t)
	ctx := ctxFor(t)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 0 || !st.Head.IsZero() {
		t.Fatalf("empty store: Stats = %+v", st)
	}
	var drafts []event.Draft
	for i := 0; i < 5; i++ {
		drafts = append(drafts, draft("test.stats", "", `{}`))
	}
	all := appendOK(t, s, drafts...)
	// The figures of a moment when nothing was held back: any Stats call
	// later may find a transaction of another test holding events back.
	st = settle(t, s)
	if st.Events != 5 || st.Head != store.CursorOf(all[4]) || st.HeldBack != 0 || !st.OldestHeldBack.IsZero() {
		t.Fatalf("Stats = %+v; want 5 events, head at the last one, none held back", st)
	}
	for _, c := range []struct {
		after store.Cursor
		limit int
		want  int64
	}{{store.Cursor{}, 100, 5}, {store.CursorOf(all[1]), 100, 3}, {store.Cursor{}, 2, 2}, {store.CursorOf(all[4]), 100, 0}} {
		n, err := s.Backlog(ctx, c.after, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("Backlog(%v, %d) = %d, want %d", c.after, c.limit, n, c.want)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testLargePositions[TTx any](t *testing.T, h Harness[TTx]) {
	if h.SetNextPosition == nil {
		t.Skip("the harness cannot set positions")
	}
	s := h.open(t)
	const next = int64(1)<<31 + 12345
	h.SetNextPosition(t, s, next)
	got := appendOK(t, s, draft("test.big", "", `{}`), draft("test.big", "", `{}`))
	if got[0].Position != next || got[1].Position != next+1 {
		t.Fatalf("positions %d, %d; want %d, %d", got[0].Position, got[1].Position, next, next+1)
	}
	read := readAll(t, s, store.Filter{})
	if len(read) != 2 || read[1].Position != next+1 {
		t.Fatalf("read back %v", ids(read))
	}
	n, err := s.Backlog(ctxFor(t), store.CursorOf(read[0]), 10)
	if err != nil || n != 1 {
		t.Fatalf("Backlog after a large position = %d, %v; want 1", n, err)
	}
}

func ids(evs []event.Envelope) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
