package consume

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/backoff"
)

// ErrRunning reports a second call to Run while the first is running.
var ErrRunning = errors.New("consume: consumer is already running")

// Consumer runs the handlers of one consumer group. Build it with New and
// start it with Run.
type Consumer struct {
	b        broker.Broker
	cfg      Config
	routes   router
	patterns []string
	log      *slog.Logger
	tracer   trace.Tracer // nil without a TracerProvider
	metrics  *metrics
	// middleware is cfg.Middleware inside the panic recovery.
	middleware []Middleware
	stats      counters
	pub        republisher

	running   atomic.Bool
	ready     chan struct{}
	readyOnce sync.Once
}

// New returns a consumer for the group cfg names, which sends each event to
// the route of its type. It checks cfg and routes, and does not touch the
// broker: Run does.
func New(b broker.Broker, cfg Config, routes ...Route) (*Consumer, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil broker", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rt, err := newRouter(routes, cfg.Inbox)
	if err != nil {
		return nil, err
	}
	patterns := cfg.Patterns
	if len(patterns) == 0 {
		patterns = rt.patterns()
	}
	if err := rt.checkReachable(patterns); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Group)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		b: b, cfg: cfg, routes: rt, patterns: patterns, metrics: m,
		log:   cfg.Logger.With("group", cfg.Group),
		pub:   republisher{b: b},
		ready: make(chan struct{}),
	}
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer("github.com/edupulse/eventbus/consume")
	}
	// A panic is recovered inside the inbox transaction too, so that it
	// rolls back as any failure does: the recovery is the outermost
	// middleware.
	c.middleware = append([]Middleware{c.recovering}, cfg.Middleware...)
	return c, nil
}

// Group returns the consumer's group, which is also its queue's name.
func (c *Consumer) Group() string { return c.cfg.Group }

// Patterns returns the topic patterns the group's queue is bound with.
func (c *Consumer) Patterns() []string { return append([]string(nil), c.patterns...) }

// Ready is closed once Run has declared the topology and subscribed for the
// first time: events published from then on reach the group.
func (c *Consumer) Ready() <-chan struct{} { return c.ready }

// Stats returns what the consumer did so far.
func (c *Consumer) Stats() Stats { return c.stats.snapshot() }

// Declare declares the group's topology, idempotently: the exchange, the
// group's queue bound with its patterns, one retry queue per retry, and the
// dead-letter queue. Run calls it on every (re)subscription; deployment
// scripts may call it ahead, so that no event published before the first
// worker starts is lost.
//
// Bindings are only ever added: to stop receiving a pattern, unbind it on
// the broker. A retry queue's delay cannot change once declared: after
// changing Backoff, delete the group's (empty) retry queues. Workers that
// run meanwhile lose nothing: a retry or dead-letter copy that finds its
// queue missing comes back from the broker, and the worker declares the
// topology again (with its own Backoff) before it sends the copy once more.
func (c *Consumer) Declare(ctx context.Context) error {
	g := c.cfg.Group
	if err := c.b.DeclareExchange(ctx, c.cfg.Exchange); err != nil {
		return fmt.Errorf("consume: declare exchange %s: %w", c.cfg.Exchange, err)
	}
	if err := c.b.DeclareQueue(ctx, broker.QueueSpec{Name: DeadLetterQueue(g)}); err != nil {
		return fmt.Errorf("consume: declare queue %s: %w", DeadLetterQueue(g), err)
	}
	bindings := make([]broker.Binding, len(c.patterns))
	for i, p := range c.patterns {
		bindings[i] = broker.Binding{Exchange: c.cfg.Exchange, Pattern: p}
	}
	// The group queue dead-letters to the DLQ too: a message the runtime
	// could not settle otherwise is then kept, not dropped.
	if err := c.b.DeclareQueue(ctx, broker.QueueSpec{Name: g, Bindings: bindings, DeadLetterQueue: DeadLetterQueue(g)}); err != nil {
		return fmt.Errorf("consume: declare queue %s: %w", g, err)
	}
	for n := 1; n < c.cfg.MaxAttempts; n++ {
		spec := broker.QueueSpec{Name: RetryQueue(g, n), MessageTTL: c.cfg.Backoff.Delay(n), DeadLetterQueue: g}
		if err := c.b.DeclareQueue(ctx, spec); err != nil {
			return fmt.Errorf("consume: declare retry queue %s (delay %v; if Backoff changed, delete the old retry queues): %w",
				spec.Name, spec.MessageTTL, err)
		}
	}
	return nil
}

// job is one delivery on its way to a worker.
type job struct {
	d    broker.Delivery
	sess *session
	// env and envErr are set when the dispatcher had to decode the
	// message to find its stream.
	decoded bool
	env     event.Envelope
	envErr  error
}

// session is one subscription. When it ends, the broker delivers its
// unacknowledged messages again, so jobs of an ended session that have not
// started are dropped.
type session struct{ ended atomic.Bool }

// workers are the handler goroutines and their queues.
type workers struct {
	own    []chan job    // one per worker: a stream's events, in order
	shared chan job      // events any worker may take
	stop   chan struct{} // closed at shutdown: take no more jobs
}

// Run subscribes to the group's queue and handles its events until ctx ends,
// then shuts down gracefully: it stops taking messages, lets the handlers in
// flight finish (for most of ShutdownTimeout, then cancels their contexts
// and abandons those that ignore it), and returns nil within
// ShutdownTimeout. Messages it received and did not handle go back to the
// queue.
//
// When the subscription ends (the connection failed, the broker restarted),
// Run declares the topology again and resubscribes, with backoff, while the
// handlers in flight finish. It returns an error only if it is already
// running.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)

	// Handlers run on a context of their own: the end of ctx stops intake,
	// not the work in flight.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	w := &workers{shared: make(chan job, c.cfg.Prefetch), stop: make(chan struct{})}
	if c.cfg.OrderedByStream {
		w.own = make([]chan job, c.cfg.Concurrency)
		for i := range w.own {
			w.own[i] = make(chan job, c.cfg.Prefetch)
		}
	}
	var wg sync.WaitGroup
	for i := range c.cfg.Concurrency {
		var own chan job // nil: never ready
		if w.own != nil {
			own = w.own[i]
		}
		wg.Go(func() { c.work(hctx, own, w) })
	}

	var (
		sub      broker.Subscription
		sess     *session
		failures int
		opened   int
	)
	for ctx.Err() == nil {
		s, err := c.subscribe(ctx, opened)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			delay := resubscribeBackoff.Delay(failures)
			c.log.Warn("consume: cannot subscribe; trying again", "err", err, "in", delay)
			backoff.Sleep(ctx, delay)
			continue
		}
		opened++
		if opened > 1 {
			c.stats.resubscribes.Add(1)
			c.metrics.resubscribes.Inc()
			c.log.Info("consume: subscribed again", "queue", c.cfg.Group)
		}
		c.readyOnce.Do(func() { close(c.ready) })
		sub, sess = s, &session{}
		started := time.Now()
		err = c.dispatch(ctx, s, sess, w)
		if ctx.Err() != nil {
			break // keep the subscription: handlers in flight still ack on it
		}
		sess.ended.Store(true)
		_ = s.Close()
		sub = nil
		// A subscription that ends at once, again and again, must not spin.
		if time.Since(started) < 5*time.Second {
			failures++
		} else {
			failures = 0
		}
		delay := resubscribeBackoff.Delay(failures)
		c.log.Warn("consume: subscription ended; subscribing again", "err", err, "in", delay)
		backoff.Sleep(ctx, delay)
	}

	close(w.stop)
	// The shutdown ends within ShutdownTimeout: the handlers get most of
	// it, then their contexts end (a handler that ignores its context is
	// abandoned, see handle), and the rest closes the subscription, which
	// a broker that does not answer could hold up.
	deadline := time.Now().Add(c.cfg.ShutdownTimeout)
	grace := min(c.cfg.ShutdownTimeout/5, 2*time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if !waitUntil(done, deadline.Add(-grace)) {
		c.log.Warn("consume: handlers still running near the shutdown timeout; cancelling them",
			"timeout", c.cfg.ShutdownTimeout, "in_flight", c.stats.inFlight.Load())
		cancelHandlers()
		if !waitUntil(done, deadline.Add(-grace/2)) {
			c.log.Error("consume: workers did not stop after their handlers were cancelled; leaving them", "in_flight", c.stats.inFlight.Load())
		}
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if sub != nil {
			sess.ended.Store(true)
			_ = sub.Close()
		}
		c.pub.close()
	}()
	if !waitUntil(closed, deadline) {
		c.log.Error("consume: the subscription did not close within the shutdown timeout (is the broker answering?); stopping without it",
			"timeout", c.cfg.ShutdownTimeout)
	}
	return nil
}

// waitUntil waits for done to close, until deadline; it reports whether
// done closed.
func waitUntil(done <-chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

var consumerTags atomic.Int64

// subscribe declares the topology and subscribes to the group's queue.
func (c *Consumer) subscribe(ctx context.Context, opened int) (broker.Subscription, error) {
	if err := c.Declare(ctx); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	tag := fmt.Sprintf("eventbus-consume.%s.%s.%d.%d", c.cfg.Group, host, os.Getpid(), consumerTags.Add(1))
	sub, err := c.b.Consume(ctx, c.cfg.Group, broker.ConsumeOptions{Prefetch: c.cfg.Prefetch, Tag: tag})
	if err != nil {
		return nil, fmt.Errorf("consume: subscribe to %s: %w", c.cfg.Group, err)
	}
	return sub, nil
}

// dispatch hands the subscription's deliveries to the workers until ctx
// ends (nil) or the subscription does (its error).
func (c *Consumer) dispatch(ctx context.Context, sub broker.Subscription, sess *session, w *workers) error {
	for {
		var d broker.Delivery
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case d, ok = <-sub.Deliveries():
		}
		if !ok {
			if err := sub.Err(); err != nil {
				return err
			}
			return broker.ErrClosed
		}
		j := job{d: d, sess: sess}
		to := w.shared
		if w.own != nil {
			subject, isSet := d.Headers[broker.HeaderSubject].(string)
			if !isSet {
				// Not published by the relay: read the subject from the body.
				j.decoded = true
				j.env, j.envErr = broker.DecodeMessage(d.Message)
				subject = j.env.Subject
			}
			if subject != "" {
				h := fnv.New32a()
				_, _ = h.Write([]byte(subject))
				to = w.own[h.Sum32()%uint32(len(w.own))]
			}
		}
		select {
		case to <- j:
		case <-ctx.Done():
			return nil
		}
	}
}

// work runs one worker: the jobs of its own streams, and shared ones.
func (c *Consumer) work(ctx context.Context, own chan job, w *workers) {
	for {
		// select picks at random among ready cases: look at stop first, so
		// that no new job starts once shutdown began.
		select {
		case <-w.stop:
			return
		default:
		}
		select {
		case <-w.stop:
			return
		case j := <-own:
			c.process(ctx, j)
		case j := <-w.shared:
			c.process(ctx, j)
		}
	}
}

// resubscribeBackoff paces the attempts to subscribe again after a
// subscription ended.
var resubscribeBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second}
