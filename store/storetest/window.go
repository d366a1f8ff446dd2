package storetest

import (
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// testWindows checks time windows and position ranges, alone and with the
// other filters, against the same selection made by hand from a read of
// every event: a store may bound such reads (to stop at a window's end
// instead of the table's) but never lose an event at a window's edges. The
// events occur over three days, so that windows hold whole days as well as
// parts of days, with two of them on either side of a midnight; a few lie
// far from their neighbours (an old event appended last, a future one
// first); where the store lets a transaction write while others commit,
// some commit out of position order; and positions cross a block boundary
// when the harness can set them.
//
// The windows are random; the seed is logged, and EVENTBUS_TEST_SEED
// replays it.
func testWindows[TTx any](t *testing.T, h Harness[TTx]) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("EVENTBUS_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))

	s := h.open(t)
	ctx := ctxFor(t)
	if h.SetNextPosition != nil {
		h.SetNextPosition(t, s, 4096*3-7) // the events cross a block of 4096 positions
	}
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	types := []string{"quiz.submitted", "lesson.published", "badge.awarded"}
	corr := uuid.Must(uuid.NewV7())
	n := 0
	next := func(at time.Time) event.Draft {
		d := draft(types[n%3], "stream-"+strconv.Itoa(n%4), `{"n":`+strconv.Itoa(n)+`}`)
		d.OccurredAt = at
		if n%5 == 0 {
			d.CorrelationID = corr
		}
		n++
		return d
	}
	// A future event first, then 40 events 97 minutes apart.
	appendOK(t, s, next(base.Add(30*24*time.Hour)))
	for i := 0; i < 20; i++ {
		appendOK(t, s, next(base.Add(time.Duration(i)*97*time.Minute)))
	}
	// A transaction that writes early and late: on a store where others
	// commit meanwhile, its late event commits before events of lower
	// positions.
	tx, err := h.Begin(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	early := next(base.Add(20 * 97 * time.Minute))
	if _, err := s.AppendTx(ctx, tx, []event.Draft{early}); err != nil {
		t.Fatal(err)
	}
	var others []event.Draft
	for i := 21; i < 40; i++ {
		d := next(base.Add(time.Duration(i) * 97 * time.Minute))
		if d.Subject == early.Subject {
			d.Subject = "" // tx holds its stream until it commits
		}
		others = append(others, d)
	}
	late := next(base.Add(3 * time.Hour))
	// PostgreSQL: the others commit while tx is open; SQLite: they wait
	// for tx.
	rest := appendAside(t, h, s, others...)
	if _, err := s.AppendTx(ctx, tx, []event.Draft{late}); err != nil {
		t.Fatal(err)
	}
	if err := h.Commit(ctx, tx); err != nil {
		t.Fatal(err)
	}
	rest.end(t)
	// An old event last, then two on either side of a midnight.
	appendOK(t, s, next(base.Add(-40*24*time.Hour)))
	midnight := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	appendOK(t, s, next(midnight.Add(-event.TimePrecision)))
	appendOK(t, s, next(midnight))

	all := readAll(t, s, store.Filter{Limit: store.MaxLimit})
	if len(all) != n {
		t.Fatalf("read %d events, appended %d", len(all), n)
	}
	minPos, maxPos := all[0].Position, all[0].Position
	for _, e := range all {
		minPos, maxPos = min(minPos, e.Position), max(maxPos, e.Position)
	}
	randTime := func() time.Time {
		switch rng.Intn(6) {
		case 0: // on an event's time, to test the edges
			return all[rng.Intn(len(all))].OccurredAt
		case 1:
			return base.Add(time.Duration(rng.Intn(40*24*60)-20*24*60) * time.Minute)
		default:
			return base.Add(time.Duration(rng.Int63n(int64(72 * time.Hour))))
		}
	}
	randPos := func() int64 { return minPos - 2 + rng.Int63n(maxPos-minPos+5) }

	// 200 random windows catch an off-by-one in a probe or a binary search
	// on every run. Under the race detector, which looks for other bugs
	// and makes these reads ten times slower on SQLite, 50 keep CI's run
	// short; the logged seed replays a failure with all 200.
	windows := 200
	if raceEnabled {
		windows = 50
	}
	for i := 0; i < windows; i++ {
		var f store.Filter
		if rng.Intn(4) > 0 {
			f.Since = randTime()
		}
		if rng.Intn(4) > 0 {
			f.Until = randTime()
		}
		if rng.Intn(3) == 0 {
			f.FromPosition = randPos()
		}
		if rng.Intn(3) == 0 {
			f.ToPosition = randPos()
		}
		switch rng.Intn(8) {
		case 0:
			f.Types = []string{types[rng.Intn(3)]}
		case 1:
			f.Types = []string{types[0], types[2]}
		case 2:
			f.Subject = "stream-" + strconv.Itoa(rng.Intn(4))
		case 3:
			f.CorrelationID = corr
		}
		var want []uuid.UUID
		for _, e := range all {
			if matches(f, e) {
				want = append(want, e.ID)
			}
		}
		f.Limit = 1 + rng.Intn(4)
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			got := ids(readNow(t, s, f))
			if !slices.Equal(got, want) {
				t.Fatalf("filter %+v:\ngot  %v\nwant %v", f, got, want)
			}
			c, err := s.Count(ctx, f)
			if err != nil || c != int64(len(want)) {
				t.Fatalf("filter %+v: Count = %d, %v; want %d", f, c, err, len(want))
			}
			// From a cursor in the middle, on the same terms.
			if len(all) > 0 {
				mid := all[rng.Intn(len(all))]
				f.After = store.CursorOf(mid)
				var rest []uuid.UUID
				past := false
				for _, e := range all {
					if past && matches(f, e) {
						rest = append(rest, e.ID)
					}
					past = past || e.ID == mid.ID
				}
				if got := ids(readNow(t, s, f)); !slices.Equal(got, rest) {
					t.Fatalf("filter %+v after event %d:\ngot  %v\nwant %v", f, mid.Position, got, rest)
				}
			}
		})
	}
}

// matches reports whether e passes f's filters other than its cursor.
func matches(f store.Filter, e event.Envelope) bool {
	switch {
	case len(f.Types) > 0 && !slices.Contains(f.Types, e.Type),
		f.CorrelationID != uuid.Nil && e.CorrelationID != f.CorrelationID,
		f.Subject != "" && e.Subject != f.Subject,
		!f.Since.IsZero() && e.OccurredAt.Before(f.Since),
		!f.Until.IsZero() && !e.OccurredAt.Before(f.Until),
		f.FromPosition > 0 && e.Position < f.FromPosition,
		f.ToPosition > 0 && e.Position > f.ToPosition:
		return false
	}
	return true
}
