package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
)

// rawEvent is an event written to the store as an old store may hold it:
// past the input limits that the API and Dispatch enforce today.
type rawEvent struct {
	typ, source, subject string
	data                 string
}

// insertRaw stores e with SQL, bypassing every check of the bus, and
// returns it as stored.
func insertRaw(t *testing.T, h *harness, e rawEvent) event.Envelope {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	if e.data == "" {
		e.data = `{}`
	}
	var subject *string
	if e.subject != "" {
		subject = &e.subject
	}
	id := uuid.Must(uuid.NewV7())
	_, err := h.store.Pool().Exec(ctx, `
		INSERT INTO event_store (event_id, type, source, subject, stream_version, occurred_at, correlation_id, data)
		VALUES ($1, $2, $3, $4::text,
		        CASE WHEN $4::text IS NULL THEN NULL
		             ELSE (SELECT coalesce(max(stream_version), 0) + 1 FROM event_store WHERE subject = $4::text) END,
		        now(), $5, $6::json)`,
		id, e.typ, e.source, subject, uuid.Must(uuid.NewV7()), e.data)
	if err != nil {
		t.Fatalf("insert a raw event: %v", err)
	}
	env, err := h.store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func normal(subject string) rawEvent {
	return rawEvent{typ: "test.normal", source: "relay-test", subject: subject}
}

// waitParked waits until the relay's parked events satisfy cond, and
// returns them.
func waitParked(t *testing.T, s store.Store, what string, cond func([]store.ParkedEvent) bool) []store.ParkedEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []store.ParkedEvent
	for {
		var err error
		got, err = s.Parked(context.Background(), relay.DefaultName)
		if err == nil && cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("parked events never became %s; last: %s (err %v)", what, describeParked(got), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describeParked(events []store.ParkedEvent) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\n  position %d stream %q attempts %d retry %v: %s", e.Position, e.Stream, e.Attempts, e.RetryRequested, e.Reason)
	}
	return b.String()
}

func parkedByID(events []store.ParkedEvent) map[uuid.UUID]store.ParkedEvent {
	m := map[uuid.UUID]store.ParkedEvent{}
	for _, e := range events {
		m[e.EventID] = e
	}
	return m
}

// metricValue gathers reg and returns the value of the gauge name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// TestParksWhatAMQPCannotCarry: events that an old store holds and that AMQP
// cannot carry (a source over 255 bytes as app_id, a type over 255 bytes as
// routing key) are parked with a clear reason; the events after them on
// other streams arrive; later events of their streams park behind them; a
// restarted relay keeps those streams parked; status and the metric show it.
func TestParksWhatAMQPCannotCarry(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	long := strings.Repeat("s", 256)

	var want []event.Envelope
	for i := 0; i < 5; i++ {
		want = append(want, insertRaw(t, h, normal(fmt.Sprintf("ok-%d", i))))
	}
	badSource := insertRaw(t, h, rawEvent{typ: "test.normal", source: long, subject: "bad-source"})
	badType := insertRaw(t, h, rawEvent{typ: "test." + strings.Repeat("t", 251), source: "relay-test", subject: "bad-type"})
	lone := insertRaw(t, h, rawEvent{typ: "test.normal", source: long}) // no stream: blocks nothing
	for i := 0; i < 5; i++ {
		want = append(want, insertRaw(t, h, normal(fmt.Sprintf("ok-%d", i))))
	}
	behind := insertRaw(t, h, normal("bad-source"))

	metrics := relay.NewMetrics()
	_, stop := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Metrics: metrics})
	col.waitFor(len(want), 10*time.Second)

	parked := waitParked(t, h.store, "the three refused events and the one behind", func(p []store.ParkedEvent) bool { return len(p) == 4 })
	byID := parkedByID(parked)
	for _, c := range []struct {
		env  event.Envelope
		text string
	}{
		{badSource, "app_id (the event source) is 256 bytes"},
		{badType, "routing key (the event type) is 256 bytes"},
		{lone, "app_id (the event source) is 256 bytes"},
	} {
		p, ok := byID[c.env.ID]
		if !ok || !strings.HasPrefix(p.Reason, relay.ReasonRefused) || !strings.Contains(p.Reason, c.text) ||
			p.Attempts != 1 || p.Position != c.env.Position || p.Stream != c.env.Subject || p.Partition.Relay != relay.DefaultName {
			t.Fatalf("event at position %d parked as %+v; want refused, mentioning %q", c.env.Position, p, c.text)
		}
	}
	if p := byID[behind.ID]; !strings.HasPrefix(p.Reason, relay.ReasonBehind+badSource.ID.String()) || p.Attempts != 0 {
		t.Fatalf("the later event of the stream is parked as %+v; want behind %s", p, badSource.ID)
	}

	// The checkpoint moves past the parked events.
	last := insertRaw(t, h, normal("ok-late"))
	col.waitFor(len(want)+1, 10*time.Second)
	waitCheckpointAt(t, h, last.Position)

	// Status and the metric show them.
	st, err := relay.ReadStatus(context.Background(), h.store, relay.DefaultName, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Parked != 4 || st.Healthy {
		t.Fatalf("status: parked %d, healthy %v; want 4 parked and unhealthy", st.Parked, st.Healthy)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewStatusCollector(h.store, relay.DefaultName))
	if v := metricValue(t, reg, "eventbus_relay_parked_events"); v != 4 {
		t.Fatalf("eventbus_relay_parked_events = %v, want 4", v)
	}
	if metrics.Errors("parked") < 4 {
		t.Fatalf("parked count = %v, want 4 or more", metrics.Errors("parked"))
	}

	// A new relay on the same store keeps the stream parked.
	stop()
	startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{})
	afterRestart := insertRaw(t, h, normal("bad-source"))
	flowing := insertRaw(t, h, normal("ok-after-restart"))
	col.waitFor(len(want)+2, 10*time.Second)
	waitCheckpointAt(t, h, flowing.Position)
	parked = waitParked(t, h.store, "five events", func(p []store.ParkedEvent) bool { return len(p) == 5 })
	if p := parkedByID(parked)[afterRestart.ID]; !strings.HasPrefix(p.Reason, relay.ReasonBehind+badSource.ID.String()) {
		t.Fatalf("after a restart, a new event of the parked stream is %+v; want it parked behind %s", p, badSource.ID)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, id := range []uuid.UUID{badSource.ID, badType.ID, lone.ID, behind.ID, afterRestart.ID} {
		if col.byID[id] != 0 {
			t.Fatalf("parked event %s reached the broker", id)
		}
	}
	if col.malforms != 0 {
		t.Fatalf("%d malformed messages arrived", col.malforms)
	}
}

// waitCheckpointAt waits until the saved checkpoint reaches position.
func waitCheckpointAt(t *testing.T, h *harness, position int64) {
	t.Helper()
	waitCheckpoint(t, h, nil, position)
}

// privateCollector consumes everything published to exchange on the node at
// url, in order, and returns the IDs seen so far on each call.
func privateCollector(t *testing.T, url, exchange string) func() []uuid.UUID {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return func() []uuid.UUID {
		var ids []uuid.UUID
		for {
			d, ok, err := ch.Get(q.Name, true)
			if err != nil {
				t.Fatalf("get from the private node: %v", err)
			}
			if !ok {
				break
			}
			ids = append(ids, uuid.MustParse(d.MessageId))
		}
		return ids
	}
}

// TestParksWhatTheBrokerRefuses: a message over the broker's
// max_message_size makes RabbitMQ close the channel; the relay finds the
// event among those in flight, parks it, and the rest flow. A retry while
// the limit stands parks it again with one more attempt; once the limit is
// raised, a retry delivers it and the event parked behind it, in order.
func TestParksWhatTheBrokerRefuses(t *testing.T) {
	node := testenv.StartRabbitNode(t, "max_message_size = 4096")
	h := newHarness(t)
	b, err := rabbitmqOpen(node.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	received := privateCollector(t, node.URL, h.exchange)

	var want []uuid.UUID
	for i := 0; i < 20; i++ {
		want = append(want, insertRaw(t, h, normal(fmt.Sprintf("ok-%d", i%4))).ID)
	}
	bigData, _ := json.Marshal(map[string]string{"blob": strings.Repeat("x", 5000)})
	big := insertRaw(t, h, rawEvent{typ: "test.big", source: "relay-test", subject: "big", data: string(bigData)})
	for i := 0; i < 20; i++ {
		want = append(want, insertRaw(t, h, normal(fmt.Sprintf("ok-%d", i%4))).ID)
	}
	behind := insertRaw(t, h, normal("big"))

	startRelay(t, h, b, relay.Config{ParkedPoll: 20 * time.Millisecond})
	var got []uuid.UUID
	waitUntil(t, 10*time.Second, func() bool {
		got = append(got, received()...)
		return len(distinct(got)) >= len(want)
	})
	parked := waitParked(t, h.store, "the big event and the one behind", func(p []store.ParkedEvent) bool { return len(p) == 2 })
	p := parkedByID(parked)[big.ID]
	if !strings.HasPrefix(p.Reason, relay.ReasonRefused) || !strings.Contains(p.Reason, "PRECONDITION_FAILED") || p.Attempts != 1 {
		t.Fatalf("the big event is parked as %+v; want refused with PRECONDITION_FAILED", p)
	}
	if p := parkedByID(parked)[behind.ID]; !strings.HasPrefix(p.Reason, relay.ReasonBehind+big.ID.String()) {
		t.Fatalf("the later event of the stream is parked as %+v; want behind the big one", p)
	}

	// A retry while the cause stands: parked again, one more attempt.
	ctx := testenv.Context(t, time.Minute)
	if _, err := h.store.RequestRetry(ctx, relay.DefaultName, []uuid.UUID{behind.ID}, false); err != nil {
		t.Fatal(err)
	}
	parked = waitParked(t, h.store, "the big event parked again after 2 attempts", func(p []store.ParkedEvent) bool {
		e := parkedByID(p)
		return len(p) == 2 && e[big.ID].Attempts == 2 && !e[big.ID].RetryRequested && !e[behind.ID].RetryRequested
	})
	if p := parkedByID(parked)[behind.ID]; !strings.HasPrefix(p.Reason, relay.ReasonBehind) {
		t.Fatalf("after a failed retry, the later event is parked as %+v; want behind", p)
	}

	// The cause goes away; a retry delivers both, in stream order.
	if out, err := node.Eval(ctx, "application:set_env(rabbit, max_message_size, 134217728)."); err != nil {
		t.Fatalf("raise max_message_size: %v (%s)", err, out)
	}
	if _, err := h.store.RequestRetry(ctx, relay.DefaultName, nil, true); err != nil {
		t.Fatal(err)
	}
	waitParked(t, h.store, "empty", func(p []store.ParkedEvent) bool { return len(p) == 0 })
	waitUntil(t, 10*time.Second, func() bool {
		got = append(got, received()...)
		return len(distinct(got)) >= len(want)+2
	})
	bigAt, behindAt := -1, -1
	for i, id := range got {
		switch id {
		case big.ID:
			bigAt = i
		case behind.ID:
			behindAt = i
		}
	}
	if bigAt < 0 || behindAt < bigAt {
		t.Fatalf("after the retry the big event arrived at %d and the one behind it at %d; want both, in order", bigAt, behindAt)
	}
}

func distinct(ids []uuid.UUID) map[uuid.UUID]bool {
	m := map[uuid.UUID]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// TestParkingOnTheMemoryBroker: the embedded pair (SQLite and the in-process
// broker) parks a message over the broker's limit, lets other streams flow,
// and on retry parks it again, then delivers it in order once the limit is
// raised.
func TestParkingOnTheMemoryBroker(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, b := embeddedRig(t, ctx)
	b.SetMaxMessageSize(2048)
	sub, err := b.Consume(ctx, "all", broker.ConsumeOptions{Prefetch: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })

	add := func(subject, data string) event.Envelope { return appendEvent(t, ctx, s, subject, data) }
	first := add("other", `{}`)
	big := add("big", fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 3000)))
	behind := add("big", `{}`)
	after := add("other", `{}`)

	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange, ParkedPoll: 10 * time.Millisecond})
	next := func() uuid.UUID {
		t.Helper()
		select {
		case d := <-sub.Deliveries():
			_ = d.Ack()
			return uuid.MustParse(d.MessageID)
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery within 10s")
			return uuid.Nil
		}
	}
	if a, b := next(), next(); a != first.ID || b != after.ID {
		t.Fatalf("delivered %s, %s; want the two events of the other stream", a, b)
	}
	waitParked(t, s, "the big event and the one behind", func(p []store.ParkedEvent) bool { return len(p) == 2 })

	if _, err := s.RequestRetry(ctx, relay.DefaultName, []uuid.UUID{big.ID}, false); err != nil {
		t.Fatal(err)
	}
	waitParked(t, s, "the big event with 2 attempts", func(p []store.ParkedEvent) bool {
		e := parkedByID(p)
		return len(p) == 2 && e[big.ID].Attempts == 2 && !e[big.ID].RetryRequested
	})

	b.SetMaxMessageSize(0)
	if _, err := s.RequestRetry(ctx, relay.DefaultName, []uuid.UUID{big.ID}, false); err != nil {
		t.Fatal(err)
	}
	if a, b := next(), next(); a != big.ID || b != behind.ID {
		t.Fatalf("after the retry delivered %s, %s; want the big event, then the one behind it", a, b)
	}
	waitParked(t, s, "empty", func(p []store.ParkedEvent) bool { return len(p) == 0 })
	// The stream flows again.
	later := add("big", `{}`)
	if id := next(); id != later.ID {
		t.Fatalf("delivered %s; want the next event of the stream", id)
	}
}

func rabbitmqOpen(url string) (*rabbitmq.Broker, error) {
	return rabbitmq.Open(context.Background(), url, rabbitmq.Config{ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
}

// TestParkedStreamSurvivesALeaderChange: a standby that takes the lease over
// loads the parked streams from the store, so a new event of a parked
// stream parks behind, and other streams flow.
func TestParkedStreamSurvivesALeaderChange(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, b := embeddedRig(t, ctx)
	b.SetMaxMessageSize(1024)
	add := func(subject, data string) event.Envelope { return appendEvent(t, ctx, s, subject, data) }
	run := func(holder string) (*relay.Relay, func()) {
		r, err := relay.New(s, b, relay.Config{Exchange: memoryExchange, Holder: holder, LeaseTTL: time.Second, StandbyPoll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		}
		t.Cleanup(func() {
			select {
			case <-runCtx.Done():
			default:
				stop()
			}
		})
		return r, stop
	}
	first, stopFirst := run("first")
	waitUntil(t, 10*time.Second, first.Leader)
	second, _ := run("second")

	big := add("big", fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", 2000)))
	waitParked(t, s, "the big event", func(p []store.ParkedEvent) bool { return len(p) == 1 })
	stopFirst()
	waitUntil(t, 10*time.Second, second.Leader)

	behind := add("big", `{}`)
	add("other", `{}`) // flows: the one message in the queue
	waitUntil(t, 10*time.Second, func() bool {
		info, err := b.InspectQueue(ctx, "all")
		return err == nil && info.Messages == 1
	})
	parked := waitParked(t, s, "the new event behind the big one", func(p []store.ParkedEvent) bool { return len(p) == 2 })
	if p := parkedByID(parked)[behind.ID]; !strings.HasPrefix(p.Reason, relay.ReasonBehind+big.ID.String()) {
		t.Fatalf("after a leader change, the new event of the parked stream is %+v; want it parked behind %s", p, big.ID)
	}
}

// TestEarlierEventsOfAParkedStreamAreNotParked: a leader that resumes from a
// checkpoint before a stream's parked event reads the stream's earlier
// events again. They come before the parked one, so they are published, not
// parked behind it; only later events wait.
func TestEarlierEventsOfAParkedStreamAreNotParked(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, b := embeddedRig(t, ctx)
	sub, err := b.Consume(ctx, "all", broker.ConsumeOptions{Prefetch: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	add := func(subject string) event.Envelope { return appendEvent(t, ctx, s, subject, `{}`) }
	earlier, parked, later, other := add("s"), add("s"), add("s"), add("other")
	// As a leader that died after parking it, before saving a checkpoint
	// past the stream's earlier event, would leave it.
	if err := s.Park(ctx, store.ParkedEvent{Partition: store.Partition{Relay: relay.DefaultName}, EventID: parked.ID,
		Position: parked.Position, Type: parked.Type, Stream: "s", StreamVersion: parked.StreamVersion,
		Reason: relay.ReasonRefused + "test", Attempts: 1}); err != nil {
		t.Fatal(err)
	}

	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange})
	// The relay handles events in commit order: once the last one arrives,
	// every earlier one was published or parked.
	var delivered []uuid.UUID
	for len(delivered) == 0 || delivered[len(delivered)-1] != other.ID {
		select {
		case d := <-sub.Deliveries():
			_ = d.Ack()
			delivered = append(delivered, uuid.MustParse(d.MessageID))
		case <-time.After(10 * time.Second):
			t.Fatalf("no delivery within 10s; delivered so far %v", delivered)
		}
	}
	if want := []uuid.UUID{earlier.ID, other.ID}; !slices.Equal(delivered, want) {
		t.Fatalf("delivered %v; want the stream's earlier event, then the other stream's (%v)", delivered, want)
	}
	got := parkedByID(waitParked(t, s, "the parked event and the one behind it", func(p []store.ParkedEvent) bool { return len(p) >= 2 }))
	if len(got) != 2 || !strings.HasPrefix(got[later.ID].Reason, relay.ReasonBehind+parked.ID.String()) {
		t.Fatalf("parked %v; want the parked event and the later one behind it, and not the earlier one", got)
	}
}

// memoryExchange is the exchange of the tests that run on embeddedRig.
const memoryExchange = "edupulse.events"

// embeddedRig returns a migrated SQLite store and an in-process broker with
// the exchange memoryExchange and a queue "all" bound to every event type:
// the embedded default, for relay tests that need no server.
func embeddedRig(t *testing.T, ctx context.Context) (*sqlite.Store, *memory.Broker) {
	t.Helper()
	s, err := sqlite.Open(ctx, t.TempDir()+"/events.db", sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := memory.New()
	t.Cleanup(func() { _ = b.Close() })
	if err := b.DeclareExchange(ctx, memoryExchange); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: "all", Bindings: []broker.Binding{{Exchange: memoryExchange, Pattern: "#"}}}); err != nil {
		t.Fatal(err)
	}
	return s, b
}

// runRelay runs a relay on s and b until stop is called or the test ends;
// stop waits for Run to return and reports its error.
func runRelay(t *testing.T, ctx context.Context, s store.Store, b broker.Broker, cfg relay.Config) (r *relay.Relay, stop func()) {
	t.Helper()
	r, err := relay.New(s, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// appendEvent stores one test.event of subject with data in s.
func appendEvent(t *testing.T, ctx context.Context, s store.Store, subject, data string) event.Envelope {
	t.Helper()
	d := event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "test.event", Source: "relay-test", Subject: subject,
		OccurredAt: time.Now().Truncate(event.TimePrecision), CorrelationID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(data)}
	res, err := s.Append(ctx, []event.Draft{d})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Envelope
}
