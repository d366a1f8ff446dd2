package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
)

// DeadLetter is a message in a group's dead-letter queue.
type DeadLetter struct {
	// Message is the message as it failed: the original body and
	// properties, plus the failure headers.
	Message broker.Message
	// Envelope is the event the message carries, or nil when the message
	// is not a readable CloudEvent (it was dead-lettered as malformed).
	Envelope *event.Envelope
	// Reason is the last error.
	Reason string
	// Attempts is how many times the message was handled.
	Attempts int
	// FailedAt is when the last attempt failed.
	FailedAt time.Time
	// Queue is the queue the message failed in.
	Queue string
}

// DefaultDeadLetterLimit is how many dead letters DeadLetters returns when
// asked for 0.
const DefaultDeadLetterLimit = 100

// DeadLetters returns up to limit messages from the front of group's
// dead-letter queue, leaving them there.
//
// While it reads, the messages it took are invisible to other readers of
// the dead-letter queue. It waits (up to 2 s) for the broker to put them
// back before it returns.
func DeadLetters(ctx context.Context, b broker.Broker, group string, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = DefaultDeadLetterLimit
	}
	dlq := DeadLetterQueue(group)
	br, err := b.Browse(ctx, dlq)
	if err != nil {
		return nil, fmt.Errorf("consume: browse %s: %w", dlq, err)
	}
	var out []DeadLetter
	defer func() {
		_ = br.Close()
		awaitReturned(ctx, b, dlq, len(out))
	}()
	for len(out) < limit {
		d, ok, err := br.Next(ctx)
		if err != nil {
			return out, fmt.Errorf("consume: browse %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		out = append(out, deadLetterOf(d.Message))
	}
	return out, nil
}

// Requeue moves the dead letters of group that selector picks (every one
// when selector is nil) back to the group's queue, with their attempt count
// reset, and leaves the others in the dead-letter queue. It returns how many
// it moved.
//
// It looks at each message once. A message that fails again while Requeue
// runs and comes back to the dead-letter queue is left there, as is a
// second copy of a message it moved. Each message
// is moved once the broker has confirmed its copy; if Requeue fails in
// between, the message is in both queues, and the inbox (if the group has
// one) suppresses the duplicate. When the group's queue does not exist,
// Requeue fails with an error wrapping ErrUnroutable and the message stays
// in the dead-letter queue.
//
// A sharded group (Config.Shards) has no queue of the group's name: when
// its members queue exists, Requeue sends the messages through the group's
// shard exchange, which puts each in its stream's shard.
func Requeue(ctx context.Context, b broker.Broker, group string, selector func(DeadLetter) bool) (int, error) {
	dlq := DeadLetterQueue(group)
	exchange, target := broker.NamelessExchange, group
	if _, err := b.InspectQueue(ctx, group); errors.Is(err, broker.ErrNotFound) {
		// A sharded group has its members queue; a group with neither
		// fails below, as a missing queue.
		if _, err := b.InspectQueue(ctx, MembersQueue(group)); err == nil {
			exchange, target = ShardExchange(group), ShardExchange(group)
		}
	}
	br, err := b.Browse(ctx, dlq)
	if err != nil {
		return 0, fmt.Errorf("consume: browse %s: %w", dlq, err)
	}
	pub := republisher{b: b}
	defer pub.close()
	moved, left := 0, 0
	seen := map[string]bool{} // message IDs moved
	defer func() {
		_ = br.Close()
		awaitReturned(ctx, b, dlq, left)
	}()
	for {
		// Messages taken and not acked stay taken until Close, so each
		// message comes up once, and the loop ends when the queue is empty.
		d, ok, err := br.Next(ctx)
		if err != nil {
			return moved, fmt.Errorf("consume: browse %s: %w", dlq, err)
		}
		if !ok {
			return moved, nil
		}
		dl := deadLetterOf(d.Message)
		if (d.MessageID != "" && seen[d.MessageID]) || (selector != nil && !selector(dl)) {
			left++
			continue
		}
		if err := pub.publishVia(ctx, exchange, target, requeuedCopy(d.Message)); err != nil {
			left++
			return moved, fmt.Errorf("consume: requeue message %q to %s: %w", d.MessageID, target, err)
		}
		if err := d.Ack(); err != nil {
			return moved, fmt.Errorf("consume: message %q was copied to %s but stays in %s too: %w", d.MessageID, target, dlq, err)
		}
		seen[d.MessageID] = true
		moved++
	}
}

// awaitReturned waits, briefly, until the n messages a browser took and
// closed without acking are back in queue. The broker returns them
// asynchronously: without the wait, a reader right after this one could
// miss them.
func awaitReturned(ctx context.Context, b broker.Broker, queue string, n int) {
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		info, err := b.InspectQueue(ctx, queue)
		if err != nil || info.Messages >= n {
			return
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// deadLetterOf reads a dead-lettered message.
func deadLetterOf(m broker.Message) DeadLetter {
	dl := DeadLetter{
		Message:  m,
		Reason:   m.Header(broker.HeaderFailureReason),
		Attempts: int(m.IntHeader(broker.HeaderAttempt)),
		Queue:    m.Header(broker.HeaderFailedQueue),
	}
	if t, err := time.Parse(time.RFC3339Nano, m.Header(broker.HeaderFailedAt)); err == nil {
		dl.FailedAt = t
	}
	if env, err := broker.DecodeMessage(m); err == nil {
		dl.Envelope = &env
	}
	return dl
}

// requeuedCopy is a dead letter on its way back: a fresh message, as the
// relay published it.
func requeuedCopy(m broker.Message) broker.Message {
	m = copyMessage(m)
	for _, h := range []string{broker.HeaderAttempt, broker.HeaderFailureReason, broker.HeaderFailedAt, broker.HeaderFailedQueue} {
		delete(m.Headers, h)
	}
	return m
}
