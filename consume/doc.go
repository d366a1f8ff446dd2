// Package consume is the consumer runtime for worker developers: a worker
// writes only its handlers, and gets retries, a dead-letter queue, duplicate
// suppression, per-stream ordering and trace continuity from the bus.
//
//	c, err := consume.New(b, consume.Config{
//		Group:           "badges",
//		Inbox:           consume.NewInbox[pgx.Tx](pgStore),
//		Concurrency:     8,
//		OrderedByStream: true,
//	},
//		consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
//			// Writes in tx commit with the inbox record: exactly once.
//			_, err := bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{...}) // caused by env
//			return err
//		}),
//	)
//	err = c.Run(ctx) // until ctx ends, then a graceful shutdown
//
// # Topology
//
// A consumer group G has a durable queue named G, bound to the exchange
// (edupulse.events by default) with the group's topic patterns; retry queues
// G.retry.1 … G.retry.(MaxAttempts-1); and the dead-letter queue G.dlq. Run
// declares them, idempotently, each time it subscribes. Processes of one
// group share its queue: they are competing consumers.
//
// # Routes
//
// On[T] and OnTx[TTx, T] handle one event type, decoded into its Go type;
// OnAny and OnAnyTx handle every type no typed route handles, raw. An event
// of a type no route handles (the patterns bind more than the routes take)
// is acknowledged, counted in Stats.Unrouted and logged at debug level: it
// is not a failure.
//
// # Failures
//
// A handler that returns an error, panics or outlives HandlerTimeout fails
// the attempt. One that outlives it by ignoring its context is abandoned:
// the worker goes on, and the handler's inbox transaction rolls back when
// its context ends, so that nothing of it commits later. The runtime publishes a copy of the message, with header
// x-eventbus-attempt set to the failed attempt, to retry queue
// G.retry.<attempt>, waits for the broker's confirm, and acks the original.
// The retry queue holds the copy for the backoff delay (its message TTL),
// then dead-letters it back to G. No message waits in memory. Copies are
// published mandatory: one that reaches no queue (the queue was deleted)
// is not taken as stored; the runtime declares the topology again and
// sends it once more, and if that fails too, returns the original to G.
//
// An error that wraps store.ErrUnavailable (the inbox's database, or the
// handler's, is down) is the store's fault, not the event's: the copy goes
// to the longest retry queue without counting the attempt, for as long as
// the outage lasts, so that an outage does not fill the dead-letter queue.
//
// After MaxAttempts failures, or at once for a Permanent error, a message
// that is not a CloudEvent, a payload that does not decode into the route's
// type, or a message the broker delivered MaxDeliveries times without it
// ever being settled (it crashes its consumer), the runtime puts a copy in
// G.dlq: the original body and
// properties, with headers saying why (broker.HeaderFailureReason), after how
// many attempts (HeaderAttempt), when (HeaderFailedAt) and where
// (HeaderFailedQueue). DeadLetters lists them and Requeue sends them back.
//
// # Delivery and effects
//
// Delivery is at least once: a connection cut between a handler's success
// and its ack, or between a retry copy's confirm and the ack of the
// original, delivers the message again. The inbox makes that harmless:
//
//   - OnTx and OnAnyTx handlers run inside Inbox.HandleOnce, so their writes
//     and the inbox record commit together: exactly-once effect. A
//     redelivered event is acked without running the handler.
//   - On and OnAny handlers, with an inbox, are skipped when the event is
//     recorded, and recorded after they succeed: at-least-once effect (a
//     crash in between runs the handler again).
//   - Without an inbox, handlers must be idempotent.
//
// # Order
//
// The broker delivers a queue in order. With Concurrency 1, events are
// handled in that order. With OrderedByStream, the events of one subject go
// to one worker (by hash) and are handled one at a time in delivery order,
// while other streams run in parallel; events without a subject go to any
// worker. Order holds for one process: retried events come back behind
// later events of their stream, and several processes of one group split a
// stream between them.
//
// # Tracing and causation
//
// The handler's context carries the producer's trace context (a child span
// "consume <type>" when a TracerProvider is set) and event.WithCause, so
// events an eventbus.Bus dispatches with it get the handled event's ID as
// causation ID and its correlation ID.
package consume
