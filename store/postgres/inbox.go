package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

const inboxInsert = `INSERT INTO eventbus_inbox (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// HandleOnce runs fn in a transaction that records (group, id) in the inbox.
// A concurrent delivery of the same event waits on the inbox row, then finds
// it and skips fn.
//
// When ctx ends while the transaction is open (a handler past its
// HandlerTimeout, which its consumer abandons; a shutdown), the connection
// is closed at once: the server rolls the transaction back and releases the
// inbox row it locked, so that the event's retry does not wait behind a
// handler that may never return, and nothing that handler does afterwards
// can commit: its statements and its commit fail on the closed connection.
// The effect and the inbox record commit together or not at all, so the
// event takes effect once either way: if the commit won the race with ctx,
// the retry finds the record and skips fn.
func (s *Store) HandleOnce(ctx context.Context, group string, id uuid.UUID, fn func(context.Context, pgx.Tx) error) (handled bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, s.wrap(err, "inbox: begin")
	}
	netConn := tx.Conn().PgConn().Conn()
	closed := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(closed)
		_ = netConn.Close()
	})
	// detach stops watching ctx, before the connection goes back to the
	// pool; it reports false when the watch has closed the connection.
	watching, connClosed := true, false
	detach := func() bool {
		if watching {
			watching = false
			if !stopWatch() {
				<-closed
				connClosed = true
			}
		}
		return !connClosed
	}
	defer func() {
		if !handled {
			detach()
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	tag, err := tx.Exec(ctx, inboxInsert, group, pgtype.UUID{Bytes: id, Valid: true})
	if err != nil {
		return false, s.wrap(err, "inbox: record "+id.String())
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if err := fn(ctx, tx); err != nil {
		return false, err
	}
	if !detach() {
		return false, fmt.Errorf("postgres: inbox: commit %s: the handler's context ended first, and the transaction was rolled back: %w",
			id, context.Cause(ctx))
	}
	if err := tx.Commit(ctx); err != nil {
		return false, s.wrap(err, "inbox: commit "+id.String())
	}
	return true, nil
}

// MarkHandled records (group, id) on its own.
func (s *Store) MarkHandled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	tag, err := s.pool.Exec(ctx, inboxInsert, group, pgtype.UUID{Bytes: id, Valid: true})
	if err != nil {
		return false, s.wrap(err, "inbox: record "+id.String())
	}
	return tag.RowsAffected() == 1, nil
}

// Handled reports whether (group, id) is recorded.
func (s *Store) Handled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM eventbus_inbox WHERE consumer_group = $1 AND event_id = $2`,
		group, pgtype.UUID{Bytes: id, Valid: true}).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres: inbox lookup: %w", s.wrap(err, "inbox"))
	}
	return true, nil
}
