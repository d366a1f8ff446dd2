package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...)
}

// brokerKind makes brokers of one implementation. Every behaviour test runs
// against each kind: the consumer must behave the same on all of them.
type brokerKind struct {
	name string
	// open returns a connected broker, closed when the test ends.
	open func(t testing.TB) broker.Broker
	// openFaulty returns a broker whose connection f breaks, or is nil
	// when the kind has no connection to break.
	openFaulty func(t testing.TB) (b broker.Broker, f faults)
	// connectAgain returns another connection to the broker b reaches, as
	// another process of a consumer group has.
	connectAgain func(t testing.TB, b broker.Broker) broker.Broker
}

func openRabbitMQ(t testing.TB, url string) broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := rabbitmq.Open(ctx, url, rabbitmq.Config{ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// faults breaks a broker's connection (testenv.FaultProxy does).
type faults interface {
	// Cut closes the connections; new ones are accepted at once.
	Cut() error
	// Down closes the connections and refuses new ones until Up.
	Down()
	Up() error
}

var rabbitMQKind = brokerKind{
	name: "rabbitmq",
	open: func(t testing.TB) broker.Broker {
		testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
		return openRabbitMQ(t, testenv.AMQPURL())
	},
	openFaulty: func(t testing.TB) (broker.Broker, faults) {
		testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
		proxy := testenv.NewFaultProxy(t, hostOf(t, testenv.AMQPURL()))
		return openRabbitMQ(t, testenv.WithHost(testenv.AMQPURL(), proxy.Addr())), proxy
	},
	connectAgain: func(t testing.TB, _ broker.Broker) broker.Broker { return openRabbitMQ(t, testenv.AMQPURL()) },
}

// memoryKind is the in-process broker of the embedded default.
var memoryKind = brokerKind{
	name: "memory",
	open: func(t testing.TB) broker.Broker {
		b := memory.New()
		t.Cleanup(func() { _ = b.Close() })
		return b
	},
	connectAgain: func(_ testing.TB, b broker.Broker) broker.Broker { return b },
}

// brokerKinds lists the implementations the behaviour tests run against.
var brokerKinds = []brokerKind{rabbitMQKind, memoryKind}

// forEachBroker runs test once per broker kind, as a subtest.
func forEachBroker(t *testing.T, test func(t *testing.T, k brokerKind)) {
	for _, k := range brokerKinds {
		t.Run(k.name, func(t *testing.T) { test(t, k) })
	}
}

func hostOf(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// env is one test's broker, exchange and consumer group.
type env struct {
	t        testing.TB
	b        broker.Broker // the test's own connection, never cut
	exchange string
	group    string
	pub      broker.Publisher
}

// newEnv declares an exchange of the test's own, and deletes it and the
// group's queues when the test ends.
func newEnv(t testing.TB, k brokerKind) *env {
	t.Helper()
	b := k.open(t)
	e := &env{t: t, b: b, exchange: testenv.Name("consume_x"), group: testenv.Name("consume_g")}
	ctx := testenv.Context(t, time.Minute)
	if err := b.DeclareExchange(ctx, e.exchange); err != nil {
		t.Fatal(err)
	}
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		queues := []string{e.group, consume.DeadLetterQueue(e.group)}
		for n := 1; n < 10; n++ {
			queues = append(queues, consume.RetryQueue(e.group, n))
		}
		for _, q := range queues {
			if err := b.DeleteQueue(ctx, q); err != nil && !errors.Is(err, broker.ErrNotFound) {
				t.Logf("delete queue %s: %v", q, err)
			}
		}
		if err := b.DeleteExchange(ctx, e.exchange); err != nil {
			t.Logf("delete exchange %s: %v", e.exchange, err)
		}
	})
	e.pub = pub
	return e
}

// config returns a config for the test's group with short backoffs.
func (e *env) config() consume.Config {
	return consume.Config{
		Group:           e.group,
		Exchange:        e.exchange,
		Backoff:         consume.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2},
		ShutdownTimeout: 10 * time.Second,
		Logger:          testLogger(),
	}
}

func testLogger() *slog.Logger {
	level := slog.LevelError + 1 // quiet
	if os.Getenv("CONSUME_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// start runs c until the test ends, and waits until it has subscribed.
func (e *env) start(c *consume.Consumer) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if !stopped.CompareAndSwap(false, true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Errorf("Run did not return 30 s after its context ended")
		}
	}
	e.t.Cleanup(stop)
	select {
	case <-c.Ready():
	case err := <-done:
		e.t.Fatalf("Run returned before subscribing: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("consumer not subscribed after 30 s")
	}
	return stop
}

// publish publishes events to the test's exchange, as the relay does, and
// waits for the broker's confirms.
func (e *env) publish(events ...event.Envelope) {
	e.t.Helper()
	msgs := make([]broker.Message, len(events))
	keys := make([]string, len(events))
	for i, ev := range events {
		m, err := broker.EnvelopeMessage(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		msgs[i], keys[i] = m, ev.Type
	}
	e.publishMessages(e.exchange, keys, msgs)
}

func (e *env) publishMessages(exchange string, keys []string, msgs []broker.Message) {
	e.t.Helper()
	ctx := testenv.Context(e.t, time.Minute)
	confs := make([]broker.Confirmation, 0, len(msgs))
	for i, m := range msgs {
		c, err := e.pub.Publish(ctx, exchange, keys[i], m)
		if err != nil {
			e.t.Fatalf("publish: %v", err)
		}
		confs = append(confs, c)
	}
	for _, c := range confs {
		select {
		case <-c.Done():
		case <-ctx.Done():
			e.t.Fatal("no publisher confirm")
		}
		if !c.Acked() {
			e.t.Fatal("publish nacked")
		}
	}
}

// queueLen returns how many messages are ready in queue.
func (e *env) queueLen(queue string) int {
	e.t.Helper()
	info, err := e.b.InspectQueue(testenv.Context(e.t, 30*time.Second), queue)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Messages
}

// eventually waits up to timeout for cond.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var positions atomic.Int64

// quizEvent returns a quiz.submitted event of stream subject ("" for none).
func quizEvent(subject string, version int64, score int32) event.Envelope {
	data, err := json.Marshal(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: score})
	if err != nil {
		panic(err)
	}
	return event.Envelope{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          edupulse.TypeQuizSubmitted,
		Source:        "consume-test",
		Subject:       subject,
		StreamVersion: version,
		OccurredAt:    time.Now().UTC().Truncate(event.TimePrecision),
		CorrelationID: uuid.Must(uuid.NewV7()),
		Position:      positions.Add(1),
		Data:          data,
	}
}

// newStore opens a migrated PostgreSQL store in a schema of the test's own,
// with a table effects that handlers write to.
func newStore(t testing.TB) *postgres.Store {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	s := testenv.PostgresStore(t)
	// No unique key: a duplicate effect must show, not fail.
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE effects (event_id uuid NOT NULL, subject text NOT NULL DEFAULT '', version bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeEffect records that env took effect, in tx.
func writeEffect(ctx context.Context, tx pgx.Tx, env event.Envelope) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, subject, version) VALUES ($1, $2, $3)`, env.ID, env.Subject, env.StreamVersion)
	return err
}

// effects counts the effect rows, and the distinct events among them.
func effects(t testing.TB, s *postgres.Store) (rows, distinct int) {
	t.Helper()
	err := s.Pool().QueryRow(testenv.Context(t, 30*time.Second),
		`SELECT count(*), count(DISTINCT event_id) FROM effects`).Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

func newConsumer(t testing.TB, b broker.Broker, cfg consume.Config, routes ...consume.Route) *consume.Consumer {
	t.Helper()
	c, err := consume.New(b, cfg, routes...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
