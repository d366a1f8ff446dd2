package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edupulse/eventbus/broker"
)

// publisher publishes synchronously: Publish returns with the message in
// its queues and its confirmation settled.
type publisher struct {
	b        *Broker
	opts     broker.PublisherOptions
	done     chan struct{}
	doneOnce sync.Once
	// receipts are the pending confirmations of a delivery-confirmed
	// publisher (see DeliveryConfirmed); nil for a plain one. Guarded by
	// b.receipts.mu.
	receipts map[*receipt]struct{}
}

// NewPublisher opens a publisher.
func (b *Broker) NewPublisher(ctx context.Context, opts broker.PublisherOptions) (broker.Publisher, error) {
	return b.newPublisher(ctx, opts)
}

func (b *Broker) newPublisher(ctx context.Context, opts broker.PublisherOptions) (*publisher, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: open publisher: %w", err)
	}
	p := &publisher{b: b, opts: opts, done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed("open publisher")
	}
	b.publishers[p] = struct{}{}
	return p, nil
}

// Publish settles every confirmation before returning, positively: a
// message is acked once it is in its queues, or once it is known that no
// queue receives it.
var (
	closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
	acked      = &confirmation{acked: true}
)

type confirmation struct{ acked bool }

func (c *confirmation) Done() <-chan struct{} { return closedChan }
func (c *confirmation) Acked() bool           { return c.acked }

// Publish copies m into every queue that exchange routes routingKey to. A
// message no queue receives is acked, and with Mandatory handed to
// OnReturn before Publish returns. Publishing to an exchange that does not
// exist fails with broker.ErrNotFound.
func (p *publisher) Publish(ctx context.Context, exchange, routingKey string, m broker.Message) (broker.Confirmation, error) {
	select {
	case <-p.done:
		return nil, errClosed("publish")
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: publish: %w", err)
	}
	if err := broker.CheckMessage(exchange, routingKey, m); err != nil {
		return nil, fmt.Errorf("memory: publish message %.64q: %w", m.MessageID, err)
	}
	if err := p.opts.CheckExchange(exchange); err != nil {
		return nil, fmt.Errorf("memory: publish message %.64q: %w", m.MessageID, err)
	}
	if limit := p.b.maxMessageSize.Load(); limit > 0 && int64(len(m.Body)) > limit {
		return nil, fmt.Errorf("memory: publish message %.64q: %w: the body is %d bytes, over the broker's max message size of %d",
			m.MessageID, broker.ErrRefused, len(m.Body), limit)
	}
	queues, err := p.b.route(exchange, routingKey, m)
	if err != nil {
		return nil, err
	}
	// Count the copies before the first is in a queue: a consumer may ack
	// it at once.
	var (
		r     *receipt
		joins func(*queue) bool
	)
	if p.receipts != nil {
		r = p.track(m.MessageID, len(queues))
	} else {
		r, joins = p.b.receipts.join(m, queues)
	}
	if len(queues) == 0 {
		if p.opts.Mandatory && p.opts.OnReturn != nil {
			p.opts.OnReturn(broker.Returned{
				Message: own(m), Exchange: exchange, RoutingKey: routingKey, Reason: "312 NO_ROUTE",
			})
		}
		if r != nil {
			return r, nil
		}
		return acked, nil
	}
	first := own(m)
	for i, q := range queues {
		msg := &message{m: first, exchange: exchange, routingKey: routingKey}
		if joins == nil || joins(q) {
			msg.receipt = r
		}
		if i > 0 {
			msg.m = own(first) // each queue its own copy
		}
		q.enqueue(msg)
	}
	if p.receipts != nil {
		return r, nil
	}
	return acked, nil
}

// own returns a copy of m that shares nothing with the caller's, with what
// AMQP would make of it: a timestamp in whole seconds, integer headers as
// int64.
func own(m broker.Message) broker.Message {
	if m.Body != nil {
		m.Body = append([]byte(nil), m.Body...)
	}
	if len(m.Headers) > 0 {
		h := make(map[string]any, len(m.Headers))
		for k, v := range m.Headers {
			h[k] = broker.HeaderValue(v)
		}
		m.Headers = h
	} else {
		m.Headers = nil
	}
	if !m.Timestamp.IsZero() {
		m.Timestamp = m.Timestamp.Truncate(time.Second).UTC()
	}
	return m
}

func (p *publisher) Done() <-chan struct{} { return p.done }

// Close closes the publisher.
func (p *publisher) Close() error {
	p.b.mu.Lock()
	delete(p.b.publishers, p)
	p.b.mu.Unlock()
	p.end()
	return nil
}

func (p *publisher) end() {
	p.doneOnce.Do(func() {
		close(p.done)
		p.failReceipts()
	})
}
