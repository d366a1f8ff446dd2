package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

const parkedColumns = `relay, "partition", event_id, position, type, stream, stream_version, reason, attempts,
	parked_at, last_attempt_at, retry_requested`

func scanParked(r scanner) (store.ParkedEvent, error) {
	var e store.ParkedEvent
	var id string
	var parkedAt, lastAt int64
	if err := r.Scan(&e.Relay, &e.Number, &id, &e.Position, &e.Type, &e.Stream, &e.StreamVersion, &e.Reason,
		&e.Attempts, &parkedAt, &lastAt, &e.RetryRequested); err != nil {
		return e, err
	}
	var err error
	if e.EventID, err = uuid.Parse(id); err != nil {
		return e, fmt.Errorf("parked event id %q: %w", id, err)
	}
	e.ParkedAt = time.UnixMicro(parkedAt).UTC()
	e.LastAttemptAt = time.UnixMicro(lastAt).UTC()
	return e, nil
}

type rowsScanner interface {
	scanner
	Next() bool
	Err() error
	Close() error
}

func collectParked[R rowsScanner](rows R, err error) ([]store.ParkedEvent, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := []store.ParkedEvent{}
	for rows.Next() {
		e, err := scanParked(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Park records a parked event; see store.Parking.
func (s *Store) Park(ctx context.Context, e store.ParkedEvent) error {
	now := time.Now().UnixMicro()
	_, err := s.write.ExecContext(ctx, `
		INSERT INTO eventbus_parked_events (relay, "partition", event_id, position, type, stream, stream_version,
		                                    reason, attempts, parked_at, last_attempt_at)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
		ON CONFLICT (relay, "partition", event_id) DO UPDATE
		   SET reason = excluded.reason, attempts = attempts + excluded.attempts,
		       last_attempt_at = excluded.last_attempt_at, retry_requested = 0`,
		e.Relay, e.Number, e.EventID.String(), e.Position, e.Type, e.Stream, e.StreamVersion, e.Reason, e.Attempts, now)
	return s.wrap(err, fmt.Sprintf("park event %s for relay partition %s", e.EventID, partitionName(e.Partition)))
}

// Parked lists a relay's parked events by position.
func (s *Store) Parked(ctx context.Context, relay string) ([]store.ParkedEvent, error) {
	out, err := collectParked(s.read.QueryContext(ctx, `SELECT `+parkedColumns+` FROM eventbus_parked_events
		WHERE relay = ? ORDER BY position, "partition"`, relay))
	return out, s.wrap(err, "list parked events of relay "+relay)
}

// RequestRetry marks parked events for retry, with the events parked before
// them in their streams; see store.Parking.
func (s *Store) RequestRetry(ctx context.Context, relay string, ids []uuid.UUID, all bool) ([]store.ParkedEvent, error) {
	texts := make([]string, len(ids))
	for i, id := range ids {
		texts[i] = id.String()
	}
	idsJSON, err := json.Marshal(texts)
	if err != nil {
		return nil, fmt.Errorf("sqlite: request a retry of parked events: %w", err)
	}
	out, err := collectParked(s.write.QueryContext(ctx, `
		WITH wanted AS (
			SELECT "partition", event_id, stream, stream_version FROM eventbus_parked_events
			 WHERE relay = ?1 AND (?3 OR event_id IN (SELECT value FROM json_each(?2))))
		UPDATE eventbus_parked_events AS p SET retry_requested = 1
		 WHERE p.relay = ?1
		   AND (EXISTS (SELECT 1 FROM wanted w WHERE w."partition" = p."partition" AND w.event_id = p.event_id)
		        OR (p.stream <> '' AND EXISTS (SELECT 1 FROM wanted w
		             WHERE w."partition" = p."partition" AND w.stream = p.stream AND w.stream_version > p.stream_version)))
		RETURNING `+parkedColumns, relay, string(idsJSON), all))
	if err != nil {
		return nil, s.wrap(err, "request a retry of parked events of relay "+relay)
	}
	store.SortParked(out)
	return out, nil
}

// Unpark forgets a parked event once it is published.
func (s *Store) Unpark(ctx context.Context, p store.Partition, id uuid.UUID) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM eventbus_parked_events WHERE relay = ? AND "partition" = ? AND event_id = ?`,
		p.Relay, p.Number, id.String())
	return s.wrap(err, fmt.Sprintf("unpark event %s of relay partition %s", id, partitionName(p)))
}
