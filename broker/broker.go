// Package broker defines what the bus needs from a message broker: a durable
// topic exchange, durable queues bound to it, publisher confirms, consumers
// with acknowledgements, and dead-lettering with a per-queue time to live,
// which is how delayed retries work; and for consumer groups that scale
// over processes in order, bindings narrowed to the buckets streams hash
// into (bucket.go), single active consumer, and dead-lettering through an
// exchange.
//
// Two implementations exist: broker/rabbitmq (production) and broker/memory
// (the in-process broker of the embedded default). Both pass the conformance
// suite in broker/brokertest, so the relay and the consumer runtime run
// unchanged on either.
//
// This package also maps envelopes to messages and back (envelope.go): the
// relay, replay and the consumer runtime share that mapping.
package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
)

// Sentinel errors. Implementations wrap them with context.
var (
	// ErrClosed reports use of a broker, publisher or subscription after
	// Close, or after its connection was lost.
	ErrClosed = errors.New("broker: closed")
	// ErrUnavailable reports that no broker node can be reached.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrNotFound reports a queue or exchange that does not exist.
	ErrNotFound = errors.New("broker: not found")
	// ErrNacked reports a message the broker refused to take responsibility
	// for (a negative publisher confirm).
	ErrNacked = errors.New("broker: message nacked")
)

// NamelessExchange is AMQP's nameless direct exchange (the "default
// exchange" of the AMQP specification): it routes a message to the queue
// named by its routing key. Publishing to it reaches one queue directly.
const NamelessExchange = ""

// DefaultEventsExchange is the topic exchange the relay publishes events to,
// and consumers bind to, unless configured otherwise (EVENTBUS_EXCHANGE).
// It is declared here, the leaf every part that names an exchange imports.
const DefaultEventsExchange = "edupulse.events"

// Message is one message: its AMQP-style properties, headers and body.
// Messages are always persistent.
type Message struct {
	MessageID     string
	CorrelationID string
	Type          string
	AppID         string
	ContentType   string
	Timestamp     time.Time
	// Headers are application headers. The bus sets string and int64
	// values; implementations return integers of any width as int64, and
	// other values as the broker gave them.
	Headers map[string]any
	Body    []byte
}

// Header returns the string value of header key, or "".
func (m Message) Header(key string) string {
	s, _ := m.Headers[key].(string)
	return s
}

// IntHeader returns the integer value of header key, or 0.
func (m Message) IntHeader(key string) int64 {
	switch v := m.Headers[key].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	}
	return 0
}

// Binding binds a queue to an exchange with a topic pattern: words separated
// by dots, '*' matching one word and '#' zero or more.
type Binding struct {
	Exchange string
	Pattern  string
	// Buckets, when not empty, narrows the binding to the messages whose
	// HeaderBucket names a bucket in the set: the binding takes a message
	// that Pattern matches only if its bucket is one of these. A message
	// without a valid bucket header matches no such binding.
	Buckets BucketSet
}

// QueueSpec describes a durable queue.
type QueueSpec struct {
	Name     string
	Bindings []Binding
	// DeadLetterQueue, when set, receives the messages that expire (see
	// MessageTTL) or that a consumer rejects without requeueing.
	DeadLetterQueue string
	// MessageTTL, when set, expires each message this long after it
	// entered the queue. With DeadLetterQueue it delays messages: a retry
	// queue holds a message for MessageTTL, then hands it on.
	MessageTTL time.Duration
	// DeadLetterExchange, when set instead of DeadLetterQueue, dead-letters
	// through this exchange, with each message's routing key and headers:
	// the bindings there decide where it goes. A sharded consumer group's
	// retry queues return each message to its shard this way.
	DeadLetterExchange string
	// SingleActiveConsumer delivers the queue to one subscription at a
	// time, the oldest; the others wait. When it ends, the next oldest
	// takes over, and gets first the messages the previous one had not
	// acknowledged, in queue order. Changing it on an existing queue fails.
	SingleActiveConsumer bool
}

// QueueInfo is the state of a queue.
type QueueInfo struct {
	Name      string
	Messages  int // ready to deliver
	Consumers int
}

// Broker is a connection to a message broker. Implementations reconnect on
// their own when the connection fails, and declare again the topology
// declared through them; publishers and subscriptions that were open end,
// and their users open new ones. A Broker is safe for concurrent use.
type Broker interface {
	// DeclareExchange declares a durable topic exchange. It is idempotent.
	DeclareExchange(ctx context.Context, name string) error
	// DeclareQueue declares a durable queue and its bindings. It is
	// idempotent for the same spec.
	DeclareQueue(ctx context.Context, spec QueueSpec) error
	// DeleteQueue deletes a queue and its messages.
	DeleteQueue(ctx context.Context, name string) error
	// DeleteExchange deletes an exchange.
	DeleteExchange(ctx context.Context, name string) error
	// InspectQueue returns a queue's state, or an error wrapping ErrNotFound.
	InspectQueue(ctx context.Context, name string) (QueueInfo, error)
	// NewPublisher opens a publisher with confirms. It waits for a
	// connection while ctx allows.
	NewPublisher(ctx context.Context, opts PublisherOptions) (Publisher, error)
	// Consume subscribes to a queue. It waits for a connection while ctx
	// allows.
	Consume(ctx context.Context, queue string, opts ConsumeOptions) (Subscription, error)
	// Browse opens a session that takes a queue's messages one at a time.
	// Messages it took and did not ack go back to the queue when it closes.
	Browse(ctx context.Context, queue string) (Browser, error)
	// Ping checks that the broker can be reached.
	Ping(ctx context.Context) error
	// Close closes the connection. Open publishers and subscriptions end.
	Close() error
}

// PublisherOptions configures a publisher.
type PublisherOptions struct {
	// Mandatory asks the broker to return messages that no queue receives,
	// instead of dropping them. OnReturn is told about each.
	Mandatory bool
	OnReturn  func(Returned)
	// QueueOnly says that every message goes through the default exchange
	// to the queue its routing key names, and is never routed by bucket
	// after that: not by the queue's dead-lettering either, as the retry
	// queues of sharded groups do (they dead-letter through an exchange).
	// The broker may then leave out what it sends only to route by bucket:
	// RabbitMQ's CC key, which costs it several microseconds a message.
	// Publish refuses, with ErrRefused, a message to any other exchange.
	QueueOnly bool
}

// CheckExchange returns an error wrapping ErrRefused when a publisher with
// o may not publish to exchange. Both brokers check it on every Publish.
func (o PublisherOptions) CheckExchange(exchange string) error {
	if o.QueueOnly && exchange != NamelessExchange {
		return fmt.Errorf("%w: a queue-only publisher publishes through the default exchange only, not %q", ErrRefused, exchange)
	}
	return nil
}

// Returned is a message the broker could not route.
type Returned struct {
	Message
	Exchange, RoutingKey string
	Reason               string
}

// Publisher publishes with publisher confirms. Publish does not wait for the
// confirm: callers keep many messages in flight and wait on their
// Confirmations, which the broker settles in publish order. A Publisher is
// not safe for concurrent use: order matters, so one goroutine publishes.
type Publisher interface {
	// Publish sends m to exchange with routingKey.
	Publish(ctx context.Context, exchange, routingKey string, m Message) (Confirmation, error)
	// Done is closed when the publisher can publish no more, because it
	// was closed or its connection failed. Pending confirmations then
	// settle as not acked.
	Done() <-chan struct{}
	// Close closes the publisher.
	Close() error
}

// Confirmation is the broker's verdict on one published message.
type Confirmation interface {
	// Done is closed when the broker has acked or nacked the message, or
	// when the publisher failed before it did.
	Done() <-chan struct{}
	// Acked reports whether the broker took responsibility for the
	// message. It is meaningful once Done is closed.
	Acked() bool
}

// ConsumeOptions configures a subscription.
type ConsumeOptions struct {
	// Prefetch is how many unacknowledged messages the broker sends ahead.
	Prefetch int
	// Tag names the consumer, for the broker's management views.
	Tag string
}

// Subscription delivers a queue's messages until it is closed or its
// connection fails.
type Subscription interface {
	// Deliveries is closed when the subscription ends; Err then says why
	// (nil after Close).
	Deliveries() <-chan Delivery
	Err() error
	// Close cancels the subscription. Unacknowledged messages go back to
	// the queue.
	Close() error
}

// Browser takes a queue's messages one at a time, for tools such as the
// dead-letter browser.
type Browser interface {
	// Next takes the next message. ok is false when the queue is empty.
	Next(ctx context.Context) (d Delivery, ok bool, err error)
	// Close returns every message taken and not acked to the queue.
	Close() error
}

// Acknowledger settles one delivery; implementations provide it.
type Acknowledger interface {
	Ack() error
	// Nack rejects the delivery. With requeue it goes back to the queue;
	// without, to the queue's dead-letter queue, or nowhere.
	Nack(requeue bool) error
}

// Delivery is a message as a consumer receives it.
type Delivery struct {
	Message
	Exchange    string
	RoutingKey  string
	Redelivered bool
	Acknowledger
}

// HeaderValue returns v as every broker here hands header values to
// consumers: integers of any width as int64 (as AMQP tables come back), and
// maps and slices converted the same way, recursively, into new ones. Named
// map types, such as an AMQP library's table, become map[string]any.
func HeaderValue(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case uint8:
		return int64(x)
	case int16:
		return int64(x)
	case uint16:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case int:
		return int64(x)
	case uint:
		if uint64(x) > math.MaxInt64 {
			return x // as it is, rather than wrapped around
		}
		return int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return x
		}
		return int64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = HeaderValue(e)
		}
		return out
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = HeaderValue(it.Value().Interface())
		}
		return out
	}
	return v
}
