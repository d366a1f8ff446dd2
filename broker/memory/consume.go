package memory

import (
	"context"
	"fmt"

	"github.com/edupulse/eventbus/broker"
)

// holder holds messages taken from a queue and not yet settled: a
// subscription's or a browser's.
type holder struct {
	q *queue
	// inflight is an intrusive list of the unsettled messages.
	first, last *inflight
	n           int
	closed      bool
}

// inflight is one delivered message awaiting its ack; it is the delivery's
// Acknowledger.
type inflight struct {
	m          *message
	h          *holder
	prev, next *inflight
	settled    bool
}

func (h *holder) addLocked(m *message) *inflight {
	in := &inflight{m: m, h: h, prev: h.last}
	if h.last != nil {
		h.last.next = in
	} else {
		h.first = in
	}
	h.last = in
	h.n++
	return in
}

func (h *holder) removeLocked(in *inflight) {
	if in.prev != nil {
		in.prev.next = in.next
	} else {
		h.first = in.next
	}
	if in.next != nil {
		in.next.prev = in.prev
	} else {
		h.last = in.prev
	}
	in.prev, in.next = nil, nil
	in.settled = true
	h.n--
}

// closeLocked settles nothing more and returns the unsettled messages, in
// no particular order.
func (h *holder) closeLocked() []*message {
	h.closed = true
	var ms []*message
	for in := h.first; in != nil; {
		next := in.next
		in.settled = true
		in.prev, in.next = nil, nil
		ms = append(ms, in.m)
		in = next
	}
	h.first, h.last, h.n = nil, nil, 0
	return ms
}

// Ack removes the message from its queue.
func (in *inflight) Ack() error { return in.settle("ack", false, false) }

// Nack rejects the message: back to the head of its queue with requeue,
// else to its dead-letter queue, or nowhere.
func (in *inflight) Nack(requeue bool) error { return in.settle("nack", true, requeue) }

func (in *inflight) settle(op string, reject, requeue bool) error {
	q := in.h.q
	q.mu.Lock()
	if in.h.closed {
		q.mu.Unlock()
		return fmt.Errorf("memory: %s: %w (the message went back to the queue)", op, broker.ErrClosed)
	}
	if in.settled {
		q.mu.Unlock()
		return fmt.Errorf("memory: %s: the delivery was settled already", op)
	}
	in.h.removeLocked(in)
	var dead []deadLetter
	switch {
	case reject && requeue:
		q.requeueLocked([]*message{in.m})
	case reject:
		dead = q.rejectLocked(in.m, dead)
	default:
		in.m.receipt.release()
	}
	q.dispatchAndUnlock(dead)
	return nil
}

// subscription hands a queue's messages to one consumer. Its channel is
// buffered to its prefetch and it never has more than prefetch messages
// unsettled, so the queue's sends to it never block.
type subscription struct {
	holder
	prefetch int
	out      chan broker.Delivery
	ended    bool
	err      error // guarded by q.mu
}

// Consume subscribes to a queue.
func (b *Broker) Consume(ctx context.Context, name string, opts broker.ConsumeOptions) (broker.Subscription, error) {
	q, err := b.queue(ctx, "consume queue", name)
	if err != nil {
		return nil, err
	}
	prefetch := opts.Prefetch
	if prefetch <= 0 {
		prefetch = DefaultPrefetch
	}
	prefetch = min(prefetch, maxPrefetch)
	s := &subscription{holder: holder{q: q}, prefetch: prefetch, out: make(chan broker.Delivery, prefetch)}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return nil, fmt.Errorf("memory: consume queue %q: %w", name, broker.ErrNotFound)
	}
	q.consumers = append(q.consumers, s)
	q.holders[&s.holder] = struct{}{}
	q.dispatchAndUnlock(nil)
	return s, nil
}

// deliverLocked hands m over; the caller checked that s has room.
func (s *subscription) deliverLocked(m *message) {
	in := s.addLocked(m)
	s.out <- delivery(m, in)
}

func delivery(m *message, in *inflight) broker.Delivery {
	return broker.Delivery{
		Message:      m.m,
		Exchange:     m.exchange,
		RoutingKey:   m.routingKey,
		Redelivered:  m.redelivered,
		Acknowledger: in,
	}
}

// endLocked ends the subscription with err: its unsettled messages return
// to the queue (the caller dispatches them), its channel closes.
func (s *subscription) endLocked(err error) []*message {
	if s.ended {
		return nil
	}
	s.ended = true
	s.err = err
	ms := s.closeLocked()
	// Messages sent and not yet received go back to the queue with the
	// rest: take them out of the channel so that nobody works on them.
	for len(s.out) > 0 {
		<-s.out
	}
	close(s.out)
	return ms
}

func (s *subscription) Deliveries() <-chan broker.Delivery { return s.out }

func (s *subscription) Err() error {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	return s.err
}

// Close cancels the subscription. Its unacked messages go back to the head
// of the queue, in their order, marked redelivered.
func (s *subscription) Close() error {
	q := s.q
	q.mu.Lock()
	if s.ended {
		q.mu.Unlock()
		return nil
	}
	ms := s.endLocked(nil)
	delete(q.holders, &s.holder)
	for i, c := range q.consumers {
		if c == s {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if q.next > i {
				q.next--
			}
			break
		}
	}
	if len(q.consumers) > 0 {
		q.next %= len(q.consumers)
	} else {
		q.next = 0
	}
	q.requeueLocked(ms)
	q.dispatchAndUnlock(nil)
	return nil
}

// browser takes a queue's messages one at a time.
type browser struct {
	holder
}

// Browse opens a browser on a queue.
func (b *Broker) Browse(ctx context.Context, name string) (broker.Browser, error) {
	q, err := b.queue(ctx, "browse queue", name)
	if err != nil {
		return nil, err
	}
	br := &browser{holder: holder{q: q}}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return nil, fmt.Errorf("memory: browse queue %q: %w", name, broker.ErrNotFound)
	}
	q.holders[&br.holder] = struct{}{}
	return br, nil
}

// Next takes the message at the head of the queue.
func (br *browser) Next(ctx context.Context) (broker.Delivery, bool, error) {
	if err := ctx.Err(); err != nil {
		return broker.Delivery{}, false, fmt.Errorf("memory: browse queue %q: %w", br.q.name, err)
	}
	q := br.q
	q.mu.Lock()
	if br.closed {
		q.mu.Unlock()
		return broker.Delivery{}, false, fmt.Errorf("memory: browse queue %q: %w", q.name, broker.ErrClosed)
	}
	var dead []deadLetter
	var d broker.Delivery
	ok := false
	t := now()
	for m := q.ready.popFront(); m != nil; m = q.ready.popFront() {
		if q.ttl > 0 && !t.Before(m.expires) {
			dead = q.expireLocked(m, dead)
			continue
		}
		d, ok = delivery(m, br.addLocked(m)), true
		break
	}
	q.scheduleLocked()
	q.deadLetterAndUnlock(dead)
	return d, ok, nil
}

// Close returns the messages taken and not acked to the head of the queue.
func (br *browser) Close() error {
	q := br.q
	q.mu.Lock()
	if br.closed {
		q.mu.Unlock()
		return nil
	}
	ms := br.closeLocked()
	delete(q.holders, &br.holder)
	q.requeueLocked(ms)
	q.dispatchAndUnlock(nil)
	return nil
}
