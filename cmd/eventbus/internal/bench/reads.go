package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/sqlite"
)

// Reads is the store-size scenario: it loads a store with N realistic
// events, measures a set of reads, grows the store and measures them again,
// and reports how each read's time grew with the store. It needs no broker
// and runs only when asked for, alone (`eventbus bench --scenario reads`):
// loading millions of events takes minutes and gigabytes.
const Reads = "reads"

// Default sizes of the reads scenario.
var DefaultReadSizes = []int64{1_000_000, 5_000_000}

// ReadsOptions sizes a run of the reads scenario.
type ReadsOptions struct {
	// Sizes are the store sizes, in events, at which the reads are
	// measured, growing; DefaultReadSizes if empty.
	Sizes []int64
	// Reps is how many times each read runs at each size (each time on
	// another window near the middle of the history); 40 if zero.
	Reps int
	// Plans, if set, receives EXPLAIN (ANALYZE, BUFFERS) of every read at
	// the largest size (PostgreSQL only), as Markdown.
	Plans io.Writer
	// Partitioned also measures the reads, at the largest size, against a
	// copy of the store partitioned by month (PostgreSQL only): the
	// experiment of docs/sizing.md.
	Partitioned bool
	// Progress, if set, receives a line as each step starts and ends.
	Progress io.Writer
}

// ReadsReport is the outcome of the reads scenario.
type ReadsReport struct {
	Started  time.Time    `json:"started"`
	Store    string       `json:"store"`
	Machine  Machine      `json:"machine"`
	Sizes    []int64      `json:"sizes"`
	Reps     int          `json:"reps"`
	LoadSecs []float64    `json:"load_seconds"` // to reach each size, indexes and VACUUM ANALYZE included
	Reads    []ReadFigure `json:"reads"`
	// Scans are the full reads of one window (a day, and the same number
	// of positions), page after page as a replay reads them.
	Scans []ScanFigure `json:"scans"`
	// Appends are store appends at each size, for comparison.
	Appends []AppendFigure `json:"appends"`
	// Space is the bytes per event of the table and each index, at each
	// size (PostgreSQL).
	Space []SpaceFigure `json:"space,omitempty"`
	// Partitioned holds the same reads against the partitioned copy, at
	// the largest size, when asked for.
	Partitioned      []ReadFigure `json:"partitioned,omitempty"`
	PartitionedScans []ScanFigure `json:"partitioned_scans,omitempty"`
	// Load is the load average at the start and the end of each
	// measurement, per size.
	Load []string `json:"load"`
}

// ReadFigure is one read of the set, at each size.
type ReadFigure struct {
	Name string `json:"name"`
	What string `json:"what"`
	// P50 and P99 are in milliseconds, one per size.
	P50 []float64 `json:"p50_ms"`
	P99 []float64 `json:"p99_ms"`
	// Rows is how many events the read returned (its median), per size.
	Rows []int `json:"rows"`
	// Growth is P50 at the largest size over P50 at the smallest.
	Growth float64 `json:"growth"`
	// Buffers is the median of the buffers (pages) the read's plan
	// touched, per size (PostgreSQL): its work, whatever the load.
	Buffers []int64 `json:"buffers,omitempty"`
}

// AppendFigure is appends of one event per transaction, after the reads,
// at each size: Callers at once, Events in all.
type AppendFigure struct {
	Callers int       `json:"callers"`
	Events  int       `json:"events"`
	P50     []float64 `json:"p50_ms"`
	P99     []float64 `json:"p99_ms"`
	Rate    []float64 `json:"events_per_second"`
}

// ScanFigure is a full read of one window, page by page, at each size.
type ScanFigure struct {
	Name   string    `json:"name"`
	Events []int     `json:"events"`
	Rate   []float64 `json:"events_per_second"`
	// First and End are the times of the first page and of the read
	// that finds the end (the empty page after the last), in ms.
	First []float64 `json:"first_page_ms"`
	End   []float64 `json:"end_ms"`
}

// SpaceFigure is the size of one relation per event, at each size.
type SpaceFigure struct {
	Relation string    `json:"relation"`
	Bytes    []float64 `json:"bytes_per_event"`
}

// The timeline of the loaded events: at every size they span 90 days from
// readsEpoch, in order.
var readsEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const readsSpan = 90 * 24 * time.Hour

// readsLoader loads events into a store; each store has its own.
type readsLoader interface {
	// load adds events first..last (positions), as described in
	// loadPostgres.
	load(ctx context.Context, first, last int64, step time.Duration) error
	// space returns the bytes of the table and of each index.
	space(ctx context.Context) (map[string]int64, error)
	explain(ctx context.Context, sql string, args ...any) (string, error)
}

// RunReads runs the reads scenario on the store cfg names, in a schema (or
// a temporary directory) of its own that it removes at the end.
func RunReads(ctx context.Context, cfg config.Config, opts ReadsOptions) (rep ReadsReport, err error) {
	if len(opts.Sizes) == 0 {
		opts.Sizes = DefaultReadSizes
	}
	if opts.Reps == 0 {
		opts.Reps = 40
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	for i, n := range opts.Sizes {
		if n < 10_000 || (i > 0 && n <= opts.Sizes[i-1]) {
			return rep, errors.New("bench: reads: sizes must grow, from at least 10000 events")
		}
	}
	rep = ReadsReport{Started: time.Now().UTC(), Sizes: opts.Sizes, Reps: opts.Reps, Machine: describeMachine()}
	env, err := isolate(ctx, cfg)
	if err != nil {
		return rep, err
	}
	defer func() {
		if cerr := env.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep.Store = env.storeKind()
	rep.Machine.StoreVersion = env.storeVersion(ctx)

	var st store.Store
	var loader readsLoader
	closeStore := func() {}
	defer func() { closeStore() }()
	// open opens a new, empty store in the run's schema or directory.
	open := func() error {
		closeStore()
		if env.cfg.Embedded() {
			path := filepath.Join(env.cfg.DataDir, "eventbus.db")
			for _, f := range sqlite.Files(path) {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			s, err := sqlite.Open(ctx, path, sqlite.Config{})
			if err != nil {
				return fmt.Errorf("bench: reads: open the store: %w", err)
			}
			closeStore = func() { _ = s.Close() }
			st, loader = s, &sqliteLoader{s: s}
			return s.Migrate(ctx)
		}
		conn, err := connect(ctx, env.user.DatabaseURL)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "DROP SCHEMA "+env.schema+" CASCADE; CREATE SCHEMA "+env.schema)
		_ = conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("bench: reads: empty the schema: %w", err)
		}
		s, err := postgres.Open(ctx, env.cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("bench: reads: open the store: %w", err)
		}
		closeStore = func() { _ = s.Close() }
		st, loader = s, &postgresLoader{s: s}
		return s.Migrate(ctx)
	}

	results := make([][]measured, len(opts.Sizes))
	scans := make([][]ScanFigure, len(opts.Sizes))
	spaces := map[string][]float64{}
	var bufs []map[string]int64
	var relations []string
	for si, n := range opts.Sizes {
		// Each size is a store of its own, whose events span the same 90
		// days: a bigger store is a busier one.
		if err := open(); err != nil {
			return rep, err
		}
		step := readsSpan / time.Duration(n)
		progress(opts.Progress, "bench: reads: loading %d events", n)
		began := time.Now()
		if err := loader.load(ctx, 1, n, step); err != nil {
			return rep, fmt.Errorf("bench: reads: load: %w", err)
		}
		// Readers see the events once every transaction older than the
		// load's has ended, in any database of the server (G4).
		if err := waitFor(ctx, 5*time.Minute, func() bool {
			st, err := st.Stats(ctx)
			return err == nil && st.Head.Position == n
		}); err != nil {
			return rep, fmt.Errorf("bench: reads: the loaded events did not become visible (a long transaction holds readers back): %w", err)
		}
		rep.LoadSecs = append(rep.LoadSecs, time.Since(began).Seconds())
		progress(opts.Progress, "bench: reads: loaded %d events in %.0fs", n, time.Since(began).Seconds())
		if sp, err := loader.space(ctx); err == nil {
			for rel, b := range sp {
				if _, ok := spaces[rel]; !ok {
					relations = append(relations, rel)
					spaces[rel] = make([]float64, len(opts.Sizes))
				}
				spaces[rel][si] = float64(b) / float64(n)
			}
		}
		load := loadAverage()
		set, err := newReadSet(ctx, st, n, step)
		if err != nil {
			return rep, err
		}
		results[si], err = set.measure(ctx, opts.Reps)
		if err != nil {
			return rep, err
		}
		scans[si], err = set.scans(ctx)
		if err != nil {
			return rep, err
		}
		for i, callers := range []int{1, 16} {
			if si == 0 {
				rep.Appends = append(rep.Appends, AppendFigure{Callers: callers, Events: 20 * 16})
			}
			a := &rep.Appends[i]
			p50, p99, rate, err := set.appends(ctx, callers, a.Events)
			if err != nil {
				return rep, err
			}
			a.P50, a.P99, a.Rate = append(a.P50, p50), append(a.P99, p99), append(a.Rate, rate)
		}
		if pl, ok := loader.(*postgresLoader); ok {
			b, err := set.buffers(ctx, pl)
			if err != nil {
				return rep, err
			}
			bufs = append(bufs, b)
		}
		rep.Load = append(rep.Load, load+" → "+loadAverage())
		progress(opts.Progress, "bench: reads: measured at %d events (load %s)", n, rep.Load[si])
		if si == len(opts.Sizes)-1 && opts.Plans != nil {
			if err := set.explain(ctx, loader, n, opts.Plans); err != nil {
				return rep, err
			}
		}
	}
	rep.Reads = figures(results)
	for i := range rep.Reads {
		for _, b := range bufs {
			if n, ok := b[rep.Reads[i].Name]; ok {
				rep.Reads[i].Buffers = append(rep.Reads[i].Buffers, n)
			}
		}
	}
	rep.Scans = mergeScans(scans)
	slices.Sort(relations)
	for _, rel := range relations {
		rep.Space = append(rep.Space, SpaceFigure{Relation: rel, Bytes: spaces[rel]})
	}
	if opts.Partitioned {
		pl, ok := loader.(*postgresLoader)
		if !ok {
			return rep, errors.New("bench: reads: --partitioned needs PostgreSQL")
		}
		progress(opts.Progress, "bench: reads: copying the store into a table partitioned by month")
		ps, err := pl.partitionedCopy(ctx, env)
		if err != nil {
			return rep, err
		}
		defer ps.Close()
		n := opts.Sizes[len(opts.Sizes)-1]
		set, err := newReadSet(ctx, ps, n, readsSpan/time.Duration(n))
		if err != nil {
			return rep, err
		}
		m, err := set.measure(ctx, opts.Reps)
		if err != nil {
			return rep, err
		}
		sc, err := set.scans(ctx)
		if err != nil {
			return rep, err
		}
		rep.Partitioned = figures([][]measured{m})
		rep.PartitionedScans = mergeScans([][]ScanFigure{sc})
	}
	return rep, nil
}

// measured is one read's timings at one size.
type measured struct {
	name, what string
	times      []time.Duration
	rows       []int
}

func figures(results [][]measured) []ReadFigure {
	var out []ReadFigure
	for i := range results[0] {
		f := ReadFigure{Name: results[0][i].name, What: results[0][i].what}
		for _, sized := range results {
			m := sized[i]
			times := slices.Clone(m.times)
			slices.Sort(times)
			f.P50 = append(f.P50, msOf(times[len(times)/2]))
			f.P99 = append(f.P99, msOf(times[min(len(times)-1, len(times)*99/100)]))
			rows := slices.Clone(m.rows)
			slices.Sort(rows)
			f.Rows = append(f.Rows, rows[len(rows)/2])
		}
		if f.P50[0] > 0 {
			f.Growth = f.P50[len(f.P50)-1] / f.P50[0]
		}
		out = append(out, f)
	}
	return out
}

func mergeScans(scans [][]ScanFigure) []ScanFigure {
	out := slices.Clone(scans[0])
	for i := range out {
		out[i] = ScanFigure{Name: out[i].Name}
		for _, sized := range scans {
			s := sized[i]
			out[i].Events = append(out[i].Events, s.Events...)
			out[i].Rate = append(out[i].Rate, s.Rate...)
			out[i].First = append(out[i].First, s.First...)
			out[i].End = append(out[i].End, s.End...)
		}
	}
	return out
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// readSet is the set of reads measured at one size.
type readSet struct {
	st   store.Store
	n    int64
	step time.Duration
	// The longest stream, and the middle of the history.
	longStream string
	longLen    int64
	mid        int64
	// reps is how many repetitions measure runs: they spread over the
	// middle third of the history.
	reps int
}

func newReadSet(ctx context.Context, st store.Store, n int64, step time.Duration) (*readSet, error) {
	s := &readSet{st: st, n: n, step: step, mid: n / 2}
	// learner-0 is the longest stream by construction (see the loaders).
	s.longStream = "learner-0"
	evs, err := st.Count(ctx, store.Filter{Subject: s.longStream})
	if err != nil {
		return nil, fmt.Errorf("bench: reads: %w", err)
	}
	s.longLen = evs
	return s, nil
}

// at returns when the event at position p occurred.
func (s *readSet) at(p int64) time.Time { return readsEpoch.Add(time.Duration(p-1) * s.step) }

// cursorAt returns the cursor of the event at position p.
func (s *readSet) cursorAt(ctx context.Context, p int64) (store.Cursor, event.Envelope, error) {
	page, err := s.st.Read(ctx, store.Filter{FromPosition: p, ToPosition: p, Limit: 1})
	if err != nil {
		return store.Cursor{}, event.Envelope{}, fmt.Errorf("bench: reads: find event %d: %w", p, err)
	}
	if len(page.Events) != 1 {
		return store.Cursor{}, event.Envelope{}, fmt.Errorf("bench: reads: event %d not found", p)
	}
	return store.CursorOf(page.Events[0]), page.Events[0], nil
}

// readCase is one read of the set: run performs it for repetition k and
// returns how many events it read; filter, when set, is the filter of a
// store.Reader.Read (or Count) for EXPLAIN.
type readCase struct {
	name, what string
	run        func(ctx context.Context, k int) (int, error)
	filter     func(ctx context.Context, k int) (store.Filter, bool, error)
	sql        func(ctx context.Context, k int) (string, []any, error)
	// prepare, when set, finds what the read needs before the clock
	// starts, and returns the read.
	prepare func(ctx context.Context, k int) (func(context.Context) (int, error), error)
}

func (s *readSet) cases() []readCase {
	day := 24 * time.Hour
	// The k-th repetition's point in the middle third of the history.
	spread := int64(max(s.reps, 40)) + 1
	point := func(k int) int64 { return s.n/3 + int64(k)*(s.n/3)/spread + 1 }
	window := func(k int, d time.Duration) store.Filter {
		since := s.at(point(k)).Truncate(time.Minute)
		return store.Filter{Since: since, Until: since.Add(d), Limit: 100}
	}
	afterMid := func(ctx context.Context, k int, f store.Filter) (store.Filter, error) {
		c, _, err := s.cursorAt(ctx, point(k))
		f.After = c
		return f, err
	}
	read := func(filter func(ctx context.Context, k int) (store.Filter, bool, error)) func(ctx context.Context, k int) (int, error) {
		return func(ctx context.Context, k int) (int, error) {
			f, count, err := filter(ctx, k)
			if err != nil {
				return 0, err
			}
			if count {
				n, err := s.st.Count(ctx, f)
				return int(n), err
			}
			page, err := s.st.Read(ctx, f)
			return len(page.Events), err
		}
	}
	plain := func(f func(k int) store.Filter) func(ctx context.Context, k int) (store.Filter, bool, error) {
		return func(_ context.Context, k int) (store.Filter, bool, error) { return f(k), false, nil }
	}
	var cases []readCase
	add := func(name, what string, filter func(ctx context.Context, k int) (store.Filter, bool, error)) {
		cases = append(cases, readCase{name: name, what: what, run: read(filter), filter: filter})
	}
	add("page", "a page of 100 after a cursor in the middle (GET /v1/events?after=)", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f, err := afterMid(ctx, k, store.Filter{Limit: 100})
		return f, false, err
	})
	add("day", "since/until one day in the middle, first page of 100", plain(func(k int) store.Filter { return window(k, day) }))
	add("hour", "since/until one hour in the middle, first page of 100", plain(func(k int) store.Filter { return window(k, time.Hour) }))
	add("day+type", "one day and type=lesson.published (10% of events), first page", plain(func(k int) store.Filter {
		f := window(k, day)
		f.Types = []string{"lesson.published"}
		return f
	}))
	add("day+2types", "one day and two types, first page", plain(func(k int) store.Filter {
		f := window(k, day)
		f.Types = []string{"lesson.published", "badge.awarded"}
		return f
	}))
	add("day-next", "one day, the page after a cursor in the window", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f, err := afterMid(ctx, k, window(k, day))
		f.Since = f.Since.Add(-time.Hour)
		return f, false, err
	})
	add("since", "since the middle (no until), first page", plain(func(k int) store.Filter {
		f := window(k, day)
		f.Until = time.Time{}
		return f
	}))
	add("until", "until the middle (no since), after a cursor an hour before it", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f, err := afterMid(ctx, k, store.Filter{Until: s.at(point(k)).Add(time.Hour), Limit: 100})
		return f, false, err
	})
	add("type", "type=lesson.published after a cursor in the middle", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f, err := afterMid(ctx, k, store.Filter{Types: []string{"lesson.published"}, Limit: 100})
		return f, false, err
	})
	add("2types", "two types after a cursor in the middle", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f, err := afterMid(ctx, k, store.Filter{Types: []string{"lesson.published", "badge.awarded"}, Limit: 100})
		return f, false, err
	})
	add("correlation", "correlation_id of an event in the middle (3 events)", func(ctx context.Context, k int) (store.Filter, bool, error) {
		_, e, err := s.cursorAt(ctx, point(k))
		return store.Filter{CorrelationID: e.CorrelationID, Limit: 100}, false, err
	})
	add("subject", "?subject= the longest stream, first page of 100", plain(func(int) store.Filter {
		return store.Filter{Subject: s.longStream, Limit: 100}
	}))
	add("subject-next", "?subject= the longest stream, the page after its middle event", func(ctx context.Context, k int) (store.Filter, bool, error) {
		evs, err := s.st.ReadStream(ctx, s.longStream, max(1, s.longLen/2+int64(k)), 1)
		if err != nil || len(evs) == 0 {
			return store.Filter{}, false, fmt.Errorf("bench: reads: the long stream's middle: %v", err)
		}
		return store.Filter{Subject: s.longStream, After: store.CursorOf(evs[0]), Limit: 100}, false, nil
	})
	add("subject+day", "?subject= the longest stream and one day", plain(func(k int) store.Filter {
		f := window(k, day)
		f.Subject = s.longStream
		return f
	}))
	add("positions", "from_position/to_position 1000 events in the middle, limit 1000 (a replay batch)", plain(func(k int) store.Filter {
		return store.Filter{FromPosition: point(k), ToPosition: point(k) + 999, Limit: 1000}
	}))
	add("console", "the console's newest first: positions head-255..head, limit 1000", plain(func(int) store.Filter {
		return store.Filter{FromPosition: s.n - 255, ToPosition: s.n, Limit: 1000}
	}))
	add("console+type", "newest first with type=lesson.published: positions head-4095..head", plain(func(int) store.Filter {
		return store.Filter{FromPosition: s.n - 4095, ToPosition: s.n, Types: []string{"lesson.published"}, Limit: 1000}
	}))
	add("replay-first", "replay of one day in the middle: its first batch of 1000", plain(func(k int) store.Filter {
		f := window(k, day)
		f.Limit = 1000
		return f
	}))
	add("replay-end", "replay of one day: the read after the window's last event (finds the end)", func(ctx context.Context, k int) (store.Filter, bool, error) {
		f := window(k, day)
		last := int64(f.Until.Sub(readsEpoch)/s.step) + 1 // the last event before until, or the one at it
		for s.at(last).Compare(f.Until) >= 0 {
			last--
		}
		c, _, err := s.cursorAt(ctx, last)
		f.After, f.Limit = c, 1000
		return f, false, err
	})
	add("tail", "the live end: a page after a cursor 50 events before the head", func(ctx context.Context, k int) (store.Filter, bool, error) {
		c, _, err := s.cursorAt(ctx, s.n-50)
		return store.Filter{After: c, Limit: 100}, false, err
	})
	add("dry-run-hour", "replay --dry-run of one hour: Count", func(_ context.Context, k int) (store.Filter, bool, error) {
		return window(k, time.Hour), true, nil
	})
	cases = append(cases, readCase{name: "stream", what: "GET /v1/streams/{longest}: 100 events from its middle version",
		run: func(ctx context.Context, k int) (int, error) {
			evs, err := s.st.ReadStream(ctx, s.longStream, max(1, s.longLen/2+int64(k)), 100)
			return len(evs), err
		},
		sql: func(_ context.Context, k int) (string, []any, error) {
			return postgres.StreamSQL, []any{s.longStream, max(1, s.longLen/2+int64(k)), 100}, nil
		}})
	cases = append(cases, readCase{name: "get", what: "GET /v1/events/{id} of an event in the middle",
		sql: func(ctx context.Context, k int) (string, []any, error) {
			_, e, err := s.cursorAt(ctx, point(k))
			return "SELECT * FROM event_store WHERE event_id = $1", []any{e.ID}, err
		},
		prepare: func(ctx context.Context, k int) (func(context.Context) (int, error), error) {
			_, e, err := s.cursorAt(ctx, point(k))
			return func(ctx context.Context) (int, error) {
				if _, err := s.st.Get(ctx, e.ID); err != nil {
					return 0, err
				}
				return 1, nil
			}, err
		}})
	return cases
}

// measure runs each read reps times, each time on another window, after
// one run to warm the cache (a read of a new window pays its disk reads
// once, as a console user's does).
func (s *readSet) measure(ctx context.Context, reps int) ([]measured, error) {
	s.reps = reps
	cases := s.cases()
	out := make([]measured, len(cases))
	for i, c := range cases {
		out[i] = measured{name: c.name, what: c.what}
	}
	// Round by round, each read once per round: whatever else the machine
	// does for a moment (a checkpoint, the WAL writer, another process)
	// falls on every read alike instead of on the one that runs then.
	for k := -1; k < reps; k++ {
		for i, c := range cases {
			// Arguments found before the clock starts: a cursor or an
			// event looked up for the read is not part of it.
			run := c.run
			if c.prepare != nil {
				read, err := c.prepare(ctx, max(k, 0))
				if err != nil {
					return nil, fmt.Errorf("bench: reads: %s: %w", c.name, err)
				}
				run = func(ctx context.Context, _ int) (int, error) { return read(ctx) }
			}
			if c.filter != nil {
				f, count, err := c.filter(ctx, max(k, 0))
				if err != nil {
					return nil, fmt.Errorf("bench: reads: %s: %w", c.name, err)
				}
				run = func(ctx context.Context, _ int) (int, error) {
					if count {
						n, err := s.st.Count(ctx, f)
						return int(n), err
					}
					page, err := s.st.Read(ctx, f)
					return len(page.Events), err
				}
			}
			began := time.Now()
			rows, err := run(ctx, max(k, 0))
			took := time.Since(began)
			if err != nil {
				return nil, fmt.Errorf("bench: reads: %s: %w", c.name, err)
			}
			if k >= 0 {
				out[i].times, out[i].rows = append(out[i].times, took), append(out[i].rows, rows)
			}
		}
	}
	return out, nil
}

// appends appends n events, one per transaction, from callers at once, in
// streams of the loaded events' and with times after theirs (so that the
// reads measured later, on the partitioned copy, see the same history),
// and returns the p50 and p99 of an append in ms and the events a second.
func (s *readSet) appends(ctx context.Context, callers, n int) (p50, p99, rate float64, err error) {
	times := make([]time.Duration, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	errs := make(chan error, callers)
	began := time.Now()
	for range callers {
		go func() {
			for i := range next {
				d, err := eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: int32(i % 100)},
					eventbus.Subject(fmt.Sprintf("learner-%d", i*7919%50000)), eventbus.Source("quiz-service"),
					eventbus.OccurredAt(s.at(s.n).Add(time.Duration(i+1)*time.Millisecond)))
				if err != nil {
					errs <- err
					return
				}
				// What the bus fills in at Dispatch.
				d.ID = uuid.Must(uuid.NewV7())
				d.CorrelationID = d.ID
				t := time.Now()
				if _, err := s.st.Append(ctx, []event.Draft{d}); err != nil {
					errs <- err
					return
				}
				times[i] = time.Since(t)
			}
			errs <- nil
		}()
	}
	for range callers {
		if e := <-errs; e != nil && err == nil {
			err = fmt.Errorf("bench: reads: append: %w", e)
		}
	}
	if err != nil {
		return 0, 0, 0, err
	}
	took := time.Since(began)
	slices.Sort(times)
	return msOf(times[n/2]), msOf(times[min(n-1, n*99/100)]), float64(n) / took.Seconds(), nil
}

// scans reads one day in the middle, and the same number of positions,
// page after page as a replay does (batches of 1000), timing the first
// page, the whole and the read that finds the end.
func (s *readSet) scans(ctx context.Context) ([]ScanFigure, error) {
	since := s.at(s.n / 2).Truncate(time.Hour)
	day := store.Filter{Since: since, Until: since.Add(24 * time.Hour), Limit: 1000}
	first := int64(since.Sub(readsEpoch)/s.step) + 1
	count := int64(24*time.Hour/s.step) + 1
	pos := store.Filter{FromPosition: first, ToPosition: first + count - 1, Limit: 1000}
	var out []ScanFigure
	for _, c := range []struct {
		name string
		f    store.Filter
	}{{"replay one day", day}, {"replay the same number of positions", pos}} {
		sf := ScanFigure{Name: c.name}
		f := c.f
		began := time.Now()
		var n int
		for pages := 0; ; pages++ {
			t := time.Now()
			page, err := s.st.Read(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("bench: reads: %s: %w", c.name, err)
			}
			if pages == 0 {
				sf.First = append(sf.First, msOf(time.Since(t)))
			}
			if len(page.Events) == 0 {
				sf.End = append(sf.End, msOf(time.Since(t)))
				break
			}
			n += len(page.Events)
			f.After = page.Next
		}
		sf.Events = append(sf.Events, n)
		sf.Rate = append(sf.Rate, float64(n)/time.Since(began).Seconds())
		out = append(out, sf)
	}
	return out, nil
}

// explain writes EXPLAIN (ANALYZE, BUFFERS) (on SQLite, EXPLAIN QUERY
// PLAN) of every read, as the store runs it, for the first repetition's
// arguments.
func (s *readSet) explain(ctx context.Context, l readsLoader, n int64, w io.Writer) error {
	_, onPostgres := l.(*postgresLoader)
	fmt.Fprintf(w, "# Plans of the read set at %d events\n\n", n)
	if onPostgres {
		fmt.Fprintf(w, "`EXPLAIN (ANALYZE, BUFFERS)` of each read of `eventbus bench --scenario reads`, as the store runs it (`postgres.ReadSQL`), on its first repetition's arguments, after the measured runs (so the buffers are mostly hits).\n\n")
	} else {
		fmt.Fprintf(w, "`EXPLAIN QUERY PLAN` of each read of `eventbus bench --scenario reads`, as the store runs it (`sqlite.ReadSQL`), on its first repetition's arguments (counts, streams and gets are plain index lookups and left out).\n\n")
	}
	for _, c := range s.cases() {
		sql, args, ok, err := s.statement(ctx, c, 0, onPostgres)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		plan, err := l.explain(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("bench: reads: explain %s: %w", c.name, err)
		}
		fmt.Fprintf(w, "## %s\n\n%s.\n\n```\n%s\n```\n\n", c.name, c.what, plan)
	}
	return nil
}

// statement returns the SQL, and its arguments, of read c's k-th
// repetition, as the store runs it; ok is false when there is none to
// show.
func (s *readSet) statement(ctx context.Context, c readCase, k int, onPostgres bool) (sql string, args []any, ok bool, err error) {
	switch {
	case c.filter != nil && !onPostgres:
		f, count, err := c.filter(ctx, k)
		if err != nil || count {
			return "", nil, false, err
		}
		sql, args, err = sqlite.ReadSQL(f)
		return sql, args, err == nil, err
	case !onPostgres:
		return "", nil, false, nil
	case c.filter != nil:
		f, count, err := c.filter(ctx, k)
		if err != nil {
			return "", nil, false, err
		}
		sql, args = postgres.ReadSQL(f, count)
		return sql, args, true, nil
	case c.sql != nil:
		sql, args, err = c.sql(ctx, k)
		return sql, args, err == nil, err
	}
	return "", nil, false, nil
}

// buffers returns, for each read with a statement, the median over five
// repetitions of the buffers (pages) its plan touched: the work it does,
// which the machine's load does not change.
func (s *readSet) buffers(ctx context.Context, l *postgresLoader) (map[string]int64, error) {
	out := map[string]int64{}
	for _, c := range s.cases() {
		var counts []int64
		for k := range 5 {
			sql, args, ok, err := s.statement(ctx, c, k, true)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			n, err := l.buffers(ctx, sql, args...)
			if err != nil {
				return nil, fmt.Errorf("bench: reads: buffers of %s: %w", c.name, err)
			}
			counts = append(counts, n)
		}
		if len(counts) > 0 {
			slices.Sort(counts)
			out[c.name] = counts[len(counts)/2]
		}
	}
	return out, nil
}

// postgresLoader loads events with set-based SQL, as the bus would have
// written them.
type postgresLoader struct{ s *postgres.Store }

// loadSQL inserts events $1..$2 (positions) with commit-order keys from $3
// on, one transaction id per event as one event per transaction gets:
//   - occurred_at in order, step $4 apart from readsEpoch ($5); recorded_at
//     3 ms later; event ids UUIDv7 of that time;
//   - 90% in one of 50,000 streams, skewed (stream k with probability
//     about ∝ 1/sqrt(k): learner-0 holds 0.45% of all events), stream
//     versions following on without gaps;
//   - correlation ids shared by 3 consecutive events, each caused by the
//     one before;
//   - types quiz.submitted 70%, badge.awarded 20%, lesson.published 10%,
//     with data of their shape; a W3C traceparent.
const loadSQL = `
WITH g AS (
    SELECT i, $5::timestamptz + interval '1 microsecond' * ((i - 1) * $4::bigint)::float8 AS occ,
           (abs(hashint8(i * 3 + 1)) % 1000000) / 1e6 AS u_stream,
           (abs(hashint8(i * 3 + 2)) % 1000000) / 1e6 AS u_skew,
           (abs(hashint8(i * 7 + 5)) % 1000000) / 1e6 AS u_type
      FROM generate_series($1::bigint, $2::bigint) AS i
), e AS (
    SELECT g.*,
           CASE WHEN u_stream < 0.1 THEN NULL ELSE 'learner-' || floor(50000 * u_skew * u_skew)::int END AS subject,
           CASE WHEN u_type < 0.7 THEN 'quiz.submitted' WHEN u_type < 0.9 THEN 'badge.awarded' ELSE 'lesson.published' END AS type
      FROM g
)
INSERT INTO event_store (id, event_id, type, source, subject, stream_version, occurred_at, recorded_at,
                         correlation_id, causation_id, traceparent, tracestate, data, commit_order)
SELECT e.i,
       (lpad(to_hex((extract(epoch FROM e.occ) * 1000)::bigint), 12, '0') || '7' || substr(md5(e.i::text), 1, 3) || '8' || substr(md5(e.i::text), 4, 15))::uuid,
       e.type,
       CASE e.type WHEN 'quiz.submitted' THEN 'quiz-service' WHEN 'badge.awarded' THEN 'badge-service' ELSE 'lesson-service' END,
       e.subject,
       CASE WHEN e.subject IS NOT NULL THEN coalesce(h.v, 0) + row_number() OVER (PARTITION BY e.subject ORDER BY e.i) END,
       e.occ, e.occ + interval '3 milliseconds',
       md5('corr' || (e.i / 3))::uuid,
       CASE WHEN e.i % 3 <> 0 THEN (lpad(to_hex((extract(epoch FROM e.occ - interval '1 microsecond' * $4::bigint::float8) * 1000)::bigint), 12, '0') || '7' || substr(md5((e.i - 1)::text), 1, 3) || '8' || substr(md5((e.i - 1)::text), 4, 15))::uuid END,
       '00-' || md5('trace' || (e.i / 3)) || '-' || substr(md5('span' || e.i), 1, 16) || '-01',
       NULL,
       (CASE e.type
         WHEN 'quiz.submitted' THEN '{"quiz_id":"' || md5('q' || (e.i % 5000))::uuid || '","learner_id":"' || md5('l' || coalesce(e.subject, e.i::text))::uuid || '","score_raw":' || (e.i % 101) || '}'
         WHEN 'badge.awarded' THEN '{"badge_id":"' || md5('b' || (e.i % 300))::uuid || '","recipient_id":"' || md5('l' || coalesce(e.subject, e.i::text))::uuid || '","reason":"completed ' || (e.i % 20 + 1) || ' quizzes in a row"}'
         ELSE '{"lesson_id":"' || md5('le' || e.i)::uuid || '","teacher_id":"' || md5('t' || (e.i % 2000))::uuid || '","title":"Lesson ' || (e.i % 400) || ': fractions, decimals and percentages"}'
        END)::json,
       ($3::numeric + (e.i - $1))::text::xid8
  FROM e LEFT JOIN pg_temp.bench_heads h ON h.subject = e.subject
 ORDER BY e.i`

// burnSQL makes the procedure that uses up n transaction ids, one
// transaction each: the loaded events take their commit-order keys from
// them, as appends of one event per transaction would, and those keys are
// below every later snapshot's xmin.
const burnSQL = `CREATE OR REPLACE PROCEDURE eventbus_bench_burn_xids(n bigint) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END $$`

func (l *postgresLoader) load(ctx context.Context, first, last int64, step time.Duration) error {
	conn, err := l.s.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	c := conn.Conn()
	if _, err := c.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, burnSQL); err != nil {
		return err
	}
	var from string
	if err := c.QueryRow(ctx, "SELECT (pg_current_xact_id()::text::numeric + 1)::text").Scan(&from); err != nil {
		return err
	}
	n := last - first + 1
	if _, err := c.Exec(ctx, "CALL eventbus_bench_burn_xids($1)", n+1); err != nil {
		return fmt.Errorf("use up transaction ids: %w", err)
	}
	// The heads of the streams, kept from batch to batch.
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS bench_heads (subject text PRIMARY KEY, v bigint NOT NULL)"); err != nil {
		return err
	}
	// Small transactions: an open one holds back commit-order readers in
	// every database of the server (G4), other users' tests included.
	const batch = 100_000
	for lo := first; lo <= last; lo += batch {
		hi := min(last, lo+batch-1)
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '512MB'"); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		var startOrder string
		if err := tx.QueryRow(ctx, "SELECT ($1::numeric + $2::numeric - $3::numeric)::text", from, lo, first).Scan(&startOrder); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		if _, err := tx.Exec(ctx, loadSQL, lo, hi, startOrder, step.Microseconds(), readsEpoch); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("insert events %d to %d: %w", lo, hi, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pg_temp.bench_heads SELECT subject, max(stream_version) FROM event_store
			WHERE id BETWEEN $1 AND $2 AND subject IS NOT NULL GROUP BY subject
			ON CONFLICT (subject) DO UPDATE SET v = excluded.v`, lo, hi); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("stream heads after event %d: %w", hi, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	if _, err := c.Exec(ctx, "SELECT setval(pg_get_serial_sequence('event_store', 'id'), $1)", last); err != nil {
		return err
	}
	// What autovacuum does to an insert-only table, at once: the
	// visibility map lets the probes scan their indexes only.
	if _, err = c.Exec(ctx, "VACUUM (ANALYZE) event_store"); err != nil {
		return err
	}
	// The load and the vacuum leave shared_buffers full of dirty pages:
	// without a checkpoint, the reads measured next would each write some
	// back to make room, more so at the larger size. It needs a superuser
	// or pg_checkpoint; without either the reads measure that too.
	_, _ = c.Exec(ctx, "CHECKPOINT")
	return nil
}

func (l *postgresLoader) space(ctx context.Context) (map[string]int64, error) {
	rows, err := l.s.Pool().Query(ctx, `SELECT c.relname, pg_relation_size(c.oid) + CASE WHEN c.relkind = 'r'
		THEN coalesce(pg_total_relation_size(c.reltoastrelid), 0) ELSE 0 END
		FROM pg_class c WHERE c.oid = 'event_store'::regclass
		   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'event_store'::regclass)`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var b int64
		if err := rows.Scan(&name, &b); err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, rows.Err()
}

func (l *postgresLoader) explain(ctx context.Context, sql string, args ...any) (string, error) {
	var lines []string
	err := pgx.BeginFunc(ctx, l.s.Pool(), func(tx pgx.Tx) error {
		if strings.Contains(sql, "count(*)") && strings.HasPrefix(sql, "WITH") {
			// As Count runs a count of a window (see postgres.Store.Count).
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				return err
			}
			lines = append(lines, line)
		}
		return rows.Err()
	})
	return strings.Join(lines, "\n"), err
}

// buffers runs EXPLAIN (ANALYZE, BUFFERS) of sql, as Count or Read would
// run it, and returns the shared buffers its plan hit or read.
func (l *postgresLoader) buffers(ctx context.Context, sql string, args ...any) (int64, error) {
	var out string
	err := pgx.BeginFunc(ctx, l.s.Pool(), func(tx pgx.Tx) error {
		if strings.Contains(sql, "count(*)") && strings.HasPrefix(sql, "WITH") {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...).Scan(&out)
	})
	if err != nil {
		return 0, err
	}
	var plans []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) == 0 {
		return 0, fmt.Errorf("read EXPLAIN's JSON: %v", err)
	}
	return plans[0].Plan.Hit + plans[0].Plan.Read, nil
}

// partitionedCopy copies event_store into a schema of its own as a table
// partitioned by month of occurred_at, with the same indexes (partitioned),
// and opens a store on it. PostgreSQL needs the partition key in a unique
// index, so the primary key is (id, occurred_at) and event_id is unique per
// partition only: docs/sizing.md says what that means for appends.
func (l *postgresLoader) partitionedCopy(ctx context.Context, env *environment) (*postgres.Store, error) {
	schema := env.schema + "_parts"
	pool := l.s.Pool()
	env.onCleanupKind(cleanupStore, func(ctx context.Context) error {
		conn, err := connect(ctx, env.user.DatabaseURL)
		if err != nil {
			return fmt.Errorf("bench: drop schema %s: %w (drop it by hand)", schema, err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			return fmt.Errorf("bench: drop schema %s: %w (drop it by hand)", schema, err)
		}
		return nil
	})
	var lo, hi time.Time
	if err := pool.QueryRow(ctx, "SELECT min(occurred_at), max(occurred_at) FROM event_store").Scan(&lo, &hi); err != nil {
		return nil, err
	}
	stmts := []string{
		"CREATE SCHEMA " + schema,
		`CREATE TABLE ` + schema + `.event_store (LIKE event_store INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY,
			PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)`,
	}
	for m := time.Date(lo.Year(), lo.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(hi); m = m.AddDate(0, 1, 0) {
		stmts = append(stmts, fmt.Sprintf("CREATE TABLE %s.event_store_%s PARTITION OF %s.event_store FOR VALUES FROM ('%s') TO ('%s')",
			schema, m.Format("2006_01"), schema, m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339)))
	}
	// The indexes first, then the rows in small transactions (see load).
	stmts = append(stmts,
		"CREATE INDEX ON "+schema+".event_store (event_id)",
		"CREATE UNIQUE INDEX ON "+schema+".event_store (subject, stream_version, occurred_at) INCLUDE (commit_order) WHERE subject IS NOT NULL",
		"CREATE INDEX ON "+schema+".event_store (commit_order, id)",
		"CREATE INDEX ON "+schema+".event_store (correlation_id, commit_order, id)",
		"CREATE INDEX ON "+schema+".event_store (type, commit_order, id)",
		"CREATE INDEX ON "+schema+".event_store USING brin (occurred_at)",
		"CREATE INDEX ON "+schema+".event_store ((date_trunc('hour', occurred_at AT TIME ZONE 'UTC')), (commit_order::text::numeric)) INCLUDE (occurred_at, commit_order)",
		"CREATE INDEX ON "+schema+".event_store ((date_trunc('day', occurred_at AT TIME ZONE 'UTC')), (commit_order::text::numeric)) INCLUDE (occurred_at, commit_order)",
		"CREATE INDEX ON "+schema+".event_store ((id / 4096), (commit_order::text::numeric)) INCLUDE (id, commit_order)",
	)
	var maxID int64
	if err := pool.QueryRow(ctx, "SELECT max(id) FROM event_store").Scan(&maxID); err != nil {
		return nil, err
	}
	for lo := int64(1); lo <= maxID; lo += 100_000 {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.event_store SELECT * FROM event_store WHERE id BETWEEN %d AND %d ORDER BY id",
			schema, lo, lo+99_999))
	}
	stmts = append(stmts, "VACUUM (ANALYZE) "+schema+".event_store")
	for _, q := range stmts {
		if _, err := pool.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("bench: reads: partitioned copy: %s: %w", firstWords(q), err)
		}
	}
	url, err := benchURL(env.user.DatabaseURL, schema)
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, url)
}

func firstWords(q string) string {
	if f := strings.Fields(q); len(f) > 4 {
		return strings.Join(f[:4], " ") + " ..."
	}
	return q
}

// sqliteLoader loads events with set-based SQL into the embedded store.
type sqliteLoader struct{ s *sqlite.Store }

// sqliteLoadSQL is loadSQL for SQLite: positions ?1..?2, occurred_at
// ?3 + (i-1) × ?4 microseconds. Random numbers stand in for PostgreSQL's
// hashes; the shapes are the same.
const sqliteLoadSQL = `
WITH RECURSIVE g(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM g WHERE i < ?2),
r AS MATERIALIZED (
    SELECT i, ?3 + (i - 1) * ?4 AS occ, abs(random() % 1000000) / 1e6 AS u_stream,
           abs(random() % 1000000) / 1e6 AS u_skew, abs(random() % 1000000) / 1e6 AS u_type,
           lower(hex(randomblob(16))) AS h
      FROM g
), e AS MATERIALIZED (
    SELECT r.*,
           CASE WHEN u_stream < 0.1 THEN NULL ELSE 'learner-' || CAST(50000 * u_skew * u_skew AS INTEGER) END AS subject,
           CASE WHEN u_type < 0.7 THEN 'quiz.submitted' WHEN u_type < 0.9 THEN 'badge.awarded' ELSE 'lesson.published' END AS type,
           printf('%012x', occ / 1000) AS ts
      FROM r
), heads AS (
    SELECT subject, max(stream_version) AS v FROM event_store WHERE subject IS NOT NULL GROUP BY subject
)
INSERT INTO event_store (id, event_id, type, source, subject, stream_version, occurred_at, recorded_at,
                         correlation_id, causation_id, traceparent, tracestate, data)
SELECT e.i,
       substr(e.ts, 1, 8) || '-' || substr(e.ts, 9, 4) || '-7' || substr(e.h, 1, 3) || '-8' || substr(e.h, 4, 3) || '-' || substr(e.h, 7, 12),
       e.type,
       CASE e.type WHEN 'quiz.submitted' THEN 'quiz-service' WHEN 'badge.awarded' THEN 'badge-service' ELSE 'lesson-service' END,
       e.subject,
       CASE WHEN e.subject IS NOT NULL THEN coalesce(h.v, 0) + row_number() OVER (PARTITION BY e.subject ORDER BY e.i) END,
       e.occ, e.occ + 3000,
       printf('00000000-0000-4000-8000-%012x', e.i / 3),
       CASE WHEN e.i % 3 <> 0 THEN printf('00000000-0000-4000-9000-%012x', e.i - 1) END,
       '00-' || e.h || '-' || substr(e.h, 1, 16) || '-01',
       NULL,
       CASE e.type
         WHEN 'quiz.submitted' THEN '{"quiz_id":"' || printf('00000000-0000-4000-8000-%012x', e.i % 5000) || '","learner_id":"' || printf('00000000-0000-4000-8000-%012x', e.i % 50000) || '","score_raw":' || (e.i % 101) || '}'
         WHEN 'badge.awarded' THEN '{"badge_id":"' || printf('00000000-0000-4000-8000-%012x', e.i % 300) || '","recipient_id":"' || printf('00000000-0000-4000-8000-%012x', e.i % 50000) || '","reason":"completed ' || (e.i % 20 + 1) || ' quizzes in a row"}'
         ELSE '{"lesson_id":"' || printf('00000000-0000-4000-8000-%012x', e.i) || '","teacher_id":"' || printf('00000000-0000-4000-8000-%012x', e.i % 2000) || '","title":"Lesson ' || (e.i % 400) || ': fractions, decimals and percentages"}'
       END
  FROM e LEFT JOIN heads h ON h.subject = e.subject
 ORDER BY e.i`

func (l *sqliteLoader) load(ctx context.Context, first, last int64, step time.Duration) error {
	db := l.s.DB()
	const batch = 250_000
	for lo := first; lo <= last; lo += batch {
		hi := min(last, lo+batch-1)
		if _, err := db.ExecContext(ctx, sqliteLoadSQL, lo, hi, readsEpoch.UnixMicro(), step.Microseconds()); err != nil {
			return fmt.Errorf("insert events %d to %d: %w", lo, hi, err)
		}
	}
	_, err := db.ExecContext(ctx, "ANALYZE")
	return err
}

func (l *sqliteLoader) space(ctx context.Context) (map[string]int64, error) {
	fi, err := os.Stat(l.s.Path())
	if err != nil {
		return nil, err
	}
	return map[string]int64{"eventbus.db (file)": fi.Size()}, nil
}

func (l *sqliteLoader) explain(ctx context.Context, sql string, args ...any) (string, error) {
	rows, err := l.s.DB().QueryContext(ctx, "EXPLAIN QUERY PLAN "+sql, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprintf("%d %d %s", id, parent, detail))
	}
	return strings.Join(lines, "\n"), rows.Err()
}

// WriteTable writes the report as `eventbus bench --scenario reads` prints
// it: one row per read, its p50 and p99 at each size and the growth of its
// p50, then the full reads of a window and the space per event.
func (rep ReadsReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "eventbus bench reads: %s store, %s\n", rep.Store, rep.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %d cores, %s memory, %s %s\n", m.Cores, gib(m.MemoryBytes), m.GoVersion, m.OS)
	fmt.Fprintf(&b, "store:   %s\n", orDash(m.StoreVersion))
	for i, n := range rep.Sizes {
		load := ""
		if i < len(rep.Load) {
			load = rep.Load[i]
		}
		fmt.Fprintf(&b, "size %s: loaded in %.0fs; load average %s\n", group(float64(n)), rep.LoadSecs[i], load)
	}
	fmt.Fprintf(&b, "%d runs of each read per size; times in ms\n\n", rep.Reps)
	writeReads(&b, rep.Sizes, rep.Reads)
	b.WriteString("\n")
	writeScans(&b, rep.Sizes, rep.Scans)
	if len(rep.Appends) > 0 {
		b.WriteString("\n| appends, one event per transaction |")
		for _, n := range rep.Sizes {
			fmt.Fprintf(&b, " p50 %s | p99 | events/s |", group(float64(n)))
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|---:|---:|", len(rep.Sizes)) + "\n")
		for _, a := range rep.Appends {
			fmt.Fprintf(&b, "| %d caller(s), %d events |", a.Callers, a.Events)
			for i := range rep.Sizes {
				fmt.Fprintf(&b, " %.2f | %.2f | %.0f |", a.P50[i], a.P99[i], a.Rate[i])
			}
			b.WriteString("\n")
		}
	}
	if len(rep.Space) > 0 {
		b.WriteString("\nbytes per event")
		for _, n := range rep.Sizes {
			fmt.Fprintf(&b, " | %s", group(float64(n)))
		}
		b.WriteString("\n")
		for _, s := range rep.Space {
			b.WriteString(s.Relation)
			for _, v := range s.Bytes {
				fmt.Fprintf(&b, " | %.0f", v)
			}
			b.WriteString("\n")
		}
	}
	if len(rep.Partitioned) > 0 {
		fmt.Fprintf(&b, "\npartitioned by month, %s events\n", group(float64(rep.Sizes[len(rep.Sizes)-1])))
		writeReads(&b, rep.Sizes[len(rep.Sizes)-1:], rep.Partitioned)
		writeScans(&b, rep.Sizes[len(rep.Sizes)-1:], rep.PartitionedScans)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeReads(b *strings.Builder, sizes []int64, reads []ReadFigure) {
	b.WriteString("| read |")
	for _, n := range sizes {
		fmt.Fprintf(b, " p50 %s | p99 %s | rows |", group(float64(n)), group(float64(n)))
	}
	if len(sizes) > 1 {
		b.WriteString(" growth |")
	}
	withBuffers := len(reads) > 0 && len(reads[0].Buffers) == len(sizes)
	if withBuffers {
		for _, n := range sizes {
			fmt.Fprintf(b, " buffers %s |", group(float64(n)))
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|---:|---:|", len(sizes)))
	if len(sizes) > 1 {
		b.WriteString("---:|")
	}
	if withBuffers {
		b.WriteString(strings.Repeat("---:|", len(sizes)))
	}
	b.WriteString("\n")
	for _, r := range reads {
		fmt.Fprintf(b, "| %s |", r.Name)
		for i := range sizes {
			fmt.Fprintf(b, " %.2f | %.2f | %d |", r.P50[i], r.P99[i], r.Rows[i])
		}
		if len(sizes) > 1 {
			fmt.Fprintf(b, " %.2f× |", r.Growth)
		}
		if withBuffers {
			for i := range sizes {
				if i < len(r.Buffers) {
					fmt.Fprintf(b, " %d |", r.Buffers[i])
				} else {
					b.WriteString(" |")
				}
			}
		}
		b.WriteString("\n")
	}
}

func writeScans(b *strings.Builder, sizes []int64, scans []ScanFigure) {
	b.WriteString("| full read, batches of 1000 |")
	for _, n := range sizes {
		fmt.Fprintf(b, " events %s | events/s | first ms | end ms |", group(float64(n)))
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|---:|---:|---:|", len(sizes)) + "\n")
	for _, s := range scans {
		fmt.Fprintf(b, "| %s |", s.Name)
		for i := range sizes {
			fmt.Fprintf(b, " %d | %.0f | %.2f | %.2f |", s.Events[i], s.Rate[i], s.First[i], s.End[i])
		}
		b.WriteString("\n")
	}
}
