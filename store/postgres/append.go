package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// appendSQL calls eventbus_append (see the migrations), which appends a
// batch in one round trip.
const appendSQL = `SELECT r_ord, r_duplicate, r_id, r_type, r_source, r_subject, r_stream_version,
	r_occurred_at, r_recorded_at, r_correlation_id, r_causation_id, r_traceparent, r_tracestate,
	r_data, r_commit_order
	FROM eventbus_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`

// appendAttempts bounds how often Append runs its statement.
const appendAttempts = 3

// Append stores drafts atomically. One statement is its own transaction, so
// this is one round trip. The statement runs again when it lost a race that
// left nothing stored: another writer stored an event of the batch at the
// same moment (its original is then found and returned), or PostgreSQL broke
// a deadlock by cancelling it. Deadlocks come from callers' transactions that
// dispatch to several streams in separate calls, taking the streams' locks in
// their own order.
func (s *Store) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		out, err := s.append(ctx, s.pool, drafts)
		if attempt == appendAttempts || !(errors.Is(err, store.ErrConcurrentAppend) || errors.Is(err, store.ErrTxConflict)) {
			return out, err
		}
	}
}

// AppendTx stores drafts inside tx; see store.TxStore.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, drafts []event.Draft) ([]store.Appended, error) {
	if tx == nil {
		return s.Append(ctx, drafts)
	}
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	return s.append(ctx, tx, drafts)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) append(ctx context.Context, q querier, drafts []event.Draft) ([]store.Appended, error) {
	n := len(drafts)
	var (
		ids      = make([]pgtype.UUID, n)
		types    = make([]string, n)
		sources  = make([]string, n)
		subjects = make([]pgtype.Text, n)
		occurred = make([]time.Time, n)
		corr     = make([]pgtype.UUID, n)
		causes   = make([]pgtype.UUID, n)
		parents  = make([]pgtype.Text, n)
		states   = make([]pgtype.Text, n)
		data     = make([]string, n)
		expected = make([]pgtype.Int8, n)
	)
	for i, d := range drafts {
		ids[i] = pgtype.UUID{Bytes: d.ID, Valid: true}
		types[i] = d.Type
		sources[i] = d.Source
		subjects[i] = optionalText(d.Subject)
		occurred[i] = d.OccurredAt
		corr[i] = pgtype.UUID{Bytes: d.CorrelationID, Valid: true}
		causes[i] = pgtype.UUID{Bytes: d.CausationID, Valid: d.CausationID != [16]byte{}}
		parents[i] = optionalText(d.TraceParent)
		states[i] = optionalText(d.TraceState)
		data[i] = string(d.Data)
		if d.ExpectedVersion != nil {
			expected[i] = pgtype.Int8{Int64: *d.ExpectedVersion, Valid: true}
		}
	}
	op := fmt.Sprintf("append %d events", n)
	rows, err := q.Query(ctx, appendSQL, ids, types, sources, subjects, occurred, corr, causes, parents, states, data, expected)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer rows.Close()
	out := make([]store.Appended, n)
	seen := 0
	for rows.Next() {
		var (
			ord      int32
			dup      bool
			r        row
			typ, src pgtype.Text
			dataText pgtype.Text
		)
		if err := rows.Scan(&ord, &dup, &r.position, &typ, &src, &r.subject, &r.version, &r.occurredAt,
			&r.recordedAt, &r.correlationID, &r.causationID, &r.traceParent, &r.traceState,
			&dataText, &r.commitOrder); err != nil {
			return nil, s.wrap(err, op)
		}
		i := int(ord) - 1
		if i < 0 || i >= n {
			return nil, fmt.Errorf("postgres: %s: result for event %d", op, ord)
		}
		d := drafts[i]
		if dup {
			r.eventID = pgtype.UUID{Bytes: d.ID, Valid: true}
			r.typ, r.source, r.data = typ.String, src.String, dataText.String
			out[i] = store.Appended{Envelope: r.envelope(), Duplicate: true}
		} else {
			out[i] = store.Appended{Envelope: event.Envelope{
				ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject,
				StreamVersion: r.version.Int64, OccurredAt: d.OccurredAt.Truncate(event.TimePrecision).UTC(),
				RecordedAt: r.recordedAt.Time.UTC(), CorrelationID: d.CorrelationID,
				CausationID: d.CausationID, TraceParent: d.TraceParent, TraceState: d.TraceState,
				Position: r.position, CommitOrder: r.commitOrder, Data: d.Data,
			}}
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, op)
	}
	if seen != n {
		return nil, fmt.Errorf("postgres: %s: %d results", op, seen)
	}
	return out, nil
}

func optionalText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }
