package consume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// BenchmarkConsumeInbox measures consumer throughput for a handler that
// writes one row through the inbox (one PostgreSQL transaction per event:
// the inbox record and the row). The events are in the queue before the
// clock starts, so it measures the consumer alone.
//
//	go test ./consume -run '^$' -bench ConsumeInbox -benchtime 20000x
func BenchmarkConsumeInbox(b *testing.B) {
	for _, concurrency := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			e := newEnv(b, rabbitMQKind)
			s := newStore(b)
			cfg := e.config()
			cfg.Inbox = consume.NewInbox[pgx.Tx](s)
			cfg.Concurrency = concurrency
			c := newConsumer(b, e.b, cfg, consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
				return writeEffect(ctx, tx, env)
			}))
			if err := c.Declare(testenv.Context(b, time.Minute)); err != nil {
				b.Fatal(err)
			}
			events := make([]event.Envelope, b.N)
			for i := range events {
				events[i] = quizEvent(fmt.Sprintf("quiz-%d", i%1000), int64(i/1000+1), 1)
			}
			e.publish(events...)

			b.ResetTimer()
			start := time.Now()
			e.start(c)
			for c.Stats().Handled < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			if rows, _ := effects(b, s); rows != b.N {
				b.Fatalf("%d effect rows, want %d", rows, b.N)
			}
		})
	}
}
