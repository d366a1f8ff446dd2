package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// The statements of an append.
type stmtID int

const (
	stmtProbe stmtID = iota
	stmtByID
	stmtInsert
	numStmts
)

var stmtSQL = [numStmts]string{
	// One probe per draft: is its ID stored, and where is its stream's head.
	stmtProbe: `SELECT (SELECT id FROM event_store WHERE event_id = ?1),
		(SELECT stream_version FROM event_store WHERE subject = ?2 ORDER BY stream_version DESC LIMIT 1)`,
	stmtByID: "SELECT " + columns + " FROM event_store WHERE id = ?",
	stmtInsert: `INSERT INTO event_store (event_id, type, source, subject, stream_version, occurred_at,
		recorded_at, correlation_id, causation_id, traceparent, tracestate, data, stream_hash, dataschema)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
}

// writer runs the statements of appends inside one transaction: the
// caller's (txWriter) or a commit group's (rawWriter).
type writer interface {
	// exec runs a statement and returns the rowid it inserted, if any.
	exec(ctx context.Context, id stmtID, args ...any) (int64, error)
	// queryRow runs a query; its Scan reports sql.ErrNoRows for no row.
	queryRow(ctx context.Context, id stmtID, args ...any) scanner
}

// txWriter runs statements in a *sql.Tx.
type txWriter struct{ tx *sql.Tx }

func (w txWriter) exec(ctx context.Context, id stmtID, args ...any) (int64, error) {
	res, err := w.tx.ExecContext(ctx, stmtSQL[id], args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (w txWriter) queryRow(ctx context.Context, id stmtID, args ...any) scanner {
	return w.tx.QueryRowContext(ctx, stmtSQL[id], args...)
}

// handlerKey marks the context HandleOnce passes to its handler, so that a
// handler that calls Append instead of AppendTx gets an error rather than
// waiting forever for the connection its own transaction holds.
type handlerKey struct{}

// Append stores drafts atomically in a transaction of the store's own; see
// store.Store. Concurrent calls share a transaction and its fsync (group
// commit), each with its own outcome: a call that fails (a version
// conflict, an error while writing) stores nothing and leaves the others
// untouched.
func (s *Store) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("append %d events", len(drafts))
	if ctx.Value(handlerKey{}) == s {
		return nil, fmt.Errorf("sqlite: %s: called inside HandleOnce's transaction, which holds the store's only write connection: use AppendTx with the handler's tx", op)
	}
	if s.closed.Load() {
		return nil, s.wrap(errClosed, op)
	}
	return s.group.submit(ctx, s, &request{ctx: ctx, drafts: drafts, op: op})
}

// AppendTx stores drafts inside tx, which must come from DB().BeginTx; see
// the package documentation. A failed AppendTx undoes only itself: it runs
// in a savepoint, so tx stays usable, as it was before the call (unless ctx
// ended during a write: SQLite then rolls back the whole transaction).
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, drafts []event.Draft) ([]store.Appended, error) {
	if tx == nil {
		return s.Append(ctx, drafts)
	}
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("append %d events", len(drafts))
	if _, err := tx.ExecContext(ctx, "SAVEPOINT eventbus_append"); err != nil {
		return nil, s.wrap(err, op)
	}
	res, _, err := s.appendRows(ctx, txWriter{tx}, drafts, op)
	// The savepoint is closed even if ctx is done: the transaction must be
	// left as it was.
	cleanup := context.WithoutCancel(ctx)
	if err != nil {
		if _, rbErr := tx.ExecContext(cleanup, "ROLLBACK TO eventbus_append"); rbErr != nil {
			return nil, errors.Join(err, s.wrap(rbErr, op+": roll back"))
		}
	}
	if _, relErr := tx.ExecContext(cleanup, "RELEASE eventbus_append"); relErr != nil {
		return nil, errors.Join(err, s.wrap(relErr, op+": release"))
	}
	return res, err
}

// appendRows appends drafts in w's transaction, which holds the write lock.
// Nothing runs between this function's reads and its inserts, so the
// duplicate checks and stream versions it computes hold at commit. Every
// check comes before the first insert: wrote reports that an error came
// after it, when the transaction holds part of the batch.
func (s *Store) appendRows(ctx context.Context, w writer, drafts []event.Draft, op string) (_ []store.Appended, wrote bool, _ error) {
	out := make([]store.Appended, len(drafts))
	fresh := make([]bool, len(drafts))
	versions := make([]int64, len(drafts))
	var heads map[string]int64
	anyFresh := false
	for i := range drafts {
		d := &drafts[i]
		var stored, head sql.NullInt64
		if err := w.queryRow(ctx, stmtProbe, d.ID.String(), nullText(d.Subject)).Scan(&stored, &head); err != nil {
			return nil, false, s.wrap(err, op+": look up "+d.ID.String())
		}
		if stored.Valid {
			e, err := scanEvent(w.queryRow(ctx, stmtByID, stored.Int64))
			if err != nil {
				return nil, false, s.wrap(err, op+": read the stored "+d.ID.String())
			}
			out[i] = store.Appended{Envelope: e, Duplicate: true}
			continue
		}
		fresh[i], anyFresh = true, true
		if d.Subject == "" {
			continue
		}
		// A stream's head moves with each new event of the batch.
		v := head.Int64
		if prev, ok := heads[d.Subject]; ok {
			v = prev
		} else if heads == nil {
			heads = map[string]int64{}
		}
		if d.ExpectedVersion != nil && *d.ExpectedVersion != v {
			return nil, false, fmt.Errorf("sqlite: %s: %w: stream %q is at version %d, expected %d",
				op, store.ErrVersionConflict, d.Subject, v, *d.ExpectedVersion)
		}
		heads[d.Subject] = v + 1
		versions[i] = v + 1
	}
	if !anyFresh {
		return out, false, nil
	}

	recorded := time.Now().UnixMicro()
	for i, d := range drafts {
		if !fresh[i] {
			continue
		}
		occurred := d.OccurredAt.UnixMicro()
		id, err := w.exec(ctx, stmtInsert, d.ID.String(), d.Type, d.Source, nullText(d.Subject),
			nullVersion(versions[i]), occurred, recorded, d.CorrelationID.String(), nullUUID(d.CausationID),
			nullText(d.TraceParent), nullText(d.TraceState), string(d.Data), int64(event.StreamHash(d.Subject, d.ID)),
			nullText(d.DataSchema))
		if err != nil {
			return nil, true, s.wrap(err, op+": insert "+d.ID.String())
		}
		out[i] = store.Appended{Envelope: event.Envelope{
			ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject, StreamVersion: versions[i],
			OccurredAt: time.UnixMicro(occurred).UTC(), RecordedAt: time.UnixMicro(recorded).UTC(),
			CorrelationID: d.CorrelationID, CausationID: d.CausationID,
			TraceParent: d.TraceParent, TraceState: d.TraceState,
			Position: id, CommitOrder: uint64(id), Data: d.Data, DataSchema: d.DataSchema,
		}}
	}
	return out, false, nil
}

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullVersion(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}
