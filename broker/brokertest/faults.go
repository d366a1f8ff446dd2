package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
)

func testFaultSubscriptionEnds(t *testing.T, h Harness) {
	b, f := h.openFaulty(t)
	q := queue(t, b, broker.QueueSpec{})
	s := subscribe(t, b, q, 10)
	if err := f.Cut(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		for range s.Deliveries() {
		}
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(timeout):
		t.Fatal("subscription did not end when its connection was cut")
	}
	if !errors.Is(s.Err(), broker.ErrClosed) {
		t.Fatalf("Err after a cut = %v, want one wrapping broker.ErrClosed", s.Err())
	}
	// A new subscription works once the broker has reconnected.
	s2 := subscribe(t, b, q, 10)
	publishTo(t, b, broker.NamelessExchange, q, "after-cut")
	got := receive(t, s2, 1)
	ack(t, got...)
	if got[0].MessageID != "after-cut" {
		t.Fatalf("received %s", got[0].MessageID)
	}
}

func testFaultPublisherEnds(t *testing.T, h Harness) {
	b, f := h.openFaulty(t)
	q := queue(t, b, broker.QueueSpec{})
	p := publisher(t, b, broker.PublisherOptions{})
	ctx := ctxFor(t)
	type sent struct {
		id string
		c  broker.Confirmation
	}
	var pending []sent
	var publishErr error
	for i := 0; i < 100000; i++ {
		if i == 300 {
			if err := f.Cut(); err != nil {
				t.Fatal(err)
			}
		}
		id := fmt.Sprint("m", i)
		c, err := p.Publish(ctx, broker.NamelessExchange, q, msg(id))
		if err != nil {
			publishErr = err
			break
		}
		pending = append(pending, sent{id, c})
		if i > 300 {
			select {
			case <-p.Done():
			default:
				continue
			}
			break
		}
	}
	select {
	case <-p.Done():
	case <-time.After(timeout):
		t.Fatal("publisher not done after its connection was cut")
	}
	if publishErr != nil && !errors.Is(publishErr, broker.ErrClosed) {
		t.Fatalf("Publish on a cut connection: %v, want broker.ErrClosed", publishErr)
	}
	if _, err := p.Publish(ctx, broker.NamelessExchange, q, msg("late")); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Done: %v, want broker.ErrClosed", err)
	}
	// Every confirmation settles; the acked messages are in the queue.
	var acked []string
	for _, s := range pending {
		select {
		case <-s.c.Done():
		case <-time.After(timeout):
			t.Fatalf("confirmation of %s never settled after the cut", s.id)
		}
		if s.c.Acked() {
			acked = append(acked, s.id)
		}
	}
	t.Logf("%d published, %d acked before the cut", len(pending), len(acked))
	if len(acked) == len(pending) {
		t.Logf("every message was acked before the cut took effect")
	}
	// A new publisher works after reconnection.
	publishTo(t, b, broker.NamelessExchange, q, "after-cut")
	inQueue := testenv.DrainIDs(t, b, q)
	for _, id := range acked {
		if !slices.Contains(inQueue, id) {
			t.Fatalf("acked message %s is not in the queue", id)
		}
	}
	if !slices.Contains(inQueue, "after-cut") {
		t.Fatal("message published after reconnecting is not in the queue")
	}
}

func testFaultRecovers(t *testing.T, h Harness) {
	b, f := h.openFaulty(t)
	x := exchange(t, b)
	dlq := queue(t, b, broker.QueueSpec{Name: "bt_dlq"})
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "k.#"}}, DeadLetterQueue: dlq})

	// While the broker is cut off, someone deletes its topology: after
	// reconnecting, it must declare all of it again.
	f.Down()
	other := h.open(t)
	ctx := ctxFor(t)
	for _, del := range []func() error{
		func() error { return other.DeleteQueue(ctx, q) },
		func() error { return other.DeleteQueue(ctx, dlq) },
		func() error { return other.DeleteExchange(ctx, x) },
	} {
		if err := del(); err != nil {
			t.Fatalf("delete while cut off: %v", err)
		}
	}
	if err := f.Up(); err != nil {
		t.Fatal(err)
	}

	s := subscribe(t, b, q, 10) // waits for the connection
	publishTo(t, b, x, "k.after", "routed-after-reconnect")
	d := receive(t, s, 1)[0]
	if d.MessageID != "routed-after-reconnect" {
		t.Fatalf("received %s", d.MessageID)
	}
	if err := d.Nack(false); err != nil {
		t.Fatal(err)
	}
	ds := subscribe(t, b, dlq, 1)
	dead := receive(t, ds, 1)[0]
	ack(t, dead)
	if dead.MessageID != "routed-after-reconnect" {
		t.Fatalf("dead-lettered %s", dead.MessageID)
	}
	if r, ok := b.(interface{ Reconnects() int64 }); ok && r.Reconnects() < 1 {
		t.Fatalf("Reconnects() = %d after a reconnection", r.Reconnects())
	}
}

func testFaultWaits(t *testing.T, h Harness) {
	b, f := h.openFaulty(t)
	q := queue(t, b, broker.QueueSpec{})
	f.Down()
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.NewPublisher(short, broker.PublisherOptions{})
	wantErr(t, "NewPublisher while the broker is unreachable", err, broker.ErrUnavailable)
	wantErr(t, "NewPublisher while the broker is unreachable", err, context.DeadlineExceeded)
	wantErr(t, "Ping while the broker is unreachable", b.Ping(short), broker.ErrUnavailable)

	// A call made while cut off completes once the broker is back.
	type result struct {
		s   broker.Subscription
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := b.Consume(ctxFor(t), q, broker.ConsumeOptions{Prefetch: 1})
		res <- result{s, err}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := f.Up(); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("Consume made while cut off: %v", r.err)
	}
	t.Cleanup(func() { _ = r.s.Close() })
	publishTo(t, b, broker.NamelessExchange, q, "m")
	ack(t, receive(t, r.s, 1)...)
}
