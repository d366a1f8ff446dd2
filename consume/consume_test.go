package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestRetriesThenSuccess(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		s := newStore(t)
		var calls atomic.Int32
		cfg := e.config()
		cfg.Inbox = consume.NewInbox[pgx.Tx](s)
		cfg.MaxAttempts = 5
		c := newConsumer(t, e.b, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			// The effect is written before failing: the failed attempts'
			// writes must roll back.
			if err := writeEffect(ctx, tx, env); err != nil {
				return err
			}
			if n := calls.Add(1); n <= 2 {
				return fmt.Errorf("transient failure %d", n)
			}
			return nil
		}))
		e.start(c)
		e.publish(quizEvent("quiz-1", 1, 50))

		eventually(t, 20*time.Second, "the event to be handled", func() bool { return c.Stats().Handled == 1 })
		if n := calls.Load(); n != 3 {
			t.Errorf("handler called %d times, want 3", n)
		}
		if rows, _ := effects(t, s); rows != 1 {
			t.Errorf("%d effect rows, want 1", rows)
		}
		st := c.Stats()
		if st.Failed != 2 || st.Retried != 2 || st.DeadLettered != 0 {
			t.Errorf("stats %+v: want 2 failed, 2 retried, 0 dead-lettered", st)
		}
		if n := e.queueLen(consume.DeadLetterQueue(e.group)); n != 0 {
			t.Errorf("%d messages in the DLQ", n)
		}
	})
}

func TestDeadLetterAndRequeue(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		var failing atomic.Bool
		failing.Store(true)
		var mu sync.Mutex
		var handled []uuid.UUID
		cfg := e.config()
		cfg.MaxAttempts = 3
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			if failing.Load() {
				return errors.New("grading service down")
			}
			mu.Lock()
			handled = append(handled, env.ID)
			mu.Unlock()
			return nil
		}))
		e.start(c)
		first, second := quizEvent("quiz-1", 1, 10), quizEvent("quiz-2", 1, 20)
		e.publish(first, second)

		eventually(t, 20*time.Second, "both events to be dead-lettered", func() bool { return c.Stats().DeadLettered == 2 })
		ctx := context.Background()
		dead, err := consume.DeadLetters(ctx, e.b, e.group, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 2 {
			t.Fatalf("DeadLetters returned %d, want 2", len(dead))
		}
		want := map[uuid.UUID]event.Envelope{first.ID: first, second.ID: second}
		for _, dl := range dead {
			if dl.Envelope == nil {
				t.Fatalf("dead letter %q: envelope not decoded", dl.Message.MessageID)
			}
			orig, ok := want[dl.Envelope.ID]
			if !ok {
				t.Fatalf("unexpected dead letter %s", dl.Envelope.ID)
			}
			origMsg, _ := broker.EnvelopeMessage(orig)
			if string(dl.Message.Body) != string(origMsg.Body) || dl.Message.MessageID != origMsg.MessageID ||
				dl.Message.Type != origMsg.Type || dl.Message.CorrelationID != origMsg.CorrelationID {
				t.Errorf("dead letter %s does not keep the original body and properties", dl.Envelope.ID)
			}
			if dl.Attempts != 3 {
				t.Errorf("dead letter %s: %d attempts, want 3", dl.Envelope.ID, dl.Attempts)
			}
			if !strings.Contains(dl.Reason, "grading service down") {
				t.Errorf("dead letter %s: reason %q", dl.Envelope.ID, dl.Reason)
			}
			if dl.Queue != e.group {
				t.Errorf("dead letter %s: failed queue %q, want %q", dl.Envelope.ID, dl.Queue, e.group)
			}
			if time.Since(dl.FailedAt) > time.Minute || dl.FailedAt.After(time.Now()) {
				t.Errorf("dead letter %s: failed at %v", dl.Envelope.ID, dl.FailedAt)
			}
		}
		if c.Stats().Handled != 0 {
			t.Fatal("handled while failing")
		}

		// The grading service is back: requeue the first one only.
		failing.Store(false)
		n, err := consume.Requeue(ctx, e.b, e.group, func(dl consume.DeadLetter) bool {
			return dl.Envelope != nil && dl.Envelope.ID == first.ID
		})
		if err != nil || n != 1 {
			t.Fatalf("Requeue = %d, %v; want 1", n, err)
		}
		eventually(t, 10*time.Second, "the requeued event to be handled", func() bool { return c.Stats().Handled == 1 })
		mu.Lock()
		if handled[0] != first.ID {
			t.Errorf("handled %s, want the requeued %s", handled[0], first.ID)
		}
		mu.Unlock()
		left, err := consume.DeadLetters(ctx, e.b, e.group, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].Envelope == nil || left[0].Envelope.ID != second.ID {
			t.Fatalf("left in the DLQ: %+v, want only %s", left, second.ID)
		}

		// The rest, with a nil selector.
		if n, err := consume.Requeue(ctx, e.b, e.group, nil); err != nil || n != 1 {
			t.Fatalf("Requeue(nil) = %d, %v; want 1", n, err)
		}
		eventually(t, 10*time.Second, "the second event to be handled", func() bool { return c.Stats().Handled == 2 })
		if n := e.queueLen(consume.DeadLetterQueue(e.group)); n != 0 {
			t.Errorf("%d messages left in the DLQ", n)
		}
	})
}

func TestDuplicatesTakeEffectOnce(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		for _, tc := range []struct {
			name  string
			route func(calls *atomic.Int32, s effectWriter) consume.Route
		}{
			{"OnTx", func(calls *atomic.Int32, _ effectWriter) consume.Route {
				return consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
					calls.Add(1)
					return writeEffect(ctx, tx, env)
				})
			}},
			{"On", func(calls *atomic.Int32, s effectWriter) consume.Route {
				return consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
					calls.Add(1)
					return s.write(ctx, env)
				})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, k)
				s := newStore(t)
				var calls atomic.Int32
				cfg := e.config()
				cfg.Inbox = consume.NewInbox[pgx.Tx](s)
				c := newConsumer(t, e.b, cfg, tc.route(&calls, effectWriter{s}))
				e.start(c)
				ev := quizEvent("quiz-1", 1, 70)
				e.publish(ev)
				e.publish(ev) // the broker delivers it twice, as after a lost ack

				eventually(t, 10*time.Second, "both deliveries", func() bool {
					st := c.Stats()
					return st.Handled+st.Duplicates == 2
				})
				st := c.Stats()
				if st.Handled != 1 || st.Duplicates != 1 {
					t.Errorf("stats %+v: want 1 handled, 1 duplicate", st)
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("handler called %d times, want 1", n)
				}
				if rows, _ := effects(t, s); rows != 1 {
					t.Errorf("%d effect rows, want 1", rows)
				}
			})
		}
	})
}

// effectWriter writes effects outside a handler transaction.
type effectWriter struct{ s *postgres.Store }

func (w effectWriter) write(ctx context.Context, env event.Envelope) error {
	_, err := w.s.Pool().Exec(ctx, `INSERT INTO effects (event_id, subject, version) VALUES ($1, $2, $3)`, env.ID, env.Subject, env.StreamVersion)
	return err
}

func TestOrderPerStream(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		const streams, perStream = 50, 40
		var mu sync.Mutex
		seen := map[string][]int64{}
		var inFlight, maxInFlight atomic.Int32
		cfg := e.config()
		cfg.Concurrency = 8
		cfg.OrderedByStream = true
		c := newConsumer(t, e.b, cfg, consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
			// Uneven handler times, so that workers race.
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			mu.Lock()
			seen[env.Subject] = append(seen[env.Subject], env.StreamVersion)
			mu.Unlock()
			return nil
		}))
		e.start(c)
		var events []event.Envelope
		for v := int64(1); v <= perStream; v++ {
			for s := range streams {
				events = append(events, quizEvent(fmt.Sprintf("quiz-%02d", s), v, 1))
			}
		}
		e.publish(events...)

		eventually(t, 60*time.Second, "every event to be handled", func() bool { return c.Stats().Handled == streams*perStream })
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != streams {
			t.Fatalf("saw %d streams, want %d", len(seen), streams)
		}
		for subject, versions := range seen {
			for i, v := range versions {
				if v != int64(i+1) {
					t.Fatalf("stream %s handled out of order: %v", subject, versions)
				}
			}
		}
		if maxInFlight.Load() < 2 {
			t.Errorf("at most %d handler ran at once: streams did not run in parallel", maxInFlight.Load())
		}
	})
}

func TestMalformedGoesStraightToDLQ(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		var calls atomic.Int32
		cfg := e.config()
		cfg.Patterns = []string{"#"}
		cfg.MaxAttempts = 5
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			calls.Add(1)
			return nil
		}))
		e.start(c)

		badPayload := quizEvent("quiz-1", 1, 0)
		badPayload.Data = []byte(`{"quiz_id":"not-a-uuid","learner_id":"0190a000-0000-7000-8000-000000000001","score_raw":1}`)
		badMsg, err := broker.EnvelopeMessage(badPayload)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name   string
			msg    broker.Message
			reason string
		}{
			{"not CloudEvents", broker.Message{MessageID: "plain-text", ContentType: "text/plain", Body: []byte("hello")}, "content type"},
			{"not JSON", broker.Message{MessageID: "broken-json", ContentType: event.ContentType, Body: []byte("{not json")}, "malformed"},
			{"payload does not fit", badMsg, "quiz_id"},
		}
		keys := make([]string, len(cases))
		msgs := make([]broker.Message, len(cases))
		for i, tc := range cases {
			keys[i], msgs[i] = edupulse.TypeQuizSubmitted, tc.msg
		}
		e.publishMessages(e.exchange, keys, msgs)
		// An event of a type no route handles is acknowledged, not failed.
		unknown := quizEvent("", 0, 0)
		unknown.Type = "lesson.archived"
		e.publish(unknown)

		eventually(t, 10*time.Second, "the malformed messages to be dead-lettered", func() bool {
			return c.Stats().DeadLettered == int64(len(cases)) && c.Stats().Unrouted == 1
		})
		dead, err := consume.DeadLetters(context.Background(), e.b, e.group, 10)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]consume.DeadLetter{}
		for _, dl := range dead {
			byID[dl.Message.MessageID] = dl
		}
		for _, tc := range cases {
			dl, ok := byID[tc.msg.MessageID]
			if !ok {
				t.Errorf("%s: not in the DLQ", tc.name)
				continue
			}
			if dl.Attempts != 1 {
				t.Errorf("%s: %d attempts, want 1 (no retries)", tc.name, dl.Attempts)
			}
			if !strings.Contains(dl.Reason, tc.reason) {
				t.Errorf("%s: reason %q does not mention %q", tc.name, dl.Reason, tc.reason)
			}
			if string(dl.Message.Body) != string(tc.msg.Body) {
				t.Errorf("%s: body changed", tc.name)
			}
		}
		if calls.Load() != 0 || c.Stats().Retried != 0 {
			t.Errorf("handler called %d times, %d retries: want none", calls.Load(), c.Stats().Retried)
		}
	})
}

func TestPanicIsAFailure(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		cfg := e.config()
		cfg.MaxAttempts = 2
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			if q.ScoreRaw == 13 {
				panic("unlucky score")
			}
			return nil
		}))
		e.start(c)
		e.publish(quizEvent("quiz-1", 1, 13), quizEvent("quiz-2", 1, 99))

		eventually(t, 10*time.Second, "the panicking event to be dead-lettered", func() bool {
			return c.Stats().DeadLettered == 1 && c.Stats().Handled == 1
		})
		if st := c.Stats(); st.Failed != 2 {
			t.Errorf("%d failures, want 2", st.Failed)
		}
		dead, err := consume.DeadLetters(context.Background(), e.b, e.group, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || !strings.Contains(dead[0].Reason, "unlucky score") || dead[0].Attempts != 2 {
			t.Fatalf("dead letters %+v: want one after 2 attempts, naming the panic", dead)
		}
	})
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		cfg := e.config()
		var calls atomic.Int32
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			calls.Add(1)
			return consume.Permanent(errors.New("quiz was deleted"))
		}))
		e.start(c)
		e.publish(quizEvent("quiz-1", 1, 1))
		eventually(t, 10*time.Second, "the event to be dead-lettered", func() bool { return c.Stats().DeadLettered == 1 })
		if calls.Load() != 1 || c.Stats().Retried != 0 {
			t.Errorf("%d calls, %d retries: want 1 call and no retry", calls.Load(), c.Stats().Retried)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		t.Run("in-flight handler finishes", func(t *testing.T) {
			e := newEnv(t, k)
			started := make(chan struct{})
			var finished atomic.Bool
			c := newConsumer(t, e.b, e.config(), consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
				close(started)
				time.Sleep(300 * time.Millisecond)
				finished.Store(ctx.Err() == nil)
				return nil
			}))
			stop := e.start(c)
			e.publish(quizEvent("quiz-1", 1, 1))
			<-started
			stop()
			if !finished.Load() {
				t.Fatal("the handler's context ended before it finished")
			}
			if st := c.Stats(); st.Handled != 1 {
				t.Fatalf("stats %+v: want 1 handled", st)
			}
			if n := e.queueLen(e.group); n != 0 {
				t.Errorf("%d messages back in the queue: the handled one was not acked", n)
			}
		})
		t.Run("timeout cancels handlers and returns their messages", func(t *testing.T) {
			e := newEnv(t, k)
			started := make(chan struct{})
			cfg := e.config()
			cfg.ShutdownTimeout = 100 * time.Millisecond
			c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			}))
			stop := e.start(c)
			e.publish(quizEvent("quiz-1", 1, 1))
			<-started
			stop()
			if st := c.Stats(); st.Failed != 0 || st.Retried != 0 || st.DeadLettered != 0 {
				t.Errorf("stats %+v: a cancelled handler is not the event's failure", st)
			}
			eventually(t, 10*time.Second, "the message to be back in the queue", func() bool { return e.queueLen(e.group) == 1 })
		})
	})
}

func TestCompetingConsumers(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		var total atomic.Int32
		route := consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			total.Add(1)
			time.Sleep(time.Millisecond)
			return nil
		})
		cfg := e.config()
		cfg.Prefetch = 4
		one := newConsumer(t, e.b, cfg, route)
		two := newConsumer(t, k.connectAgain(t, e.b), cfg, route) // another process
		e.start(one)
		e.start(two)
		const n = 200
		events := make([]event.Envelope, n)
		for i := range events {
			events[i] = quizEvent("", 0, int32(i))
		}
		e.publish(events...)
		eventually(t, 30*time.Second, "every event", func() bool { return one.Stats().Handled+two.Stats().Handled == n })
		a, b := one.Stats().Handled, two.Stats().Handled
		if total.Load() != n {
			t.Errorf("handler called %d times for %d events", total.Load(), n)
		}
		if a+b != n || a == 0 || b == 0 {
			t.Errorf("handled %d and %d: want the %d events shared", a, b, n)
		}
	})
}

func TestConnectionCutsLoseNothing(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		if k.openFaulty == nil {
			t.Skip("this broker has no connection to cut")
		}
		e := newEnv(t, k)
		s := newStore(t)
		faulty, f := k.openFaulty(t)
		cfg := e.config()
		cfg.Inbox = consume.NewInbox[pgx.Tx](s)
		cfg.Concurrency = 8
		cfg.Prefetch = 64
		c := newConsumer(t, faulty, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			return writeEffect(ctx, tx, env)
		}))
		e.start(c)

		const n = 10000
		events := make([]event.Envelope, n)
		for i := range events {
			events[i] = quizEvent(fmt.Sprintf("quiz-%03d", i%100), int64(i/100+1), int32(i))
		}
		// Publish in three parts, cutting the consumer's connection while
		// it is busy with each of the first two.
		e.publish(events[:4000]...)
		for _, part := range []struct {
			cutAfter int64
			next     []event.Envelope
		}{{2000, events[4000:7000]}, {5000, events[7000:]}} {
			eventually(t, 60*time.Second, fmt.Sprintf("%d events handled", part.cutAfter), func() bool { return c.Stats().Handled >= part.cutAfter })
			if err := f.Cut(); err != nil {
				t.Fatal(err)
			}
			e.publish(part.next...)
		}

		eventually(t, 120*time.Second, "every event to take effect", func() bool { return c.Stats().Handled == n })
		rows, distinct := effects(t, s)
		if rows != n || distinct != n {
			t.Fatalf("%d effect rows for %d distinct events, want %d each", rows, distinct, n)
		}
		eventually(t, 30*time.Second, "the queue to drain", func() bool { return e.queueLen(e.group) == 0 })
		st := c.Stats()
		if st.Resubscribes < 2 {
			t.Errorf("%d resubscriptions after 2 cuts", st.Resubscribes)
		}
		if st.DeadLettered != 0 || st.Failed != 0 {
			t.Errorf("stats %+v: want no failures", st)
		}
		t.Logf("after 2 cuts: %+v", st)
	})
}

func TestBrokerOutage(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		if k.openFaulty == nil {
			t.Skip("this broker has no connection to break")
		}
		e := newEnv(t, k)
		s := newStore(t)
		faulty, f := k.openFaulty(t)
		cfg := e.config()
		cfg.Inbox = consume.NewInbox[pgx.Tx](s)
		cfg.Concurrency = 4
		c := newConsumer(t, faulty, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			return writeEffect(ctx, tx, env)
		}))
		e.start(c)
		const n = 1000
		events := make([]event.Envelope, n)
		for i := range events {
			events[i] = quizEvent(fmt.Sprintf("quiz-%d", i%10), int64(i/10+1), 1)
		}
		e.publish(events[:n/2]...)
		eventually(t, 30*time.Second, "some events handled", func() bool { return c.Stats().Handled >= n/4 })
		// The broker is unreachable for a while; events keep coming.
		f.Down()
		e.publish(events[n/2:]...)
		time.Sleep(time.Second)
		if err := f.Up(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "every event to take effect", func() bool { return c.Stats().Handled == n })
		if rows, distinct := effects(t, s); rows != n || distinct != n {
			t.Fatalf("%d effect rows for %d distinct events, want %d each", rows, distinct, n)
		}
		if st := c.Stats(); st.Resubscribes < 1 || st.Failed != 0 {
			t.Errorf("stats %+v: want a resubscription and no failure", st)
		}
	})
}

func TestTraceAndCausation(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		for _, withTracer := range []bool{false, true} {
			t.Run(fmt.Sprintf("tracer=%v", withTracer), func(t *testing.T) {
				e := newEnv(t, k)
				s := newStore(t)
				bus := eventbus.New(s, eventbus.Config{Registry: edupulse.Registry(), Source: "consume-test"})
				rec := tracetest.NewSpanRecorder()
				tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
				t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				cfg := e.config()
				cfg.Inbox = consume.NewInbox[pgx.Tx](s)
				if withTracer {
					cfg.TracerProvider = tp
				}
				var handlerSpan atomic.Value
				c := newConsumer(t, e.b, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
					handlerSpan.Store(trace.SpanContextFromContext(ctx))
					_, err := bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: q.LearnerID, Reason: "quiz ace"},
						eventbus.Subject("badges-of-"+q.LearnerID.String()))
					return err
				}))
				e.start(c)
				producerTrace := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
				producerSpan := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
				quiz := quizEvent("quiz-1", 1, 95)
				quiz.TraceParent = fmt.Sprintf("00-%s-%s-01", producerTrace, producerSpan)
				e.publish(quiz)
				eventually(t, 10*time.Second, "the quiz to be handled", func() bool { return c.Stats().Handled == 1 })

				sc := handlerSpan.Load().(trace.SpanContext)
				if sc.TraceID() != producerTrace {
					t.Errorf("handler runs in trace %s, want the producer's %s", sc.TraceID(), producerTrace)
				}
				var q edupulse.QuizSubmitted
				if err := json.Unmarshal(quiz.Data, &q); err != nil {
					t.Fatal(err)
				}
				// Read the stream: Read in commit order would wait for other
				// tests' open transactions on the shared server.
				badges, err := s.ReadStream(context.Background(), "badges-of-"+q.LearnerID.String(), 1, 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(badges) != 1 {
					t.Fatalf("%d badges stored, want 1", len(badges))
				}
				badge := badges[0]
				if badge.CausationID != quiz.ID || badge.CorrelationID != quiz.CorrelationID {
					t.Errorf("badge caused by %s in correlation %s, want %s in %s", badge.CausationID, badge.CorrelationID, quiz.ID, quiz.CorrelationID)
				}
				if !strings.Contains(badge.TraceParent, producerTrace.String()) {
					t.Errorf("badge traceparent %q is not in the producer's trace", badge.TraceParent)
				}
				spans := rec.Ended()
				if !withTracer {
					if len(spans) != 0 {
						t.Errorf("%d spans without a TracerProvider", len(spans))
					}
					if sc.SpanID() != producerSpan {
						t.Errorf("handler's span %s, want the producer's %s as the remote parent", sc.SpanID(), producerSpan)
					}
					return
				}
				if len(spans) != 1 {
					t.Fatalf("%d spans, want 1", len(spans))
				}
				span := spans[0]
				if span.Name() != "consume quiz.submitted" || span.SpanKind() != trace.SpanKindConsumer {
					t.Errorf("span %q of kind %v", span.Name(), span.SpanKind())
				}
				if span.Parent().SpanID() != producerSpan || span.SpanContext().TraceID() != producerTrace {
					t.Errorf("span's parent %s in trace %s, want %s in %s", span.Parent().SpanID(), span.SpanContext().TraceID(), producerSpan, producerTrace)
				}
				if sc.SpanID() != span.SpanContext().SpanID() {
					t.Errorf("the handler's context does not carry the consume span")
				}
				if !strings.Contains(badge.TraceParent, span.SpanContext().SpanID().String()) {
					t.Errorf("badge traceparent %q does not name the consume span %s as parent", badge.TraceParent, span.SpanContext().SpanID())
				}
			})
		}
	})
}

func TestPoisonMessageIsDeadLettered(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		var calls atomic.Int32
		cfg := e.config()
		cfg.MaxDeliveries = 3
		c := newConsumer(t, e.b, cfg, consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			calls.Add(1)
			return nil
		}))
		e.start(c)
		// As RabbitMQ's quorum queues count a message that crashed its
		// consumer three times.
		m, err := broker.EnvelopeMessage(quizEvent("quiz-1", 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		m.Headers["x-delivery-count"] = int64(3)
		e.publishMessages(e.exchange, []string{edupulse.TypeQuizSubmitted}, []broker.Message{m})
		eventually(t, 10*time.Second, "the poison message to be dead-lettered", func() bool { return c.Stats().DeadLettered == 1 })
		if calls.Load() != 0 {
			t.Error("the handler ran on a poison message")
		}
		dead, err := consume.DeadLetters(context.Background(), e.b, e.group, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || !strings.Contains(dead[0].Reason, "delivered 3 times") {
			t.Fatalf("dead letters %+v", dead)
		}
	})
}

// TestStoreOutageDoesNotUseUpAttempts: while the store is unreachable, the
// handler fails with store.ErrUnavailable; that is the store's fault, not the
// event's. Events wait out the outage in a retry queue instead of ending in
// the dead-letter queue, and each takes effect once when the store is back.
func TestStoreOutageDoesNotUseUpAttempts(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		direct := newStore(t)
		proxy := testenv.NewFaultProxy(t, "127.0.0.1:5432")
		ctx := testenv.Context(t, time.Minute)
		viaProxy, err := postgres.Open(ctx, testenv.WithHost(direct.Pool().Config().ConnString(), proxy.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = viaProxy.Close() })
		cfg := e.config()
		cfg.MaxAttempts = 3 // 50ms + 100ms of backoff: far shorter than the outage
		cfg.Inbox = consume.NewInbox[pgx.Tx](viaProxy)
		c := newConsumer(t, e.b, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			return writeEffect(ctx, tx, env)
		}))
		e.start(c)
		proxy.Down()
		const n = 20
		for i := 0; i < n; i++ {
			e.publish(quizEvent("quiz-"+strconv.Itoa(i), 1, 50))
		}
		eventually(t, 10*time.Second, "failures during the outage", func() bool { return c.Stats().Failed >= 4*n })
		if err := proxy.Up(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "every event handled after the outage", func() bool {
			rows, _ := effects(t, direct)
			return rows >= n
		})
		if rows, distinct := effects(t, direct); rows != n || distinct != n {
			t.Fatalf("%d effect rows for %d distinct events, want %d each", rows, distinct, n)
		}
		if dl := e.queueLen(consume.DeadLetterQueue(e.group)); dl != 0 {
			t.Fatalf("%d events dead-lettered by a store outage, want none", dl)
		}
		t.Logf("stats after the outage: %+v", c.Stats())
	})
}
