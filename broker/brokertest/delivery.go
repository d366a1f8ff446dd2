package brokertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
)

func errorsIsClosed(err error) bool { return errors.Is(err, broker.ErrClosed) }

func testFIFO(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "fifo.#"}}})
	want := numbered("m", 1000)
	p := publisher(t, b, broker.PublisherOptions{})
	msgs := make([]broker.Message, len(want))
	for i, id := range want {
		msgs[i] = msg(id)
	}
	publishAll(t, p, x, "fifo.order", msgs...)
	s := subscribe(t, b, q, 50)
	got := make([]broker.Delivery, 0, len(want))
	for len(got) < len(want) {
		d := receive(t, s, 1)
		ack(t, d...)
		got = append(got, d...)
	}
	if !slices.Equal(ids(got), want) {
		for i := range want {
			if got[i].MessageID != want[i] {
				t.Fatalf("delivery %d is %s, want %s: the queue reordered messages", i, got[i].MessageID, want[i])
			}
		}
	}
}

func testPrefetch(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, numbered("m", 12)...)
	s := subscribe(t, b, q, 5)
	first := receive(t, s, 5)
	nothingFor(t, s, 300*time.Millisecond) // five unacked: the sixth must wait
	ack(t, first[0], first[1])
	second := receive(t, s, 2)
	nothingFor(t, s, 300*time.Millisecond)
	ack(t, first[2:]...)
	ack(t, second...)
	rest := receive(t, s, 5)
	ack(t, rest...)
	all := append(append(ids(first), ids(second)...), ids(rest)...)
	if !slices.Equal(all, numbered("m", 12)) {
		t.Fatalf("received %v", all)
	}
}

func testNackRequeue(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "m1")
	s := subscribe(t, b, q, 1)
	d := receive(t, s, 1)[0]
	if d.Redelivered {
		t.Fatal("first delivery marked redelivered")
	}
	if err := d.Nack(true); err != nil {
		t.Fatalf("Nack(requeue): %v", err)
	}
	again := receive(t, s, 1)[0]
	if again.MessageID != "m1" || !again.Redelivered {
		t.Fatalf("after Nack(requeue) got %s redelivered=%v, want m1 redelivered", again.MessageID, again.Redelivered)
	}
	ack(t, again)
	wantMessages(t, b, q, 0)
}

func testNackDeadLetters(t *testing.T, h Harness) {
	b := h.open(t)
	dlq := queue(t, b, broker.QueueSpec{Name: "bt_dlq"})
	q := queue(t, b, broker.QueueSpec{DeadLetterQueue: dlq})
	sent := msg("doomed")
	sent.Headers = map[string]any{"k": "v"}
	p := publisher(t, b, broker.PublisherOptions{})
	publishAll(t, p, broker.NamelessExchange, q, sent)
	s := subscribe(t, b, q, 1)
	d := receive(t, s, 1)[0]
	if err := d.Nack(false); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	ds := subscribe(t, b, dlq, 1)
	dead := receive(t, ds, 1)[0]
	ack(t, dead)
	if dead.MessageID != "doomed" || string(dead.Body) != "doomed" || dead.Header("k") != "v" {
		t.Fatalf("dead letter is %+v", dead.Message)
	}
	wantMessages(t, b, q, 0)
}

func testNackDrops(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "dropped", "kept")
	s := subscribe(t, b, q, 1)
	d := receive(t, s, 1)[0]
	if err := d.Nack(false); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	next := receive(t, s, 1)[0]
	ack(t, next)
	if d.MessageID != "dropped" || next.MessageID != "kept" {
		t.Fatalf("got %s then %s", d.MessageID, next.MessageID)
	}
	nothingFor(t, s, 200*time.Millisecond)
}

func testTTL(t *testing.T, h Harness) {
	b := h.open(t)
	const ttl = 300 * time.Millisecond
	dlq := queue(t, b, broker.QueueSpec{Name: "bt_dlq"})
	retry := queue(t, b, broker.QueueSpec{Name: "bt_retry", DeadLetterQueue: dlq, MessageTTL: ttl})
	ds := subscribe(t, b, dlq, 10)
	p := publisher(t, b, broker.PublisherOptions{})
	start := time.Now()
	publishAll(t, p, broker.NamelessExchange, retry, msg("r1"), msg("r2"))
	got := receive(t, ds, 2)
	elapsed := time.Since(start)
	ack(t, got...)
	if !slices.Equal(ids(got), []string{"r1", "r2"}) {
		t.Fatalf("dead-lettered %v, want [r1 r2]", ids(got))
	}
	// Timers may fire a little early on some clocks; 50ms of slack.
	if elapsed < ttl-50*time.Millisecond {
		t.Fatalf("messages left the %v TTL queue after %v", ttl, elapsed)
	}
	wantMessages(t, b, retry, 0)
}

func testBrowse(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "m1", "m2", "m3")

	br, err := b.Browse(ctx, q)
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	var seen []string
	for {
		d, ok, err := br.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			break
		}
		seen = append(seen, d.MessageID)
	}
	if !slices.Equal(seen, []string{"m1", "m2", "m3"}) {
		t.Fatalf("browsed %v", seen)
	}
	if err := br.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantMessages(t, b, q, 3)

	br, err = b.Browse(ctx, q)
	if err != nil {
		t.Fatalf("Browse again: %v", err)
	}
	d, ok, err := br.Next(ctx)
	if err != nil || !ok {
		t.Fatalf("Next = %v, %v", ok, err)
	}
	ack(t, d)
	if _, ok, err := br.Next(ctx); err != nil || !ok {
		t.Fatalf("Next = %v, %v", ok, err)
	}
	if err := br.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantMessages(t, b, q, 2)
	rest := testenv.DrainIDs(t, b, q)
	if len(rest) != 2 || slices.Contains(rest, d.MessageID) {
		t.Fatalf("after acking %s the queue holds %v", d.MessageID, rest)
	}
}

func testInspect(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	q := queue(t, b, broker.QueueSpec{})
	info, err := b.InspectQueue(ctx, q)
	if err != nil {
		t.Fatalf("InspectQueue: %v", err)
	}
	if info != (broker.QueueInfo{Name: q}) {
		t.Fatalf("new queue: %+v", info)
	}
	publishTo(t, b, broker.NamelessExchange, q, numbered("m", 7)...)
	wantMessages(t, b, q, 7)
	s1 := subscribe(t, b, q, 2)
	s2 := subscribe(t, b, q, 2)
	got := append(receive(t, s1, 2), receive(t, s2, 2)...)
	eventually(t, "consumers and ready messages", func() error {
		info, err := b.InspectQueue(ctx, q)
		if err != nil {
			return err
		}
		if info.Consumers != 2 || info.Messages != 3 {
			return fmt.Errorf("%+v, want 2 consumers and 3 ready messages (4 unacked)", info)
		}
		return nil
	})
	ack(t, got...)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "consumers after Close", func() error {
		info, err := b.InspectQueue(ctx, q)
		if err != nil {
			return err
		}
		if info.Consumers != 1 {
			return fmt.Errorf("%d consumers, want 1", info.Consumers)
		}
		return nil
	})
}

func testMissingQueue(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	const missing = "bt_no_such_queue_here"
	_, err := b.InspectQueue(ctx, missing)
	wantErr(t, "InspectQueue", err, broker.ErrNotFound)
	_, err = b.Consume(ctx, missing, broker.ConsumeOptions{Prefetch: 1})
	wantErr(t, "Consume", err, broker.ErrNotFound)
	_, err = b.Browse(ctx, missing)
	wantErr(t, "Browse", err, broker.ErrNotFound)
	// The broker is still usable.
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "m")
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testDeleteQueue(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "m1", "m2")
	if err := b.DeleteQueue(ctx, q); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	_, err := b.InspectQueue(ctx, q)
	wantErr(t, "InspectQueue after DeleteQueue", err, broker.ErrNotFound)
	if err := b.DeleteQueue(ctx, q); err != nil {
		t.Fatalf("DeleteQueue of a deleted queue: %v", err)
	}
	// Declared again, it starts empty.
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: q}); err != nil {
		t.Fatalf("DeclareQueue: %v", err)
	}
	wantMessages(t, b, q, 0)
}

func testDeleteExchange(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "#"}}})
	publishTo(t, b, x, "k", "before")
	if err := b.DeleteExchange(ctx, x); err != nil {
		t.Fatalf("DeleteExchange: %v", err)
	}
	if err := b.DeclareExchange(ctx, x); err != nil {
		t.Fatalf("DeclareExchange again: %v", err)
	}
	// The binding went with the exchange.
	publishTo(t, b, x, "k", "after")
	if got := testenv.DrainIDs(t, b, q); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("queue holds %v, want [before]", got)
	}
}

func testSubscriptionClose(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q, "m1", "m2", "m3")
	s := subscribe(t, b, q, 10)
	got := receive(t, s, 1) // m2 and m3 may sit in the subscription's buffers
	ack(t, got...)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for d := range s.Deliveries() {
		// Deliveries may hold messages already sent; the channel must
		// still close.
		_ = d
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after Close = %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Unacked messages went back to the queue.
	wantMessages(t, b, q, 2)
	s2 := subscribe(t, b, q, 10)
	rest := receive(t, s2, 2)
	ack(t, rest...)
	if !slices.Equal(sorted(ids(rest)), []string{"m2", "m3"}) {
		t.Fatalf("after Close the queue delivered %v", ids(rest))
	}
}

func testCompetingConsumers(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	const n = 200
	s1 := subscribe(t, b, q, 1)
	s2 := subscribe(t, b, q, 1)
	var mu sync.Mutex
	seen := map[string]int{}
	counts := [2]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, s := range []broker.Subscription{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case d, ok := <-s.Deliveries():
					if !ok {
						return
					}
					time.Sleep(time.Millisecond) // work, so that both get some
					_ = d.Ack()
					mu.Lock()
					seen[d.MessageID]++
					counts[i]++
					mu.Unlock()
				}
			}
		}()
	}
	publishTo(t, b, broker.NamelessExchange, q, numbered("m", n)...)
	eventually(t, "consumers received every message", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != n {
			return fmt.Errorf("%d of %d messages", len(seen), n)
		}
		return nil
	})
	close(done)
	wg.Wait()
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("%s delivered %d times", id, c)
		}
	}
	if counts[0] == 0 || counts[1] == 0 {
		t.Fatalf("work split %v: one consumer got nothing", counts)
	}
}

func testBrokerClose(t *testing.T, h Harness) {
	b := h.New(t)
	ctx := ctxFor(t)
	q := closedBrokerQueue(t, h, b)
	p, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Consume(ctx, q, broker.ConsumeOptions{Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(timeout):
		t.Fatal("publisher not done after the broker closed")
	}
	if _, err := p.Publish(ctx, broker.NamelessExchange, q, msg("m")); !errorsIsClosed(err) {
		t.Fatalf("Publish after Close: %v, want broker.ErrClosed", err)
	}
	for range s.Deliveries() {
	}
	if !errorsIsClosed(s.Err()) {
		t.Fatalf("subscription Err after broker Close = %v, want broker.ErrClosed", s.Err())
	}
	_ = p.Close()
	_ = s.Close()
	if _, err := b.NewPublisher(ctx, broker.PublisherOptions{}); !errorsIsClosed(err) {
		t.Fatalf("NewPublisher after Close: %v, want broker.ErrClosed", err)
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: q}); !errorsIsClosed(err) {
		t.Fatalf("DeclareQueue after Close: %v, want broker.ErrClosed", err)
	}
}

// closedBrokerQueue declares a queue on b, which the test closes: a broker
// of its own deletes the queue when the test ends.
func closedBrokerQueue(t *testing.T, h Harness, b broker.Broker) string {
	t.Helper()
	name := testenv.Name("bt_close")
	if err := b.DeclareQueue(ctxFor(t), broker.QueueSpec{Name: name}); err != nil {
		t.Fatalf("DeclareQueue: %v", err)
	}
	t.Cleanup(func() {
		other := h.New(t)
		defer other.Close()
		ctx, cancel := cleanupCtx()
		defer cancel()
		if err := other.DeleteQueue(ctx, name); err != nil {
			t.Logf("DeleteQueue(%s): %v", name, err)
		}
	})
	return name
}
