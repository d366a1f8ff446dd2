package postgres

import (
	"context"
	"encoding/json"
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
	data          string
	commitOrder   uint64
	dataSchema    pgtype.Text
}

func (r *row) scan(rows pgx.Row) error {
	return rows.Scan(&r.position, &r.eventID, &r.typ, &r.source, &r.subject, &r.version, &r.occurredAt,
		&r.recordedAt, &r.correlationID, &r.causationID, &r.traceParent, &r.traceState, &r.data, &r.commitOrder, &r.dataSchema)
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
		Data:          json.RawMessage(r.data),
		DataSchema:    r.dataSchema.String,
	}
}

func (s *Store) collect(ctx context.Context, op, sql string, args ...any) ([]event.Envelope, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer rows.Close()
	var out []event.Envelope
	for rows.Next() {
		var r row
		if err := r.scan(rows); err != nil {
			return nil, s.wrap(err, op)
		}
		out = append(out, r.envelope())
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, op)
	}
	return out, nil
}

// where builds the WHERE clause of a commit-order read with f, and its
// arguments.
func where(f store.Filter) (string, []any) {
	var sql strings.Builder
	args := []any{f.After.Order, f.After.Position}
	sql.WriteString(" WHERE (commit_order, id) > ($1, $2) AND " + visible)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(f.Types) > 0 {
		sql.WriteString(" AND type = ANY(" + arg(f.Types) + ")")
	}
	if f.CorrelationID != uuid.Nil {
		sql.WriteString(" AND correlation_id = " + arg(pgtype.UUID{Bytes: f.CorrelationID, Valid: true}))
	}
	if f.Subject != "" {
		sql.WriteString(" AND subject = " + arg(f.Subject))
	}
	if !f.Since.IsZero() {
		sql.WriteString(" AND occurred_at >= " + arg(f.Since))
	}
	if !f.Until.IsZero() {
		sql.WriteString(" AND occurred_at < " + arg(f.Until))
	}
	if f.FromPosition > 0 {
		sql.WriteString(" AND id >= " + arg(f.FromPosition))
	}
	if f.ToPosition > 0 {
		sql.WriteString(" AND id <= " + arg(f.ToPosition))
	}
	return sql.String(), args
}

// Read returns a page of events in commit order; see store.Reader.
func (s *Store) Read(ctx context.Context, f store.Filter) (store.Page, error) {
	if err := store.CheckFilter(f); err != nil {
		return store.Page{}, fmt.Errorf("postgres: read events: %w", err)
	}
	cond, args := where(f)
	args = append(args, f.EffectiveLimit())
	sql := "SELECT " + columns + " FROM event_store" + cond + " ORDER BY commit_order, id LIMIT $" + strconv.Itoa(len(args))
	events, err := s.collect(ctx, "read events", sql, args...)
	if err != nil {
		return store.Page{}, err
	}
	return store.PageAfter(f.After, events), nil
}

// Count counts the events Read would return with f.
func (s *Store) Count(ctx context.Context, f store.Filter) (int64, error) {
	if err := store.CheckFilter(f); err != nil {
		return 0, fmt.Errorf("postgres: count events: %w", err)
	}
	cond, args := where(f)
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM event_store"+cond, args...).Scan(&n); err != nil {
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
	return s.collect(ctx, "read stream",
		"SELECT "+columns+" FROM event_store WHERE subject = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3",
		subject, fromVersion, limit)
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
