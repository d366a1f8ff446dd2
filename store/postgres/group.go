package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// Group commit sizes. A group is one round trip and one commit, so its
// members share a WAL flush, the round trip's system calls and the
// transaction's bookkeeping; BENCHMARKS.md has the measurements.
const (
	// groupMaxMembers bounds the events of one group: one lock statement
	// and one statement per event in one pipelined batch.
	groupMaxMembers = 64
	// groupRunning is how many groups run at once: while one waits for
	// its commit's flush, the next one's statements run, and the members
	// that arrive meanwhile gather into the group after. On a quiet
	// machine (2 cores, 16 callers) 2 made 9–18% more appends per second
	// than 4 in five of five paired runs, and PostgreSQL spent 168 and 195
	// µs per event against 210 and 233 in two more (BENCHMARKS.md): fewer
	// groups at once make each one bigger.
	groupRunning = 2
	// groupMaxRunning is how many may run when more members wait than a
	// group takes: a server with cores to spare then runs more groups side
	// by side instead of queueing full ones.
	groupMaxRunning = 4
)

// groupCommit lets concurrent appends of one event that have no caller's
// transaction (Append, which Dispatch without a transaction and the HTTP API
// use) share one transaction. An append that finds fewer than
// groupRunning groups running starts one at once, so that a lone caller
// waits for nothing; the others queue, and the next group to start takes
// them all. Each member still gets its own result as if it had appended
// alone: its own idempotency hit, version conflict or lost race, which the
// group's statements report without failing the transaction. A statement
// that fails anyway (PostgreSQL refused an input, or broke a deadlock) rolls
// the whole group back, and each member then runs alone, so that it fails
// only its own append.
type groupCommit struct {
	s       *Store
	mu      sync.Mutex
	waiting []*groupMember
	running int
	wg      sync.WaitGroup // the running groups, for Close
}

type groupMember struct {
	draft  event.Draft
	done   chan struct{} // closed when result is set
	result oneResult
	group  *group // set under groupCommit.mu when a group takes it
}

type group struct {
	members []*groupMember
	// ctx ends when every member has stopped waiting: nobody wants the
	// result any more.
	ctx       context.Context
	cancel    context.CancelFunc
	abandoned atomic.Int32
}

// append appends d in a group and returns its own result.
func (g *groupCommit) append(ctx context.Context, d event.Draft) (store.Appended, error) {
	if err := ctx.Err(); err != nil {
		return store.Appended{}, fmt.Errorf("postgres: append 1 event: %w", err)
	}
	m := &groupMember{draft: d, done: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, m)
	g.startLocked()
	g.mu.Unlock()
	select {
	case <-m.done:
		return m.result.result, m.result.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	grp := m.group
	if grp == nil {
		for i, w := range g.waiting {
			if w == m {
				g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
				break
			}
		}
	}
	g.mu.Unlock()
	if grp != nil && int(grp.abandoned.Add(1)) == len(grp.members) {
		grp.cancel()
	}
	// Taken by a group, the event may yet be stored, as an append alone
	// may commit while its caller gives up.
	return store.Appended{}, fmt.Errorf("postgres: append 1 event: %w", ctx.Err())
}

// startLocked starts groups for the waiting members: while fewer than
// groupRunning run, or fewer than groupMaxRunning and a whole group's worth
// waits. g.mu is held.
func (g *groupCommit) startLocked() {
	for len(g.waiting) > 0 &&
		(g.running < groupRunning || g.running < groupMaxRunning && len(g.waiting) >= groupMaxMembers) {
		n := min(len(g.waiting), groupMaxMembers)
		grp := &group{members: make([]*groupMember, n)}
		copy(grp.members, g.waiting)
		g.waiting = append(g.waiting[:0], g.waiting[n:]...)
		for _, m := range grp.members {
			m.group = grp
		}
		grp.ctx, grp.cancel = context.WithCancel(context.Background())
		g.running++
		g.wg.Add(1)
		go g.run(grp)
	}
}

// run appends a group's events in one transaction and hands each member its
// result; then it starts the next group.
func (g *groupCommit) run(grp *group) {
	defer g.wg.Done()
	defer grp.cancel()
	drafts := make([]event.Draft, len(grp.members))
	for i, m := range grp.members {
		drafts[i] = m.draft
	}
	out, err := g.s.appendOnes(grp.ctx, g.s.pool, drafts)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		for i, m := range grp.members {
			m.result = out[i]
		}
	case len(drafts) > 1 && errors.As(err, &pgErr):
		// The server refused a statement and rolled the group back:
		// nothing of it is stored. Each member runs alone, so that only
		// the one at fault fails.
		for _, m := range grp.members {
			one, err := g.s.appendOnes(grp.ctx, g.s.pool, []event.Draft{m.draft})
			if err != nil {
				m.result.err = err
			} else {
				m.result = one[0]
			}
		}
	default:
		// The connection failed, or every member gave up: each gets the
		// error it would have got alone.
		for _, m := range grp.members {
			m.result.err = err
		}
	}
	for _, m := range grp.members {
		close(m.done)
	}
	g.mu.Lock()
	g.running--
	g.startLocked()
	g.mu.Unlock()
}

// wait waits for the running groups to finish.
func (g *groupCommit) wait() { g.wg.Wait() }
