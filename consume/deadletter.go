package consume

import (
	"context"
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
// the dead-letter queue; they are back when it returns.
func DeadLetters(ctx context.Context, b broker.Broker, group string, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = DefaultDeadLetterLimit
	}
	dlq := DeadLetterQueue(group)
	br, err := b.Browse(ctx, dlq)
	if err != nil {
		return nil, fmt.Errorf("consume: browse %s: %w", dlq, err)
	}
	defer br.Close()
	var out []DeadLetter
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
// It looks at the messages that are in the dead-letter queue when it
// starts, once each: a requeued message that fails again meanwhile is not
// requeued twice. Each message is moved once the broker has confirmed its
// copy; if Requeue fails in between, the message is in both queues, and the
// inbox (if the group has one) suppresses the duplicate.
func Requeue(ctx context.Context, b broker.Broker, group string, selector func(DeadLetter) bool) (int, error) {
	dlq := DeadLetterQueue(group)
	info, err := b.InspectQueue(ctx, dlq)
	if err != nil {
		return 0, fmt.Errorf("consume: requeue from %s: %w", dlq, err)
	}
	br, err := b.Browse(ctx, dlq)
	if err != nil {
		return 0, fmt.Errorf("consume: browse %s: %w", dlq, err)
	}
	defer br.Close()
	pub := republisher{b: b}
	defer pub.close()
	moved := 0
	for range info.Messages {
		d, ok, err := br.Next(ctx)
		if err != nil {
			return moved, fmt.Errorf("consume: browse %s: %w", dlq, err)
		}
		if !ok {
			break
		}
		if selector != nil && !selector(deadLetterOf(d.Message)) {
			continue // not acked: back to the dead-letter queue on Close
		}
		if err := pub.publish(ctx, group, requeuedCopy(d.Message)); err != nil {
			return moved, fmt.Errorf("consume: requeue message %q to %s: %w", d.MessageID, group, err)
		}
		if err := d.Ack(); err != nil {
			return moved, fmt.Errorf("consume: message %q was copied to %s but stays in %s too: %w", d.MessageID, group, dlq, err)
		}
		moved++
	}
	return moved, nil
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
