package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edupulse/eventbus/broker"
)

// ErrUnroutable reports a copy that no queue took: the queue it was sent
// to does not exist (an operator deleted it, or it was never declared).
// The broker confirms such a message all the same, so without this check
// the original would be acked and the event lost. Test with errors.Is.
var ErrUnroutable = errors.New("consume: no queue took the copy")

// republisher sends copies of messages to one queue (a retry queue, the
// dead-letter queue, the group queue) through the default exchange and waits
// for the broker's confirm. Workers share it: Publish is serialised, the
// waits are not.
//
// Copies are mandatory: the broker returns one that reaches no queue, and
// publish then fails with ErrUnroutable.
type republisher struct {
	b   broker.Broker
	mu  sync.Mutex // serialises Publish
	pub broker.Publisher
	gen uint64 // counts the publishers opened, to tell their returns apart

	// sent are the copies whose confirmation may not have settled yet, in
	// publish order. Returns arrive in publish order, each before its
	// message's confirmation, so a return belongs to the first copy of the
	// same queue and message that is not marked returned yet.
	sentMu sync.Mutex // not mu: the in-process broker returns inside Publish
	sent   []*sentCopy
}

// sentCopy is one copy on its way.
type sentCopy struct {
	gen              uint64
	queue, messageID string
	conf             broker.Confirmation // nil until Publish returns
	returned         bool                // guarded by sentMu
}

// publish sends m to queue and returns once the broker has taken
// responsibility for it, stored in queue.
func (r *republisher) publish(ctx context.Context, queue string, m broker.Message) error {
	return r.publishVia(ctx, broker.NamelessExchange, queue, m)
}

// publishVia sends m to exchange with routing key queue (the queue's name
// for the default exchange) and returns once the broker has taken
// responsibility for it, stored in a queue.
func (r *republisher) publishVia(ctx context.Context, exchange, queue string, m broker.Message) error {
	sc, err := r.send(ctx, exchange, queue, m)
	if err != nil {
		return err
	}
	select {
	case <-sc.conf.Done():
	case <-ctx.Done():
		// sc stays in sent until its confirmation settles: its return, if
		// one comes, must not be taken for another copy's.
		return fmt.Errorf("consume: wait for the broker to confirm a copy in %s: %w", queue, ctx.Err())
	}
	if !sc.conf.Acked() {
		return fmt.Errorf("consume: copy to %s: %w", queue, broker.ErrNacked)
	}
	r.sentMu.Lock()
	returned := sc.returned
	r.sentMu.Unlock()
	if returned {
		// Copies go to a queue by name: unroutable means it does not exist.
		return fmt.Errorf("consume: copy of message %q to %s: %w (%w)", m.MessageID, queue, ErrUnroutable, broker.ErrNotFound)
	}
	return nil
}

func (r *republisher) send(ctx context.Context, exchange, queue string, m broker.Message) (*sentCopy, error) {
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
		r.gen++
		gen := r.gen
		p, err := r.b.NewPublisher(ctx, broker.PublisherOptions{
			Mandatory: true,
			OnReturn:  func(ret broker.Returned) { r.markReturned(gen, ret) },
		})
		if err != nil {
			return nil, fmt.Errorf("consume: open a publisher: %w", err)
		}
		r.pub = p
	}
	sc := &sentCopy{gen: r.gen, queue: queue, messageID: m.MessageID}
	r.sentMu.Lock()
	// Forget the copies whose confirmation settled: no return comes after
	// the confirmation.
	r.sent = slices.DeleteFunc(r.sent, func(s *sentCopy) bool { return s.conf != nil && isSettled(s.conf) })
	r.sent = append(r.sent, sc)
	r.sentMu.Unlock()
	conf, err := r.pub.Publish(ctx, exchange, queue, m)
	r.sentMu.Lock()
	if err != nil {
		r.sent = slices.DeleteFunc(r.sent, func(s *sentCopy) bool { return s == sc })
	} else {
		sc.conf = conf
	}
	r.sentMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("consume: publish a copy to %s: %w", queue, err)
	}
	return sc, nil
}

// markReturned marks the copy the broker returned. A copy whose
// confirmation settled was not returned: its return would have come first.
func (r *republisher) markReturned(gen uint64, ret broker.Returned) {
	r.sentMu.Lock()
	defer r.sentMu.Unlock()
	for _, s := range r.sent {
		if s.gen == gen && !s.returned && s.queue == ret.RoutingKey && s.messageID == ret.MessageID &&
			(s.conf == nil || !isSettled(s.conf)) {
			s.returned = true
			return
		}
	}
}

func isSettled(c broker.Confirmation) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
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
