package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

// scalingEvents is how many events each run of BenchmarkPartitionedRelays
// drains.
const scalingEvents = 30000

// BenchmarkPartitionedRelays measures the relay's throughput end to end
// with 1, 2 and 4 `serve --relay-only` processes sharing 4 partitions, on
// the shared PostgreSQL and RabbitMQ: the processes start on an empty
// store and settle their shares; then scalingEvents events on 1000
// streams commit in one transaction, and the clock runs from that commit
// until a consumer in the test process (prefetch 2000, one ack per
// message) has received every one of them from a quorum queue bound to
// every type. BENCHMARKS.md has the figures:
//
//	go test ./test/cluster -run '^$' -bench PartitionedRelays -benchtime 1x
func BenchmarkPartitionedRelays(b *testing.B) {
	testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("processes=%d", procs), func(b *testing.B) {
			for range b.N {
				rate := drainWithRelays(b, procs)
				b.ReportMetric(rate, "events/s")
				b.Logf("%d relay processes, 4 partitions: %d events in %.2fs, %.0f events/s",
					procs, scalingEvents, float64(scalingEvents)/rate, rate)
			}
		})
	}
}

func drainWithRelays(b *testing.B, procs int) float64 {
	ctx := testenv.Context(b, 5*time.Minute)
	dbURL := testenv.PostgresSchema(b)
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	exchange, queue := testenv.Name("scaling_x"), testenv.Name("scaling_q")
	mq, err := rabbitmq.Open(ctx, testenv.AMQPURL(), rabbitmq.Config{ConnectionName: "scaling-consumer"})
	if err != nil {
		b.Fatal(err)
	}
	defer mq.Close()
	if err := mq.DeclareExchange(ctx, exchange); err != nil {
		b.Fatal(err)
	}
	if err := mq.DeclareQueue(ctx, broker.QueueSpec{Name: queue, Bindings: []broker.Binding{{Exchange: exchange, Pattern: "#"}}}); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cleanCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = mq.DeleteQueue(cleanCtx, queue)
		_ = mq.DeleteExchange(cleanCtx, exchange)
	}()
	sub, err := mq.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: 2000})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	done := make(chan time.Time, 1)
	go func() {
		seen := make(map[string]struct{}, scalingEvents)
		for d := range sub.Deliveries() {
			seen[d.MessageID] = struct{}{}
			_ = d.Ack()
			if len(seen) == scalingEvents {
				done <- time.Now()
				return
			}
		}
	}()

	env := []string{"EVENTBUS_DATABASE_URL=" + dbURL, "EVENTBUS_AMQP_URL=" + testenv.AMQPURL(),
		"EVENTBUS_EXCHANGE=" + exchange, "EVENTBUS_RELAY_PARTITIONS=4"}
	for i := range procs {
		p := startRelayOnly(b, fmt.Sprint(i), env)
		defer func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.exited
		}()
	}
	// Wait until the processes hold their shares: every partition, by
	// procs holders.
	deadline := time.Now().Add(time.Minute)
	for {
		leases, err := st.Leases(ctx, relay.DefaultName)
		holders := map[string]int{}
		held := 0
		for _, l := range leases {
			if l.Holder != "" && l.Until.After(time.Now()) {
				holders[l.Holder]++
				held++
			}
		}
		if err == nil && held == 4 && len(holders) == procs {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the relay processes did not share the partitions: %v, %v", holders, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for batch := 0; batch < scalingEvents; batch += 1000 {
		drafts := make([]event.Draft, 1000)
		for i := range drafts {
			drafts[i] = event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Source: "scaling",
				Subject: fmt.Sprintf("learner-%d", (batch+i)%1000), OccurredAt: time.Now().Truncate(event.TimePrecision),
				CorrelationID: uuid.Must(uuid.NewV7()), Data: json.RawMessage(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}`)}
		}
		if _, err := st.AppendTx(ctx, tx, drafts); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	committed := time.Now()
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case last := <-done:
		b.StopTimer()
		return float64(scalingEvents) / last.Sub(committed).Seconds()
	case <-ctx.Done():
		b.Fatalf("not every event arrived: %v", ctx.Err())
		return 0
	}
}


