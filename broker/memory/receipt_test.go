package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
)

// settled reports whether c has settled, and how.
func settled(c broker.Confirmation) (done, acked bool) {
	select {
	case <-c.Done():
		return true, c.Acked()
	default:
		return false, false
	}
}

func wantPending(t *testing.T, c broker.Confirmation, when string) {
	t.Helper()
	if done, _ := settled(c); done {
		t.Fatalf("%s: the confirmation settled before the message was delivered", when)
	}
}

func wantAcked(t *testing.T, c broker.Confirmation, when string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the confirmation did not settle", when)
	}
	if !c.Acked() {
		t.Fatalf("%s: settled as not acked", when)
	}
}

// deliveryTopology declares exchange x, queues a and b bound to "t", a with
// a retry queue (time to live, back to a) and a dead-letter queue.
func deliveryTopology(t *testing.T, b *memory.Broker) {
	t.Helper()
	c := ctx(t)
	for _, err := range []error{
		b.DeclareExchange(c, "x"),
		b.DeclareQueue(c, broker.QueueSpec{Name: "a.dlq"}),
		b.DeclareQueue(c, broker.QueueSpec{Name: "a", DeadLetterQueue: "a.dlq", Bindings: []broker.Binding{{Exchange: "x", Pattern: "t"}}}),
		b.DeclareQueue(c, broker.QueueSpec{Name: "a.retry", DeadLetterQueue: "a", MessageTTL: 20 * time.Millisecond}),
		b.DeclareQueue(c, broker.QueueSpec{Name: "b", Bindings: []broker.Binding{{Exchange: "x", Pattern: "t"}}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeliveryConfirmedWaitsForEveryQueue: the confirm of a message routed
// to two queues settles once both consumers acked it, not when it is
// enqueued.
func TestDeliveryConfirmedWaitsForEveryQueue(t *testing.T) {
	b := memory.New()
	defer b.Close()
	deliveryTopology(t, b)
	c := ctx(t)
	p, err := b.DeliveryConfirmed().NewPublisher(c, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	conf, err := p.Publish(c, "x", "t", broker.Message{MessageID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	wantPending(t, conf, "enqueued")
	sa, _ := b.Consume(c, "a", broker.ConsumeOptions{})
	defer sa.Close()
	sb, _ := b.Consume(c, "b", broker.ConsumeOptions{})
	defer sb.Close()
	if err := next(t, sa).Ack(); err != nil {
		t.Fatal(err)
	}
	wantPending(t, conf, "acked by one of two queues")
	db := next(t, sb)
	if err := db.Nack(true); err != nil { // back to the queue: not delivered
		t.Fatal(err)
	}
	wantPending(t, conf, "requeued")
	if err := next(t, sb).Ack(); err != nil {
		t.Fatal(err)
	}
	wantAcked(t, conf, "acked by both queues")
}

// TestDeliveryConfirmedFollowsRetriesNotDeadLetters: a retry copy
// published under the same message ID keeps the confirm pending until the
// retry is acked; a copy sent to the dead-letter queue with a failure
// reason lets it settle.
func TestDeliveryConfirmedFollowsRetriesNotDeadLetters(t *testing.T) {
	b := memory.New()
	defer b.Close()
	deliveryTopology(t, b)
	c := ctx(t)
	if err := b.DeleteQueue(c, "b"); err != nil {
		t.Fatal(err)
	}
	p, _ := b.DeliveryConfirmed().NewPublisher(c, broker.PublisherOptions{})
	defer p.Close()
	plain, _ := b.NewPublisher(c, broker.PublisherOptions{})
	defer plain.Close()
	sa, _ := b.Consume(c, "a", broker.ConsumeOptions{})
	defer sa.Close()

	conf, _ := p.Publish(c, "x", "t", broker.Message{MessageID: "m1"})
	first := next(t, sa)
	// As the consumer runtime retries: a copy to the retry queue, then the
	// ack of the original.
	mustPublish(t, plain, "", "a.retry", broker.Message{MessageID: "m1", Headers: map[string]any{broker.HeaderAttempt: int64(1), broker.HeaderFailureReason: "boom"}})
	if err := first.Ack(); err != nil {
		t.Fatal(err)
	}
	wantPending(t, conf, "original acked, retry copy waiting")
	retried := next(t, sa) // back from the retry queue after its time to live
	wantPending(t, conf, "retry copy delivered")
	// As the consumer runtime gives up: a dead letter, then the ack.
	mustPublish(t, plain, "", "a.dlq", broker.Message{MessageID: "m1", Headers: map[string]any{broker.HeaderFailureReason: "boom"}})
	if err := retried.Ack(); err != nil {
		t.Fatal(err)
	}
	wantAcked(t, conf, "dead-lettered by the consumer")

	// A rejection into the dead-letter queue stays tracked there.
	conf, _ = p.Publish(c, "x", "t", broker.Message{MessageID: "m2"})
	if err := next(t, sa).Nack(false); err != nil {
		t.Fatal(err)
	}
	wantPending(t, conf, "rejected into the dead-letter queue")
	if err := b.DeleteQueue(c, "a.dlq"); err != nil {
		t.Fatal(err)
	}
	wantAcked(t, conf, "its queue deleted")
}

// TestDeliveryConfirmedEdges: no route settles at once; a publisher's
// pending confirms settle as not acked when it closes, and when the broker
// closes.
func TestDeliveryConfirmedEdges(t *testing.T) {
	b := memory.New()
	deliveryTopology(t, b)
	c := ctx(t)
	p, _ := b.DeliveryConfirmed().NewPublisher(c, broker.PublisherOptions{})
	conf, err := p.Publish(c, "x", "nobody.listens", broker.Message{MessageID: "m0"})
	if err != nil {
		t.Fatal(err)
	}
	wantAcked(t, conf, "no route")
	conf, _ = p.Publish(c, "x", "t", broker.Message{MessageID: "m1"})
	_ = p.Close()
	if done, acked := settled(conf); !done || acked {
		t.Fatalf("after the publisher closed: done %v acked %v, want done and not acked", done, acked)
	}
	p2, _ := b.DeliveryConfirmed().NewPublisher(c, broker.PublisherOptions{})
	conf, _ = p2.Publish(c, "x", "t", broker.Message{MessageID: "m2"})
	_ = b.Close()
	if done, acked := settled(conf); !done || acked {
		t.Fatalf("after the broker closed: done %v acked %v, want done and not acked", done, acked)
	}
	if _, err := p2.Publish(context.Background(), "x", "t", broker.Message{}); err == nil {
		t.Fatal("publish after close succeeded")
	}
}

// TestDeliveryConfirmedPipeline: broker.Pipeline over a delivery-confirmed
// publisher reports messages in publish order, as each is delivered.
func TestDeliveryConfirmedPipeline(t *testing.T) {
	b := memory.New()
	defer b.Close()
	deliveryTopology(t, b)
	c := ctx(t)
	if err := b.DeleteQueue(c, "b"); err != nil {
		t.Fatal(err)
	}
	p, _ := b.DeliveryConfirmed().NewPublisher(c, broker.PublisherOptions{})
	defer p.Close()
	sa, _ := b.Consume(c, "a", broker.ConsumeOptions{Prefetch: 1000})
	defer sa.Close()
	const n = 200
	sent := 0
	confirmed := make(chan int, n)
	pipeCtx, stop := context.WithCancel(c)
	done := make(chan error, 1)
	go func() {
		done <- broker.Pipeline(pipeCtx, p, broker.PipelineConfig[int]{
			Window: 16,
			Next: func(ctx context.Context) ([]broker.Outgoing[int], error) {
				if sent == n {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				sent++
				return []broker.Outgoing[int]{{Exchange: "x", RoutingKey: "t", Message: broker.Message{MessageID: string(rune('A' + sent%26))}, Tag: sent}}, nil
			},
			Confirmed: func(tag int) { confirmed <- tag },
		})
	}()
	// Ack in reverse order within each group of 8 deliveries.
	var held []broker.Delivery
	for got := 0; got < n; {
		held = append(held, next(t, sa))
		if len(held) == 8 || got+len(held) == n {
			for i := len(held) - 1; i >= 0; i-- {
				if err := held[i].Ack(); err != nil {
					t.Fatal(err)
				}
			}
			got += len(held)
			held = held[:0]
		}
	}
	for want := 1; want <= n; want++ {
		if got := <-confirmed; got != want {
			t.Fatalf("confirmed %d, want %d", got, want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
