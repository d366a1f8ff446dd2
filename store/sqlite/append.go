package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// The statements of an append, prepared once on the write connection.
type stmtID int

const (
	stmtProbe stmtID = iota
	stmtByID
	stmtInsert
	stmtSavepoint
	stmtRelease
	stmtRollbackTo
	numStmts
)

var stmtSQL = [numStmts]string{
	// One probe per draft: is its ID stored, and where is its stream's head.
	stmtProbe: `SELECT (SELECT id FROM event_store WHERE event_id = ?1),
		(SELECT stream_version FROM event_store WHERE subject = ?2 ORDER BY stream_version DESC LIMIT 1)`,
	stmtByID: "SELECT " + columns + " FROM event_store WHERE id = ?",
	stmtInsert: `INSERT INTO event_store (event_id, type, source, subject, stream_version, occurred_at,
		recorded_at, correlation_id, causation_id, traceparent, tracestate, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	// One append's savepoint: a failed append inside a larger transaction
	// (the caller's, or a commit group) undoes only itself.
	stmtSavepoint:  "SAVEPOINT eventbus_append",
	stmtRelease:    "RELEASE eventbus_append",
	stmtRollbackTo: "ROLLBACK TO eventbus_append",
}

// statements holds the append statements prepared on the write pool. They
// are prepared on first use, once the schema exists.
type statements struct {
	mu    sync.Mutex
	ready bool
	stmt  [numStmts]*sql.Stmt
}

// prepare prepares the statements on db unless that is done. It must not be
// called while the write connection is held: preparing takes it.
func (st *statements) prepare(ctx context.Context, db *sql.DB) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready {
		return nil
	}
	for i, q := range stmtSQL {
		if st.stmt[i] != nil {
			continue
		}
		p, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare (is the schema migrated?): %w", err)
		}
		st.stmt[i] = p
	}
	st.ready = true
	return nil
}

func (st *statements) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, p := range st.stmt {
		if p != nil {
			_ = p.Close()
			st.stmt[i] = nil
		}
	}
	st.ready = false
}

// writer runs the statements of appends in one transaction, through the
// prepared statements when the transaction is on the write pool.
type writer struct {
	tx       *sql.Tx
	prepared *[numStmts]*sql.Stmt // nil: prepare each statement as it runs
	bound    [numStmts]*sql.Stmt
}

func (w *writer) stmt(ctx context.Context, id stmtID) *sql.Stmt {
	if w.bound[id] == nil {
		w.bound[id] = w.tx.StmtContext(ctx, w.prepared[id])
	}
	return w.bound[id]
}

func (w *writer) exec(ctx context.Context, id stmtID, args ...any) (sql.Result, error) {
	if w.prepared == nil {
		return w.tx.ExecContext(ctx, stmtSQL[id], args...)
	}
	return w.stmt(ctx, id).ExecContext(ctx, args...)
}

func (w *writer) queryRow(ctx context.Context, id stmtID, args ...any) *sql.Row {
	if w.prepared == nil {
		return w.tx.QueryRowContext(ctx, stmtSQL[id], args...)
	}
	return w.stmt(ctx, id).QueryRowContext(ctx, args...)
}

// handlerKey marks the context HandleOnce passes to its handler, so that a
// handler that calls Append instead of AppendTx gets an error rather than
// waiting forever for the connection its own transaction holds.
type handlerKey struct{}

// Append stores drafts atomically in a transaction of the store's own; see
// store.Store. Concurrent calls share a transaction and its fsync (group
// commit). A call that fails its checks (a version conflict) writes nothing
// and leaves the others untouched; an error while writing fails the group,
// so that no call commits in part.
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
// the package documentation. A failed AppendTx undoes only itself: tx stays
// usable, as it was before the call, unless the error is the context's.
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, drafts []event.Draft) ([]store.Appended, error) {
	if tx == nil {
		return s.Append(ctx, drafts)
	}
	if err := store.CheckDrafts(drafts); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("append %d events", len(drafts))
	res, err, _ := s.appendSavepoint(ctx, &writer{tx: tx}, drafts, op)
	return res, err
}

// appendSavepoint appends drafts inside a savepoint of w's transaction and
// rolls back to it on failure. broken reports that the transaction itself
// is gone (SQLite rolls a whole transaction back on some errors), so that a
// commit group fails every member.
func (s *Store) appendSavepoint(ctx context.Context, w *writer, drafts []event.Draft, op string) (res []store.Appended, err error, broken bool) {
	if _, err := w.exec(ctx, stmtSavepoint); err != nil {
		return nil, s.wrap(err, op), true
	}
	res, err, _ = s.appendRows(ctx, w, drafts, op)
	// The savepoint is closed even if ctx is done: the transaction must be
	// left as it was.
	cleanup := context.WithoutCancel(ctx)
	if err != nil {
		if _, rbErr := w.exec(cleanup, stmtRollbackTo); rbErr != nil {
			return nil, errors.Join(err, s.wrap(rbErr, op+": roll back")), true
		}
		if _, relErr := w.exec(cleanup, stmtRelease); relErr != nil {
			return nil, errors.Join(err, s.wrap(relErr, op+": release")), true
		}
		return nil, err, false
	}
	if _, err := w.exec(cleanup, stmtRelease); err != nil {
		return nil, s.wrap(err, op+": release"), true
	}
	return res, nil, false
}

// appendRows appends drafts in w's transaction, which holds the write lock.
// Nothing runs between this function's reads and its inserts, so the
// duplicate checks and stream versions it computes hold at commit. Every
// check comes before the first insert: wrote reports that an error came
// after it, when the transaction holds part of the batch.
func (s *Store) appendRows(ctx context.Context, w *writer, drafts []event.Draft, op string) (_ []store.Appended, _ error, wrote bool) {
	out := make([]store.Appended, len(drafts))
	fresh := make([]bool, len(drafts))
	versions := make([]int64, len(drafts))
	var heads map[string]int64
	anyFresh := false
	for i := range drafts {
		d := &drafts[i]
		var stored, head sql.NullInt64
		if err := w.queryRow(ctx, stmtProbe, d.ID.String(), nullText(d.Subject)).Scan(&stored, &head); err != nil {
			return nil, s.wrap(err, op+": look up "+d.ID.String()), false
		}
		if stored.Valid {
			e, err := scanEvent(w.queryRow(ctx, stmtByID, stored.Int64))
			if err != nil {
				return nil, s.wrap(err, op+": read the stored "+d.ID.String()), false
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
			return nil, fmt.Errorf("sqlite: %s: %w: stream %q is at version %d, expected %d",
				op, store.ErrVersionConflict, d.Subject, v, *d.ExpectedVersion), false
		}
		heads[d.Subject] = v + 1
		versions[i] = v + 1
	}
	if !anyFresh {
		return out, nil, false
	}

	recorded := time.Now().UnixMicro()
	for i, d := range drafts {
		if !fresh[i] {
			continue
		}
		occurred := d.OccurredAt.UnixMicro()
		res, err := w.exec(ctx, stmtInsert, d.ID.String(), d.Type, d.Source, nullText(d.Subject),
			nullVersion(versions[i]), occurred, recorded, d.CorrelationID.String(), nullUUID(d.CausationID),
			nullText(d.TraceParent), nullText(d.TraceState), string(d.Data))
		if err != nil {
			return nil, s.wrap(err, op+": insert "+d.ID.String()), true
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, s.wrap(err, op+": insert "+d.ID.String()), true
		}
		out[i] = store.Appended{Envelope: event.Envelope{
			ID: d.ID, Type: d.Type, Source: d.Source, Subject: d.Subject, StreamVersion: versions[i],
			OccurredAt: time.UnixMicro(occurred).UTC(), RecordedAt: time.UnixMicro(recorded).UTC(),
			CorrelationID: d.CorrelationID, CausationID: d.CausationID,
			TraceParent: d.TraceParent, TraceState: d.TraceState,
			Position: id, CommitOrder: uint64(id), Data: d.Data,
		}}
	}
	return out, nil, false
}

// groupMaxEvents bounds the events of one commit group, so that one commit
// stays short.
const groupMaxEvents = store.MaxBatch

// groupCommit lets concurrent Append calls share a transaction. There is no
// background goroutine: the first caller to find no leader leads. It waits
// for the write connection, takes every queued request, runs each in a
// savepoint, commits once, and hands leadership to the next queued request.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*request
	leading bool
}

type request struct {
	ctx    context.Context
	drafts []event.Draft
	op     string
	res    []store.Appended
	err    error
	done   chan struct{} // closed once res and err are set
	// promote tells a queued request that it leads now (buffered: sent
	// under mu, at most once).
	promote chan struct{}
}

func (g *groupCommit) submit(ctx context.Context, s *Store, r *request) ([]store.Appended, error) {
	r.done = make(chan struct{})
	r.promote = make(chan struct{}, 1)
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	for {
		if lead {
			g.lead(s, r)
			lead = false
		}
		select {
		case <-r.done:
			return r.res, r.err
		case <-r.promote:
			lead = true
		case <-ctx.Done():
			g.mu.Lock()
			if g.removeLocked(r) {
				// Never taken: nothing was written. Pass on leadership if
				// it had just been handed over.
				select {
				case <-r.promote:
					g.handoffLocked()
				default:
				}
				g.mu.Unlock()
				return nil, s.wrap(ctx.Err(), r.op)
			}
			g.mu.Unlock()
			// A leader has taken r; its outcome is decided within one
			// commit, and the leader checks ctx before running it.
			<-r.done
			return r.res, r.err
		}
	}
}

// lead runs one commit group that includes r, which is at the head of the
// queue.
func (g *groupCommit) lead(s *Store, r *request) {
	err := s.stmts.prepare(r.ctx, s.write)
	var conn *sql.Conn
	if err == nil {
		conn, err = s.write.Conn(r.ctx)
	}
	if err != nil {
		// r could not lead; the next request tries.
		g.mu.Lock()
		g.removeLocked(r)
		g.handoffLocked()
		g.mu.Unlock()
		r.err = s.wrap(err, r.op)
		close(r.done)
		return
	}
	// Begin before taking the queue: callers that the last commit released
	// queue again meanwhile, and join this group rather than wait for the
	// next one.
	tx, err := conn.BeginTx(context.Background(), nil)
	runtime.Gosched()
	g.mu.Lock()
	n, events := 0, 0
	for n < len(g.queue) && (n == 0 || events+len(g.queue[n].drafts) <= groupMaxEvents) {
		events += len(g.queue[n].drafts)
		n++
	}
	batch := make([]*request, n)
	copy(batch, g.queue)
	g.queue = g.queue[:copy(g.queue, g.queue[n:])]
	g.mu.Unlock()

	if err != nil {
		err = s.wrap(err, "append: begin")
		for _, q := range batch {
			q.err = err
		}
	} else {
		s.commitGroup(tx, batch)
	}
	_ = conn.Close()
	for _, q := range batch {
		close(q.done)
	}
	g.mu.Lock()
	g.handoffLocked()
	g.mu.Unlock()
}

// commitGroup runs batch in tx and commits it. The statements run
// without the callers' contexts: an interrupted statement can roll back the
// whole transaction, and with it the other callers' events. A caller whose
// context is done before its turn is skipped.
func (s *Store) commitGroup(tx *sql.Tx, batch []*request) {
	ctx := context.Background()
	fail := func(err error) {
		for _, q := range batch {
			q.res, q.err = nil, err
		}
	}
	w := &writer{tx: tx, prepared: &s.stmts.stmt}
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.err = s.wrap(err, q.op)
			continue
		}
		// No savepoint: a request fails before it writes (a conflict), or
		// the whole group fails, so that no request commits in part.
		var wrote bool
		q.res, q.err, wrote = s.appendRows(ctx, w, q.drafts, q.op)
		if q.err != nil && wrote {
			_ = tx.Rollback()
			fail(q.err)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		err = s.wrap(err, "append: commit")
		for _, q := range batch {
			if q.err == nil {
				q.res, q.err = nil, err
			}
		}
	}
}

// removeLocked takes r out of the queue, reporting whether it was there.
func (g *groupCommit) removeLocked(r *request) bool {
	for i, q := range g.queue {
		if q == r {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			return true
		}
	}
	return false
}

// handoffLocked makes the head of the queue the leader, or ends leadership
// when nothing is queued.
func (g *groupCommit) handoffLocked() {
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	select {
	case g.queue[0].promote <- struct{}{}:
	default: // already promoted
	}
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
