package relay_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) {
	if os.Getenv(subprocessEnv) != "" {
		os.Exit(runSubprocessRelay())
	}
	goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...)
}

// harness is a store, a bus on it, and an exchange of the test's own.
type harness struct {
	dbURL    string
	store    *postgres.Store
	bus      *eventbus.Bus[pgx.Tx]
	exchange string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	dbURL := testenv.PostgresSchema(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{dbURL: dbURL, store: s, exchange: testenv.Name("relay_test")}
	h.bus = eventbus.New(s, eventbus.Config{Registry: edupulse.Registry(), Source: "relay-test"})
	t.Cleanup(func() { deleteExchange(h.exchange) })
	return h
}

func deleteExchange(name string) {
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	_ = ch.ExchangeDelete(name, false, false)
}

// openBroker opens a RabbitMQ broker at url (maybe a fault proxy's).
func openBroker(t *testing.T, url string) *rabbitmq.Broker {
	t.Helper()
	b, err := rabbitmq.Open(context.Background(), url, rabbitmq.Config{ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startRelay runs a relay until the test ends or stop is called.
func startRelay(t *testing.T, h *harness, b broker.Broker, cfg relay.Config) (r *relay.Relay, stop func()) {
	t.Helper()
	cfg.Exchange = h.exchange
	return runRelay(t, context.Background(), h.store, b, cfg)
}

// received is one delivery the test consumer saw.
type received struct {
	env   event.Envelope
	props amqp.Delivery
}

// collector consumes everything published to an exchange through a plain
// AMQP client, independent of the bus's own broker code.
type collector struct {
	t        *testing.T
	mu       sync.Mutex
	all      []received
	byID     map[uuid.UUID]int
	arrived  chan struct{}
	malforms int
}

func newCollector(t *testing.T, exchange, pattern string) *collector {
	t.Helper()
	return newCollectorOn(t, exchange, pattern, nil, 0)
}

// newCollectorOn is newCollector with queue arguments of its own; with a
// prefetch, it acknowledges each delivery once recorded, and the queue
// holds what the consumer has not taken yet.
func newCollectorOn(t *testing.T, exchange, pattern string, queueArgs amqp.Table, prefetch int) *collector {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, queueArgs)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, pattern, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	if prefetch > 0 {
		if err := ch.Qos(prefetch, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", prefetch == 0, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{t: t, byID: map[uuid.UUID]int{}, arrived: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			env, err := event.Decode(d.Body)
			c.mu.Lock()
			if err != nil {
				c.malforms++
			} else {
				c.all = append(c.all, received{env: env, props: d})
				c.byID[env.ID]++
			}
			c.mu.Unlock()
			if prefetch > 0 {
				_ = d.Ack(false)
			}
			select {
			case c.arrived <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return c
}

// waitFor waits until n distinct events have arrived.
func (c *collector) waitFor(n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		got := len(c.byID)
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.arrived:
		case <-deadline:
			c.t.Fatalf("received %d distinct events, want %d, after %v", got, n, timeout)
		}
	}
}

// checkStreamOrder verifies G3 on what arrived: the first delivery of each
// stream's versions comes in version order, without gaps. Redeliveries of
// versions already seen are counted, not errors.
func (c *collector) checkStreamOrder() (duplicates int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[string]int64{}
	seen := map[uuid.UUID]bool{}
	for _, r := range c.all {
		if seen[r.env.ID] {
			duplicates++
			continue
		}
		seen[r.env.ID] = true
		if r.env.Subject == "" {
			continue
		}
		want := next[r.env.Subject] + 1
		if r.env.StreamVersion != want {
			c.t.Fatalf("stream %s: first saw version %d, expected %d: order broken", r.env.Subject, r.env.StreamVersion, want)
		}
		next[r.env.Subject] = want
	}
	return duplicates
}

func quiz(score int32) edupulse.QuizSubmitted {
	return edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: score}
}

func TestPublishesEveryEventWithTheAMQPContract(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	ctx := context.Background()
	const n = 300
	var want []event.Envelope
	for i := 0; i < n; i++ {
		env, err := h.bus.Dispatch(ctx, quiz(int32(i)), eventbus.Subject("quiz-"+strconv.Itoa(i%7)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, env)
	}
	startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{})
	col.waitFor(n, 30*time.Second)
	col.checkStreamOrder()

	col.mu.Lock()
	defer col.mu.Unlock()
	byID := map[uuid.UUID]received{}
	for _, r := range col.all {
		byID[r.env.ID] = r
	}
	for _, w := range want {
		r, ok := byID[w.ID]
		if !ok {
			t.Fatalf("event %s never arrived", w.ID)
		}
		d := r.props
		if d.MessageId != w.ID.String() || d.CorrelationId != w.CorrelationID.String() || d.Type != w.Type ||
			d.AppId != w.Source || d.DeliveryMode != amqp.Persistent || d.RoutingKey != w.Type ||
			d.ContentType != event.ContentType || d.Timestamp.Unix() != w.OccurredAt.Unix() {
			t.Fatalf("AMQP properties do not follow the contract: %+v", d)
		}
		if d.Headers[broker.HeaderPosition] != strconv.FormatInt(w.Position, 10) {
			t.Fatalf("position header %v, want %d", d.Headers[broker.HeaderPosition], w.Position)
		}
		if r.env.Position != w.Position || r.env.StreamVersion != w.StreamVersion || string(r.env.Data) != string(w.Data) {
			t.Fatalf("body differs from the stored event")
		}
	}
}

// TestRollbackNeverReachesTheBroker: G2 end to end.
func TestRollbackNeverReachesTheBroker(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	ctx := context.Background()
	tx, err := h.store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolled, err := h.bus.DispatchTx(ctx, tx, quiz(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	kept, err := h.bus.Dispatch(ctx, quiz(2))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{})
	col.waitFor(1, 30*time.Second)
	waitCheckpoint(t, h, r, kept.Position)
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.byID[rolled.ID] != 0 || col.byID[kept.ID] != 1 || len(col.all) != 1 {
		t.Fatalf("broker received %d messages (rolled back: %d, committed: %d); want only the committed one",
			len(col.all), col.byID[rolled.ID], col.byID[kept.ID])
	}
}

// waitCheckpoint waits until the relay has saved a checkpoint at position.
func waitCheckpoint(t *testing.T, h *harness, r *relay.Relay, position int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := relay.ReadStatus(context.Background(), h.store, relay.DefaultName, 0)
		if err == nil && len(st.Partitions) > 0 && st.Partitions[0].Position >= position {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("checkpoint never reached position %d", position)
}

func TestGracefulStopSavesCheckpointAndReleasesLease(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	ctx := context.Background()
	var last event.Envelope
	for i := 0; i < 50; i++ {
		var err error
		if last, err = h.bus.Dispatch(ctx, quiz(int32(i))); err != nil {
			t.Fatal(err)
		}
	}
	r, stop := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{CheckpointInterval: time.Hour})
	col.waitFor(50, 30*time.Second)
	if !r.Leader() {
		t.Fatal("the only relay is not the leader")
	}
	stop()
	st, err := relay.ReadStatus(ctx, h.store, relay.DefaultName, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := st.Partitions[0]
	if p.Position != last.Position || p.Leader != "" || st.Backlog != 0 {
		t.Fatalf("after a clean stop: %+v, backlog %d; want checkpoint at %d, no leader, no backlog", p, st.Backlog, last.Position)
	}
	if st.Healthy {
		t.Fatal("status healthy with no relay running")
	}
}

func TestUnroutableEventsAreCounted(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "quiz.*") // nobody takes lessons
	ctx := context.Background()
	lesson := edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "Ratios"}
	if _, err := h.bus.Dispatch(ctx, lesson); err != nil {
		t.Fatal(err)
	}
	q, err := h.bus.Dispatch(ctx, quiz(3))
	if err != nil {
		t.Fatal(err)
	}
	metrics := relay.NewMetrics()
	r, _ := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Metrics: metrics})
	col.waitFor(1, 30*time.Second)
	waitCheckpoint(t, h, r, q.Position)
	if got := metrics.Errors("unroutable"); got != 1 {
		t.Fatalf("unroutable count = %v, want 1", got)
	}
}
