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
// batch of several events in one round trip.
const appendSQL = `SELECT r_ord, r_duplicate, r_id, r_type, r_source, r_subject, r_stream_version,
	r_occurred_at, r_recorded_at, r_correlation_id, r_causation_id, r_traceparent, r_tracestate,
	r_data, r_commit_order, r_dataschema
	FROM eventbus_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`

// lockStreamsSQL takes the transaction-scoped locks of the streams named in
// $1, in the order eventbus_append takes them (hash order), so that appends
// of one event, groups of them and batches cannot deadlock each other.
const lockStreamsSQL = `SELECT pg_advisory_xact_lock(x.h)
	FROM (SELECT DISTINCT hashtextextended(s.subject, 0) AS h
	        FROM unnest($1::text[]) AS s(subject) ORDER BY 1) x`

// lockStreamSQL is lockStreamsSQL for one stream.
const lockStreamSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))`

// appendOneSQL appends one event in plain SQL, after lockStreamSQL (a
// statement of its own, so that this one's snapshot, taken once the lock is
// held, sees the stream's newest committed event). It does what
// eventbus_append does for one event, without PL/pgSQL, and raises no error
// for an outcome the caller expects, so that it can share a transaction
// with other appends (group commit):
//
//   - outcome 0: inserted; the columns the database assigned.
//   - outcome 1: an event with this ID is stored; its original. It wins over
//     a version conflict, so that a retry of a dispatch that committed
//     returns what it stored.
//   - outcome 2, alone: nothing inserted and no original visible; the
//     stream's version, for a version conflict. Without a conflict, the ID
//     was stored by a transaction that committed after this statement's
//     snapshot: the caller looks again.
//
// An event of a stream takes the commit-order key of the stream's previous
// event when that is higher than this transaction's id (G3, G4; see
// eventbus_append).
const appendOneSQL = `WITH head AS (
	SELECT coalesce(h.stream_version, 0) AS version,
	       greatest(h.commit_order, pg_current_xact_id()) AS commit_order
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (
	        SELECT e.stream_version, e.commit_order FROM event_store e
	         WHERE e.subject = $4::text ORDER BY e.stream_version DESC LIMIT 1) h ON true
), ins AS (
	INSERT INTO event_store AS e (event_id, type, source, subject, stream_version, occurred_at,
	                              correlation_id, causation_id, traceparent, tracestate, data, commit_order, stream_hash,
	                              dataschema)
	SELECT $1::uuid, $2::text, $3::text, $4::text,
	       CASE WHEN $4::text IS NULL THEN NULL ELSE head.version + 1 END,
	       $5::timestamptz, $6::uuid, $7::uuid, $8::text, $9::text, $10::text::json, head.commit_order, $12::bigint,
	       $13::text
	  FROM head
	 WHERE $4::text IS NULL OR $11::bigint IS NULL OR $11::bigint = head.version
	ON CONFLICT (event_id) DO NOTHING
	RETURNING e.id, e.stream_version, e.recorded_at, e.commit_order
)
SELECT 0, ins.id, NULL::text, NULL::text, NULL::text, ins.stream_version, NULL::timestamptz,
       ins.recorded_at, NULL::uuid, NULL::uuid, NULL::text, NULL::text, NULL::text, ins.commit_order, NULL::text
  FROM ins
UNION ALL
SELECT 1, o.id, o.type, o.source, o.subject, o.stream_version, o.occurred_at, o.recorded_at,
       o.correlation_id, o.causation_id, o.traceparent, o.tracestate, o.data::text, o.commit_order, o.dataschema
  FROM event_store o WHERE o.event_id = $1::uuid AND NOT EXISTS (SELECT FROM ins)
UNION ALL
SELECT 2, 0, NULL, NULL, NULL, head.version, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0'::xid8, NULL
  FROM head WHERE NOT EXISTS (SELECT FROM ins)`

// appendAttempts bounds how often Append runs its statement.
const appendAttempts = 3

// Append stores drafts atomically, in a transaction of the store's own. One
// event joins the group commit: concurrent appends share one transaction
// (see groupCommit). The append runs again when it lost a race that left
// nothing stored: another writer stored an event of the batch at the same
// moment (its original is then found and returned), or PostgreSQL broke a
// deadlock by cancelling it. Deadlocks come from callers' transactions that
// dispatch to several streams in separate calls, taking the streams' locks in
// their own order.
func (s *Store) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		var (
			out []store.Appended
			err error
		)
		if len(drafts) == 1 {
			var one store.Appended
			one, err = s.group.append(ctx, drafts[0])
			out = []store.Appended{one}
		} else {
			out, err = s.appendBatch(ctx, s.pool, drafts)
		}
		if err == nil {
			return out, nil
		}
		if attempt == appendAttempts || !(errors.Is(err, store.ErrConcurrentAppend) || errors.Is(err, store.ErrTxConflict)) {
			return nil, err
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
	if len(drafts) == 1 {
		out, err := s.appendOnes(ctx, tx, drafts)
		if err != nil {
			return nil, err
		}
		if out[0].err != nil {
			return nil, out[0].err
		}
		return []store.Appended{out[0].result}, nil
	}
	return s.appendBatch(ctx, tx, drafts)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type batcher interface {
	querier
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// oneResult is the outcome of one event appended by appendOnes.
type oneResult struct {
	result store.Appended
	err    error // the event's own error: a version conflict, a lost race
}

// appendOnes appends each draft as an event of its own, in one round trip
// and one transaction: q's, or, on the pool, an implicit transaction that
// commits when the batch ends. A draft's expected outcomes (stored, a
// duplicate, a version conflict) are its own result; an error returned
// means that nothing was stored.
func (s *Store) appendOnes(ctx context.Context, q batcher, drafts []event.Draft) ([]oneResult, error) {
	var subjects []string
	for _, d := range drafts {
		if d.Subject != "" {
			subjects = append(subjects, d.Subject)
		}
	}
	b := &pgx.Batch{}
	switch len(subjects) {
	case 0:
	case 1:
		b.Queue(lockStreamSQL, subjects[0])
	default:
		b.Queue(lockStreamsSQL, subjects)
	}
	for _, d := range drafts {
		var expected pgtype.Int8
		if d.ExpectedVersion != nil {
			expected = pgtype.Int8{Int64: *d.ExpectedVersion, Valid: true}
		}
		b.Queue(appendOneSQL, pgtype.UUID{Bytes: d.ID, Valid: true}, d.Type, d.Source, optionalText(d.Subject),
			d.OccurredAt, pgtype.UUID{Bytes: d.CorrelationID, Valid: true},
			pgtype.UUID{Bytes: d.CausationID, Valid: d.CausationID != [16]byte{}},
			optionalText(d.TraceParent), optionalText(d.TraceState), string(d.Data), expected, streamHash(d), optionalText(d.DataSchema))
	}
	op := "append 1 event"
	if len(drafts) > 1 {
		op = fmt.Sprintf("append %d events in one transaction", len(drafts))
	}
	out := make([]oneResult, len(drafts))
	raced := false
	err := func() error {
		br := q.SendBatch(ctx, b)
		defer br.Close()
		if len(subjects) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for i, d := range drafts {
			if err := readOne(br, d, &out[i]); err != nil {
				return err
			}
			raced = raced || errors.Is(out[i].err, store.ErrConcurrentAppend)
		}
		return br.Close()
	}()
	if err != nil {
		return nil, s.wrap(err, op)
	}
	if raced {
		// An event stored by a transaction that committed after the
		// statement's snapshot: a new statement sees it.
		for i, d := range drafts {
			if errors.Is(out[i].err, store.ErrConcurrentAppend) {
				s.lookAgain(ctx, q, d, &out[i])
			}
		}
	}
	return out, nil
}

// readOne reads the result of appendOneSQL for d into r.
func readOne(br pgx.BatchResults, d event.Draft, r *oneResult) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	best := -1
	var head int64
	for rows.Next() {
		var (
			outcome  int32
			o        row
			typ, src pgtype.Text
			dataText pgtype.Text
		)
		if err := rows.Scan(&outcome, &o.position, &typ, &src, &o.subject, &o.version, &o.occurredAt,
			&o.recordedAt, &o.correlationID, &o.causationID, &o.traceParent, &o.traceState,
			&dataText, &o.commitOrder, &o.dataSchema); err != nil {
			return err
		}
		switch {
		case outcome == 2:
			head = o.version.Int64
			if best < 0 {
				best = 2
			}
		case best < 0 || int(outcome) < best:
			best = int(outcome)
			if outcome == 0 {
				r.result = store.Appended{Envelope: inserted(d, o)}
			} else {
				o.eventID = pgtype.UUID{Bytes: d.ID, Valid: true}
				o.typ, o.source, o.data = typ.String, src.String, []byte(dataText.String)
				r.result = store.Appended{Envelope: o.envelope(), Duplicate: true}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	switch best {
	case 0, 1:
	case 2:
		if d.Subject != "" && d.ExpectedVersion != nil && *d.ExpectedVersion != head {
			r.err = fmt.Errorf("postgres: append 1 event: %w: stream %s is at version %d, expected %d",
				store.ErrVersionConflict, d.Subject, head, *d.ExpectedVersion)
		} else {
			r.err = fmt.Errorf("postgres: append 1 event: %w", store.ErrConcurrentAppend)
		}
	default:
		return errors.New("no result row")
	}
	return nil
}

// lookAgain looks for the original of d, which a concurrent transaction
// stored, with a statement of its own; r keeps ErrConcurrentAppend if it
// cannot see it either (REPEATABLE READ or stricter).
func (s *Store) lookAgain(ctx context.Context, q querier, d event.Draft, r *oneResult) {
	rows, err := q.Query(ctx, "SELECT "+columns+" FROM event_store WHERE event_id = $1", pgtype.UUID{Bytes: d.ID, Valid: true})
	if err != nil {
		r.err = s.wrap(err, "append 1 event: look up the original")
		return
	}
	defer rows.Close()
	if rows.Next() {
		var o row
		if err := o.scan(rows); err != nil {
			r.err = s.wrap(err, "append 1 event: look up the original")
			return
		}
		r.result, r.err = store.Appended{Envelope: o.envelope(), Duplicate: true}, nil
	}
	if err := rows.Err(); err != nil {
		r.err = s.wrap(err, "append 1 event: look up the original")
	}
}

// inserted is the envelope of d as stored, with the columns the database
// assigned from o.
func inserted(d event.Draft, o row) event.Envelope {
	return event.Envelope{
		ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject,
		StreamVersion: o.version.Int64, OccurredAt: d.OccurredAt.Truncate(event.TimePrecision).UTC(),
		RecordedAt: o.recordedAt.Time.UTC(), CorrelationID: d.CorrelationID,
		CausationID: d.CausationID, TraceParent: d.TraceParent, TraceState: d.TraceState,
		Position: o.position, CommitOrder: o.commitOrder, Data: d.Data, DataSchema: d.DataSchema,
	}
}

// appendBatch appends several events atomically with eventbus_append.
func (s *Store) appendBatch(ctx context.Context, q querier, drafts []event.Draft) ([]store.Appended, error) {
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
		hashes   = make([]int64, n)
		schemas  = make([]pgtype.Text, n)
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
		hashes[i] = streamHash(d)
		schemas[i] = optionalText(d.DataSchema)
		if d.ExpectedVersion != nil {
			expected[i] = pgtype.Int8{Int64: *d.ExpectedVersion, Valid: true}
		}
	}
	op := fmt.Sprintf("append %d events", n)
	rows, err := q.Query(ctx, appendSQL, ids, types, sources, subjects, occurred, corr, causes, parents, states, data, expected, hashes, schemas)
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
			&dataText, &r.commitOrder, &r.dataSchema); err != nil {
			return nil, s.wrap(err, op)
		}
		i := int(ord) - 1
		if i < 0 || i >= n {
			return nil, fmt.Errorf("postgres: %s: result for event %d", op, ord)
		}
		d := drafts[i]
		if dup {
			r.eventID = pgtype.UUID{Bytes: d.ID, Valid: true}
			r.typ, r.source, r.data = typ.String, src.String, []byte(dataText.String)
			out[i] = store.Appended{Envelope: r.envelope(), Duplicate: true}
		} else {
			out[i] = store.Appended{Envelope: inserted(d, r)}
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

// streamHash is the stream_hash column of d: the hash the relay's
// partitions are split by (event.PartitionOf).
func streamHash(d event.Draft) int64 { return int64(event.StreamHash(d.Subject, d.ID)) }
