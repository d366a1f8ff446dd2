package consume_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/broker"
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

// benchPublish publishes events to e's exchange as the relay does: one
// publisher, up to 2000 confirms in flight.
func benchPublish(tb testing.TB, e *env, events []event.Envelope) {
	benchPublishTo(tb, e, events, nil)
}

// benchPublishTo is benchPublish, or with to set, publishes each event
// straight to the queue to names, through the default exchange.
func benchPublishTo(tb testing.TB, e *env, events []event.Envelope, to func(event.Envelope) string) {
	tb.Helper()
	ctx := testenv.Context(tb, 5*time.Minute)
	const window = 2000
	inflight := make([]broker.Confirmation, 0, window)
	wait := func(c broker.Confirmation) {
		select {
		case <-c.Done():
		case <-ctx.Done():
			tb.Fatal("no confirm")
		}
		if !c.Acked() {
			tb.Fatal("nacked")
		}
	}
	for _, ev := range events {
		m, err := broker.EnvelopeMessage(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if len(inflight) == window {
			wait(inflight[0])
			inflight = inflight[1:]
		}
		exchange, key := e.exchange, ev.Type
		if to != nil {
			exchange, key = broker.NamelessExchange, to(ev)
		}
		c, err := e.pub.Publish(ctx, exchange, key, m)
		if err != nil {
			tb.Fatal(err)
		}
		inflight = append(inflight, c)
	}
	for _, c := range inflight {
		wait(c)
	}
}

// BenchmarkShardedRouting measures what sharding costs the broker:
// publish-confirm throughput into the exchange when one group is bound to
// it, as a single queue or as P shard queues (a topic binding to an
// internal headers exchange, bound once per bucket to the shard queues).
// "direct" publishes to the same shard queues by name, without routing, to
// tell the cost of the routing from that of writing into several quorum
// queues. Nothing consumes; the queues are deleted afterwards.
//
//	go test ./consume -run '^$' -bench ShardedRouting -benchtime 30000x
func BenchmarkShardedRouting(b *testing.B) {
	for _, tc := range []struct {
		shards int
		direct bool
	}{{0, false}, {1, false}, {4, false}, {4, true}, {16, false}, {16, true}} {
		shards := tc.shards
		name := fmt.Sprintf("shards=%d", shards)
		if tc.direct {
			name += "/direct"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, rabbitMQKind)
			e.cleanupShards(shards)
			cfg := e.config()
			cfg.Shards = shards
			c := newConsumer(b, e.b, cfg, consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error { return nil }))
			if err := c.Declare(testenv.Context(b, time.Minute)); err != nil {
				b.Fatal(err)
			}
			events := make([]event.Envelope, b.N)
			for i := range events {
				events[i] = quizEvent(fmt.Sprintf("quiz-%d", i%1000), int64(i/1000+1), 1)
			}
			var to func(event.Envelope) string
			if tc.direct {
				to = func(ev event.Envelope) string {
					return consume.ShardQueue(e.group, broker.BucketOf(ev)%shards, shards)
				}
			}
			b.ResetTimer()
			start := time.Now()
			benchPublishTo(b, e, events, to)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkShardedGroup measures a group end to end (publish, route,
// consume) with a handler that waits, as one that calls a database
// does, in order per stream: one process on the single queue, against P
// shards shared by several processes (each on a connection of its own,
// Concurrency 2, OrderedByStream). The handler waits 10 ms, so that a
// process is bound by its handlers' waits (200 events/s), not by this
// machine's CPU, which the broker and the test share. The processes start, then a warm-up
// flow of events runs until every process has work (they share the shards
// out while events flow), then the clock runs from the first publish of
// b.N events until every one was handled.
//
//	go test ./consume -run '^$' -bench ShardedGroup -benchtime 3000x
func BenchmarkShardedGroup(b *testing.B) {
	for _, tc := range []struct{ shards, processes int }{{0, 1}, {4, 1}, {4, 2}, {8, 4}} {
		b.Run(fmt.Sprintf("shards=%d/processes=%d", tc.shards, tc.processes), func(b *testing.B) {
			e := newEnv(b, rabbitMQKind)
			e.cleanupShards(tc.shards)
			var handled atomic.Int64
			perProcess := make([]atomic.Int64, tc.processes)
			for p := range tc.processes {
				cfg := e.config()
				cfg.Shards = tc.shards
				cfg.Concurrency = 2
				cfg.OrderedByStream = true
				c := newConsumer(b, rabbitMQKind.connectAgain(b, e.b), cfg, consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error {
					time.Sleep(10 * time.Millisecond)
					handled.Add(1)
					perProcess[p].Add(1)
					return nil
				}))
				e.start(c)
			}
			warm := time.Now().Add(2 * time.Minute)
			for version := int64(1); ; version++ {
				busy := 0
				for p := range perProcess {
					if perProcess[p].Load() >= 50 {
						busy++
					}
				}
				if busy == tc.processes {
					break
				}
				if time.Now().After(warm) {
					b.Fatalf("after 2 minutes of warm-up, only %d of %d processes have work", busy, tc.processes)
				}
				warmup := make([]event.Envelope, 200)
				for i := range warmup {
					warmup[i] = quizEvent(fmt.Sprintf("warm-%d", i), version, 1)
				}
				benchPublish(b, e, warmup)
				for handled.Load() < version*200 && time.Now().Before(warm) {
					time.Sleep(time.Millisecond)
				}
			}
			already := handled.Load()
			events := make([]event.Envelope, b.N)
			for i := range events {
				events[i] = quizEvent(fmt.Sprintf("quiz-%d", i%1000), int64(i/1000+1), 1)
			}
			b.ResetTimer()
			start := time.Now()
			benchPublish(b, e, events)
			deadline := time.Now().Add(5 * time.Minute)
			for handled.Load()-already < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if n := handled.Load() - already; n < int64(b.N) {
				b.Fatalf("%d of %d events handled after 5 minutes", n, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			counts := make([]int64, len(perProcess))
			for p := range perProcess {
				counts[p] = perProcess[p].Load()
			}
			b.Logf("handled per process (warm-up included): %v", counts)
		})
	}
}
