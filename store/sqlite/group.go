package sqlite

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// groupMaxEvents bounds the events of one commit group, so that one commit
// stays short.
const groupMaxEvents = store.MaxBatch

// groupCommit lets concurrent Append calls share a transaction, and so one
// fsync. There is no background goroutine: the first caller to find no
// leader leads. It takes the write connection, begins, takes every queued
// request, runs each, commits once, and hands leadership to the next queued
// request.
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
	var batch []*request
	conn, err := s.write.Conn(r.ctx)
	if err == nil {
		// The group runs on the driver's connection directly: inside a
		// *sql.Tx, database/sql starts a goroutine for every query.
		err = conn.Raw(func(dc any) error {
			w, err := s.raw.writer(dc)
			if err == nil {
				err = w.execSQL("BEGIN IMMEDIATE")
			}
			// Begin before taking the queue: callers that the last commit
			// released queue again meanwhile, and join this group rather
			// than wait for the next one.
			runtime.Gosched()
			batch = g.take()
			if err != nil {
				err = s.wrap(err, "append: begin")
				for _, q := range batch {
					q.err = err
				}
				return nil
			}
			return s.commitGroup(w, batch)
		})
		_ = conn.Close()
	}
	if batch == nil {
		// r could not lead; the next request tries.
		g.mu.Lock()
		g.removeLocked(r)
		g.handoffLocked()
		g.mu.Unlock()
		r.err = s.wrap(err, r.op)
		close(r.done)
		return
	}
	for _, q := range batch {
		close(q.done)
	}
	g.mu.Lock()
	g.handoffLocked()
	g.mu.Unlock()
}

// take removes the requests of the next group from the queue.
func (g *groupCommit) take() []*request {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, events := 0, 0
	for n < len(g.queue) && (n == 0 || events+len(g.queue[n].drafts) <= groupMaxEvents) {
		events += len(g.queue[n].drafts)
		n++
	}
	batch := make([]*request, n)
	copy(batch, g.queue)
	g.queue = g.queue[:copy(g.queue, g.queue[n:])]
	return batch
}

// commitGroup runs batch in w's transaction and commits it. It returns
// driver.ErrBadConn when the connection may be left inside a transaction,
// so that database/sql discards it.
//
// The statements run without the callers' contexts: an interrupted write
// rolls back the whole transaction, and with it the other callers' events.
// A caller whose context is done before its turn is skipped. There is no
// savepoint per request: a request fails before it writes (a conflict), or
// the transaction is rolled back and the others run again without it, so
// that no request commits in part.
func (s *Store) commitGroup(w *rawWriter, batch []*request) error {
	ctx := context.Background()
	pending := batch
	failAll := func(err error) {
		for _, q := range pending {
			q.res, q.err = nil, err
		}
	}
run:
	for {
		for i, q := range pending {
			if err := q.ctx.Err(); err != nil {
				q.res, q.err = nil, s.wrap(err, q.op)
				continue
			}
			var wrote bool
			q.res, wrote, q.err = s.appendRows(ctx, w, q.drafts, q.op)
			if q.err == nil || !wrote {
				continue
			}
			culprit := q.err
			if err := w.execSQL("ROLLBACK"); err != nil {
				failAll(culprit)
				return w.discard()
			}
			if errors.Is(culprit, store.ErrUnavailable) {
				failAll(culprit) // the disk, not the request
				return nil
			}
			rest := make([]*request, 0, len(pending)-1)
			rest = append(append(rest, pending[:i]...), pending[i+1:]...)
			pending = rest
			if err := w.execSQL("BEGIN IMMEDIATE"); err != nil {
				failAll(s.wrap(err, "append: begin"))
				return nil
			}
			continue run
		}
		break
	}
	if err := w.execSQL("COMMIT"); err != nil {
		err = s.wrap(err, "append: commit")
		for _, q := range pending {
			if q.err == nil {
				q.res, q.err = nil, err
			}
		}
		// Whether the transaction is still open is not known here.
		_ = w.execSQL("ROLLBACK")
		return w.discard()
	}
	return nil
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
