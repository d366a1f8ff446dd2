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
// group share its queue: they are competing consumers. A group with Shards
// has shard queues instead of G (see "Scaling out").
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
// stream between them, unless the group has shards.
//
// # Scaling out
//
// Config.Shards = P splits the group's work over P shard queues,
// G.shard.0-of-P … G.shard.(P-1)-of-P, so that any number of processes
// share it and each stream is still handled in version order:
//
//   - Every message the relay and replay publish carries its stream's
//     bucket, broker.BucketOf: event.StreamHash of the subject (of the
//     event id without one) modulo broker.Buckets (64), in the header
//     broker.HeaderBucket. Shard i is bound to the buckets b with
//     b % P == i, with the group's patterns: a stream's events all go to
//     one shard, in publish order. On RabbitMQ the binding is a plain
//     topic binding on an extra routing key "b~<bucket>.<type>" that the
//     publisher adds to the message's CC header; no plugin is needed.
//   - Each shard queue has single active consumer: every process
//     subscribes to every shard, the broker delivers a shard to one of them
//     at a time, and when that one's connection ends (it stopped, crashed or
//     was cut off) the next takes over and gets first what the previous one
//     had not acknowledged, in queue order.
//   - The processes share the shards out between them: each subscribes to
//     the group's members queue G.members (whose consumer count is the
//     number of processes), and every few seconds one that is active on
//     more than its fair share of the busy shards (rounded up) hands the
//     surplus on: it stops taking those shards' deliveries, lets the
//     handlers it started finish, and subscribes again, at the back of the
//     line. A process that joins gets work within seconds; when one dies,
//     the others take its shards at once.
//   - Retry queues dead-letter into the group's shard exchange G.shards,
//     which puts each message back in its stream's shard; Requeue sends
//     dead letters there too.
//
// Within a process, a sharded group handles events with OrderedByStream
// (turned on for it). Order under failures is as for one process: a
// handler that fails sends its event to a retry queue, and later events of
// the stream go on meanwhile; an event a process took and did not settle
// when it died is delivered again before the later ones of its shard; a
// process cut off from the broker while a handler runs may still finish
// that handler while the next process handles the event again and the
// ones after it (the inbox makes the repeat harmless, not the order).
//
// P cannot change while the group's queues exist: Run refuses, with
// ErrLayoutChanged, when the broker holds the group's queues of another
// layout (its single queue, or the shards of another P), and says how to
// change it (stop the relay, drain, delete the old queues, start again).
// A message published to the exchange by other means, without the bucket
// header, reaches no shard of a sharded group.
//
// # Tracing and causation
//
// The handler's context carries the producer's trace context (a child span
// "consume <type>" when a TracerProvider is set) and event.WithCause, so
// events an eventbus.Bus dispatches with it get the handled event's ID as
// causation ID and its correlation ID.
package consume
