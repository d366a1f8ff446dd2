package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// columns are the event_store columns in the order scanEvent reads them.
const columns = `id, event_id, type, source, subject, stream_version, occurred_at, recorded_at,
	correlation_id, causation_id, traceparent, tracestate, data, dataschema`

type scanner interface {
	Scan(dest ...any) error
}

// scanEvent reads one row of columns. It returns sql.ErrNoRows unwrapped.
func scanEvent(r scanner) (event.Envelope, error) {
	var (
		e                      event.Envelope
		eventID, corr          string
		subject, cause, tp, ts sql.NullString
		dataSchema             sql.NullString
		version                sql.NullInt64
		occurred, recorded     int64
		data                   []byte
	)
	if err := r.Scan(&e.Position, &eventID, &e.Type, &e.Source, &subject, &version, &occurred, &recorded,
		&corr, &cause, &tp, &ts, &data, &dataSchema); err != nil {
		return e, err
	}
	var err error
	if e.ID, err = uuid.Parse(eventID); err != nil {
		return e, fmt.Errorf("event %d has a malformed event_id %q: %w", e.Position, eventID, err)
	}
	if e.CorrelationID, err = uuid.Parse(corr); err != nil {
		return e, fmt.Errorf("event %d has a malformed correlation_id %q: %w", e.Position, corr, err)
	}
	if cause.Valid {
		if e.CausationID, err = uuid.Parse(cause.String); err != nil {
			return e, fmt.Errorf("event %d has a malformed causation_id %q: %w", e.Position, cause.String, err)
		}
	}
	e.Subject, e.StreamVersion = subject.String, version.Int64
	e.OccurredAt, e.RecordedAt = time.UnixMicro(occurred).UTC(), time.UnixMicro(recorded).UTC()
	e.TraceParent, e.TraceState = tp.String, ts.String
	e.CommitOrder = uint64(e.Position)
	e.Data = json.RawMessage(data)
	e.DataSchema = dataSchema.String
	return e, nil
}

func (s *Store) collect(ctx context.Context, op, query string, args ...any) ([]event.Envelope, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer func() { _ = rows.Close() }()
	var out []event.Envelope
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, s.wrap(err, op)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, op)
	}
	return out, nil
}

// after returns the position to read after c. Here an event's commit-order
// key is its position, so the events after c in (order, position) order are
// those past c.Order, and the event at c.Order itself when c.Position is
// below it: a cursor "just before" an event, as tail --from makes.
func after(c store.Cursor) (int64, error) {
	if c.Position < 0 || c.Order > math.MaxInt64 {
		return 0, fmt.Errorf("sqlite: %w: cursor %v was not issued by this store", store.ErrBadCursor, c)
	}
	from := int64(c.Order)
	if c.Position < from {
		from--
	}
	return from, nil
}

// where builds the WHERE clause that selects f's events of the given types
// (any type when types is empty) after f's cursor, and its arguments.
func where(f store.Filter, types []string) (string, []any, error) {
	from, err := after(f.After)
	if err != nil {
		return "", nil, err
	}
	if f.FromPosition > 0 {
		from = max(from, f.FromPosition-1)
	}
	var q strings.Builder
	args := []any{from}
	q.WriteString(" WHERE id > ?")
	if !f.Since.IsZero() || !f.Until.IsZero() {
		// One lower bound on the position, the later of the cursor and
		// the window's start: with two, SQLite starts the walk at either.
		lo, hi, bargs := windowBounds(f)
		q.Reset()
		q.WriteString(" WHERE id > max(?, (" + lo + ") - 1) AND id <= (" + hi + ")")
		args = append(args, bargs...)
	}
	if f.ToPosition > 0 {
		q.WriteString(" AND id <= ?")
		args = append(args, f.ToPosition)
	}
	if len(types) > 0 {
		q.WriteString(" AND type IN (?" + strings.Repeat(", ?", len(types)-1) + ")")
		for _, t := range types {
			args = append(args, t)
		}
	}
	if f.CorrelationID != uuid.Nil {
		q.WriteString(" AND correlation_id = ?")
		args = append(args, f.CorrelationID.String())
	}
	if f.Subject != "" {
		// Within a stream, versions follow positions. When the cursor is an
		// event of this stream (the last page's last event), the next page
		// starts right after its version, not at the stream's beginning.
		start := `coalesce((SELECT stream_version + 1 FROM event_store WHERE id = ? AND subject = ?), 1)`
		startArgs := []any{from, f.Subject}
		if f.Since.IsZero() && f.Until.IsZero() {
			q.WriteString(" AND subject = ? AND stream_version >= " + start)
			args = append(append(args, f.Subject), startArgs...)
		} else {
			// The stream's versions inside the window's positions, found by
			// binary search of the stream index (versions have no gaps, and
			// follow positions): the walk starts at the window instead of
			// the stream's beginning.
			lo, hi, bargs := windowBounds(f)
			loArgs, hiArgs := bargs[:strings.Count(lo, "?")], bargs[strings.Count(lo, "?"):]
			// The bound is computed in the search's first row and carried
			// along (b), so that each step's test is a plain comparison.
			firstVersion := func(cmp, bound string, boundArgs []any) (string, []any) {
				probe := "(SELECT id " + cmp + " b FROM event_store WHERE subject = ? AND stream_version = (l + h) / 2)"
				a := append([]any{f.Subject}, boundArgs...)
				a = append(a, f.Subject, f.Subject)
				return "(WITH RECURSIVE bs(l, h, b) AS (SELECT 1, coalesce((SELECT max(stream_version) FROM event_store WHERE subject = ?), 0) + 1, (" + bound + ")" +
					" UNION ALL SELECT CASE WHEN " + probe + " THEN l ELSE (l + h) / 2 + 1 END," +
					" CASE WHEN " + probe + " THEN (l + h) / 2 ELSE h END, b FROM bs WHERE l < h)" +
					" SELECT min(l) FROM bs WHERE l >= h)", a
			}
			first, firstArgs := firstVersion(">=", lo, loArgs)
			last, lastArgs := firstVersion(">", hi, hiArgs)
			// One lower bound, the later of the cursor's and the window's:
			// with two, SQLite walks the index from either, and from the
			// cursor's (the stream's start, on a first page) that is a walk
			// of the stream up to the window.
			q.WriteString(" AND subject = ? AND stream_version >= max(" + start + ", " + first + ") AND stream_version < " + last)
			args = append(append(append(append(args, f.Subject), startArgs...), firstArgs...), lastArgs...)
		}
	}
	// occurred_at is tested with a unary +, which keeps SQLite from
	// reading the window through event_store_occurred_at_idx and sorting
	// it: the read walks positions between the window's bounds instead.
	if !f.Since.IsZero() {
		q.WriteString(" AND +occurred_at >= ?")
		args = append(args, ceilMicro(f.Since))
	}
	if !f.Until.IsZero() {
		q.WriteString(" AND +occurred_at < ?")
		args = append(args, ceilMicro(f.Until))
	}
	return q.String(), args, nil
}

// Probes of a time window's bounds (migrations 00005 and 00007).
const (
	// maxProbes bounds the hour probes of a window that starts before
	// 1970 (see windowBounds): a wider one is read without bounds, right
	// but slower.
	maxProbes = 8760
	hour      = "3600000000"  // microseconds
	day       = "86400000000" // microseconds
	// prevDay is the day of the loose scan's last step (days.c, a position).
	prevDay = "(SELECT occurred_at / " + day + " FROM event_store WHERE id = days.c)"
)

// windowBounds returns expressions of the smallest and largest position of
// the events inside f's time window (NULL when it holds none, which then
// selects nothing), and their arguments.
//
// The hours at the window's edges, up to 24 at each end (every hour of a
// window of two days or less), are probed one by one in
// event_store_hour_idx, each with the window's conditions; the whole
// days between them in event_store_day_idx, one probe per day that holds
// events (a loose index scan: each probe finds the next day with events and
// its smallest, or largest, position). The cost is O(days with events in
// the window + 48) probes, whatever the table's size.
//
// Integer division rounds toward zero, so before 1970 an hour's or a day's
// number no longer starts at its first microsecond: a window that starts
// there is probed hour by hour, as many as maxProbes.
func windowBounds(f store.Filter) (lo, hi string, args []any) {
	cond := ""
	var condArgs []any
	first, last := "(SELECT min(occurred_at) FROM event_store) / "+hour, "(SELECT max(occurred_at) FROM event_store) / "+hour
	var firstArgs, lastArgs []any
	if !f.Since.IsZero() {
		cond += " AND occurred_at >= ?"
		condArgs = append(condArgs, ceilMicro(f.Since))
		first, firstArgs = "? / "+hour, []any{ceilMicro(f.Since)}
	}
	if !f.Until.IsZero() {
		cond += " AND occurred_at < ?"
		condArgs = append(condArgs, ceilMicro(f.Until))
		last, lastArgs = "(? - 1) / "+hour, []any{ceilMicro(f.Until)}
	}
	// A window of two days or less is probed hour by hour: the day level
	// would save no probe.
	days := f.ProbesDays()
	probe := func(agg, dir string) (string, []any) {
		var a []any
		a = append(append(append(a, firstArgs...), lastArgs...), condArgs...)
		// f and l are the window's first and last hour; days da up to,
		// not including, db are whole days inside it (none before 1970).
		// The hours walk from f to l, jumping over those days.
		dayOf := "occurred_at / " + day
		// Each step of the loose scan goes on from the day before: up
		// for min, down for max, inside the whole days.
		next := dayOf + " > " + prevDay + " AND " + dayOf + " < span.db"
		if agg == "max" {
			next = dayOf + " < " + prevDay + " AND " + dayOf + " >= span.da"
		}
		dayProbe := func(where string) string {
			return "(SELECT id FROM event_store INDEXED BY event_store_day_idx WHERE " + where +
				" ORDER BY " + dayOf + dir + ", id" + dir + " LIMIT 1)"
		}
		hourProbe := "(SELECT id FROM event_store INDEXED BY event_store_hour_idx" +
			" WHERE occurred_at / " + hour + " = hours.h" + cond + " ORDER BY id" + dir + " LIMIT 1)"
		none := map[string]string{"min": "0", "max": "9223372036854775807"}[agg]
		if !days {
			// Every hour of the window, the statement kept as short as it
			// can be: SQLite prepares it at every read.
			return "WITH RECURSIVE span(f, l) AS (SELECT " + first + ", " + last + ")," +
				" hours(h) AS (SELECT f FROM span WHERE l - f <= " + strconv.Itoa(maxProbes) +
				" UNION ALL SELECT h + 1 FROM hours, span WHERE h < span.l)" +
				" SELECT CASE WHEN (SELECT l - f FROM span) > " + strconv.Itoa(maxProbes) + " THEN " + none +
				" ELSE (SELECT " + agg + "(" + hourProbe + ") FROM hours) END", a
		}
		return "WITH RECURSIVE span(f, l, da, db) AS MATERIALIZED (SELECT f, l," +
			" CASE WHEN f >= 0 THEN (f + 23) / 24 ELSE 0 END, CASE WHEN f >= 0 THEN (l + 1) / 24 ELSE 0 END" +
			" FROM (SELECT " + first + " AS f, " + last + " AS l))," +
			" hours(h) AS (SELECT CASE WHEN f = da * 24 AND db > da THEN db * 24 ELSE f END FROM span" +
			" WHERE f >= 0 OR l - f <= " + strconv.Itoa(maxProbes) +
			" UNION ALL SELECT CASE WHEN h + 1 = span.da * 24 AND span.db > span.da THEN span.db * 24 ELSE h + 1 END" +
			" FROM hours, span WHERE h < span.l)," +
			" days(c) AS (SELECT " + dayProbe(dayOf+" >= span.da AND "+dayOf+" < span.db") + " FROM span" +
			" UNION ALL SELECT " + dayProbe(next) + " FROM days, span WHERE days.c IS NOT NULL)" +
			" SELECT CASE WHEN (SELECT f < 0 AND l - f > " + strconv.Itoa(maxProbes) + " FROM span) THEN " + none +
			" ELSE (SELECT " + agg + "(c) FROM (SELECT " + hourProbe + " AS c FROM hours UNION ALL SELECT c FROM days)) END", a
	}
	lo, hi = "0", "9223372036854775807"
	if !f.Since.IsZero() {
		var a []any
		lo, a = probe("min", "")
		args = append(args, a...)
	}
	if !f.Until.IsZero() {
		var a []any
		hi, a = probe("max", " DESC")
		args = append(args, a...)
	}
	return lo, hi, args
}

// Read returns a page of events in commit order; see store.Reader. A read
// sees every transaction committed before it started and none other, and
// later commits always get higher positions, so paging by position skips
// nothing.
//
// Each query walks an index in commit order and stops at the page's end,
// however many events match further on: one stream in version order (the
// same order), one type or correlation ID with its position, or, for
// several types, one such walk per type, merged.
func (s *Store) Read(ctx context.Context, f store.Filter) (store.Page, error) {
	query, args, err := ReadSQL(f)
	if err != nil {
		return store.Page{}, err
	}
	events, err := s.collect(ctx, "read events", query, args...)
	if err != nil {
		return store.Page{}, err
	}
	return store.PageAfter(f.After, events), nil
}

// ReadSQL returns the statement, and its arguments, that Read runs for f,
// so that tools can EXPLAIN QUERY PLAN a read as the store runs it.
func ReadSQL(f store.Filter) (string, []any, error) {
	limit := f.EffectiveLimit()
	types := f.DistinctTypes()
	var query string
	var args []any
	switch {
	case f.Subject != "":
		cond, a, err := where(f, types)
		if err != nil {
			return "", nil, err
		}
		query = "SELECT " + columns + " FROM event_store INDEXED BY event_store_stream_idx" + cond +
			" ORDER BY stream_version LIMIT ?"
		args = append(a, limit)
	case len(types) > 1:
		parts := make([]string, len(types))
		for i, t := range types {
			cond, a, err := where(f, []string{t})
			if err != nil {
				return "", nil, err
			}
			parts[i] = "SELECT * FROM (SELECT " + columns + " FROM event_store" + cond + " ORDER BY id LIMIT ?)"
			args = append(append(args, a...), limit)
		}
		query = strings.Join(parts, " UNION ALL ") + " ORDER BY id LIMIT ?"
		args = append(args, limit)
	default:
		cond, a, err := where(f, types)
		if err != nil {
			return "", nil, err
		}
		query = "SELECT " + columns + " FROM event_store" + cond + " ORDER BY id LIMIT ?"
		args = append(a, limit)
	}
	return query, args, nil
}

// Count counts the events Read would return with f, page after page.
func (s *Store) Count(ctx context.Context, f store.Filter) (int64, error) {
	cond, args, err := where(f, f.DistinctTypes())
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM event_store"+cond, args...).Scan(&n); err != nil {
		return 0, s.wrap(err, "count events")
	}
	return n, nil
}

// ceilMicro returns the first whole microsecond at or after t: stored times
// are whole microseconds, so "at or after t" and "before t" compare with it.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// ReadStream returns a stream's events in version order.
func (s *Store) ReadStream(ctx context.Context, subject string, fromVersion int64, limit int) ([]event.Envelope, error) {
	limit = store.Filter{Limit: limit}.EffectiveLimit()
	return s.collect(ctx, "read stream "+subject,
		"SELECT "+columns+" FROM event_store WHERE subject = ? AND stream_version >= ? ORDER BY stream_version LIMIT ?",
		subject, fromVersion, limit)
}

// Get returns one event by ID.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (event.Envelope, error) {
	e, err := scanEvent(s.read.QueryRowContext(ctx, "SELECT "+columns+" FROM event_store WHERE event_id = ?", id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return event.Envelope{}, fmt.Errorf("sqlite: get event %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return event.Envelope{}, s.wrap(err, "get event "+id.String())
	}
	return e, nil
}

// exactCountBelow is the span of positions under which Stats counts events
// exactly; above it, the span itself is the estimate (positions have no
// gaps unless the sequence was moved by hand).
const exactCountBelow = 200000

// Stats reports store figures; see store.Stats. HeldBack is always 0 (and
// OldestHeldBack zero): a reader sees every event as soon as it commits,
// since commits take positions in order, so the lag of a relay is the age
// of the first event after its checkpoint. OldestTxAge is 0 too: a long transaction here holds
// back writers (they wait for the write connection), not readers.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var lo, hi sql.NullInt64
	if err := s.read.QueryRowContext(ctx, "SELECT min(id), max(id) FROM event_store").Scan(&lo, &hi); err != nil {
		return st, s.wrap(err, "stats")
	}
	if !hi.Valid {
		return st, nil
	}
	st.Head = store.Cursor{Order: uint64(hi.Int64), Position: hi.Int64}
	if span := hi.Int64 - lo.Int64 + 1; span >= exactCountBelow {
		st.Events = span
		return st, nil
	}
	if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM event_store").Scan(&st.Events); err != nil {
		return st, s.wrap(err, "stats: count events")
	}
	return st, nil
}

// Backlog counts events committed after c, up to limit.
func (s *Store) Backlog(ctx context.Context, c store.Cursor, limit int) (int64, error) {
	from, err := after(c)
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err = s.read.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM event_store WHERE id > ? LIMIT ?)", from, limit).Scan(&n)
	if err != nil {
		return 0, s.wrap(err, "count backlog")
	}
	return n, nil
}

func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id.String()
}
