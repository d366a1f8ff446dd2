package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
)

// Queue arguments DeclareQueue sets.
const (
	argQueueType          = "x-queue-type"
	argMessageTTL         = "x-message-ttl"
	argDeadLetterExchange = "x-dead-letter-exchange"
	argDeadLetterKey      = "x-dead-letter-routing-key"
	argDeadLetterStrategy = "x-dead-letter-strategy"
	argOverflow           = "x-overflow"
	argSingleActive       = "x-single-active-consumer"
)

// QueueArgs returns the arguments DeclareQueue declares spec's queue with:
//
//   - x-queue-type=quorum: replicated, durable, and safe across node
//     failures in a cluster.
//   - x-message-ttl from MessageTTL, in milliseconds.
//   - with a DeadLetterQueue, x-dead-letter-exchange="" and
//     x-dead-letter-routing-key=<queue>, so dead letters go straight to that
//     queue through the default exchange; and x-dead-letter-strategy=
//     at-least-once with x-overflow=reject-publish (which that strategy
//     requires). At-least-once dead-lettering keeps a message in its queue
//     until the dead-letter queue has confirmed it, so a message leaving a
//     retry queue or rejected into the dead-letter queue is never lost on the
//     way; the default, at-most-once, drops it if anything fails in between.
//     reject-publish only matters with a length limit, which these queues do
//     not set. RabbitMQ 3.10 honours the strategy when the stream_queue
//     feature flag is on (it is by default); the flip side is that dead
//     letters wait in their queue while the dead-letter queue is missing.
//
// Operators who declare queues by other means use the same arguments, or
// DeclareQueue fails with the server's PRECONDITION_FAILED.
func QueueArgs(spec broker.QueueSpec) amqp.Table {
	args := amqp.Table{argQueueType: "quorum"}
	if spec.MessageTTL > 0 {
		args[argMessageTTL] = max(spec.MessageTTL.Milliseconds(), 1)
	}
	switch {
	case spec.DeadLetterQueue != "":
		args[argDeadLetterExchange] = ""
		args[argDeadLetterKey] = spec.DeadLetterQueue
		args[argDeadLetterStrategy] = "at-least-once"
		args[argOverflow] = "reject-publish"
	case spec.DeadLetterExchange != "":
		// No routing key: dead letters keep their own, and the exchange's
		// bindings route them.
		args[argDeadLetterExchange] = spec.DeadLetterExchange
		args[argDeadLetterStrategy] = "at-least-once"
		args[argOverflow] = "reject-publish"
	}
	if spec.SingleActiveConsumer {
		args[argSingleActive] = true
	}
	return args
}

// bucketKey is the extra routing key of a message in bucket: "b~<bucket>."
// followed by its routing key. RabbitMQ's topic exchanges cannot look at
// headers, so the publisher sends every message that carries a bucket
// (broker.HeaderBucket) with this key in its CC header too (sender-selected
// distribution: the exchange routes the message by each of its keys, and a
// queue that several keys reach gets it once). A binding with Buckets is
// then one topic binding per bucket, bucketKey(bucket, pattern), on the
// same exchange: no second hop, no headers exchange, no plugin. (A hop
// through a headers exchange cost two thirds of the publish throughput.)
// Bindings without buckets never see a difference: a pattern that matches
// the extra key matches the routing key too, and the queue gets the message
// once.
func bucketKey(bucket int, key string) string { return "b~" + strconv.Itoa(bucket) + "." + key }

// headerCC is the AMQP header of sender-selected routing keys.
const headerCC = "CC"

// maxBucketPattern is the longest pattern a binding with buckets takes: its
// bucket key must fit in AMQP's 255-byte routing keys.
var maxBucketPattern = broker.MaxShortString - len(bucketKey(broker.Buckets-1, ""))

// DeclareExchange declares a durable topic exchange. Declaring the default
// exchange "" does nothing: it always exists.
func (b *Broker) DeclareExchange(ctx context.Context, name string) error {
	if name == broker.NamelessExchange {
		return nil
	}
	op := fmt.Sprintf("declare exchange %q", name)
	// Remember before declaring, so that a reconnection in between declares
	// it too; forget again if the server refuses.
	b.topoMu.Lock()
	_, known := b.exchanges[name]
	b.exchanges[name] = struct{}{}
	b.topoMu.Unlock()
	err := b.withChannel(ctx, op, func(ch *amqp.Channel) error {
		return declareExchange(ch, name)
	})
	if err != nil && !known {
		b.topoMu.Lock()
		delete(b.exchanges, name)
		b.topoMu.Unlock()
	}
	return err
}

func declareExchange(ch *amqp.Channel, name string) error {
	return ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil)
}

// DeclareQueue declares a durable quorum queue with the arguments of
// QueueArgs, and binds it. The Broker remembers the queue and its bindings
// and declares them again after reconnecting.
func (b *Broker) DeclareQueue(ctx context.Context, spec broker.QueueSpec) error {
	if spec.Name == "" {
		return errors.New("rabbitmq: declare queue: the queue needs a name")
	}
	op := fmt.Sprintf("declare queue %q", spec.Name)
	for _, bind := range spec.Bindings {
		if bind.Exchange == broker.NamelessExchange {
			return fmt.Errorf("rabbitmq: %s: cannot bind to the default exchange: it routes to every queue by name already", op)
		}
	}
	for _, bind := range spec.Bindings {
		if bind.Buckets != 0 && len(bind.Pattern) > maxBucketPattern {
			return fmt.Errorf("rabbitmq: %s: a binding with buckets takes a pattern of at most %d bytes, not %d", op, maxBucketPattern, len(bind.Pattern))
		}
	}
	spec.Bindings = slices.Clone(spec.Bindings)
	b.topoMu.Lock()
	prev, known := b.queues[spec.Name]
	// Bindings accumulate on the server, so they accumulate here.
	merged := spec
	merged.Bindings = slices.Clone(prev.Bindings)
	for _, bind := range spec.Bindings {
		if !slices.Contains(merged.Bindings, bind) {
			merged.Bindings = append(merged.Bindings, bind)
		}
	}
	b.queues[spec.Name] = merged
	b.topoMu.Unlock()
	err := b.withChannel(ctx, op, func(ch *amqp.Channel) error {
		return declareQueue(ch, spec)
	})
	if err != nil {
		b.topoMu.Lock()
		if known {
			b.queues[spec.Name] = prev
		} else {
			delete(b.queues, spec.Name)
		}
		b.topoMu.Unlock()
	}
	return err
}

func declareQueue(ch *amqp.Channel, spec broker.QueueSpec) error {
	if _, err := ch.QueueDeclare(spec.Name, true, false, false, false, QueueArgs(spec)); err != nil {
		return err
	}
	for _, bind := range spec.Bindings {
		if bind.Buckets == 0 {
			if err := ch.QueueBind(spec.Name, bind.Pattern, bind.Exchange, false, nil); err != nil {
				return fmt.Errorf("bind to exchange %q with %q: %w", bind.Exchange, bind.Pattern, err)
			}
			continue
		}
		for _, bucket := range bind.Buckets.List() {
			if err := ch.QueueBind(spec.Name, bucketKey(bucket, bind.Pattern), bind.Exchange, false, nil); err != nil {
				return fmt.Errorf("bind to exchange %q with %q for bucket %d: %w", bind.Exchange, bind.Pattern, bucket, err)
			}
		}
	}
	return nil
}

// DeleteQueue deletes a queue and its messages. Deleting a queue that does
// not exist succeeds.
func (b *Broker) DeleteQueue(ctx context.Context, name string) error {
	b.topoMu.Lock()
	delete(b.queues, name)
	b.topoMu.Unlock()
	return b.withChannel(ctx, fmt.Sprintf("delete queue %q", name), func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(name, false, false, false)
		return err
	})
}

// DeleteExchange deletes an exchange and the bindings to it. Deleting an
// exchange that does not exist succeeds.
func (b *Broker) DeleteExchange(ctx context.Context, name string) error {
	if name == broker.NamelessExchange {
		return errors.New("rabbitmq: delete exchange: the default exchange cannot be deleted")
	}
	b.topoMu.Lock()
	delete(b.exchanges, name)
	for q, spec := range b.queues {
		spec.Bindings = slices.DeleteFunc(slices.Clone(spec.Bindings), func(bind broker.Binding) bool { return bind.Exchange == name })
		b.queues[q] = spec
	}
	b.topoMu.Unlock()
	return b.withChannel(ctx, fmt.Sprintf("delete exchange %q", name), func(ch *amqp.Channel) error {
		return ch.ExchangeDelete(name, false, false)
	})
}

// InspectQueue returns a queue's ready messages and consumers, or an error
// wrapping broker.ErrNotFound.
func (b *Broker) InspectQueue(ctx context.Context, name string) (broker.QueueInfo, error) {
	var info broker.QueueInfo
	// A failed passive declare closes its channel: withChannel's channel is
	// a throwaway one.
	err := b.withChannel(ctx, fmt.Sprintf("inspect queue %q", name), func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if err != nil {
			return err
		}
		info = broker.QueueInfo{Name: q.Name, Messages: q.Messages, Consumers: q.Consumers}
		return nil
	})
	return info, err
}

// redeclare declares the remembered topology on a new session, before the
// session is handed out. A declaration the server refuses is logged and
// skipped; a failed connection is returned.
func (b *Broker) redeclare(s *session) error {
	b.topoMu.Lock()
	exchanges := make([]string, 0, len(b.exchanges))
	for name := range b.exchanges {
		exchanges = append(exchanges, name)
	}
	queues := make([]broker.QueueSpec, 0, len(b.queues))
	for _, spec := range b.queues {
		queues = append(queues, spec)
	}
	b.topoMu.Unlock()
	sort.Strings(exchanges)
	sort.Slice(queues, func(i, j int) bool { return queues[i].Name < queues[j].Name })

	start := time.Now()
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	run := func(what string, fn func(*amqp.Channel) error) error {
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = s.conn.Channel(); err != nil {
				return err
			}
		}
		err := fn(ch)
		if err == nil || s.conn.IsClosed() {
			return err
		}
		// The server refused this one (it closed the channel): go on with
		// the rest on a new channel.
		b.log.Error("rabbitmq: cannot declare again after reconnecting", "what", what, "err", b.scrub(err).Error())
		return nil
	}
	for _, name := range exchanges {
		if err := run("exchange "+name, func(ch *amqp.Channel) error { return declareExchange(ch, name) }); err != nil {
			return err
		}
	}
	for _, spec := range queues {
		if err := run("queue "+spec.Name, func(ch *amqp.Channel) error { return declareQueue(ch, spec) }); err != nil {
			return err
		}
	}
	if len(exchanges)+len(queues) > 0 {
		b.log.Info("rabbitmq: declared the topology again", "node", s.node.redacted,
			"exchanges", len(exchanges), "queues", len(queues), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
