package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
)

var benchBody = make([]byte, 600)

// BenchmarkPublishConfirm publishes into one queue through a topic
// exchange and waits for each confirm, as the relay does: the in-process
// counterpart of rabbitmq's BenchmarkRawPublishConfirm.
func BenchmarkPublishConfirm(b *testing.B) {
	br := memory.New()
	defer br.Close()
	ctx := context.Background()
	if err := br.DeclareExchange(ctx, "x"); err != nil {
		b.Fatal(err)
	}
	if err := br.DeclareQueue(ctx, broker.QueueSpec{Name: "q", Bindings: []broker.Binding{{Exchange: "x", Pattern: "bench.#"}}}); err != nil {
		b.Fatal(err)
	}
	p, err := br.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m := broker.Message{MessageID: "m", Type: "bench.published", Timestamp: time.Now(), Body: benchBody,
		Headers: map[string]any{broker.HeaderPosition: "12345", broker.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c, err := p.Publish(ctx, "x", "bench.published", m)
		if err != nil {
			b.Fatal(err)
		}
		<-c.Done()
		if !c.Acked() {
			b.Fatal("nacked")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishConsume publishes and, on another goroutine, consumes and
// acks every message: the broker's share of an end-to-end run.
func BenchmarkPublishConsume(b *testing.B) {
	br := memory.New()
	defer br.Close()
	ctx := context.Background()
	if err := br.DeclareQueue(ctx, broker.QueueSpec{Name: "q"}); err != nil {
		b.Fatal(err)
	}
	p, err := br.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := br.Consume(ctx, "q", broker.ConsumeOptions{Prefetch: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := broker.Message{MessageID: "m", Type: "bench.published", Body: benchBody,
		Headers: map[string]any{broker.HeaderPosition: "12345"}}
	consumed := make(chan struct{})
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(consumed)
		for i := 0; i < b.N; i++ {
			d := <-s.Deliveries()
			if err := d.Ack(); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	for i := 0; i < b.N; i++ {
		if _, err := p.Publish(ctx, "", "q", m); err != nil {
			b.Fatal(err)
		}
	}
	<-consumed
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
