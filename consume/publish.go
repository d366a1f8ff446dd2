package consume

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edupulse/eventbus/broker"
)

// republisher sends copies of messages to one queue (a retry queue, the
// dead-letter queue, the group queue) through the default exchange and waits
// for the broker's confirm. Workers share it: Publish is serialised, the
// waits are not.
type republisher struct {
	b   broker.Broker
	mu  sync.Mutex
	pub broker.Publisher
}

// publish sends m to queue and returns once the broker has taken
// responsibility for it.
func (r *republisher) publish(ctx context.Context, queue string, m broker.Message) error {
	conf, err := r.send(ctx, queue, m)
	if err != nil {
		return err
	}
	select {
	case <-conf.Done():
	case <-ctx.Done():
		return fmt.Errorf("consume: wait for the broker to confirm a copy in %s: %w", queue, ctx.Err())
	}
	if !conf.Acked() {
		return fmt.Errorf("consume: copy to %s: %w", queue, broker.ErrNacked)
	}
	return nil
}

func (r *republisher) send(ctx context.Context, queue string, m broker.Message) (broker.Confirmation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pub != nil {
		select {
		case <-r.pub.Done(): // its connection failed: open another
			_ = r.pub.Close()
			r.pub = nil
		default:
		}
	}
	if r.pub == nil {
		p, err := r.b.NewPublisher(ctx, broker.PublisherOptions{})
		if err != nil {
			return nil, fmt.Errorf("consume: open a publisher: %w", err)
		}
		r.pub = p
	}
	conf, err := r.pub.Publish(ctx, broker.DefaultExchange, queue, m)
	if err != nil {
		return nil, fmt.Errorf("consume: publish a copy to %s: %w", queue, err)
	}
	return conf, nil
}

func (r *republisher) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pub != nil {
		_ = r.pub.Close()
		r.pub = nil
	}
}

// headerDeliveryCount is where RabbitMQ's quorum queues count the times a
// message was delivered before.
const headerDeliveryCount = "x-delivery-count"

// maxReasonBytes bounds the failure reason header: an error can quote a
// whole payload.
const maxReasonBytes = 1024

// copyMessage returns m with its own headers map, without the bookkeeping
// headers the broker adds when it dead-letters or redelivers (x-death and
// friends): they describe the broker's queues, not the event, and a copy is
// a new message.
func copyMessage(m broker.Message) broker.Message {
	h := make(map[string]any, len(m.Headers)+4)
	for k, v := range m.Headers {
		if strings.HasPrefix(k, "x-death") || strings.HasPrefix(k, "x-first-death-") ||
			strings.HasPrefix(k, "x-last-death-") || k == headerDeliveryCount {
			continue
		}
		h[k] = v
	}
	m.Headers = h
	return m
}

// failedCopy is the copy of a message whose attempt failed with reason,
// for a retry queue or the dead-letter queue.
func failedCopy(m broker.Message, attempt int, reason, queue string, at time.Time) broker.Message {
	m = copyMessage(m)
	m.Headers[broker.HeaderAttempt] = int64(attempt)
	m.Headers[broker.HeaderFailureReason] = truncate(reason, maxReasonBytes)
	m.Headers[broker.HeaderFailedAt] = at.UTC().Format(time.RFC3339Nano)
	m.Headers[broker.HeaderFailedQueue] = queue
	return m
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
