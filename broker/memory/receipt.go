package memory

import (
	"context"
	"sync"

	"github.com/edupulse/eventbus/broker"
)

// DeliveryConfirmed returns a view of b whose publishers confirm a message
// only once it has been delivered: once every copy it put in a queue has
// been acked by a consumer (or a browser), or has left the broker for good
// (dropped, or its queue deleted). Everything else is b's.
//
// A queue in memory is no durable hand-off: when the process dies, what it
// holds is gone. The relay of the embedded default publishes through this
// view, so that its checkpoint never passes an event that a consumer has not
// settled; after a crash it publishes every such event again.
//
// A copy that is dead-lettered (rejected or expired into a dead-letter
// queue) stays tracked in its new queue. A message with the same MessageID
// published through a plain publisher while a tracked copy is unsettled
// joins its tracking: that is how the consumer runtime's retry copies keep
// an event unconfirmed until a retry succeeds. Except a failure put to rest:
// a copy that carries broker.HeaderFailureReason into a queue without a time
// to live (the consumer runtime's dead-letter queue, where it waits for an
// operator, unlike its retry queues) does not join. The message counts as
// delivered once it is dead-lettered, so that one poison message cannot
// hold the relay back for ever.
//
// Confirmations may settle out of publish order; broker.Pipeline waits for
// them in order. A publisher's confirmations still pending when it closes,
// or when the broker closes, settle as not acked.
func (b *Broker) DeliveryConfirmed() broker.Broker { return deliveryView{b} }

type deliveryView struct{ *Broker }

func (v deliveryView) NewPublisher(ctx context.Context, opts broker.PublisherOptions) (broker.Publisher, error) {
	p, err := v.Broker.newPublisher(ctx, opts)
	if err != nil {
		return nil, err
	}
	p.receipts = map[*receipt]struct{}{}
	return p, nil
}

// receipt is the confirmation of a delivery-confirmed publish: it settles
// when no copy of the message is left in the broker's queues.
type receipt struct {
	b       *Broker
	p       *publisher
	id      string
	pending int // copies in queues; guarded by b.receiptsMu
	acked   bool
	done    chan struct{}
}

func (r *receipt) Done() <-chan struct{} { return r.done }
func (r *receipt) Acked() bool           { return r.acked }

// receipts are the broker's unsettled receipts by message ID: the newest
// per ID, which retry copies join.
type receipts struct {
	mu   sync.Mutex
	byID map[string]*receipt
}

// track returns a receipt for a message with n copies, settled already
// when n is 0.
func (p *publisher) track(id string, n int) *receipt {
	r := &receipt{b: p.b, p: p, id: id, pending: n, done: make(chan struct{})}
	rs := &p.b.receipts
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if n == 0 {
		r.settleLocked(true)
		return r
	}
	p.receipts[r] = struct{}{}
	if rs.byID == nil {
		rs.byID = map[string]*receipt{}
	}
	if id != "" {
		rs.byID[id] = r
	}
	return r
}

// join returns the unsettled receipt that the copies of m in queues join,
// if any, and for each queue whether its copy joins.
func (rs *receipts) join(m broker.Message, queues []*queue) (*receipt, func(*queue) bool) {
	if len(queues) == 0 || m.MessageID == "" {
		return nil, nil
	}
	_, failed := m.Headers[broker.HeaderFailureReason]
	// A queue's time to live never changes once declared.
	joins := func(q *queue) bool { return !failed || q.ttl > 0 }
	n := 0
	for _, q := range queues {
		if joins(q) {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byID[m.MessageID]
	if r == nil {
		return nil, nil
	}
	r.pending += n
	return r, joins
}

// add records n more copies in the broker's queues.
func (r *receipt) add(n int) {
	if r == nil || n <= 0 {
		return
	}
	rs := &r.b.receipts
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r.pending > 0 {
		r.pending += n
	}
}

// release records that one copy left the broker's queues.
func (r *receipt) release() {
	if r == nil {
		return
	}
	rs := &r.b.receipts
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r.pending <= 0 {
		return // settled already, or failed
	}
	r.pending--
	if r.pending == 0 {
		r.settleLocked(true)
	}
}

// settleLocked settles r once; the caller holds b.receipts.mu.
func (r *receipt) settleLocked(acked bool) {
	select {
	case <-r.done:
		return
	default:
	}
	r.pending = 0
	r.acked = acked
	close(r.done)
	if r.p.receipts != nil {
		delete(r.p.receipts, r)
	}
	if r.b.receipts.byID[r.id] == r {
		delete(r.b.receipts.byID, r.id)
	}
}

// failReceipts settles p's pending receipts as not acked: p is done.
func (p *publisher) failReceipts() {
	if p.receipts == nil {
		return
	}
	rs := &p.b.receipts
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for r := range p.receipts {
		r.settleLocked(false)
	}
}

// releaseAll releases the copies ms, which left the broker's queues.
func releaseAll(ms []*message) {
	for _, m := range ms {
		m.receipt.release()
	}
}
