package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"
)

const inboxInsert = `INSERT INTO eventbus_inbox (consumer_group, event_id, handled_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`

// HandleOnce runs fn in a transaction that records (group, id) in the inbox;
// see store.Inbox. The transaction is IMMEDIATE on the write connection, so
// a concurrent delivery of the same event waits for it, then finds the
// record and skips fn. Every other writer of the store waits while fn runs:
// keep handlers short, and write only through tx (Append inside fn fails).
func (s *Store) HandleOnce(ctx context.Context, group string, id uuid.UUID, fn func(ctx context.Context, tx *sql.Tx) error) (handled bool, err error) {
	op := "inbox: handle " + id.String() + " for " + group
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, s.wrap(err, op)
	}
	defer func() {
		if !handled {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, inboxInsert, group, id.String(), time.Now().UnixMicro())
	if err != nil {
		return false, s.wrap(err, op)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, s.wrap(err, op)
	} else if n == 0 {
		return false, nil
	}
	if err := fn(context.WithValue(ctx, handlerKey{}, s), tx); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, s.wrap(err, op+": commit")
	}
	return true, nil
}

// MarkHandled records (group, id) on its own.
func (s *Store) MarkHandled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	res, err := s.write.ExecContext(ctx, inboxInsert, group, id.String(), time.Now().UnixMicro())
	if err != nil {
		return false, s.wrap(err, "inbox: record "+id.String()+" for "+group)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.wrap(err, "inbox: record "+id.String()+" for "+group)
	}
	return n == 1, nil
}

// Handled reports whether (group, id) is recorded.
func (s *Store) Handled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, `SELECT 1 FROM eventbus_inbox WHERE consumer_group = ? AND event_id = ?`,
		group, id.String()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.wrap(err, "inbox: look up "+id.String()+" for "+group)
	}
	return true, nil
}
