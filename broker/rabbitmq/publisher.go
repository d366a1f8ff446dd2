package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
)

// publisher publishes on a channel of its own in confirm mode.
type publisher struct {
	b         *Broker
	ch        *amqp.Channel
	opts      broker.PublisherOptions
	done      chan struct{}
	closeOnce sync.Once

	// pending holds the confirmations not yet settled, in publish order.
	// amqp091 settles its deferred confirmations of a multiple ack in map
	// order; the watcher settles ours strictly in publish order.
	mu       sync.Mutex
	pending  []*confirmation
	wake     chan struct{} // cap 1: pending grew
	finished bool          // the watcher has stopped
	closeErr *amqp.Error   // why the channel closed, when the server said
}

// confirmation is the broker's verdict on one message. It settles when
// amqp091's deferred confirmation has and every earlier one has.
type confirmation struct {
	dc    *amqp.DeferredConfirmation
	done  chan struct{}
	acked bool
}

func (c *confirmation) Done() <-chan struct{} { return c.done }

func (c *confirmation) Acked() bool {
	select {
	case <-c.done:
		return c.acked
	default:
		return false
	}
}

func (c *confirmation) settle() {
	c.acked = c.dc.Acked()
	close(c.done)
}

// NewPublisher opens a publisher on a channel of its own, in confirm mode.
// Confirmations settle in publish order, and as not acked if the channel
// closes first; Done closes after the last has settled. The channel closes
// when the connection fails or when the server refuses a publish (for
// instance to an exchange that does not exist).
//
// With Mandatory, OnReturn is called on the publisher's own goroutine for
// each unroutable message, before that message's confirmation settles
// (RabbitMQ acks a returned message: it dealt with it). OnReturn must not
// block for long: amqp091 drops returns that wait more than 5s.
func (b *Broker) NewPublisher(ctx context.Context, opts broker.PublisherOptions) (broker.Publisher, error) {
	const op = "open publisher"
	for {
		ch, s, err := b.channel(ctx, op)
		if err != nil {
			return nil, err
		}
		if err := ch.Confirm(false); err != nil {
			_ = ch.Close()
			if s.conn.IsClosed() && ctx.Err() == nil {
				continue
			}
			return nil, b.wrap(op, err)
		}
		p := &publisher{b: b, ch: ch, opts: opts, done: make(chan struct{}), wake: make(chan struct{}, 1)}
		closes := ch.NotifyClose(make(chan *amqp.Error, 1))
		var returns chan amqp.Return
		onReturn := opts.OnReturn
		if opts.Mandatory && onReturn != nil {
			returns = ch.NotifyReturn(make(chan amqp.Return, 256))
		}
		if !b.goTracked(func() { p.watch(closes, returns, onReturn) }) {
			_ = ch.Close()
			return nil, fmt.Errorf("rabbitmq: %s: %w", op, broker.ErrClosed)
		}
		return p, nil
	}
}

// watch settles confirmations in order, hands returned messages to
// onReturn, and closes done once the channel has closed and every
// confirmation has settled.
func (p *publisher) watch(closes chan *amqp.Error, returns chan amqp.Return, onReturn func(broker.Returned)) {
	defer close(p.done)
	// drainReturns hands over the returns already received: a return
	// comes before its message's ack, so this runs before settling.
	drainReturns := func() {
		for returns != nil {
			select {
			case r, ok := <-returns:
				if !ok {
					returns = nil
					return
				}
				onReturn(returned(r))
			default:
				return
			}
		}
	}
	for {
		p.mu.Lock()
		var head *confirmation
		if len(p.pending) > 0 {
			head = p.pending[0]
		}
		p.mu.Unlock()
		var headDone <-chan struct{}
		if head != nil {
			headDone = head.dc.Done()
		}
		select {
		case <-headDone:
			drainReturns()
			// Settle the head and every confirmation after it that is
			// done too: a multiple ack settles many at once.
			p.mu.Lock()
			n := 0
			for n < len(p.pending) && isDone(p.pending[n].dc) {
				p.pending[n].settle()
				p.pending[n] = nil
				n++
			}
			p.pending = p.pending[n:]
			p.mu.Unlock()
		case <-p.wake:
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			onReturn(returned(r))
		case err, ok := <-closes:
			if ok {
				if err != nil {
					p.b.log.Debug("rabbitmq: publisher channel closed", "err", p.b.scrub(err).Error())
					p.mu.Lock()
					p.closeErr = err
					p.mu.Unlock()
				}
				continue // amqp091 closes closes next
			}
			// amqp091 closes returns next, then nacks every deferred
			// confirmation still pending.
			if returns != nil {
				for r := range returns {
					onReturn(returned(r))
				}
			}
			p.mu.Lock()
			p.finished = true
			rest := p.pending
			p.pending = nil
			p.mu.Unlock()
			for _, c := range rest {
				<-c.dc.Done()
				c.settle()
			}
			return
		}
	}
}

func isDone(dc *amqp.DeferredConfirmation) bool {
	select {
	case <-dc.Done():
		return true
	default:
		return false
	}
}

func returned(r amqp.Return) broker.Returned {
	return broker.Returned{
		Message: broker.Message{
			MessageID:     r.MessageId,
			CorrelationID: r.CorrelationId,
			Type:          r.Type,
			AppID:         r.AppId,
			ContentType:   r.ContentType,
			Timestamp:     timestamp(r.Timestamp),
			Headers:       normalizeHeaders(r.Headers),
			Body:          r.Body,
		},
		Exchange:   r.Exchange,
		RoutingKey: r.RoutingKey,
		Reason:     fmt.Sprintf("%d %s", r.ReplyCode, r.ReplyText),
	}
}

// Publish sends m as a persistent message. It does not wait for the
// confirm.
func (p *publisher) Publish(ctx context.Context, exchange, routingKey string, m broker.Message) (broker.Confirmation, error) {
	select {
	case <-p.done:
		return nil, fmt.Errorf("rabbitmq: publish: %w", broker.ErrClosed)
	default:
	}
	// amqp091 shuts the whole connection down on a short string it cannot
	// encode, and every publisher and consumer on it with it: refuse such a
	// message here, alone.
	if err := broker.CheckMessage(exchange, routingKey, m); err != nil {
		return nil, fmt.Errorf("rabbitmq: publish message %.64q: %w", m.MessageID, err)
	}
	if err := p.opts.CheckExchange(exchange); err != nil {
		return nil, fmt.Errorf("rabbitmq: publish message %.64q: %w", m.MessageID, err)
	}
	headers, err := toTable(m.Headers)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: publish message %q: %w: %w", m.MessageID, broker.ErrRefused, err)
	}
	if bucket := broker.MessageBucket(m); bucket >= 0 && !p.opts.QueueOnly {
		// Bindings with buckets route by it (see bucketKey). toTable may
		// return the caller's own map, which is not Publish's to change.
		withCC := make(amqp.Table, len(headers)+1)
		maps.Copy(withCC, headers)
		withCC[headerCC] = []any{bucketKey(bucket, routingKey)}
		headers = withCC
	}
	msg := amqp.Publishing{
		Headers:       headers,
		ContentType:   m.ContentType,
		DeliveryMode:  amqp.Persistent,
		CorrelationId: m.CorrelationID,
		MessageId:     m.MessageID,
		Type:          m.Type,
		AppId:         m.AppID,
		Body:          m.Body,
	}
	if !m.Timestamp.IsZero() {
		msg.Timestamp = m.Timestamp
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, routingKey, p.opts.Mandatory, false, msg)
	if err != nil {
		return nil, p.b.wrap("publish", err)
	}
	c := &confirmation{dc: dc, done: make(chan struct{})}
	p.mu.Lock()
	if p.finished {
		// The channel closed as we published: amqp091 nacks dc now.
		p.mu.Unlock()
		<-dc.Done()
		c.settle()
		return c, nil
	}
	idle := len(p.pending) == 0
	p.pending = append(p.pending, c)
	p.mu.Unlock()
	if idle {
		// The watcher waits on the head's confirmation when there is
		// one, and on wake only when there is none.
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return c, nil
}

// Done is closed when the publisher's channel has closed and its
// confirmations have settled.
func (p *publisher) Done() <-chan struct{} { return p.done }

// Err says why the publisher stopped, once Done is closed (see
// broker.ErrSource). A channel the server closed with PRECONDITION_FAILED
// was closed on one message (over max_message_size, say): that error wraps
// broker.ErrRefused. Anything else, a lost connection above all, wraps
// broker.ErrClosed only.
func (p *publisher) Err() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	p.mu.Lock()
	cause := p.closeErr
	p.mu.Unlock()
	switch {
	case cause == nil:
		return fmt.Errorf("rabbitmq: publisher: %w", broker.ErrClosed)
	case cause.Server && cause.Code == amqp.PreconditionFailed:
		return fmt.Errorf("rabbitmq: the broker closed the channel on a message it refuses: %w: %w: %w",
			broker.ErrRefused, broker.ErrClosed, p.b.scrub(cause))
	}
	return fmt.Errorf("rabbitmq: publisher: %w: %w", broker.ErrClosed, p.b.scrub(cause))
}

// Close closes the channel. Confirmations still pending settle as not
// acked.
func (p *publisher) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if cerr := p.ch.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = p.b.wrap("close publisher", cerr)
		}
	})
	<-p.done
	return err
}

// toTable converts application headers to an AMQP table. The bus's own
// headers (strings and int64) pass as they are; other integer widths and
// nested maps are converted; anything AMQP cannot carry is an error.
func toTable(h map[string]any) (amqp.Table, error) {
	if h == nil {
		return nil, nil
	}
	ok := true
	for _, v := range h {
		switch v.(type) {
		case string, int64, bool, int32, int, []byte, float64:
		default:
			ok = false
		}
	}
	if ok {
		return amqp.Table(h), nil
	}
	t := make(amqp.Table, len(h))
	for k, v := range h {
		cv, err := toField(v)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		t[k] = cv
	}
	return t, nil
}

func toField(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, byte, int8, int, int16, int32, int64, uint16, uint32, float32, float64, string, []byte, amqp.Decimal, time.Time:
		return v, nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("value %d does not fit a signed 64-bit integer", x)
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("value %d does not fit a signed 64-bit integer", x)
		}
		return int64(x), nil
	case map[string]any:
		return toTable(x)
	case amqp.Table:
		return toTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			ce, err := toField(e)
			if err != nil {
				return nil, err
			}
			out[i] = ce
		}
		return out, nil
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("AMQP headers cannot carry a %T", v)
}
