package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
)

// subscription consumes a queue on a channel of its own.
type subscription struct {
	b     *Broker
	ch    *amqp.Channel
	queue string
	out   chan broker.Delivery
	stop  chan struct{}
	done  chan struct{}

	closeOnce sync.Once
	mu        sync.Mutex
	err       error
}

// Consume subscribes to queue on a channel of its own, with a prefetch of
// opts.Prefetch (DefaultPrefetch if not positive). A queue that does not
// exist gets an error wrapping broker.ErrNotFound. The subscription ends
// when its connection fails, when the queue is deleted, or at Close.
func (b *Broker) Consume(ctx context.Context, queue string, opts broker.ConsumeOptions) (broker.Subscription, error) {
	op := fmt.Sprintf("consume queue %q", queue)
	prefetch := opts.Prefetch
	if prefetch <= 0 {
		prefetch = DefaultPrefetch
	}
	for {
		ch, s, err := b.channel(ctx, op)
		if err != nil {
			return nil, err
		}
		sub := &subscription{
			b: b, ch: ch, queue: queue,
			out:  make(chan broker.Delivery),
			stop: make(chan struct{}),
			done: make(chan struct{}),
		}
		closes := ch.NotifyClose(make(chan *amqp.Error, 1))
		cancels := ch.NotifyCancel(make(chan string, 1))
		var deliveries <-chan amqp.Delivery
		err = ch.Qos(prefetch, 0, false)
		if err == nil {
			// amqp091 makes up a unique tag when given none.
			deliveries, err = ch.Consume(queue, opts.Tag, false, false, false, false, nil)
		}
		if err != nil {
			_ = ch.Close()
			if s.conn.IsClosed() && ctx.Err() == nil {
				continue
			}
			return nil, b.wrap(op, err)
		}
		if !b.goTracked(func() { sub.run(deliveries, closes, cancels) }) {
			_ = ch.Close()
			return nil, fmt.Errorf("rabbitmq: %s: %w", op, broker.ErrClosed)
		}
		return sub, nil
	}
}

// run maps deliveries until the channel closes, the server cancels the
// consumer, or Close.
func (s *subscription) run(deliveries <-chan amqp.Delivery, closes chan *amqp.Error, cancels chan string) {
	defer close(s.done)
	defer close(s.out)
	ack := acker{ch: s.ch}
	for {
		select {
		case <-s.stop:
			return
		case d, ok := <-deliveries:
			if !ok {
				s.ended(closes, cancels)
				return
			}
			ack.tag = d.DeliveryTag
			select {
			case s.out <- delivery(&d, ack):
			case <-s.stop:
				return
			}
		}
	}
}

// ended records why the deliveries stopped.
func (s *subscription) ended(closes chan *amqp.Error, cancels chan string) {
	select {
	case <-s.stop:
		return // Close: no error
	default:
	}
	var err error
	select {
	case amqpErr := <-closes:
		if amqpErr != nil {
			err = s.b.wrap(fmt.Sprintf("consume queue %q", s.queue), amqpErr)
			if !errors.Is(err, broker.ErrClosed) {
				err = fmt.Errorf("%w: %w", broker.ErrClosed, err)
			}
		}
	default:
	}
	if err == nil {
		select {
		case <-cancels:
			err = fmt.Errorf("rabbitmq: consume queue %q: the server cancelled the subscription (was the queue deleted?): %w", s.queue, broker.ErrClosed)
			// The channel is of no further use.
			_ = s.ch.Close()
		default:
			err = fmt.Errorf("rabbitmq: consume queue %q: the channel closed: %w", s.queue, broker.ErrClosed)
		}
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *subscription) Deliveries() <-chan broker.Delivery { return s.out }

func (s *subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close cancels the subscription by closing its channel: the server
// requeues the messages not acked, including those delivered and not yet
// read from Deliveries.
func (s *subscription) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		if cerr := s.ch.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = s.b.wrap("close subscription", cerr)
		}
	})
	<-s.done
	return err
}

// acker settles one delivery on its channel.
type acker struct {
	ch  *amqp.Channel
	tag uint64
}

func (a acker) Ack() error {
	if err := a.ch.Ack(a.tag, false); err != nil {
		return ackError("ack", err)
	}
	return nil
}

func (a acker) Nack(requeue bool) error {
	if err := a.ch.Nack(a.tag, false, requeue); err != nil {
		return ackError("nack", err)
	}
	return nil
}

// ackError reports a settlement on a closed channel as broker.ErrClosed: the
// server has requeued the message already. amqp091's errors here never carry
// a URL.
func ackError(op string, err error) error {
	if errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("rabbitmq: %s: %w (the message went back to the queue)", op, broker.ErrClosed)
	}
	return fmt.Errorf("rabbitmq: %s: %w", op, err)
}

// delivery maps an amqp091 delivery.
func delivery(d *amqp.Delivery, ack broker.Acknowledger) broker.Delivery {
	headers := normalizeHeaders(d.Headers)
	if _, ok := headers[headerCC]; ok && broker.MessageBucket(broker.Message{Headers: headers}) >= 0 {
		// The publisher added it for the bucket bindings: not the sender's.
		delete(headers, headerCC)
	}
	return broker.Delivery{
		Message: broker.Message{
			MessageID:     d.MessageId,
			CorrelationID: d.CorrelationId,
			Type:          d.Type,
			AppID:         d.AppId,
			ContentType:   d.ContentType,
			Timestamp:     timestamp(d.Timestamp),
			Headers:       headers,
			Body:          d.Body,
		},
		Exchange:     d.Exchange,
		RoutingKey:   d.RoutingKey,
		Redelivered:  d.Redelivered,
		Acknowledger: ack,
	}
}

func timestamp(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// normalizeHeaders returns h as a plain map with every integer as int64 and
// nested tables as plain maps.
func normalizeHeaders(h amqp.Table) map[string]any {
	if h == nil {
		return nil
	}
	return broker.HeaderValue(h).(map[string]any)
}

// browser takes messages with basic.get on a channel of its own.
type browser struct {
	b     *Broker
	ch    *amqp.Channel
	queue string
	op    string
}

// Browse opens a channel for taking queue's messages one at a time. A queue
// that does not exist gets an error wrapping broker.ErrNotFound.
func (b *Broker) Browse(ctx context.Context, queue string) (broker.Browser, error) {
	op := fmt.Sprintf("browse queue %q", queue)
	for {
		ch, s, err := b.channel(ctx, op)
		if err != nil {
			return nil, err
		}
		// Check the queue now rather than at the first Next.
		if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
			_ = ch.Close()
			if s.conn.IsClosed() && ctx.Err() == nil {
				continue
			}
			return nil, b.wrap(op, err)
		}
		return &browser{b: b, ch: ch, queue: queue, op: op}, nil
	}
}

// Next takes the next message with basic.get. Once the connection has
// failed, it returns an error wrapping broker.ErrClosed: the messages taken
// went back to the queue.
func (br *browser) Next(ctx context.Context) (broker.Delivery, bool, error) {
	if err := ctx.Err(); err != nil {
		return broker.Delivery{}, false, fmt.Errorf("rabbitmq: %s: %w", br.op, err)
	}
	d, ok, err := br.ch.Get(br.queue, false)
	if err != nil {
		return broker.Delivery{}, false, br.b.wrap(br.op, err)
	}
	if !ok {
		return broker.Delivery{}, false, nil
	}
	return delivery(&d, acker{ch: br.ch, tag: d.DeliveryTag}), true, nil
}

// Close closes the channel: the server requeues every message taken and not
// acked.
func (br *browser) Close() error {
	if err := br.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return br.b.wrap("close browser", err)
	}
	return nil
}
