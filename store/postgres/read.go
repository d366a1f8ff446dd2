package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// columns are the event_store columns in the order row.scan reads them.
const columns = `id, event_id, type, source, subject, stream_version, occurred_at, recorded_at,
	correlation_id, causation_id, traceparent, tracestate, data::text, commit_order, dataschema`

// visible is true for rows every reader can see in commit order: those whose
// commit-order key is below the oldest transaction still running.
const visible = `commit_order < pg_snapshot_xmin(pg_current_snapshot())`

type row struct {
	position      int64
	eventID       pgtype.UUID
	typ, source   string
	subject       pgtype.Text
	version       pgtype.Int8
	occurredAt    pgtype.Timestamptz
	recordedAt    pgtype.Timestamptz
	correlationID pgtype.UUID
	causationID   pgtype.UUID
	traceParent   pgtype.Text
	traceState    pgtype.Text
	data          []byte // a new slice for each row (pgx's scan of text into *[]byte)
	commitOrder   uint64
	dataSchema    pgtype.Text
}

func (r *row) scan(rows pgx.Row) error { return rows.Scan(r.dests()...) }

// dests are the scan destinations of columns, in their order: a statement
// that selects more scans them after these.
func (r *row) dests() []any {
	return []any{&r.position, &r.eventID, &r.typ, &r.source, &r.subject, &r.version, &r.occurredAt,
		&r.recordedAt, &r.correlationID, &r.causationID, &r.traceParent, &r.traceState, &r.data, &r.commitOrder, &r.dataSchema}
}

func (r *row) envelope() event.Envelope {
	return event.Envelope{
		ID:            uuid.UUID(r.eventID.Bytes),
		Type:          r.typ,
		Source:        r.source,
		Subject:       r.subject.String,
		StreamVersion: r.version.Int64,
		OccurredAt:    r.occurredAt.Time.UTC(),
		RecordedAt:    r.recordedAt.Time.UTC(),
		CorrelationID: uuid.UUID(r.correlationID.Bytes),
		CausationID:   uuid.UUID(r.causationID.Bytes),
		TraceParent:   r.traceParent.String,
		TraceState:    r.traceState.String,
		Position:      r.position,
		CommitOrder:   r.commitOrder,
		Data:          r.data,
		DataSchema:    r.dataSchema.String,
	}
}

// collect runs a statement that selects columns and returns its events.
// limit is the most rows it can return: the result is made that size once
// (up to maxCollect) rather than grown, which a relay's or a replay's page
// of a thousand events would copy ten times over.
func (s *Store) collect(ctx context.Context, op string, limit int, sql string, args ...any) ([]event.Envelope, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer rows.Close()
	out := make([]event.Envelope, 0, min(limit, maxCollect))
	var r row // every column is scanned on every row, so one serves them all
	dests := r.dests()
	for rows.Next() {
		if err := rows.Scan(dests...); err != nil {
			return nil, s.wrap(err, op)
		}
		out = append(out, r.envelope())
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, op)
	}
	return out, nil
}

// maxCollect bounds the events collect makes room for before it has read
// them: a page of the largest limit that finds a handful of events should
// not cost megabytes.
const maxCollect = 1024

// Probe sizes for the bounds of a window (see migration 00005).
const (
	// positionBlock is the number of positions that one key of
	// event_store_position_block_idx covers.
	positionBlock = 4096
	// maxProbes bounds the index probes that one side of a position
	// range takes (a block of positions each). A wider range is read
	// without that bound: still right, but walking the rows before or
	// after it. (A time window needs no such bound: see timeProbe.)
	maxProbes = 8760
)

// readMode runs every read as an unnamed statement, planned for its own
// arguments each time: a generic plan, which PostgreSQL switches a named
// prepared statement to after five executions, cannot tell a three-event
// correlation from a whole type, nor a short stream from a long one.
const readMode = pgx.QueryExecModeCacheDescribe

// query builds the SQL of a read and its arguments.
type query struct {
	args []any
}

func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// unindexedTime and unindexedPosition are occurred_at and id in a form
// that no index matches. A read tests them row by row on the index it walks
// in commit order: left bare, they would tempt the planner, on a guess of
// how many rows they keep, to gather the whole window through the BRIN
// index or the primary key and sort it, a cost that grows with the window
// instead of the page.
//
// The lower and the upper bound use two different forms on purpose: the
// planner takes two bounds on one expression for a narrow range (0.5% of
// the rows), guesses the page will need a long walk, and gathers and sorts
// instead; as two unrelated conditions it guesses a third each.
const (
	unindexedTime     = "(occurred_at + interval '0 seconds')"
	unindexedTimeEnd  = "(occurred_at - interval '0 seconds')"
	unindexedPosition = "(id + 0)"
	unindexedPosEnd   = "(id - 0)"
)

// filters returns the conditions of f other than the cursor, the stream
// and the types, each preceded by AND.
func (q *query) filters(f store.Filter) string {
	var sql strings.Builder
	if f.CorrelationID != uuid.Nil {
		sql.WriteString(" AND correlation_id = " + q.arg(pgtype.UUID{Bytes: f.CorrelationID, Valid: true}))
	}
	if !f.Since.IsZero() {
		sql.WriteString(" AND " + unindexedTime + " >= " + q.arg(f.Since) + "::timestamptz")
	}
	if !f.Until.IsZero() {
		sql.WriteString(" AND " + unindexedTimeEnd + " < " + q.arg(f.Until) + "::timestamptz")
	}
	if f.FromPosition > 0 {
		sql.WriteString(" AND " + unindexedPosition + " >= " + q.arg(f.FromPosition) + "::bigint")
	}
	if f.ToPosition > 0 {
		sql.WriteString(" AND " + unindexedPosEnd + " <= " + q.arg(f.ToPosition) + "::bigint")
	}
	return sql.String()
}

// hourOf, dayOf and orderKey are the key expressions of
// event_store_hour_idx, event_store_day_idx and
// event_store_position_block_idx (migrations 00005 and 00007).
const (
	hourOf   = "date_trunc('hour', occurred_at AT TIME ZONE 'UTC')"
	dayOf    = "date_trunc('day', occurred_at AT TIME ZONE 'UTC')"
	orderKey = "(commit_order::text::numeric)"
)

// bounds returns, for a read with a time window or a position range, a
// WITH clause that finds the smallest (lo) and largest (hi) commit-order key
// of the events inside them, with probes of an index per hour or day (see
// timeProbe) or per block of positions (migrations 00005 and 00007). The
// read then walks the commit-order index from lo to hi only, starting
// where the cursor or lo says, whichever is later, and
// stops at hi instead of the end of the table. ok is false when the window
// holds no event. The bounds come from the same statement, so from the same
// snapshot, as the rows read: no event can fall between them (G4).
//
// It returns "" when f has neither.
func (q *query) bounds(f store.Filter) string {
	var lows, highs []string
	// Time window: the hours at its edges, the whole days between them
	// (see timeProbe).
	var span string
	if !f.Since.IsZero() || !f.Until.IsZero() {
		var window string
		first, last := "(SELECT "+hourOf+" FROM event_store ORDER BY 1 LIMIT 1)",
			"(SELECT "+hourOf+" FROM event_store ORDER BY 1 DESC LIMIT 1)"
		if !f.Since.IsZero() {
			since := q.arg(f.Since) + "::timestamptz"
			window += " AND " + unindexedTime + " >= " + since
			first = "date_trunc('hour', " + since + " AT TIME ZONE 'UTC')"
		}
		if !f.Until.IsZero() {
			until := q.arg(f.Until) + "::timestamptz"
			window += " AND " + unindexedTimeEnd + " < " + until
			last = "date_trunc('hour', (" + until + " - interval '1 microsecond') AT TIME ZONE 'UTC')"
		}
		// f and l are the first and the last hour of the window; da and
		// db the first whole day in it and the day after the last.
		span = "span_ AS MATERIALIZED (SELECT s.f, s.l, date_trunc('day', s.f + interval '23 hours') AS da," +
			" date_trunc('day', s.l + interval '1 hour') AS db FROM (SELECT " + first + " AS f, " + last + " AS l) s), "
		// A window of two days or less is probed hour by hour: the day
		// level would save no probe, and its loose scan costs about a
		// millisecond of planning.
		days := f.ProbesDays()
		if !f.Since.IsZero() {
			lows = append(lows, timeProbe("min", window, days))
		}
		if !f.Until.IsZero() {
			highs = append(highs, timeProbe("max", window, days))
		}
	}
	// Position range: blocks of positions, the same way.
	if f.FromPosition > 0 || f.ToPosition > 0 {
		var window string
		first, last := "(SELECT min(id) FROM event_store)", "(SELECT max(id) FROM event_store)"
		if f.FromPosition > 0 {
			from := q.arg(f.FromPosition) + "::bigint"
			window += " AND " + unindexedPosition + " >= " + from
			first = from
		}
		if f.ToPosition > 0 {
			to := q.arg(f.ToPosition) + "::bigint"
			window += " AND " + unindexedPosEnd + " <= " + to
			last = to
		}
		block := strconv.Itoa(positionBlock)
		probe := func(dir string) string {
			return "(SELECT p.c::text::xid8 FROM generate_series(" + first + " / " + block + ", " + last + " / " + block + ") AS g(b)" +
				" CROSS JOIN LATERAL (SELECT " + orderKey + " AS c FROM event_store WHERE id / " + block + " = g.b" + window +
				" ORDER BY " + orderKey + " " + dir + " LIMIT 1) p ORDER BY p.c " + dir + " LIMIT 1)"
		}
		wide := "(" + last + ") / " + block + " - (" + first + ") / " + block + " > " + strconv.Itoa(maxProbes)
		if f.FromPosition > 0 {
			lows = append(lows, "CASE WHEN "+wide+" THEN '0'::xid8 ELSE "+probe("")+" END")
		}
		if f.ToPosition > 0 {
			highs = append(highs, "CASE WHEN "+wide+" THEN '18446744073709551615'::xid8 ELSE "+probe("DESC")+" END")
		}
	}
	if len(lows)+len(highs) == 0 {
		return ""
	}
	var cols, ok, lo, hi []string
	for i, l := range lows {
		name := "l" + strconv.Itoa(i)
		cols, ok, lo = append(cols, l+" AS "+name), append(ok, name+" IS NOT NULL"), append(lo, name)
	}
	for i, h := range highs {
		name := "h" + strconv.Itoa(i)
		cols, ok, hi = append(cols, h+" AS "+name), append(ok, name+" IS NOT NULL"), append(hi, name)
	}
	loExpr, hiExpr := "'0'::xid8", "'18446744073709551615'::xid8"
	if len(lo) > 0 {
		loExpr = "greatest(" + strings.Join(lo, ", ") + ")"
	}
	if len(hi) > 0 {
		hiExpr = "least(" + strings.Join(hi, ", ") + ")"
	}
	return "WITH " + span + "bound AS MATERIALIZED (SELECT " + strings.Join(cols, ", ") + ")," +
		" window_ AS MATERIALIZED (SELECT " + strings.Join(ok, " AND ") + " AS ok, " + loExpr + " AS lo, " + hiExpr + " AS hi FROM bound) "
}

// timeProbe returns the smallest (agg "min") or the largest ("max")
// commit-order key, as a number, of the events inside a time window
// (window: its conditions on occurred_at), or NULL when it holds none. It
// reads the window's span from span_ (see bounds).
//
// The hours at the window's edges, up to 24 at each end (every hour of a
// short window, when days is false), are probed one by one in
// event_store_hour_idx, each with the window's conditions: a probe skips,
// inside its hour, the entries outside the window. The whole days
// between them are probed in event_store_day_idx, with no condition, and
// only the days that hold events: each step of a loose index scan finds
// the next (for min; the previous, for max) day with an event and that
// day's smallest (largest) key in one descent. The cost is O(days that
// hold events in the window + 48) probes, whatever the table's size and
// however far an event's occurred_at lies from its neighbours'.
func timeProbe(agg, window string, days bool) string {
	dir := ""
	if agg == "max" {
		dir = " DESC"
	}
	hours := "SELECT generate_series(s.f, s.l, interval '1 hour') FROM span_ s"
	if days {
		hours = "SELECT generate_series(s.f, least(s.da - interval '1 hour', s.l), interval '1 hour') FROM span_ s" +
			" UNION ALL SELECT generate_series(greatest(s.da, s.db), s.l, interval '1 hour') FROM span_ s"
	}
	probes := "SELECT p.c FROM (" + hours + ") AS g(h)" +
		" CROSS JOIN LATERAL (SELECT " + orderKey + " AS c FROM event_store WHERE " + hourOf + " = g.h" + window +
		" ORDER BY " + orderKey + dir + " LIMIT 1) p"
	if days {
		// The loose scan starts from a day just outside the whole days:
		// the one before them going up, the one after going down.
		next, outside := ">", "s.da - interval '1 day'"
		if agg == "max" {
			next, outside = "<", "s.db"
		}
		probes += " UNION ALL (WITH RECURSIVE days(d, c) AS (SELECT " + outside + ", NULL::numeric FROM span_ s" +
			" UNION ALL SELECT x.d, x.c FROM days CROSS JOIN span_ s CROSS JOIN LATERAL (SELECT " + dayOf + " AS d, " + orderKey +
			" AS c FROM event_store WHERE " + dayOf + " " + next + " days.d AND " + dayOf + " >= s.da AND " + dayOf + " < s.db" +
			" ORDER BY " + dayOf + dir + ", " + orderKey + dir + " LIMIT 1) x) SELECT c FROM days)"
	}
	return "(SELECT " + agg + "(c)::text::xid8 FROM (" + probes + ") AS probes)"
}

// commitOrderWhere returns the WHERE clause of a read in commit order with
// f, after the cursor and, when bounded, inside the window's commit-order
// range; typeCond is the condition on the type, if any.
func (q *query) commitOrderWhere(f store.Filter, bounded bool, typeCond string) string {
	order, pos := q.arg(f.After.Order)+"::xid8", q.arg(f.After.Position)+"::bigint"
	var sql strings.Builder
	if bounded {
		// One row comparison from the later of the cursor and lo, so that
		// the index scan starts there (two lower bounds on the same column
		// would leave the choice of the start to the index's key order).
		//
		// The upper bound is a row comparison too: PostgreSQL pairs two
		// plain bounds on one column into a range it guesses to be narrow,
		// and would then gather the range and sort it rather than walk it
		// in order and stop at the page's end.
		sql.WriteString(" WHERE (SELECT ok FROM window_) AND (commit_order, id) > (" +
			"(SELECT CASE WHEN lo > " + order + " THEN lo ELSE " + order + " END FROM window_), " +
			"(SELECT CASE WHEN lo > " + order + " THEN 0 ELSE " + pos + " END FROM window_))" +
			" AND (commit_order, id) <= ((SELECT hi FROM window_), 9223372036854775807)")
	} else {
		sql.WriteString(" WHERE (commit_order, id) > (" + order + ", " + pos + ")")
	}
	sql.WriteString(" AND " + visible + typeCond)
	sql.WriteString(q.filters(f))
	return sql.String()
}

// streamWhere returns the WHERE clause of a read of one stream with f: in
// a stream, version order is commit order (each event takes at least its
// predecessor's commit-order key, and a later position), so the read walks
// the stream index from the cursor's version on. A cursor that is not an
// event of the stream starts at the stream's beginning and skips what it
// passed. With a window (bounded, see bounds), the walk also starts at the
// stream's first version at or after the window's first commit-order key
// and ends before its first version past the last, each found by a binary
// search of the stream index (versions have no gaps): O(log² of the
// stream) instead of a walk of the stream up to the window.
func (q *query) streamWhere(f store.Filter, bounded bool, typeCond string) string {
	order, pos := q.arg(f.After.Order)+"::xid8", q.arg(f.After.Position)+"::bigint"
	subject := q.arg(f.Subject)
	where := " WHERE subject = " + subject + " AND stream_version >= coalesce((SELECT stream_version + 1 FROM event_store" +
		" WHERE id = " + pos + " AND subject = " + subject + " AND commit_order = " + order + "), 1)" +
		" AND (commit_order, id) > (" + order + ", " + pos + ") AND " + visible + typeCond + q.filters(f)
	if bounded {
		// firstVersion is the first version whose key is past(key).
		firstVersion := func(past string) string {
			return "(WITH RECURSIVE bs(l, h) AS (SELECT 1::bigint, coalesce((SELECT stream_version FROM event_store" +
				" WHERE subject = " + subject + " ORDER BY stream_version DESC LIMIT 1), 0) + 1" +
				" UNION ALL SELECT CASE WHEN m.past THEN bs.l ELSE m.v + 1 END, CASE WHEN m.past THEN m.v ELSE bs.h END" +
				" FROM bs CROSS JOIN LATERAL (SELECT (bs.l + bs.h) / 2 AS v, (SELECT " + past + " FROM event_store" +
				" WHERE subject = " + subject + " AND stream_version = (bs.l + bs.h) / 2) AS past) m WHERE bs.l < bs.h)" +
				" SELECT min(l) FROM bs WHERE l >= h)"
		}
		where += " AND (SELECT ok FROM window_)" +
			" AND stream_version >= " + firstVersion("commit_order >= (SELECT lo FROM window_)") +
			" AND stream_version < " + firstVersion("commit_order > (SELECT hi FROM window_)")
	}
	return where
}

// readSQL returns the statement of a read with f: a page of events in commit
// order, or their count.
func readSQL(f store.Filter, count bool) (string, []any) {
	var q query
	types := f.DistinctTypes()
	var typeCond string
	switch {
	case len(types) == 1:
		typeCond = " AND type = " + q.arg(types[0])
	case len(types) > 1 && count:
		typeCond = " AND type = ANY(" + q.arg(types) + "::text[])"
	}
	limit := f.EffectiveLimit()
	with := q.bounds(f)
	bounded := with != ""
	if f.Subject != "" {
		cond := q.streamWhere(f, bounded, typeCond+multiType(&q, types, count))
		if count {
			return with + "SELECT count(*) FROM event_store" + cond, q.args
		}
		return with + "SELECT " + columns + " FROM event_store" + cond + " ORDER BY stream_version LIMIT " + q.arg(limit), q.args
	}
	if len(types) > 1 && !count {
		// One walk of the type index per type, each stopping at the
		// page's end, merged: type = ANY(...) would read every event of
		// those types after the cursor and sort them.
		want := q.arg(types) + "::text[]"
		cond := q.commitOrderWhere(f, bounded, " AND type = t.want")
		lim := q.arg(limit)
		return with + "SELECT " + columns + " FROM unnest(" + want + ") AS t(want) CROSS JOIN LATERAL (SELECT id, event_id," +
			" type, source, subject, stream_version, occurred_at, recorded_at, correlation_id, causation_id, traceparent," +
			" tracestate, data, commit_order, dataschema FROM event_store" + cond + " ORDER BY commit_order, id LIMIT " + lim + ") e" +
			" ORDER BY commit_order, id LIMIT " + lim, q.args
	}
	cond := q.commitOrderWhere(f, bounded, typeCond)
	if count {
		return with + "SELECT count(*) FROM event_store" + cond, q.args
	}
	return with + "SELECT " + columns + " FROM event_store" + cond + " ORDER BY commit_order, id LIMIT " + q.arg(limit), q.args
}

// multiType is the type condition of a stream read with several types.
func multiType(q *query, types []string, count bool) string {
	if len(types) > 1 && !count {
		return " AND type = ANY(" + q.arg(types) + "::text[])"
	}
	return ""
}

// Read returns a page of events in commit order; see store.Reader. Its cost
// follows the page, not the table: each filter walks an index in commit
// order from the cursor and stops at the page's end or the window's.
func (s *Store) Read(ctx context.Context, f store.Filter) (store.Page, error) {
	if err := store.CheckFilter(f); err != nil {
		return store.Page{}, fmt.Errorf("postgres: read events: %w", err)
	}
	sql, args := readSQL(f, false)
	if filtered(f) {
		args = append([]any{readMode}, args...)
	}
	events, err := s.collect(ctx, "read events", f.EffectiveLimit(), sql, args...)
	if err != nil {
		return store.Page{}, err
	}
	return store.PageAfter(f.After, events), nil
}

// filtered reports whether f has a filter besides its cursor. A read
// without one (the relay's, tail's, the live stream's) has one plan
// whatever its arguments, a walk of event_store_commit_order_idx, so it
// keeps pgx's prepared statement and skips planning.
func filtered(f store.Filter) bool {
	return len(f.Types) > 0 || f.CorrelationID != uuid.Nil || f.Subject != "" || !f.Since.IsZero() ||
		!f.Until.IsZero() || f.FromPosition > 0 || f.ToPosition > 0
}

// Count counts the events Read would return with f.
func (s *Store) Count(ctx context.Context, f store.Filter) (int64, error) {
	if err := store.CheckFilter(f); err != nil {
		return 0, fmt.Errorf("postgres: count events: %w", err)
	}
	sql, args := readSQL(f, true)
	var n int64
	if !f.Since.IsZero() || !f.Until.IsZero() || f.FromPosition > 0 || f.ToPosition > 0 {
		// A count of a window walks the window's range of the
		// commit-order index. The planner cannot know how wide that range
		// is (its bounds come from the statement's own probes) and may
		// guess that a scan of the whole table is cheaper; say that it is
		// not, for this statement's transaction only.
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, sql, append([]any{readMode}, args...)...).Scan(&n)
		})
		if err != nil {
			return 0, s.wrap(err, "count events")
		}
		return n, nil
	}
	if err := s.pool.QueryRow(ctx, sql, append([]any{readMode}, args...)...).Scan(&n); err != nil {
		return 0, s.wrap(err, "count events")
	}
	return n, nil
}

// ReadStream returns a stream's events in version order.
func (s *Store) ReadStream(ctx context.Context, subject string, fromVersion int64, limit int) ([]event.Envelope, error) {
	if err := store.CheckFilter(store.Filter{Subject: subject}); err != nil {
		return nil, fmt.Errorf("postgres: read stream: %w", err)
	}
	limit = store.Filter{Limit: limit}.EffectiveLimit()
	return s.collect(ctx, "read stream", limit,
		StreamSQL, readMode, subject, fromVersion, limit)
}

// Get returns one event by ID.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (event.Envelope, error) {
	var r row
	err := r.scan(s.pool.QueryRow(ctx, "SELECT "+columns+" FROM event_store WHERE event_id = $1",
		pgtype.UUID{Bytes: id, Valid: true}))
	if errors.Is(err, pgx.ErrNoRows) {
		return event.Envelope{}, fmt.Errorf("postgres: get event %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return event.Envelope{}, s.wrap(err, "get event "+id.String())
	}
	return r.envelope(), nil
}

// exactCountBelow is the table size under which Stats counts rows exactly;
// above it the planner's estimate is close enough and far cheaper.
const exactCountBelow = 200000

// Stats reports store figures; see store.Stats.
//
// OldestTxAge looks at every database of the server, as readers' snapshots
// do. It needs to see other roles' transactions in pg_stat_activity: grant
// the store's role pg_monitor (or pg_read_all_stats), or it reports only
// the transactions of its own role.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var estimate float64
	var oldest pgtype.Interval
	var headOrder pgtype.Uint64
	var headID pgtype.Int8
	var oldestHeldBack pgtype.Timestamptz
	// The committed rows at or above the snapshot's xmin are the held-back
	// ones: this statement sees them, commit-order readers do not.
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT reltuples FROM pg_class WHERE oid = 'event_store'::regclass),
		held.n, held.oldest,
		(SELECT coalesce(max(now() - xact_start), '0') FROM pg_stat_activity
		  WHERE backend_xid IS NOT NULL),
		h.commit_order, h.id
		FROM (SELECT count(*) AS n, min(recorded_at) AS oldest FROM event_store
			WHERE commit_order >= pg_snapshot_xmin(pg_current_snapshot())) held
		LEFT JOIN LATERAL (
			SELECT commit_order, id FROM event_store WHERE `+visible+`
			ORDER BY commit_order DESC, id DESC LIMIT 1) h ON true`).
		Scan(&estimate, &st.HeldBack, &oldestHeldBack, &oldest, &headOrder, &headID)
	if err != nil {
		return st, s.wrap(err, "stats")
	}
	if oldestHeldBack.Valid {
		st.OldestHeldBack = oldestHeldBack.Time.UTC()
	}
	st.OldestTxAge = time.Duration(oldest.Microseconds+int64(oldest.Days)*86400e6) * time.Microsecond
	st.Head = store.Cursor{Order: headOrder.Uint64, Position: headID.Int64}
	if estimate >= exactCountBelow {
		st.Events = int64(estimate)
		return st, nil
	}
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM event_store").Scan(&st.Events); err != nil {
		return st, s.wrap(err, "stats: count events")
	}
	return st, nil
}

// Backlog counts events committed after c, up to limit, including those
// still held back by an open transaction.
func (s *Store) Backlog(ctx context.Context, c store.Cursor, limit int) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM event_store
		WHERE (commit_order, id) > ($1, $2) LIMIT $3) t`, c.Order, c.Position, limit).Scan(&n)
	if err != nil {
		return 0, s.wrap(err, "count backlog")
	}
	return n, nil
}

// ReadSQL returns the statement, and its arguments, that Read (or, with
// count, Count) runs for f, so that tools can EXPLAIN a read exactly as the
// store runs it. f must pass store.CheckFilter.
func ReadSQL(f store.Filter, count bool) (string, []any) { return readSQL(f, count) }

// StreamSQL is the statement of ReadStream, with the subject, the first
// version and the limit as $1, $2 and $3.
const StreamSQL = "SELECT " + columns + " FROM event_store WHERE subject = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
