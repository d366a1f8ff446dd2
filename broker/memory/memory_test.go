package memory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/brokertest"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/broker/topic"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	brokertest.Run(t, brokertest.Harness{
		New: func(t *testing.T) broker.Broker { return memory.New() },
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPublish(t *testing.T, p broker.Publisher, exchange, key string, m broker.Message) {
	t.Helper()
	testenv.PublishAll(t, ctx(t), p, exchange, key, m)
}

func next(t *testing.T, s broker.Subscription) broker.Delivery {
	t.Helper()
	select {
	case d, ok := <-s.Deliveries():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	panic("unreachable")
}

func TestDeadLettersCarryXDeath(t *testing.T) {
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "dlq"}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "work", DeadLetterQueue: "dlq"}); err != nil {
		t.Fatal(err)
	}
	p, _ := b.NewPublisher(c, broker.PublisherOptions{})
	mustPublish(t, p, "", "work", broker.Message{MessageID: "m", Headers: map[string]any{"k": "v"}})
	s, _ := b.Consume(c, "work", broker.ConsumeOptions{Prefetch: 1})
	defer s.Close()
	if err := next(t, s).Nack(false); err != nil {
		t.Fatal(err)
	}
	ds, _ := b.Consume(c, "dlq", broker.ConsumeOptions{Prefetch: 1})
	defer ds.Close()
	d := next(t, ds)
	if d.Exchange != "" || d.RoutingKey != "dlq" {
		t.Fatalf("dead letter routed via %q/%q, want the default exchange and key dlq", d.Exchange, d.RoutingKey)
	}
	if d.Header("x-first-death-reason") != "rejected" || d.Header("x-first-death-queue") != "work" || d.Header("k") != "v" {
		t.Fatalf("headers %v", d.Headers)
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) != 1 {
		t.Fatalf("x-death = %#v", d.Headers["x-death"])
	}
	if e := deaths[0].(map[string]any); e["count"] != int64(1) || e["reason"] != "rejected" || e["queue"] != "work" {
		t.Fatalf("x-death entry %v", e)
	}
}

func TestRetryLoopThroughTTLQueue(t *testing.T) {
	// work -> (reject) -> retry (TTL) -> (expired) -> work: the delayed
	// retry of the consumer runtime.
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "retry", DeadLetterQueue: "work", MessageTTL: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "work", DeadLetterQueue: "retry"}); err != nil {
		t.Fatal(err)
	}
	p, _ := b.NewPublisher(c, broker.PublisherOptions{})
	mustPublish(t, p, "", "work", broker.Message{MessageID: "m"})
	s, _ := b.Consume(c, "work", broker.ConsumeOptions{Prefetch: 1})
	defer s.Close()
	for i := 0; i < 3; i++ {
		if err := next(t, s).Nack(false); err != nil {
			t.Fatal(err)
		}
	}
	d := next(t, s)
	deaths := d.Headers["x-death"].([]any)
	counts := map[string]int64{}
	for _, e := range deaths {
		m := e.(map[string]any)
		counts[m["queue"].(string)+"/"+m["reason"].(string)] = m["count"].(int64)
	}
	if counts["work/rejected"] != 3 || counts["retry/expired"] != 3 {
		t.Fatalf("x-death counts %v, want 3 rejections and 3 expiries", counts)
	}
	_ = d.Ack()
}

func TestRequeuedMessageExpiresAtTheHead(t *testing.T) {
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "dlq"}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "q", DeadLetterQueue: "dlq", MessageTTL: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	p, _ := b.NewPublisher(c, broker.PublisherOptions{})
	mustPublish(t, p, "", "q", broker.Message{MessageID: "m"})
	br, _ := b.Browse(c, "q")
	d, ok, err := br.Next(c)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	time.Sleep(150 * time.Millisecond) // taken: it does not expire
	if info, _ := b.InspectQueue(c, "dlq"); info.Messages != 0 {
		t.Fatal("a message expired while taken")
	}
	_ = br.Close() // back at the head, already past its time
	ds, _ := b.Consume(c, "dlq", broker.ConsumeOptions{})
	defer ds.Close()
	if got := next(t, ds); got.MessageID != d.MessageID || got.Header("x-first-death-reason") != "expired" {
		t.Fatalf("dead letter %+v", got.Message)
	}
}

func TestDeletingTheQueueEndsItsSubscriptions(t *testing.T) {
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	p, _ := b.NewPublisher(c, broker.PublisherOptions{})
	mustPublish(t, p, "", "q", broker.Message{MessageID: "m"})
	s, _ := b.Consume(c, "q", broker.ConsumeOptions{Prefetch: 1})
	d := next(t, s)
	if err := b.DeleteQueue(c, "q"); err != nil {
		t.Fatal(err)
	}
	for range s.Deliveries() {
	}
	if !errors.Is(s.Err(), broker.ErrClosed) {
		t.Fatalf("Err = %v", s.Err())
	}
	if err := d.Ack(); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Ack after the queue was deleted: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDeclareWithOtherArgumentsFails(t *testing.T) {
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "q", MessageTTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "q"}); err == nil {
		t.Fatal("redeclaring with another TTL succeeded")
	}
	if err := b.DeclareQueue(c, broker.QueueSpec{Name: "q2", Bindings: []broker.Binding{{Exchange: "nope", Pattern: "#"}}}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("binding to a missing exchange: %v", err)
	}
	if _, err := b.InspectQueue(c, "q2"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a failed declaration left the queue: %v", err)
	}
}

func TestConcurrentPublishersAndConsumers(t *testing.T) {
	b := memory.New()
	defer b.Close()
	c := ctx(t)
	if err := b.DeclareExchange(c, "x"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"q1", "q2"} {
		if err := b.DeclareQueue(c, broker.QueueSpec{Name: q, Bindings: []broker.Binding{{Exchange: "x", Pattern: "e.#"}}}); err != nil {
			t.Fatal(err)
		}
	}
	const publishers, each = 4, 2000
	var wg sync.WaitGroup
	for i := 0; i < publishers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := b.NewPublisher(c, broker.PublisherOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			defer p.Close()
			for j := 0; j < each; j++ {
				if _, err := p.Publish(c, "x", "e.made", broker.Message{MessageID: fmt.Sprint(i, "-", j)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	seen := map[string]map[string]int{"q1": {}, "q2": {}}
	allSeen := make(chan struct{})
	var consumers sync.WaitGroup
	for _, q := range []string{"q1", "q1", "q2"} {
		s, err := b.Consume(c, q, broker.ConsumeOptions{Prefetch: 7})
		if err != nil {
			t.Fatal(err)
		}
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			defer s.Close()
			for {
				var d broker.Delivery
				var ok bool
				select {
				case <-allSeen:
					return
				case d, ok = <-s.Deliveries():
					if !ok {
						t.Errorf("subscription ended: %v", s.Err())
						return
					}
				}
				if d.MessageID[len(d.MessageID)-1] == '7' && !d.Redelivered {
					_ = d.Nack(true) // comes back, redelivered
					continue
				}
				_ = d.Ack()
				mu.Lock()
				seen[q][d.MessageID]++
				if len(seen["q1"]) == publishers*each && len(seen["q2"]) == publishers*each {
					close(allSeen)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-allSeen:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Errorf("q1 saw %d, q2 saw %d of %d", len(seen["q1"]), len(seen["q2"]), publishers*each)
		mu.Unlock()
		close(allSeen)
	}
	consumers.Wait()
	for q, ids := range seen {
		for id, n := range ids {
			if n != 1 {
				t.Fatalf("%s: %s acked %d times", q, id, n)
			}
		}
	}
}

// TestPatternTooLongIsRefused: RabbitMQ carries a binding pattern as a
// short string, so the in-process broker refuses what RabbitMQ cannot take.
func TestPatternTooLongIsRefused(t *testing.T) {
	b := memory.New()
	defer b.Close()
	if err := b.DeclareExchange(ctx(t), "x"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", topic.MaxLength+1)
	err := b.DeclareQueue(ctx(t), broker.QueueSpec{Name: "q", Bindings: []broker.Binding{{Exchange: "x", Pattern: long}}})
	if !errors.Is(err, topic.ErrInvalidPattern) {
		t.Fatalf("DeclareQueue with a pattern of %d bytes: %v, want ErrInvalidPattern", len(long), err)
	}
}
