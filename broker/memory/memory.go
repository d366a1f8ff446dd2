// Package memory is the in-process broker of the embedded default: with no
// broker URL, the bus runs on it unchanged, since it passes the same
// conformance suite (broker/brokertest) as RabbitMQ.
//
// It has topic exchanges with AMQP matching ('*' one word, '#' zero or
// more), the default exchange, FIFO queues, prefetch, acks, nacks with and
// without requeue, dead-letter queues, per-queue time to live (delayed
// retries), confirms, mandatory returns, browsing, competing consumers
// served round-robin, single active consumer, dead-lettering through an
// exchange, and bindings narrowed to buckets (broker.HeaderBucket), which
// it matches on the header itself.
//
// It keeps messages in memory only: they are lost when the process ends.
// That is by design: the event store is the record. The relay publishes
// through [Broker.DeliveryConfirmed], whose confirms wait until consumers
// have settled each message, so its checkpoint never passes an event still
// in a queue, and after a restart it publishes every such event again.
// Queues have no length limit.
//
// Publishing is synchronous: a message is in its queues when Publish
// returns, and (except through DeliveryConfirmed) its confirmation is
// already settled. No goroutine runs per
// message or per subscription; a subscription's Deliveries channel is
// buffered to its prefetch, so handing a message over never blocks. Timers
// expire messages of queues with a time to live.
//
// Messages are copied on publish. Deliveries share their message with the
// queue: treat Body and Headers as read-only.
package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/topic"
)

// DefaultPrefetch is the prefetch of a subscription whose
// ConsumeOptions.Prefetch is not positive.
const DefaultPrefetch = 100

// maxPrefetch caps prefetch, as AMQP does (a 16-bit field).
const maxPrefetch = 65535

// routeCacheMax bounds an exchange's cache of routing keys to queues.
const routeCacheMax = 4096

// Broker is an in-process broker. It is safe for concurrent use.
type Broker struct {
	// mu guards the topology: exchanges, queues, bindings, closed.
	mu         sync.RWMutex
	exchanges  map[string]*exchange
	queues     map[string]*queue
	publishers map[*publisher]struct{}
	closed     bool

	// timers counts TTL timer callbacks running, for Close to wait.
	timers sync.WaitGroup

	// receipts are the unsettled confirmations of delivery-confirmed
	// publishers.
	receipts receipts

	// maxMessageSize refuses bodies over it, when positive (see
	// SetMaxMessageSize).
	maxMessageSize atomic.Int64
}

// SetMaxMessageSize makes Publish refuse, with broker.ErrRefused, a message
// whose body is over n bytes, as RabbitMQ's max_message_size does; n <= 0
// removes the limit (the default). It takes effect at once.
func (b *Broker) SetMaxMessageSize(n int) { b.maxMessageSize.Store(int64(n)) }

var _ broker.Broker = (*Broker)(nil)

// exchange is a topic exchange.
type exchange struct {
	name     string
	bindings []binding

	cacheMu sync.Mutex
	cache   map[string]route // routing key -> where it goes, reset on changes
}

// route is where an exchange sends a routing key: queues, and the bucket
// bindings, which depend on each message's bucket.
type route struct {
	queues  []*queue
	buckets []binding
}

type binding struct {
	raw     string
	pattern topic.Pattern
	buckets broker.BucketSet
	q       *queue
}

// New returns an empty broker.
func New() *Broker {
	return &Broker{
		exchanges:  map[string]*exchange{},
		queues:     map[string]*queue{},
		publishers: map[*publisher]struct{}{},
	}
}

func errClosed(op string) error { return fmt.Errorf("memory: %s: %w", op, broker.ErrClosed) }

// DeclareExchange declares a topic exchange. Declaring the default
// exchange "" does nothing.
func (b *Broker) DeclareExchange(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: declare exchange %q: %w", name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed("declare exchange")
	}
	if name == broker.NamelessExchange {
		return nil
	}
	if _, ok := b.exchanges[name]; !ok {
		b.exchanges[name] = &exchange{name: name}
	}
	return nil
}

// DeclareQueue declares a queue and adds its bindings. Declaring an existing
// queue with another dead-letter queue or time to live fails, as on
// RabbitMQ; binding to an exchange that does not exist fails with
// broker.ErrNotFound, and declares nothing.
func (b *Broker) DeclareQueue(ctx context.Context, spec broker.QueueSpec) error {
	op := fmt.Sprintf("declare queue %q", spec.Name)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	if spec.Name == "" {
		return errors.New("memory: declare queue: the queue needs a name")
	}
	if spec.MessageTTL < 0 {
		return fmt.Errorf("memory: %s: negative time to live %v", op, spec.MessageTTL)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed(op)
	}
	if spec.DeadLetterQueue != "" && spec.DeadLetterExchange != "" {
		return fmt.Errorf("memory: %s: set a dead-letter queue or a dead-letter exchange, not both", op)
	}
	for _, bind := range spec.Bindings {
		if bind.Exchange == broker.NamelessExchange {
			return fmt.Errorf("memory: %s: cannot bind to the default exchange: it routes to every queue by name already", op)
		}
		if err := topic.Validate(bind.Pattern); err != nil {
			return fmt.Errorf("memory: %s: bind to exchange %q: %w", op, bind.Exchange, err)
		}
		if _, ok := b.exchanges[bind.Exchange]; !ok {
			return fmt.Errorf("memory: %s: bind to exchange %q: %w", op, bind.Exchange, broker.ErrNotFound)
		}
	}
	q, ok := b.queues[spec.Name]
	if ok {
		if q.deadLetter != spec.DeadLetterQueue || q.deadLetterExchange != spec.DeadLetterExchange ||
			q.ttl != spec.MessageTTL || q.singleActive != spec.SingleActiveConsumer {
			return fmt.Errorf("memory: %s: it exists with dead-letter queue %q, dead-letter exchange %q, time to live %v and single active consumer %v: delete it, or declare it as it is",
				op, q.deadLetter, q.deadLetterExchange, q.ttl, q.singleActive)
		}
	} else {
		q = newQueue(b, spec)
		b.queues[spec.Name] = q
	}
	for _, bind := range spec.Bindings {
		x := b.exchanges[bind.Exchange]
		if slices.ContainsFunc(x.bindings, func(e binding) bool {
			return e.q == q && e.raw == bind.Pattern && e.buckets == bind.Buckets
		}) {
			continue
		}
		x.bindings = append(x.bindings, binding{raw: bind.Pattern, pattern: topic.Compile(bind.Pattern), buckets: bind.Buckets, q: q})
		x.resetCache()
	}
	return nil
}

func (x *exchange) resetCache() {
	x.cacheMu.Lock()
	x.cache = nil
	x.cacheMu.Unlock()
}

// DeleteQueue deletes a queue, its messages and its bindings. Its
// subscriptions end. Deleting a queue that does not exist succeeds.
func (b *Broker) DeleteQueue(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete queue %q: %w", name, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed("delete queue")
	}
	q, ok := b.queues[name]
	if ok {
		delete(b.queues, name)
		for _, x := range b.exchanges {
			n := len(x.bindings)
			x.bindings = slices.DeleteFunc(x.bindings, func(e binding) bool { return e.q == q })
			if len(x.bindings) != n {
				x.resetCache()
			}
		}
	}
	b.mu.Unlock()
	if ok {
		q.shutdown(fmt.Errorf("memory: queue %q was deleted: %w", name, broker.ErrClosed))
	}
	return nil
}

// DeleteExchange deletes an exchange and its bindings. Deleting an exchange
// that does not exist succeeds.
func (b *Broker) DeleteExchange(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete exchange %q: %w", name, err)
	}
	if name == broker.NamelessExchange {
		return errors.New("memory: delete exchange: the default exchange cannot be deleted")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed("delete exchange")
	}
	delete(b.exchanges, name)
	return nil
}

// InspectQueue returns a queue's ready messages and consumers.
func (b *Broker) InspectQueue(ctx context.Context, name string) (broker.QueueInfo, error) {
	q, err := b.queue(ctx, "inspect queue", name)
	if err != nil {
		return broker.QueueInfo{}, err
	}
	return q.info(), nil
}

// queue returns the queue called name.
func (b *Broker) queue(ctx context.Context, op, name string) (*queue, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: %s %q: %w", op, name, err)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, errClosed(op)
	}
	q, ok := b.queues[name]
	if !ok {
		return nil, fmt.Errorf("memory: %s %q: %w", op, name, broker.ErrNotFound)
	}
	return q, nil
}

// route returns the queues a message m to exchange with key reaches. The
// slice may be shared with the cache: read it only.
func (b *Broker) route(exchangeName, key string, m broker.Message) ([]*queue, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, errClosed("publish")
	}
	if exchangeName == broker.NamelessExchange {
		if q, ok := b.queues[key]; ok {
			return []*queue{q}, nil
		}
		return nil, nil
	}
	x, ok := b.exchanges[exchangeName]
	if !ok {
		return nil, fmt.Errorf("memory: publish to exchange %q: %w", exchangeName, broker.ErrNotFound)
	}
	r := x.routeOf(key)
	if len(r.buckets) == 0 {
		return r.queues, nil
	}
	bucket := broker.MessageBucket(m)
	qs := slices.Clone(r.queues)
	for _, bind := range r.buckets {
		if bind.buckets.Has(bucket) && !slices.Contains(qs, bind.q) {
			qs = append(qs, bind.q)
		}
	}
	return qs, nil
}

// routeOf returns where x sends key, from the cache when it can.
func (x *exchange) routeOf(key string) route {
	x.cacheMu.Lock()
	defer x.cacheMu.Unlock()
	if r, ok := x.cache[key]; ok {
		return r
	}
	words := topic.Words(key)
	var r route
	for _, bind := range x.bindings {
		if !bind.pattern.MatchWords(words) {
			continue
		}
		if bind.buckets != 0 {
			r.buckets = append(r.buckets, bind)
		} else if !slices.Contains(r.queues, bind.q) {
			r.queues = append(r.queues, bind.q)
		}
	}
	// A queue that the key reaches whatever the bucket needs no bucket
	// binding.
	r.buckets = slices.DeleteFunc(r.buckets, func(bind binding) bool { return slices.Contains(r.queues, bind.q) })
	if x.cache == nil || len(x.cache) >= routeCacheMax {
		x.cache = make(map[string]route)
	}
	x.cache[key] = r
	return r
}

// deadLetter enqueues dead letters in their queues, if those exist, or
// routes them through their exchange.
func (b *Broker) deadLetter(letters []deadLetter) {
	for _, dl := range letters {
		if dl.exchange != "" {
			b.deadLetterThrough(dl)
			continue
		}
		b.mu.RLock()
		q, ok := b.queues[dl.queue]
		closed := b.closed
		b.mu.RUnlock()
		if ok && !closed {
			q.enqueue(dl.m)
		} else {
			dl.m.receipt.release()
		}
	}
}

// deadLetterThrough routes a dead letter through its dead-letter exchange
// with its own routing key. A copy in each further queue counts towards
// the message's receipt too.
func (b *Broker) deadLetterThrough(dl deadLetter) {
	queues, err := b.route(dl.exchange, dl.m.routingKey, dl.m.m)
	if err != nil || len(queues) == 0 {
		dl.m.receipt.release()
		return
	}
	dl.m.receipt.add(len(queues) - 1)
	for i, q := range queues {
		m := dl.m
		if i > 0 {
			c := *dl.m
			c.m = own(dl.m.m)
			m = &c
		}
		q.enqueue(m)
	}
}

// Ping reports whether the broker is open.
func (b *Broker) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: ping: %w", err)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed("ping")
	}
	return nil
}

// Close ends every publisher and subscription and drops every message.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	queues := slices.Collect(maps.Values(b.queues))
	publishers := slices.Collect(maps.Keys(b.publishers))
	b.queues = map[string]*queue{}
	b.exchanges = map[string]*exchange{}
	b.publishers = map[*publisher]struct{}{}
	b.mu.Unlock()
	for _, p := range publishers {
		p.end()
	}
	for _, q := range queues {
		q.shutdown(errClosed("broker closed"))
	}
	b.timers.Wait()
	return nil
}

// timerEnter registers a running timer callback; false once closed.
func (b *Broker) timerEnter() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false
	}
	b.timers.Add(1)
	return true
}

// now is the broker's clock.
func now() time.Time { return time.Now() }
