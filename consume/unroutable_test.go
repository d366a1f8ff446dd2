package consume_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// failOnce returns a route that fails the first call and succeeds after,
// counting the calls.
func failOnce(calls *atomic.Int32) consume.Route {
	return consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
		if calls.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})
}

// A retry copy sent to a retry queue an operator deleted while the worker
// ran is returned by the broker, not taken as stored: the event comes back
// and is handled.
func TestDeletedRetryQueueLosesNothing(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		var calls atomic.Int32
		cfg := e.config()
		cfg.MaxAttempts = 3
		c := newConsumer(t, e.b, cfg, failOnce(&calls))
		e.start(c)
		ctx := testenv.Context(t, time.Minute)
		if err := e.b.DeleteQueue(ctx, consume.RetryQueue(e.group, 1)); err != nil {
			t.Fatal(err)
		}

		e.publish(quizEvent("quiz-1", 1, 50))
		eventually(t, 20*time.Second, "the event to be handled after its failed attempt", func() bool { return c.Stats().Handled == 1 })
		if n := calls.Load(); n != 2 {
			t.Errorf("handler called %d times, want 2", n)
		}
		if st := c.Stats(); st.Failed != 1 || st.Retried != 1 || st.DeadLettered != 0 {
			t.Errorf("stats %+v: want 1 failed, 1 retried, 0 dead-lettered", st)
		}
		if _, err := e.b.InspectQueue(ctx, consume.RetryQueue(e.group, 1)); err != nil {
			t.Errorf("the retry queue was not declared again: %v", err)
		}
	})
}

// A dead-letter copy sent to a deleted dead-letter queue is not lost either.
func TestDeletedDeadLetterQueueLosesNothing(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		c := newConsumer(t, e.b, e.config(), consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			return consume.Permanent(errors.New("quiz was deleted"))
		}))
		e.start(c)
		if err := e.b.DeleteQueue(testenv.Context(t, time.Minute), consume.DeadLetterQueue(e.group)); err != nil {
			t.Fatal(err)
		}

		e.publish(quizEvent("quiz-1", 1, 50))
		eventually(t, 20*time.Second, "the event to be dead-lettered", func() bool { return c.Stats().DeadLettered == 1 })
		eventually(t, 10*time.Second, "the dead letter to be in the DLQ", func() bool {
			return e.queueLen(consume.DeadLetterQueue(e.group)) == 1
		})
	})
}

// An attempt header the runtime did not write cannot send a retry copy to
// a retry queue that does not exist.
func TestForeignAttemptHeader(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		t.Run("negative", func(t *testing.T) {
			e := newEnv(t, k)
			var calls atomic.Int32
			cfg := e.config()
			cfg.MaxAttempts = 3
			c := newConsumer(t, e.b, cfg, failOnce(&calls))
			e.start(c)
			e.publishAttempt(quizEvent("quiz-1", 1, 50), -3)
			eventually(t, 20*time.Second, "the event to be handled after its failed attempt", func() bool { return c.Stats().Handled == 1 })
			if st := c.Stats(); calls.Load() != 2 || st.Retried != 1 || st.DeadLettered != 0 {
				t.Errorf("%d calls, stats %+v: want 2 calls, 1 retry, no dead letter", calls.Load(), st)
			}
		})
		t.Run("beyond MaxAttempts", func(t *testing.T) {
			e := newEnv(t, k)
			var calls atomic.Int32
			cfg := e.config()
			cfg.MaxAttempts = 3
			c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
				calls.Add(1)
				return errors.New("always fails")
			}))
			e.start(c)
			e.publishAttempt(quizEvent("quiz-1", 1, 50), 1000)
			// The attempts are used up: the first failure dead-letters it.
			eventually(t, 20*time.Second, "the event to be dead-lettered", func() bool { return c.Stats().DeadLettered == 1 })
			if st := c.Stats(); calls.Load() != 1 || st.Retried != 0 {
				t.Errorf("%d calls, stats %+v: want 1 call, no retry", calls.Load(), st)
			}
			if n := e.queueLen(consume.DeadLetterQueue(e.group)); n != 1 {
				t.Errorf("%d messages in the DLQ, want 1", n)
			}
		})
	})
}

// publishAttempt publishes ev with attempt header n, as if it had failed n
// times somewhere.
func (e *env) publishAttempt(ev event.Envelope, n int64) {
	e.t.Helper()
	m, err := broker.EnvelopeMessage(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if m.Headers == nil {
		m.Headers = map[string]any{}
	}
	m.Headers[broker.HeaderAttempt] = n
	e.publishMessages(e.exchange, []string{ev.Type}, []broker.Message{m})
}

// Requeue to a group queue that does not exist fails, and leaves the dead
// letter where it is.
func TestRequeueToMissingQueueKeepsTheDeadLetter(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		ctx := testenv.Context(t, time.Minute)
		dlq := consume.DeadLetterQueue(e.group)
		if err := e.b.DeclareQueue(ctx, broker.QueueSpec{Name: dlq}); err != nil {
			t.Fatal(err)
		}
		m, err := broker.EnvelopeMessage(quizEvent("quiz-1", 1, 50))
		if err != nil {
			t.Fatal(err)
		}
		e.publishMessages(broker.NamelessExchange, []string{dlq}, []broker.Message{m})

		n, err := consume.Requeue(ctx, e.b, e.group, nil)
		if !errors.Is(err, consume.ErrUnroutable) || n != 0 {
			t.Fatalf("Requeue = %d, %v; want 0 and an error wrapping ErrUnroutable", n, err)
		}
		if n := e.queueLen(dlq); n != 1 {
			t.Errorf("%d messages in the DLQ, want 1", n)
		}
	})
}
