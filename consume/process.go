package consume

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// process handles one delivery and settles it: ack, retry or dead-letter.
// ctx ends only when shutdown gives up waiting for handlers.
func (c *Consumer) process(ctx context.Context, j job) {
	if j.sess.ended.Load() {
		return // the broker delivers it again on the new subscription
	}
	d := j.d
	// The header counts the attempts made. A foreign or corrupt value must
	// not name a retry queue that does not exist (G.retry.-3).
	attempt := int(min(max(d.IntHeader(broker.HeaderAttempt), 0), int64(c.cfg.MaxAttempts))) + 1
	if n := d.IntHeader(headerDeliveryCount); n >= int64(c.cfg.MaxDeliveries) {
		c.deadLetter(ctx, d, attempt, causePoison, fmt.Errorf(
			"consume: message %q was delivered %d times without being settled: the process handling it crashed or lost its connection each time",
			d.MessageID, n))
		return
	}
	env, err := j.env, j.envErr
	if !j.decoded {
		env, err = broker.DecodeMessage(d.Message)
	}
	if err != nil {
		c.deadLetter(ctx, d, attempt, causeMalformed, fmt.Errorf("consume: malformed message %q: %w", d.MessageID, err))
		return
	}
	r := c.routes.match(env.Type)
	if r == nil {
		// The patterns may bind more types than the routes handle: such an
		// event is not a failure, and nobody would requeue it from a DLQ.
		c.stats.unrouted.Add(1)
		c.metrics.unrouted.Inc()
		c.log.Debug("consume: no route for this event type; acknowledged", "type", env.Type, "event_id", env.ID)
		c.ack(d)
		return
	}
	bound, err := r.prepare(env)
	if err != nil {
		c.deadLetter(ctx, d, attempt, causeMalformed, fmt.Errorf("consume: %w", err))
		return
	}
	duplicate, err := c.handle(ctx, bound, env, attempt)
	switch {
	case err == nil:
		if duplicate {
			c.stats.duplicates.Add(1)
			c.metrics.duplicates.Inc()
			c.log.Debug("consume: event already handled; acknowledged", "type", env.Type, "event_id", env.ID)
		} else {
			c.stats.handled.Add(1)
			c.metrics.handled.Inc()
		}
		c.ack(d)
		return
	case ctx.Err() != nil:
		// Shutdown cancelled the handler: not the event's fault. Leave it
		// unacknowledged; the broker delivers it again.
		c.log.Info("consume: handler cancelled by shutdown; the event will be delivered again", "type", env.Type, "event_id", env.ID)
		return
	}
	c.stats.failed.Add(1)
	c.metrics.failed.Inc()
	if j.sess.ended.Load() {
		// The broker has put the message back already: a retry copy would
		// make a second one. The redelivery is this attempt again.
		c.log.Info("consume: handler failed after its subscription ended; the event will be delivered again",
			"type", env.Type, "event_id", env.ID, "err", err)
		return
	}
	switch {
	case errors.Is(err, ErrPermanent):
		c.deadLetter(ctx, d, attempt, causePermanent, err)
	case errors.Is(err, store.ErrUnavailable) && c.cfg.MaxAttempts > 1:
		// The store failed, not the event: an outage must not use up the
		// event's attempts and send it to the dead-letter queue. Retry it
		// through the longest retry queue, counting this attempt as not
		// made, for as long as the outage lasts.
		c.retry(ctx, d, env, c.cfg.MaxAttempts-1, attempt-1, err)
	case attempt >= c.cfg.MaxAttempts:
		c.deadLetter(ctx, d, attempt, causeExhausted, err)
	default:
		c.retry(ctx, d, env, attempt, attempt, err)
	}
}

// handle runs the route's handler for env, in the inbox when there is one.
// duplicate reports that the inbox had already recorded env.
func (c *Consumer) handle(ctx context.Context, bound call, env event.Envelope, attempt int) (duplicate bool, err error) {
	// The handler continues the producer's trace, and what it dispatches is
	// caused by env (eventbus.Bus reads both from ctx).
	ctx = event.ContextWithTrace(ctx, env)
	if c.tracer != nil {
		var span trace.Span
		ctx, span = c.tracer.Start(ctx, "consume "+env.Type, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.consumer.group.name", c.cfg.Group),
				attribute.String("messaging.message.id", env.ID.String()),
				attribute.String("eventbus.event.type", env.Type),
				attribute.String("eventbus.event.subject", env.Subject),
				attribute.Int("eventbus.attempt", attempt),
			))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.SetAttributes(attribute.Bool("eventbus.duplicate", duplicate))
			span.End()
		}()
	}
	ctx = event.WithCause(ctx, env)
	if c.cfg.HandlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.HandlerTimeout)
		defer cancel()
	}

	c.stats.inFlight.Add(1)
	c.metrics.inFlight.Inc()
	start := time.Now()
	defer func() {
		c.metrics.duration.Observe(time.Since(start).Seconds())
		c.metrics.inFlight.Dec()
		c.stats.inFlight.Add(-1)
	}()

	// The handler runs on a goroutine of its own, so that one that ignores
	// its context cannot hold its worker, nor the consumer's shutdown: when
	// ctx ends (HandlerTimeout; or the shutdown timeout, which cancels the
	// handlers), the worker stops waiting. The delivery then counts as
	// failed (and is retried), or, at shutdown, stays unacknowledged (and
	// is delivered again). The goroutine is abandoned to finish on its own.
	//
	// An abandoned handler cannot commit an inbox record afterwards: its
	// inbox transaction ends with ctx. On PostgreSQL the store closes the
	// connection when ctx ends, so the server rolls the transaction back
	// and frees the inbox row for the retry; on SQLite database/sql rolls
	// back a transaction whose context ends. The handler's effect and the
	// inbox record commit together, before ctx ended, or not at all: if a
	// commit wins that race, the retry finds the record and skips the
	// handler, so the event still takes effect once.
	type outcome struct {
		duplicate bool
		err       error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { done <- o }()
		defer c.recoverInto(&o.err, env)
		o.duplicate, o.err = c.runHandler(ctx, bound, env)
	}()
	select {
	case o := <-done:
		return o.duplicate, o.err
	case <-ctx.Done():
	}
	select {
	case o := <-done: // it returned as ctx ended
		return o.duplicate, o.err
	default:
	}
	c.stats.abandoned.Add(1)
	c.log.Warn("consume: handler did not return when its context ended; abandoned, it may still be running (does it ignore its context?)",
		"type", env.Type, "event_id", env.ID, "attempt", attempt, "cause", context.Cause(ctx))
	return false, fmt.Errorf("consume: handler of event %s abandoned: it did not return when its context ended: %w", env.ID, context.Cause(ctx))
}

// runHandler runs the route's handler for env, in the inbox when there is
// one.
func (c *Consumer) runHandler(ctx context.Context, bound call, env event.Envelope) (duplicate bool, err error) {
	mw := c.middleware
	in := c.cfg.Inbox
	switch {
	case bound.runOnce != nil:
		handled, err := bound.runOnce(ctx, in, c.cfg.Group, mw)
		return err == nil && !handled, err
	case in != nil:
		seen, err := in.handled(ctx, c.cfg.Group, env.ID)
		if err != nil {
			return false, fmt.Errorf("consume: inbox lookup of event %s: %w", env.ID, err)
		}
		if seen {
			return true, nil
		}
		if err := bound.run(ctx, mw); err != nil {
			return false, err
		}
		if err := in.markHandled(ctx, c.cfg.Group, env.ID); err != nil {
			// The effect happened; retrying would repeat it for sure, while
			// acking repeats it only if the event is delivered again.
			c.log.Error("consume: handled, but the inbox could not record it; a redelivery would run the handler again",
				"type", env.Type, "event_id", env.ID, "err", err)
		}
		return false, nil
	default:
		return false, bound.run(ctx, mw)
	}
}

// recovering is the middleware that turns a handler's panic into an error.
func (c *Consumer) recovering(next Handler) Handler {
	return func(ctx context.Context, env event.Envelope) (err error) {
		defer c.recoverInto(&err, env)
		return next(ctx, env)
	}
}

// recoverInto turns a panic into an error naming the panic value.
func (c *Consumer) recoverInto(err *error, env event.Envelope) {
	if v := recover(); v != nil {
		c.log.Error("consume: handler panicked", "type", env.Type, "event_id", env.ID, "panic", v, "stack", string(debug.Stack()))
		*err = fmt.Errorf("consume: handler panicked: %v", v)
	}
}

func (c *Consumer) ack(d broker.Delivery) {
	if err := d.Ack(); err != nil {
		// The subscription ended: the broker delivers the message again,
		// and the inbox (if any) recognises it.
		c.log.Debug("consume: ack failed; the message will be delivered again", "message_id", d.MessageID, "err", err)
	}
}

// settleContext bounds a copy's publish and confirm. ctx is the worker's,
// which ends only when the shutdown timeout has passed: the shutdown waits
// for a copy until then, and no longer, so that a silent broker cannot hold
// the process. A message whose copy was cut short stays unacknowledged and
// is delivered again.
func (c *Consumer) settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, DefaultSettleTimeout)
}

// retry sends a copy of d to the retry queue of attempt n, from which the
// broker returns it to the group's queue after the backoff, then acks d. The
// copy records `failed` as the number of attempts made.
func (c *Consumer) retry(ctx context.Context, d broker.Delivery, env event.Envelope, n, failed int, cause error) {
	queue := RetryQueue(c.cfg.Group, n)
	ctx, cancel := c.settleContext(ctx)
	defer cancel()
	m := failedCopy(d.Message, failed, cause.Error(), c.cfg.Group, time.Now())
	if err := c.publishCopy(ctx, queue, m); err != nil {
		c.requeue(d, "retry", err)
		return
	}
	c.stats.retried.Add(1)
	c.metrics.retried.Inc()
	c.log.Info("consume: handler failed; will retry", "type", env.Type, "event_id", env.ID,
		"attempts", failed, "max_attempts", c.cfg.MaxAttempts, "retry_in", c.cfg.Backoff.Delay(n), "err", cause)
	c.ack(d)
}

// deadLetter sends a copy of d to the dead-letter queue, with the failure
// in its headers, then acks d.
func (c *Consumer) deadLetter(ctx context.Context, d broker.Delivery, attempt int, cause string, reason error) {
	ctx, cancel := c.settleContext(ctx)
	defer cancel()
	m := failedCopy(d.Message, attempt, reason.Error(), c.cfg.Group, time.Now())
	if err := c.publishCopy(ctx, DeadLetterQueue(c.cfg.Group), m); err != nil {
		c.requeue(d, "dead-letter", err)
		return
	}
	c.stats.deadLettered.Add(1)
	c.metrics.deadLettered.WithLabelValues(cause).Inc()
	c.log.Warn("consume: message dead-lettered", "message_id", d.MessageID, "type", d.Type,
		"cause", cause, "attempt", attempt, "queue", DeadLetterQueue(c.cfg.Group), "reason", reason)
	c.ack(d)
}

// publishCopy publishes m to queue, one of the group's. When the queue is
// missing (an operator deleted it while workers ran), it declares the
// group's topology again and tries once more: the copy then waits where it
// should, instead of the original coming straight back.
func (c *Consumer) publishCopy(ctx context.Context, queue string, m broker.Message) error {
	err := c.pub.publish(ctx, queue, m)
	if !errors.Is(err, ErrUnroutable) {
		return err
	}
	c.log.Warn("consume: a queue of the group is missing; declaring the group's topology again", "queue", queue)
	if derr := c.Declare(ctx); derr != nil {
		return fmt.Errorf("%w (declaring the topology again failed: %w)", err, derr)
	}
	return c.pub.publish(ctx, queue, m)
}

// requeue gives d back to the broker when its copy could not be stored: it
// is delivered again rather than lost.
func (c *Consumer) requeue(d broker.Delivery, what string, err error) {
	c.log.Error("consume: cannot "+what+" a message; returning it to the queue", "message_id", d.MessageID, "err", err)
	if nerr := d.Nack(true); nerr != nil {
		c.log.Debug("consume: nack failed; the message will be delivered again", "message_id", d.MessageID, "err", nerr)
	}
}
