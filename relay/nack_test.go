package relay_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store"
)

// nackingBroker is the in-process broker with a fault: its publishers nack
// the messages that nack selects (RabbitMQ nacks on internal errors, for
// instance when a queue cannot take a message), and confirm the rest.
type nackingBroker struct {
	*memory.Broker
	mu   sync.Mutex
	nack func(broker.Message) bool
	// sticky: a publisher that nacked once nacks everything after, as a
	// RabbitMQ 3.10 channel did once a quorum queue had no leader.
	sticky bool
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
	b      *nackingBroker
	broken bool // sticky, and nacked once
}

type nacked struct{}

var settled = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (nacked) Done() <-chan struct{} { return settled }
func (nacked) Acked() bool           { return false }

func (p *nackingPublisher) Publish(ctx context.Context, exchange, key string, m broker.Message) (broker.Confirmation, error) {
	p.b.mu.Lock()
	nack := p.broken || p.b.nack != nil && p.b.nack(m)
	p.broken = nack && p.b.sticky
	p.b.mu.Unlock()
	if nack {
		return nacked{}, nil
	}
	return p.Publisher.Publish(ctx, exchange, key, m)
}

// consumed is what a test's consumer of the embedded rig's queue "all"
// received: each message id, first deliveries in order.
type consumed struct {
	mu    sync.Mutex
	seen  map[string]bool
	order []string
}

// consumeAll takes every delivery of the embedded rig's queue "all".
func consumeAll(t *testing.T, ctx context.Context, mem *memory.Broker) *consumed {
	t.Helper()
	sub, err := mem.Consume(ctx, "all", broker.ConsumeOptions{Prefetch: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	c := &consumed{seen: map[string]bool{}}
	go func() {
		for d := range sub.Deliveries() {
			c.mu.Lock()
			if !c.seen[d.MessageID] {
				c.seen[d.MessageID] = true
				c.order = append(c.order, d.MessageID)
			}
			c.mu.Unlock()
			_ = d.Ack()
		}
	}()
	return c
}

// arrived reports whether all of ids have arrived.
func (c *consumed) arrived(ids ...uuid.UUID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if !c.seen[id.String()] {
			return false
		}
	}
	return true
}

// firstOrder returns the message ids in the order they first arrived.
func (c *consumed) firstOrder() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.order)
}

// TestParksAnEventNackedAgainAndAgain: an event the broker nacks every time,
// while it confirms the others, is parked after ParkAfterNacks tries, and
// the rest flow. A broker that nacks everything is failing as a whole: that
// is retried with backoff, and nothing is parked.
func TestParksAnEventNackedAgainAndAgain(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, mem := embeddedRig(t, ctx)
	b := &nackingBroker{Broker: mem}
	add := func(subject string) event.Envelope { return appendEvent(t, ctx, s, subject, `{}`) }

	queue := consumeAll(t, ctx, mem)

	// First the whole broker nacks: nothing may be parked.
	b.setNack(func(broker.Message) bool { return true })
	a := add("a")
	bad := add("bad")
	c := add("c")
	metrics := relay.NewMetrics()
	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange, ParkAfterNacks: 3, MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, Metrics: metrics})
	waitUntil(t, 10*time.Second, func() bool { return metrics.Errors("nack") >= 10 })
	if p, err := s.Parked(ctx, relay.DefaultName); err != nil || len(p) != 0 {
		t.Fatalf("with every message nacked, parked = %s (%v); want nothing parked", describeParked(p), err)
	}

	// Now only one event is nacked: it parks, the others flow.
	b.setNack(func(m broker.Message) bool { return m.MessageID == bad.ID.String() })
	parked := waitParked(t, s, "the nacked event", func(p []store.ParkedEvent) bool { return len(p) == 1 })
	if p := parked[0]; p.EventID != bad.ID || !strings.HasPrefix(p.Reason, relay.ReasonNacked) || p.Attempts != 1 {
		t.Fatalf("parked %s; want the nacked event, with reason %q...", describeParked(parked), relay.ReasonNacked)
	}
	waitUntil(t, 10*time.Second, func() bool { return queue.arrived(a.ID, c.ID) })

	// A later event of its stream parks behind it; other streams flow.
	behind := add("bad")
	d := add("d")
	waitUntil(t, 10*time.Second, func() bool { return queue.arrived(d.ID) })
	waitParked(t, s, "the later event behind the nacked one", func(p []store.ParkedEvent) bool {
		return len(p) == 2 && p[1].EventID == behind.ID && strings.HasPrefix(p[1].Reason, relay.ReasonBehind+bad.ID.String())
	})
	if queue.arrived(bad.ID) || queue.arrived(behind.ID) {
		t.Fatal("a parked event reached the queue")
	}
}

// TestANackedEventKeepsItsStreamBehindIt: the broker nacks the first event
// of a stream once and acks everything else. The events after it of its
// stream must not reach the queue before it is sent again and acked, while
// other streams' events need not wait (RabbitMQ nacks and then acks later
// messages of one channel while a quorum queue elects a leader).
func TestANackedEventKeepsItsStreamBehindIt(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, mem := embeddedRig(t, ctx)
	b := &nackingBroker{Broker: mem}
	queue := consumeAll(t, ctx, mem)

	var stream []event.Envelope
	var all []uuid.UUID
	for i := range 6 {
		stream = append(stream, appendEvent(t, ctx, s, "s", `{}`))
		all = append(all, stream[i].ID, appendEvent(t, ctx, s, "other-"+strconv.Itoa(i), `{}`).ID)
	}
	first := stream[0].ID.String()
	var nacks int
	b.setNack(func(m broker.Message) bool {
		if m.MessageID == first && nacks == 0 {
			nacks++
			return true
		}
		return false
	})
	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	waitUntil(t, 10*time.Second, func() bool { return queue.arrived(all...) })
	var got []string // the versions of stream s, in the order they first arrived
	for _, id := range queue.firstOrder() {
		for v, env := range stream {
			if env.ID.String() == id {
				got = append(got, strconv.Itoa(v+1))
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if strings.Join(got, ",") != "1,2,3,4,5,6" || nacks != 1 {
		t.Fatalf("stream s first reached the queue as versions %s, its first nacked %d times; want 1,2,3,4,5,6 and once", strings.Join(got, ","), nacks)
	}
}

// TestStreamOrderWhileRabbitMQRejects: RabbitMQ nacks what a full queue
// with overflow reject-publish cannot take, and acks later messages once
// its consumer has made room. Each stream must still arrive in order, and
// every event arrive.
func TestStreamOrderWhileRabbitMQRejects(t *testing.T) {
	h := newHarness(t)
	col := newCollectorOn(t, h.exchange, "#", amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"}, 1)
	ctx := testenv.Context(t, 2*time.Minute)
	const perStream = 40
	for i := range perStream {
		for _, subject := range []string{"learner-a", "learner-b", "learner-c"} {
			if _, err := h.bus.Dispatch(ctx, quiz(int32(i)), eventbus.Subject(subject)); err != nil {
				t.Fatal(err)
			}
		}
	}
	metrics := relay.NewMetrics()
	startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Metrics: metrics,
		ParkAfterNacks: 1000, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	col.waitFor(3*perStream, time.Minute)
	col.checkStreamOrder()
	t.Logf("%d nacks on the way", int(metrics.Errors("nack")))
}

// TestNoParkWhenTheBrokerRecoversAtTheProbe: the broker nacks everything
// (as RabbitMQ does while a quorum queue elects a leader) until an event
// has been nacked ParkAfterNacks times alone, and takes everything from
// the probe on. The event was never refused for itself: it must be
// published, not parked.
func TestNoParkWhenTheBrokerRecoversAtTheProbe(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, mem := embeddedRig(t, ctx)
	b := &nackingBroker{Broker: mem}
	queue := consumeAll(t, ctx, mem)

	const parkAfter = 3
	first := appendEvent(t, ctx, s, "e", `{}`)
	others := []event.Envelope{appendEvent(t, ctx, s, "o1", `{}`), appendEvent(t, ctx, s, "o2", `{}`)}
	// Once in the pipeline, then parkAfter times alone: then the broker
	// recovers.
	nacksOfFirst := 0
	b.setNack(func(m broker.Message) bool {
		if nacksOfFirst >= 1+parkAfter {
			return false
		}
		if m.MessageID == first.ID.String() {
			nacksOfFirst++
		}
		return true
	})
	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange, ParkAfterNacks: parkAfter, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	waitUntil(t, 10*time.Second, func() bool { return queue.arrived(first.ID, others[0].ID, others[1].ID) })
	if p, err := s.Parked(ctx, relay.DefaultName); err != nil || len(p) != 0 {
		t.Fatalf("parked %s (%v); want nothing parked: the broker took the event once it took others", describeParked(p), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if nacksOfFirst != 1+parkAfter {
		t.Fatalf("the event was nacked %d times, want %d: the test did not reach the probe", nacksOfFirst, 1+parkAfter)
	}
}

// TestANackedEventGoesAgainOnANewChannel: once a publisher has nacked, it
// nacks everything (a RabbitMQ channel that met a quorum queue without a
// leader). The relay must try again on a new one, and deliver, rather than
// retry on the broken one until it parks the event or gives up.
func TestANackedEventGoesAgainOnANewChannel(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	s, mem := embeddedRig(t, ctx)
	b := &nackingBroker{Broker: mem, sticky: true}
	queue := consumeAll(t, ctx, mem)
	e := appendEvent(t, ctx, s, "e", `{}`)
	o := appendEvent(t, ctx, s, "o", `{}`)
	// e is nacked in the pipeline and on its first try alone; each of
	// those publishers is broken from then on.
	nacksOfE := 0
	b.setNack(func(m broker.Message) bool {
		if m.MessageID == e.ID.String() && nacksOfE < 2 {
			nacksOfE++
			return true
		}
		return false
	})
	// Retries on the broken publisher would take 1000 tries of at least
	// 50 ms before the relay gave up and opened a new one.
	runRelay(t, ctx, s, b, relay.Config{Exchange: memoryExchange, ParkAfterNacks: 1000, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	waitUntil(t, 10*time.Second, func() bool { return queue.arrived(e.ID, o.ID) })
	if p, err := s.Parked(ctx, relay.DefaultName); err != nil || len(p) != 0 {
		t.Fatalf("parked %s (%v); want nothing parked", describeParked(p), err)
	}
}
