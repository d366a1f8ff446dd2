package memory

import (
	"slices"
	"sync"
	"time"

	"github.com/edupulse/eventbus/broker"
)

// message is one message in one queue.
type message struct {
	m           broker.Message
	exchange    string
	routingKey  string
	seq         uint64    // order of arrival in the queue
	expires     time.Time // zero without a time to live
	redelivered bool
	// receipt, when set, is the delivery confirmation this copy counts
	// towards (see DeliveryConfirmed).
	receipt *receipt
}

// deadLetter is a message on its way to a dead-letter queue.
type deadLetter struct {
	queue    string
	exchange string // instead of queue: route it through this exchange
	m        *message
}

// queue is a FIFO queue with its consumers.
type queue struct {
	b          *Broker
	name       string
	deadLetter string
	// deadLetterExchange, instead of deadLetter, routes dead letters
	// through an exchange with their own routing key.
	deadLetterExchange string
	ttl                time.Duration
	// singleActive delivers to the oldest consumer only.
	singleActive bool

	mu        sync.Mutex
	ready     deque
	seq       uint64
	consumers []*subscription
	next      int // round-robin position in consumers
	holders   map[*holder]struct{}
	timer     *time.Timer
	timerAt   time.Time // when timer fires; zero if not armed
	deleted   bool
	// outbox holds this queue's dead letters on their way, in the order
	// the queue let them go; flushing is set while one goroutine moves
	// them (see deadLetterAndUnlock).
	outbox   []deadLetter
	flushing bool
}

func newQueue(b *Broker, spec broker.QueueSpec) *queue {
	return &queue{
		b: b, name: spec.Name, deadLetter: spec.DeadLetterQueue, deadLetterExchange: spec.DeadLetterExchange,
		ttl: spec.MessageTTL, singleActive: spec.SingleActiveConsumer,
		holders: map[*holder]struct{}{},
	}
}

func (q *queue) info() broker.QueueInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	return broker.QueueInfo{Name: q.name, Messages: q.ready.len(), Consumers: len(q.consumers)}
}

// enqueue appends m and hands messages to consumers.
func (q *queue) enqueue(m *message) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		m.receipt.release()
		return
	}
	q.seq++
	m.seq = q.seq
	if q.ttl > 0 {
		m.expires = now().Add(q.ttl)
	}
	q.ready.pushBack(m)
	q.dispatchAndUnlock(nil)
}

// requeueLocked puts messages back at the head of the queue, the earliest
// first, marked redelivered.
func (q *queue) requeueLocked(ms []*message) {
	slices.SortFunc(ms, func(a, b *message) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	for i := len(ms) - 1; i >= 0; i-- {
		ms[i].redelivered = true
		q.ready.pushFront(ms[i])
	}
}

// dispatchAndUnlock ends every change to a locked queue: it hands consumers
// what they can take, re-arms the expiry timer, unlocks, and only then
// dead-letters dead with the rest, since that enqueues into other queues
// and takes their locks.
func (q *queue) dispatchAndUnlock(dead []deadLetter) {
	dead = q.dispatchLocked(dead)
	q.scheduleLocked()
	q.deadLetterAndUnlock(dead)
}

// deadLetterAndUnlock unlocks q and moves dead, with any dead letters of q
// still on their way, into their dead-letter queues in the order q let
// them go. Several goroutines let messages go (the expiry timer, acks,
// publishes): one of them at a time moves them all, so two that expire
// one after the other cannot overtake each other on the way. No lock is
// held while moving, since the dead-letter queue may dead-letter back
// into q.
func (q *queue) deadLetterAndUnlock(dead []deadLetter) {
	q.outbox = append(q.outbox, dead...)
	if q.flushing {
		q.mu.Unlock() // the goroutine moving them takes these too
		return
	}
	q.flushing = true
	for len(q.outbox) > 0 {
		batch := q.outbox
		q.outbox = nil
		q.mu.Unlock()
		q.b.deadLetter(batch)
		q.mu.Lock()
	}
	q.flushing = false
	q.mu.Unlock()
}

// dispatchLocked hands ready messages to consumers with room, round-robin,
// and returns the expired messages it met, to dead-letter once q.mu is
// released.
func (q *queue) dispatchLocked(dead []deadLetter) []deadLetter {
	if len(q.consumers) == 0 {
		return dead
	}
	var t time.Time
	if q.ttl > 0 {
		t = now()
	}
	for q.ready.len() > 0 {
		s := q.nextConsumerLocked()
		if s == nil {
			break
		}
		m := q.ready.popFront()
		if q.ttl > 0 && !t.Before(m.expires) {
			dead = q.expireLocked(m, dead)
			continue
		}
		s.deliverLocked(m)
	}
	return dead
}

// nextConsumerLocked returns the next consumer in turn with room for a
// message, or nil.
func (q *queue) nextConsumerLocked() *subscription {
	if q.singleActive {
		if s := q.consumers[0]; s.n < s.prefetch {
			return s
		}
		return nil
	}
	n := len(q.consumers)
	for i := 0; i < n; i++ {
		idx := (q.next + i) % n
		if s := q.consumers[idx]; s.n < s.prefetch {
			q.next = (idx + 1) % n
			return s
		}
	}
	return nil
}

// expireLocked dead-letters an expired message, or drops it.
func (q *queue) expireLocked(m *message, dead []deadLetter) []deadLetter {
	return q.deadLetterLocked(m, "expired", dead)
}

// rejectLocked dead-letters a message a consumer rejected, or drops it.
func (q *queue) rejectLocked(m *message, dead []deadLetter) []deadLetter {
	return q.deadLetterLocked(m, "rejected", dead)
}

// deadLetterLocked dead-letters m for reason, or drops it when q has no
// dead-letter target.
func (q *queue) deadLetterLocked(m *message, reason string, dead []deadLetter) []deadLetter {
	switch {
	case q.deadLetter != "":
		return append(dead, deadLetter{queue: q.deadLetter, m: q.deadLettered(m, reason)})
	case q.deadLetterExchange != "":
		return append(dead, deadLetter{exchange: q.deadLetterExchange, m: q.deadLettered(m, reason)})
	}
	m.receipt.release()
	return dead
}

// deadLettered returns the message as RabbitMQ dead-letters it, with
// x-death headers: through the default exchange to the dead-letter queue,
// or through the dead-letter exchange with its own routing key.
func (q *queue) deadLettered(m *message, reason string) *message {
	out := &message{m: m.m, exchange: broker.NamelessExchange, routingKey: q.deadLetter, receipt: m.receipt}
	if q.deadLetter == "" {
		out.exchange, out.routingKey = q.deadLetterExchange, m.routingKey
	}
	headers := make(map[string]any, len(m.m.Headers)+4)
	for k, v := range m.m.Headers {
		headers[k] = v
	}
	death := map[string]any{
		"count":        int64(1),
		"reason":       reason,
		"queue":        q.name,
		"exchange":     m.exchange,
		"routing-keys": []any{m.routingKey},
		"time":         now().UTC().Truncate(time.Second),
	}
	var deaths []any
	if old, ok := headers["x-death"].([]any); ok {
		for _, d := range old {
			e, ok := d.(map[string]any)
			if ok && e["queue"] == q.name && e["reason"] == reason {
				n, _ := e["count"].(int64)
				death["count"] = n + 1
				continue
			}
			deaths = append(deaths, d)
		}
	}
	headers["x-death"] = append([]any{death}, deaths...)
	if _, ok := headers["x-first-death-reason"]; !ok {
		headers["x-first-death-reason"] = reason
		headers["x-first-death-queue"] = q.name
		headers["x-first-death-exchange"] = m.exchange
	}
	out.m.Headers = headers
	return out
}

// scheduleLocked arms the timer for the head's expiry.
func (q *queue) scheduleLocked() {
	if q.ttl <= 0 || q.deleted {
		return
	}
	head := q.ready.front()
	if head == nil {
		return // the timer, if armed, finds nothing and stops
	}
	if !q.timerAt.IsZero() && !q.timerAt.After(head.expires) {
		return
	}
	q.timerAt = head.expires
	d := time.Until(head.expires)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.expire)
	} else {
		q.timer.Reset(d)
	}
}

// expire runs on the timer: it dead-letters the expired messages at the
// head of the queue and arms the timer for the next.
func (q *queue) expire() {
	if !q.b.timerEnter() {
		return
	}
	defer q.b.timers.Done()
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	q.timerAt = time.Time{}
	t := now()
	var dead []deadLetter
	for head := q.ready.front(); head != nil && !t.Before(head.expires); head = q.ready.front() {
		q.ready.popFront()
		dead = q.expireLocked(head, dead)
	}
	q.scheduleLocked()
	q.deadLetterAndUnlock(dead)
}

// shutdown ends the queue: its subscriptions end with err, its messages
// are dropped.
func (q *queue) shutdown(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return
	}
	q.deleted = true
	if q.timer != nil {
		q.timer.Stop()
	}
	for h := range q.holders {
		releaseAll(h.closeLocked())
	}
	for _, s := range q.consumers {
		releaseAll(s.endLocked(err))
	}
	q.consumers = nil
	q.holders = nil
	for m := q.ready.popFront(); m != nil; m = q.ready.popFront() {
		m.receipt.release()
	}
	q.ready = deque{}
}

// deque is a ring buffer of messages.
type deque struct {
	buf        []*message
	head, size int
}

func (d *deque) len() int { return d.size }

func (d *deque) front() *message {
	if d.size == 0 {
		return nil
	}
	return d.buf[d.head]
}

func (d *deque) grow() {
	if d.size < len(d.buf) {
		return
	}
	buf := make([]*message, max(16, 2*len(d.buf)))
	n := copy(buf, d.buf[d.head:])
	copy(buf[n:], d.buf[:d.head])
	d.buf, d.head = buf, 0
}

func (d *deque) pushBack(m *message) {
	d.grow()
	d.buf[(d.head+d.size)%len(d.buf)] = m
	d.size++
}

func (d *deque) pushFront(m *message) {
	d.grow()
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = m
	d.size++
}

func (d *deque) popFront() *message {
	if d.size == 0 {
		return nil
	}
	m := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.size--
	if d.size == 0 {
		d.head = 0
	}
	if len(d.buf) > 1024 && d.size < len(d.buf)/4 {
		// Give back the memory of a burst.
		buf := make([]*message, len(d.buf)/2)
		n := copy(buf, d.buf[d.head:min(d.head+d.size, len(d.buf))])
		copy(buf[n:], d.buf[:d.size-n])
		d.buf, d.head = buf, 0
	}
	return m
}
