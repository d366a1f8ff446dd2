package consume_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// Finding 5 of issue 12: a handler that ignores its context stalled its
// consumer despite HandlerTimeout. Past the timeout the delivery now counts
// as failed and is retried, and the consumer goes on with the next events
// while the stuck handler is left behind.
func TestHandlerIgnoringItsContextIsAbandonedAfterHandlerTimeout(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		stuck, other := quizEvent("", 0, 1), quizEvent("", 0, 2)
		var stuckCalls, stuckHandled, otherHandled atomic.Int32
		cfg := e.config()
		cfg.Concurrency = 1 // one worker: a stalled handler would stall all
		cfg.HandlerTimeout = 200 * time.Millisecond
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			switch {
			case env.ID == other.ID:
				otherHandled.Add(1)
			case stuckCalls.Add(1) == 1:
				<-release // ignores ctx
			default:
				stuckHandled.Add(1)
			}
			return nil
		}))
		e.start(c)
		e.publish(stuck, other)
		eventually(t, 30*time.Second, "the other event, and the stuck one's retry, to be handled", func() bool {
			return otherHandled.Load() == 1 && stuckHandled.Load() == 1
		})
		if st := c.Stats(); st.Abandoned != 1 || st.Retried != 1 {
			t.Fatalf("stats %+v: want 1 abandoned handler and 1 retry", st)
		}
	})
}

// On shutdown, a handler that ignores its context does not hold the
// consumer: Run returns within ShutdownTimeout, the stuck delivery is not
// acknowledged, and the next consumer of the group gets it again.
func TestShutdownAbandonsAHandlerThatIgnoresItsContext(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		started := make(chan struct{})
		cfg := e.config()
		cfg.ShutdownTimeout = time.Second
		first := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			close(started)
			<-release // ignores ctx
			return nil
		}))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- first.Run(ctx) }()
		<-first.Ready()
		ev := quizEvent("quiz-1", 1, 1)
		e.publish(ev)
		<-started
		stopping := time.Now()
		cancel()
		// A bound, not a speed claim: before the fix Run never returned.
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(cfg.ShutdownTimeout + 10*time.Second):
			t.Fatalf("Run did not return %s after its context ended (ShutdownTimeout %s)", cfg.ShutdownTimeout+10*time.Second, cfg.ShutdownTimeout)
		}
		t.Logf("Run returned %s after its context ended (ShutdownTimeout %s)", time.Since(stopping).Round(time.Millisecond), cfg.ShutdownTimeout)
		if st := first.Stats(); st.Abandoned != 1 || st.Handled != 0 || st.Failed != 0 || st.Retried != 0 {
			t.Fatalf("stats %+v: want the handler abandoned, and the delivery neither handled nor failed", st)
		}

		var again atomic.Int32
		second := newConsumer(t, k.connectAgain(t, e.b), e.config(), consume.On(func(ctx context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			if env.ID == ev.ID {
				again.Add(1)
			}
			return nil
		}))
		e.start(second)
		eventually(t, 30*time.Second, "the next consumer to get the stuck delivery again", func() bool { return again.Load() == 1 })
	})
}

// An abandoned handler's inbox transaction ends when its context does: on
// PostgreSQL the retry of its event does not wait behind it (the inbox row
// it locked is released at once), and when the abandoned handler goes on
// later, nothing it does commits. The event takes effect once: the retry's.
func TestAbandonedHandlerCannotCommitItsInboxRecord(t *testing.T) {
	e := newEnv(t, memoryKind)
	s := newStore(t)
	release := make(chan struct{})
	var released atomic.Bool
	t.Cleanup(func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	})
	lateErr := make(chan error, 1)
	var calls atomic.Int32
	cfg := e.config()
	cfg.Concurrency = 2
	// Long enough that the retry's own write and commit fit in it on a
	// loaded machine; the first call is stuck until released whatever it is.
	cfg.HandlerTimeout = time.Second
	cfg.Inbox = consume.NewInbox[pgx.Tx](s)
	c := newConsumer(t, e.b, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, _ edupulse.QuizSubmitted) error {
		if err := writeEffect(ctx, tx, env); err != nil {
			return err
		}
		if calls.Add(1) == 1 {
			<-release // ignores ctx, past HandlerTimeout
			// The consumer gave up on this call: a write now must fail,
			// and so must the commit when it returns nil.
			lateErr <- writeEffect(context.Background(), tx, env)
		}
		return nil
	}))
	e.start(c)
	ev := quizEvent("quiz-1", 1, 1)
	e.publish(ev)
	eventually(t, 30*time.Second, "the retry to be handled while the first call is stuck", func() bool {
		return c.Stats().Handled == 1
	})
	released.Store(true)
	close(release)
	select {
	case err := <-lateErr:
		if err == nil {
			t.Fatal("the abandoned handler could still write in its inbox transaction")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the abandoned handler did not go on after it was released")
	}
	// The abandoned call now returns nil, and its HandleOnce would
	// commit: the server rolled its transaction back when its context
	// ended, on a connection closed since, so nothing of it can land.
	rows, distinct := effects(t, s)
	if rows != 1 || distinct != 1 {
		t.Fatalf("%d effect rows of %d events: want the event to have taken effect exactly once", rows, distinct)
	}
	handled, err := s.Handled(context.Background(), e.group, ev.ID)
	if err != nil || !handled {
		t.Fatalf("inbox record of the event: %v, %v", handled, err)
	}
	// At least the stuck call was abandoned; on a loaded machine a retry
	// may be too, and is retried in turn: what matters is the one effect.
	if st := c.Stats(); st.Abandoned < 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v: want the stuck call abandoned and no duplicate", st)
	}
}
