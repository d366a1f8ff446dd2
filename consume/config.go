package consume

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/eventbus/broker"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxAttempts     = 5
	DefaultMaxDeliveries   = 20
	DefaultInitialBackoff  = time.Second
	DefaultMaxBackoff      = time.Minute
	DefaultMultiplier      = 3.0
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultSettleTimeout bounds how long a worker waits for the broker to
	// confirm a retry or dead-letter copy.
	DefaultSettleTimeout = 30 * time.Second
)

// ErrInvalidConfig reports a Config or set of routes New cannot run.
var ErrInvalidConfig = errors.New("consume: invalid config")

// Config configures a Consumer. Only Group is required.
type Config struct {
	// Group names the consumer group. It is the name of the group's durable
	// queue, the prefix of its retry and dead-letter queues, and its key in
	// the inbox. Processes with the same Group share the work.
	Group string
	// Exchange is the topic exchange to bind to; broker.DefaultEventsExchange if empty.
	Exchange string
	// Patterns are the topic patterns (event types, with '*' for one word
	// and '#' for any) the group's queue is bound with. If empty, the queue
	// is bound to the types of the typed routes, or to "#" when there is an
	// OnAny route.
	Patterns []string

	// Concurrency is how many handlers run at once; 1 if zero.
	Concurrency int
	// Prefetch is how many unacknowledged messages the broker sends ahead;
	// 4 × Concurrency (at least 16) if zero.
	Prefetch int
	// OrderedByStream handles the events of one stream (subject) one at a
	// time, in the order the broker delivers them, while different streams
	// run in parallel. Events without a subject go to any worker.
	OrderedByStream bool
	// Shards, when above 0, splits the group's queue into this many shard
	// queues (ShardQueue), up to broker.Buckets (64), so that several
	// processes of the group share the work and each stream is still
	// handled in order: a stream's events all go to one shard, by a hash of
	// the stream (broker.HeaderBucket), and each shard is consumed by one
	// process at a time (single active consumer); the processes share the
	// shards between them (see the package doc, "Scaling out"). It turns
	// OrderedByStream on. 0, the default, is the group's single queue,
	// which its processes compete for. A group's Shards cannot change
	// while its queues exist: Run refuses, with an error wrapping
	// ErrLayoutChanged that says what to do.
	Shards int

	// MaxAttempts is how many times a message is handled before it is
	// dead-lettered; DefaultMaxAttempts if zero. 1 means no retries.
	MaxAttempts int
	// Backoff sets the delays between attempts.
	Backoff Backoff
	// MaxDeliveries guards against a message that kills its consumer: one
	// the broker has delivered this many times without it being settled
	// (the process handling it crashed, or lost its connection, each time)
	// is dead-lettered before its handler runs again. DefaultMaxDeliveries
	// if zero. It relies on the broker counting deliveries, as RabbitMQ's
	// quorum queues do (x-delivery-count).
	MaxDeliveries int
	// HandlerTimeout, when set, bounds each handler call; a call that
	// outlives it fails (and is retried), even if it ignores its context:
	// the consumer abandons it (Stats.Abandoned) and goes on, and its inbox
	// transaction rolls back, so it cannot commit later.
	HandlerTimeout time.Duration
	// ShutdownTimeout bounds how long Run takes to return once its context
	// ends, even when a handler ignores its context or the broker stops
	// answering: it waits for the handlers in flight for most of it, then
	// cancels their contexts and abandons those that still run (their
	// deliveries stay unacknowledged, so the broker delivers them again);
	// DefaultShutdownTimeout (15 s, as EVENTBUS_SHUTDOWN_TIMEOUT) if zero.
	ShutdownTimeout time.Duration

	// Inbox, when set, suppresses duplicates: see NewInbox. OnTx routes need
	// it.
	Inbox Inbox
	// Middleware wraps every handler call, outermost first.
	Middleware []Middleware

	// Logger receives the consumer's logs; slog.Default() if nil.
	Logger *slog.Logger
	// TracerProvider, when set, starts a span "consume <type>" around each
	// handler call, child of the producer's span.
	TracerProvider trace.TracerProvider
	// Registerer, when set, registers the consumer's Prometheus metrics.
	// Consumers sharing a Registerer share the metrics, labelled by group.
	Registerer prometheus.Registerer
}

// Backoff sets the delay before each retry: Initial before the second
// attempt, then multiplied by Multiplier per attempt, up to Max. The delays
// are kept by the broker (one retry queue per attempt, whose message TTL is
// the delay), so no message is held in memory while it waits.
type Backoff struct {
	Initial    time.Duration // DefaultInitialBackoff if zero
	Max        time.Duration // DefaultMaxBackoff if zero
	Multiplier float64       // DefaultMultiplier if zero
}

// Delay returns the delay after failed attempt n (1-based).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(d)
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultInitialBackoff
	}
	if b.Max <= 0 {
		b.Max = DefaultMaxBackoff
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultMultiplier
	}
	return b
}

// RetryQueue names the queue that holds a group's messages after failed
// attempt n, until they return to the group's queue.
func RetryQueue(group string, n int) string { return group + ".retry." + strconv.Itoa(n) }

// DeadLetterQueue names a group's dead-letter queue.
func DeadLetterQueue(group string) string { return group + ".dlq" }

// ShardQueue names shard i of a group split into shards: for example
// "badges.shard.2-of-4". The count is part of the name, so that the queues
// of another split are never taken for these.
func ShardQueue(group string, i, shards int) string {
	return group + ".shard." + strconv.Itoa(i) + "-of-" + strconv.Itoa(shards)
}

// MembersQueue names the queue that counts the processes of a sharded
// group: each subscribes to it, nothing is ever published to it, and its
// consumer count is the number of processes. (RabbitMQ counts only the
// active consumer of a single-active-consumer queue, so the shard queues
// cannot tell.)
func MembersQueue(group string) string { return group + ".members" }

// ShardExchange names the topic exchange of a sharded group: it routes
// every message to its shard by bucket, whatever its routing key. The
// group's retry queues dead-letter into it, Requeue publishes to it, and a
// replay to the whole group targets it.
func ShardExchange(group string) string { return group + ".shards" }

// maxGroupLen leaves room for the retry and dead-letter suffixes within
// AMQP's 255-byte queue names.
const maxGroupLen = 200

// withDefaults fills c's zero values and checks it.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Group == "":
		return c, fmt.Errorf("%w: Group is required", ErrInvalidConfig)
	case len(c.Group) > maxGroupLen:
		return c, fmt.Errorf("%w: Group %q is longer than %d bytes", ErrInvalidConfig, c.Group, maxGroupLen)
	case strings.HasPrefix(c.Group, "amq."):
		return c, fmt.Errorf("%w: Group %q: names starting with \"amq.\" are reserved by the broker", ErrInvalidConfig, c.Group)
	case c.Concurrency < 0, c.Prefetch < 0, c.MaxAttempts < 0, c.MaxDeliveries < 0:
		return c, fmt.Errorf("%w: Concurrency, Prefetch, MaxAttempts and MaxDeliveries must not be negative", ErrInvalidConfig)
	case c.MaxAttempts > 100:
		return c, fmt.Errorf("%w: MaxAttempts %d: at most 100 (each attempt has a retry queue)", ErrInvalidConfig, c.MaxAttempts)
	case c.Shards < 0 || c.Shards > broker.Buckets:
		return c, fmt.Errorf("%w: Shards %d: 0 (one queue) to %d (the buckets streams are hashed into)", ErrInvalidConfig, c.Shards, broker.Buckets)
	case c.Shards > 0 && (ShardExchange(c.Group) == c.Exchange || ShardExchange(c.Group) == broker.DefaultEventsExchange && c.Exchange == ""):
		return c, fmt.Errorf("%w: Group %q: its shard exchange %q would be the events exchange", ErrInvalidConfig, c.Group, ShardExchange(c.Group))
	}
	if c.Shards > 0 {
		// One shard's events come in order from one queue; handling them
		// in parallel would lose that.
		c.OrderedByStream = true
	}
	if c.Exchange == "" {
		c.Exchange = broker.DefaultEventsExchange
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Prefetch == 0 {
		c.Prefetch = max(4*c.Concurrency, 16)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, p := range c.Patterns {
		if err := checkPattern(p); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkPattern checks a topic pattern: dot-separated words, each '*', '#'
// or a word an event type may hold.
func checkPattern(p string) error {
	if p == "" || len(p) > 255 {
		return fmt.Errorf("%w: pattern %q must be 1 to 255 characters", ErrInvalidConfig, p)
	}
	for _, w := range strings.Split(p, ".") {
		if w == "*" || w == "#" {
			continue
		}
		if w == "" {
			return fmt.Errorf("%w: pattern %q has an empty word", ErrInvalidConfig, p)
		}
		for _, c := range w {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%w: pattern %q: a word is '*', '#' or letters, digits, '_' and '-'", ErrInvalidConfig, p)
			}
		}
	}
	return nil
}
