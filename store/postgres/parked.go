package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/store"
)

const parkedColumns = `relay, partition, event_id, position, type, stream, stream_version, reason, attempts,
	parked_at, last_attempt_at, retry_requested`

func scanParked(r pgx.Row) (store.ParkedEvent, error) {
	var e store.ParkedEvent
	err := r.Scan(&e.Relay, &e.Number, &e.EventID, &e.Position, &e.Type, &e.Stream, &e.StreamVersion, &e.Reason,
		&e.Attempts, &e.ParkedAt, &e.LastAttemptAt, &e.RetryRequested)
	return e, err
}

// collectParked reads the rows of a query of parkedColumns: an empty list,
// not nil, when there are none.
func collectParked(rows pgx.Rows, err error) ([]store.ParkedEvent, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ParkedEvent, error) { return scanParked(row) })
}

// Park records a parked event; see store.Parking.
func (s *Store) Park(ctx context.Context, e store.ParkedEvent) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO eventbus_parked_events AS p (relay, partition, event_id, position, type, stream, stream_version, reason, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (relay, partition, event_id) DO UPDATE
		   SET reason = excluded.reason, attempts = p.attempts + excluded.attempts,
		       last_attempt_at = clock_timestamp(), retry_requested = false`,
		e.Relay, e.Number, e.EventID, e.Position, e.Type, e.Stream, e.StreamVersion, e.Reason, e.Attempts)
	return s.wrap(err, fmt.Sprintf("park event %s for relay partition %s/%d", e.EventID, e.Relay, e.Number))
}

// Parked lists a relay's parked events by position.
func (s *Store) Parked(ctx context.Context, relay string) ([]store.ParkedEvent, error) {
	out, err := collectParked(s.pool.Query(ctx, `SELECT `+parkedColumns+` FROM eventbus_parked_events
		WHERE relay = $1 ORDER BY position, partition`, relay))
	return out, s.wrap(err, "list parked events of relay "+relay)
}

// RequestRetry marks parked events for retry, with the events parked before
// them in their streams; see store.Parking.
func (s *Store) RequestRetry(ctx context.Context, relay string, ids []uuid.UUID, all bool) ([]store.ParkedEvent, error) {
	if ids == nil {
		ids = []uuid.UUID{}
	}
	out, err := collectParked(s.pool.Query(ctx, `
		WITH wanted AS (
			SELECT partition, event_id, stream, stream_version FROM eventbus_parked_events
			 WHERE relay = $1 AND ($3 OR event_id = ANY ($2)))
		UPDATE eventbus_parked_events p SET retry_requested = true
		 WHERE p.relay = $1
		   AND ((p.partition, p.event_id) IN (SELECT partition, event_id FROM wanted)
		        OR (p.stream <> '' AND EXISTS (SELECT 1 FROM wanted w
		             WHERE w.partition = p.partition AND w.stream = p.stream AND w.stream_version > p.stream_version)))
		RETURNING `+parkedColumns, relay, ids, all))
	if err != nil {
		return nil, s.wrap(err, "request a retry of parked events of relay "+relay)
	}
	store.SortParked(out)
	return out, nil
}

// Unpark forgets a parked event once it is published.
func (s *Store) Unpark(ctx context.Context, p store.Partition, id uuid.UUID) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM eventbus_parked_events WHERE relay = $1 AND partition = $2 AND event_id = $3`,
		p.Relay, p.Number, id)
	return s.wrap(err, fmt.Sprintf("unpark event %s of relay partition %s/%d", id, p.Relay, p.Number))
}
