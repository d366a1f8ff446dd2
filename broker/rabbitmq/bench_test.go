package rabbitmq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/internal/testenv"
)

// benchWindow is how many confirms the benchmarks keep in flight, as the
// relay does.
const benchWindow = 4096

// benchBody is about the size of a CloudEvents envelope of the bus.
var benchBody = make([]byte, 600)

// openForBench opens a broker that stays open until the benchmark's
// cleanups have run: they delete its queue through it. (A deferred Close
// ran first, and every run of a benchmark left its queue behind, full.)
func openForBench(b *testing.B) *rabbitmq.Broker {
	br := open(b, testenv.AMQPURL())
	b.Cleanup(func() { _ = br.Close() })
	return br
}

// benchQueue declares a quorum queue of the benchmark's own.
func benchQueue(b *testing.B, br *rabbitmq.Broker) string {
	b.Helper()
	q := testenv.Name("bench_publish")
	if err := br.DeclareQueue(context.Background(), broker.QueueSpec{Name: q}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := br.DeleteQueue(context.Background(), q); err != nil {
			b.Errorf("delete queue %s: %v", q, err)
		}
	})
	return q
}

// BenchmarkRawPublishConfirm measures RabbitMQ's ceiling: amqp091 directly,
// pipelined publisher confirms into one quorum queue, benchWindow in
// flight. Run it with -benchtime=100000x or more for a steady figure:
//
//	go test ./broker/rabbitmq -run '^$' -bench RawPublishConfirm -benchtime 200000x
func BenchmarkRawPublishConfirm(b *testing.B) {
	testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
	br := openForBench(b)
	q := benchQueue(b, br)
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	inflight := make([]*amqp.DeferredConfirmation, 0, benchWindow)
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if len(inflight) == benchWindow {
			if !inflight[0].Wait() {
				b.Fatal("nacked")
			}
			inflight = inflight[1:]
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: "m", Type: "bench.published", Body: benchBody,
		})
		if err != nil {
			b.Fatal(err)
		}
		inflight = append(inflight, dc)
	}
	for _, dc := range inflight {
		if !dc.Wait() {
			b.Fatal("nacked")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishConfirm is the same through this package's publisher,
// whose confirmations settle in order.
func BenchmarkPublishConfirm(b *testing.B) {
	testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
	br := openForBench(b)
	q := benchQueue(b, br)
	ctx := context.Background()
	p, err := br.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	m := broker.Message{MessageID: "m", Type: "bench.published", Body: benchBody,
		Headers: map[string]any{broker.HeaderPosition: "12345"}}
	b.SetBytes(int64(len(benchBody)))
	publishWindowed(b, p, broker.NamelessExchange, q, m)
}

// publishWindowed publishes m b.N times through p, benchWindow
// confirmations in flight, and reports messages per second.
func publishWindowed(b *testing.B, p broker.Publisher, exchange, key string, m broker.Message) {
	ctx := context.Background()
	inflight := make([]broker.Confirmation, 0, benchWindow)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if len(inflight) == benchWindow {
			<-inflight[0].Done()
			if !inflight[0].Acked() {
				b.Fatal("nacked")
			}
			inflight = inflight[1:]
		}
		c, err := p.Publish(ctx, exchange, key, m)
		if err != nil {
			b.Fatal(err)
		}
		inflight = append(inflight, c)
	}
	for _, c := range inflight {
		<-c.Done()
		if !c.Acked() {
			b.Fatal("nacked")
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishTopicBucket measures what the bucket's extra routing key
// (the CC header the publisher adds to a message with broker.HeaderBucket)
// costs a queue bound without buckets: publish-confirm throughput through a
// topic exchange into one quorum queue bound with "#" or with the type,
// without the header, with a header that is no bucket (so no CC), and with
// a bucket.
//
//	go test ./broker/rabbitmq -run '^$' -bench PublishTopicBucket -benchtime 30000x -count 3
func BenchmarkPublishTopicBucket(b *testing.B) {
	for _, tc := range []struct{ pattern, bucket string }{
		{"#", ""}, {"#", "no-bucket"}, {"#", "17"}, {"quiz.submitted", ""}, {"quiz.submitted", "17"},
	} {
		bucket := tc.bucket
		name := map[string]string{"": "without", "no-bucket": "header-not-a-bucket", "17": "with"}[bucket]
		b.Run(fmt.Sprintf("pattern=%s/%s", tc.pattern, name), func(b *testing.B) {
			testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
			br := openForBench(b)
			ctx := context.Background()
			x := testenv.Name("bench_x")
			if err := br.DeclareExchange(ctx, x); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = br.DeleteExchange(context.Background(), x) })
			q := testenv.Name("bench_topic")
			if err := br.DeclareQueue(ctx, broker.QueueSpec{Name: q, Bindings: []broker.Binding{{Exchange: x, Pattern: tc.pattern}}}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = br.DeleteQueue(context.Background(), q) })
			p, err := br.NewPublisher(ctx, broker.PublisherOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			m := broker.Message{MessageID: "m", Type: "bench.published", Body: benchBody,
				Headers: map[string]any{broker.HeaderPosition: "12345"}}
			if bucket != "" {
				m.Headers[broker.HeaderBucket] = bucket
			}
			publishWindowed(b, p, x, "quiz.submitted", m)
		})
	}
}
