package cluster

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/internal/testenv"
)

// TestPostgresFailover runs the bus on a PostgreSQL primary and an
// asynchronous streaming standby of its own, EVENTBUS_DATABASE_URL listing
// both with target_session_attrs=read-write, and fails over while events
// flow: the primary is shut down (fast: as in a planned switchover, it
// waits until the standby has received all its WAL) and the standby is
// promoted. serve must find the new primary by itself, and every event
// acknowledged before and after must be delivered, in stream order.
//
// A crash of an asynchronous primary can lose its last acknowledged
// commits (docs/operations.md); TestPostgresFailoverSynchronous crashes a
// synchronous one.
func TestPostgresFailover(t *testing.T) {
	t.Parallel()
	testPostgresFailover(t, false)
}

// TestPostgresFailoverSynchronous is TestPostgresFailover with a
// synchronous standby (synchronous_standby_names = '*') and a crash of the
// primary (immediate shutdown) instead of a clean one: nothing acknowledged
// may be lost all the same.
func TestPostgresFailoverSynchronous(t *testing.T) {
	t.Parallel()
	testPostgresFailover(t, true)
}

func testPostgresFailover(t *testing.T, synchronous bool) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	start := time.Now()
	pair := testenv.StartPostgresPair(t, testenv.PostgresPairOptions{Synchronous: synchronous})
	made := time.Since(start)
	ctx := testenv.Context(t, 8*time.Minute)
	r := newRig(t, ctx, pair.URL, testenv.AMQPURL())

	what, stop, how := "PostgreSQL failover (asynchronous standby, primary shut down)", syscall.SIGINT, "fast shutdown"
	if synchronous {
		what, stop, how = "PostgreSQL failover (synchronous standby, primary crashed)", syscall.SIGQUIT, "immediate shutdown"
	}
	// The fault is the primary's stop; once it is down, nothing can be
	// acknowledged until the standby is promoted.
	var stopping, promoted time.Duration
	res := r.runWithFault(ctx, 4, 8, 200, 200, func() time.Time {
		begin := time.Now()
		pair.Primary.Stop(stop)
		down := time.Now()
		stopping = down.Sub(begin)
		if err := pair.Standby.Promote(ctx); err != nil {
			t.Fatalf("promote the standby: %v\n%s", err, pair.Standby.Log())
		}
		promoted = time.Since(down)
		return down
	}, storedEventIDs(pair.URL))
	// pg_ctl promote -w and Promote's own check poll: serve may see the
	// new primary before Promote returns.
	res.report(t, what, fmt.Sprintf("%s: primary and standby made in %v; the primary took %v to stop (%s); then pg_ctl promote, and the standby was seen to accept writes %v after the primary was down; serve's first acknowledgement, on the new primary, %v after it was down",
		what, made.Round(time.Second), stopping.Round(time.Millisecond), how, promoted.Round(time.Millisecond), res.firstAckAfter.Round(time.Millisecond)))
}
