package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Consumer settings, the same for every scenario.
const (
	consumerPrefetch = 2000
	ackEvery         = 256                  // acknowledge this many deliveries at once
	ackAfter         = 5 * time.Millisecond // or what has arrived within this time
)

// consumer counts the messages that reach a scenario's queue, acknowledging
// them in groups (multiple acks), so that it costs RabbitMQ little and the
// same in every scenario. A message counts when it is received.
type consumer struct {
	conn     *amqp.Connection
	received atomic.Int64
	last     atomic.Int64 // when the last message arrived, Unix ns
	wg       sync.WaitGroup
	err      atomic.Pointer[error]
}

// startConsumer declares queue as a fresh quorum queue bound to every
// routing key of exchange (a durable topic exchange, declared here too) and
// consumes it.
func startConsumer(ctx context.Context, amqpURL, exchange, queue string) (*consumer, error) {
	conn, err := dialAMQP(ctx, amqpURL, "peers-consumer")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = conn.Close()
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("consumer: open a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("consumer: declare exchange %s: %w", exchange, err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return nil, fmt.Errorf("consumer: declare quorum queue %s: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		return nil, fmt.Errorf("consumer: bind %s to %s: %w", queue, exchange, err)
	}
	if err := ch.Qos(consumerPrefetch, 0, false); err != nil {
		return nil, fmt.Errorf("consumer: set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(queue, "peers-counter", false, true, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consumer: consume %s: %w", queue, err)
	}
	c := &consumer{conn: conn}
	c.wg.Go(func() { c.count(ch, deliveries) })
	ok = true
	return c, nil
}

func (c *consumer) count(ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	ticker := time.NewTicker(ackAfter)
	defer ticker.Stop()
	var lastTag uint64
	pending := 0
	ack := func() {
		if pending == 0 {
			return
		}
		if err := ch.Ack(lastTag, true); err != nil {
			c.fail(fmt.Errorf("consumer: ack: %w", err))
		}
		pending = 0
	}
	for {
		select {
		case d, open := <-deliveries:
			if !open {
				return
			}
			c.received.Add(1)
			c.last.Store(time.Now().UnixNano())
			lastTag = d.DeliveryTag
			if pending++; pending >= ackEvery {
				ack()
			}
		case <-ticker.C:
			ack()
		}
	}
}

func (c *consumer) fail(err error) { c.err.CompareAndSwap(nil, &err) }

// waitFor waits until the consumer has received want messages in all, for
// at most bound.
func (c *consumer) waitFor(ctx context.Context, want int64, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for c.received.Load() < want {
		if e := c.err.Load(); e != nil {
			return *e
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the consumer received %d of %d messages within %v: %w",
				c.received.Load(), want, bound, errDrain)
		case <-tick.C:
		}
	}
	return nil
}

// errDrain reports that the consumer did not receive every event in time.
var errDrain = errors.New("not all events were delivered")

func (c *consumer) stop() {
	_ = c.conn.Close()
	c.wg.Wait()
}

// dialAMQP connects to RabbitMQ, bounded by ctx.
func dialAMQP(ctx context.Context, amqpURL, name string) (*amqp.Connection, error) {
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName(name)
	if dl, ok := ctx.Deadline(); ok {
		cfg.Dial = amqp.DefaultDial(time.Until(dl))
	} else {
		cfg.Dial = amqp.DefaultDial(10 * time.Second)
	}
	conn, err := amqp.DialConfig(amqpURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to RabbitMQ: %w", err)
	}
	return conn, nil
}

// dialConfirming connects to RabbitMQ and opens a channel in confirm mode,
// as every publisher of the comparison uses.
func dialConfirming(ctx context.Context, amqpURL, name string) (*amqp.Connection, *amqp.Channel, error) {
	conn, err := dialAMQP(ctx, amqpURL, name)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("open a confirming channel: %w", err)
	}
	return conn, ch, nil
}
