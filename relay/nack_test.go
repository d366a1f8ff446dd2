package relay_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
)

// nackingBroker is the in-process broker with a fault: its publishers nack
// the messages that nack selects (RabbitMQ nacks on internal errors, for
// instance when a queue cannot take a message), and confirm the rest.
type nackingBroker struct {
	*memory.Broker
	mu   sync.Mutex
	nack func(broker.Message) bool
}

func (b *nackingBroker) setNack(f func(broker.Message) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nack = f
}

func (b *nackingBroker) NewPublisher(ctx context.Context, opts broker.PublisherOptions) (broker.Publisher, error) {
	p, err := b.Broker.NewPublisher(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &nackingPublisher{Publisher: p, b: b}, nil
}

type nackingPublisher struct {
	broker.Publisher
	b *nackingBroker
}

type nacked struct{}

var settled = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (nacked) Done() <-chan struct{} { return settled }
func (nacked) Acked() bool           { return false }

func (p *nackingPublisher) Publish(ctx context.Context, exchange, key string, m broker.Message) (broker.Confirmation, error) {
	p.b.mu.Lock()
	nack := p.b.nack != nil && p.b.nack(m)
	p.b.mu.Unlock()
	if nack {
		return nacked{}, nil
	}
	return p.Publisher.Publish(ctx, exchange, key, m)
}

// TestParksAnEventNackedAgainAndAgain: an event the broker nacks every time,
// while it confirms the others, is parked after ParkAfterNacks tries, and
// the rest flow. A broker that nacks everything is failing as a whole: that
// is retried with backoff, and nothing is parked.
func TestParksAnEventNackedAgainAndAgain(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, err := sqlite.Open(ctx, t.TempDir()+"/events.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	b := &nackingBroker{Broker: mem}
	const exchange = "edupulse.events"
	if err := mem.DeclareExchange(ctx, exchange); err != nil {
		t.Fatal(err)
	}
	if err := mem.DeclareQueue(ctx, broker.QueueSpec{Name: "all", Bindings: []broker.Binding{{Exchange: exchange, Pattern: "#"}}}); err != nil {
		t.Fatal(err)
	}
	add := func(subject string) event.Envelope {
		t.Helper()
		d := event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "test.event", Source: "relay-test", Subject: subject,
			OccurredAt: time.Now().Truncate(event.TimePrecision), CorrelationID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(`{}`)}
		res, err := s.Append(ctx, []event.Draft{d})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Envelope
	}

	// First the whole broker nacks: nothing may be parked.
	b.setNack(func(broker.Message) bool { return true })
	add("a")
	bad := add("bad")
	add("bad") // parks behind
	add("b")
	metrics := relay.NewMetrics()
	r, err := relay.New(s, b, relay.Config{Exchange: exchange, ParkAfterNacks: 3, MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	waitUntil(t, 10*time.Second, func() bool { return metrics.Errors("nack") >= 10 })
	if p, err := s.Parked(ctx, relay.DefaultName); err != nil || len(p) != 0 {
		t.Fatalf("with every message nacked, parked = %s (%v); want nothing parked", describeParked(p), err)
	}

	// Now only one event is nacked: it parks, the others flow.
	b.setNack(func(m broker.Message) bool { return m.MessageID == bad.ID.String() })
	parked := waitParked(t, s, "the nacked event and the one behind it", func(p []store.ParkedEvent) bool { return len(p) == 2 })
	if p := parked[0]; p.EventID != bad.ID || !strings.HasPrefix(p.Reason, relay.ReasonNacked) ||
		!strings.HasPrefix(parked[1].Reason, relay.ReasonBehind+bad.ID.String()) {
		t.Fatalf("parked %s; want the nacked event, with reason %q...", describeParked(parked), relay.ReasonNacked)
	}
	waitUntil(t, 10*time.Second, func() bool {
		info, err := mem.InspectQueue(ctx, "all")
		return err == nil && info.Messages == 2
	})
	// The probe that showed the broker takes other events is not sent twice.
	waitCheckpointOf(t, s, 4)
	if info, err := mem.InspectQueue(ctx, "all"); err != nil || info.Messages != 2 {
		t.Fatalf("queue holds %d messages (%v); want the two events of other streams, once each", info.Messages, err)
	}
}

// waitCheckpointOf waits until the relay's checkpoint in s reaches position.
func waitCheckpointOf(t *testing.T, s store.Store, position int64) {
	t.Helper()
	waitUntil(t, 10*time.Second, func() bool {
		st, err := relay.ReadStatus(context.Background(), s, relay.DefaultName, 0)
		return err == nil && len(st.Partitions) > 0 && st.Partitions[0].Position >= position
	})
}
