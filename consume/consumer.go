package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/backoff"
)

// ErrRunning reports a second call to Run while the first is running.
var ErrRunning = errors.New("consume: consumer is already running")

// ErrLayoutChanged reports a group whose queues on the broker were declared
// with another Config.Shards: running both layouts at once would deliver
// every event twice, in two orders. Run returns it, saying which queues are
// in the way. Test with errors.Is.
var ErrLayoutChanged = errors.New("consume: the group's queues on the broker were declared with another Shards")

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
	if c.cfg.Shards > 0 {
		return c.declareShards(ctx)
	}
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

// declareShards declares a sharded group's topology: the group's shard
// exchange; one queue per shard with single active consumer, bound to the
// events exchange with the group's patterns and to the shard exchange with
// "#", each binding narrowed to the shard's buckets; retry queues that
// dead-letter into the shard exchange, so that a retried message returns
// to its shard; and the dead-letter queue.
func (c *Consumer) declareShards(ctx context.Context) error {
	g, sx := c.cfg.Group, ShardExchange(c.cfg.Group)
	for _, x := range []string{c.cfg.Exchange, sx} {
		if err := c.b.DeclareExchange(ctx, x); err != nil {
			return fmt.Errorf("consume: declare exchange %s: %w", x, err)
		}
	}
	for _, q := range []string{DeadLetterQueue(g), MembersQueue(g)} {
		if err := c.b.DeclareQueue(ctx, broker.QueueSpec{Name: q}); err != nil {
			return fmt.Errorf("consume: declare queue %s: %w", q, err)
		}
	}
	for i, q := range c.queueNames() {
		set := broker.ShardBuckets(i, c.cfg.Shards)
		bindings := make([]broker.Binding, 0, len(c.patterns)+1)
		for _, p := range c.patterns {
			bindings = append(bindings, broker.Binding{Exchange: c.cfg.Exchange, Pattern: p, Buckets: set})
		}
		bindings = append(bindings, broker.Binding{Exchange: sx, Pattern: "#", Buckets: set})
		spec := broker.QueueSpec{Name: q, Bindings: bindings, DeadLetterQueue: DeadLetterQueue(g), SingleActiveConsumer: true}
		if err := c.b.DeclareQueue(ctx, spec); err != nil {
			return fmt.Errorf("consume: declare shard queue %s: %w", q, err)
		}
	}
	for n := 1; n < c.cfg.MaxAttempts; n++ {
		spec := broker.QueueSpec{Name: RetryQueue(g, n), MessageTTL: c.cfg.Backoff.Delay(n), DeadLetterExchange: sx}
		if err := c.b.DeclareQueue(ctx, spec); err != nil {
			return fmt.Errorf("consume: declare retry queue %s (delay %v; if Backoff or Shards changed, delete the old retry queues): %w",
				spec.Name, spec.MessageTTL, err)
		}
	}
	return nil
}

// queueNames returns the queues the group's processes consume: the group's
// queue, or its shard queues.
func (c *Consumer) queueNames() []string {
	if c.cfg.Shards == 0 {
		return []string{c.cfg.Group}
	}
	qs := make([]string, c.cfg.Shards)
	for i := range qs {
		qs[i] = ShardQueue(c.cfg.Group, i, c.cfg.Shards)
	}
	return qs
}

// checkLayout fails with ErrLayoutChanged when the broker holds the queues
// of another layout of the group: its single queue, or the first shard of
// another split. Other errors are the broker's.
func (c *Consumer) checkLayout(ctx context.Context) error {
	g := c.cfg.Group
	candidates := make([]string, 0, broker.Buckets)
	if c.cfg.Shards > 0 {
		candidates = append(candidates, g)
	}
	for p := 1; p <= broker.Buckets; p++ {
		if p != c.cfg.Shards {
			candidates = append(candidates, ShardQueue(g, 0, p))
		}
	}
	var found []string
	for _, q := range candidates {
		_, err := c.b.InspectQueue(ctx, q)
		switch {
		case err == nil:
			found = append(found, q)
		case !errors.Is(err, broker.ErrNotFound):
			return fmt.Errorf("consume: check the queues of group %s: %w", g, err)
		}
	}
	if len(found) == 0 {
		return nil
	}
	want := "its single queue " + g
	if c.cfg.Shards > 0 {
		want = fmt.Sprintf("%d shard queues %s …", c.cfg.Shards, ShardQueue(g, 0, c.cfg.Shards))
	}
	return fmt.Errorf("%w: group %s is configured for %s, but the broker has queue %s of another layout. "+
		"To change the layout: stop the relay (events wait in the store), let the group's running processes empty its queues, stop them, "+
		"delete the old queues (%s or %s.shard.*, and %s.retry.*), then start the processes with the new setting, then the relay "+
		"(docs/operations.md, \"Changing a consumer group's shards\")",
		ErrLayoutChanged, g, want, found[0], g, g, g)
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
type session struct {
	ended atomic.Bool
	// pending counts the jobs dispatched to workers and not yet processed.
	pending atomic.Int64
	// lastDelivery is when the session last got a delivery (Unix nanoseconds).
	lastDelivery atomic.Int64
}

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

	// The first subscriptions: check that the broker holds no other
	// layout of the group, and declare its topology once for all queues.
	for failures := 1; ctx.Err() == nil; failures++ {
		err := c.checkLayout(ctx)
		if err == nil {
			err = c.Declare(ctx)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ErrLayoutChanged) {
			close(w.stop)
			wg.Wait()
			return err
		}
		if ctx.Err() != nil {
			break
		}
		delay := resubscribeBackoff.Delay(failures)
		c.log.Warn("consume: cannot declare the group's topology; trying again", "err", err, "in", delay)
		backoff.Sleep(ctx, delay)
	}

	queues := c.queueNames()
	loops := make([]*queueLoop, len(queues))
	var subscribed atomic.Int64
	var lwg sync.WaitGroup
	for i, q := range queues {
		l := &queueLoop{c: c, queue: q, w: w, yield: make(chan struct{}, 1)}
		loops[i] = l
		lwg.Go(func() {
			l.run(ctx, func() {
				if subscribed.Add(1) == int64(len(queues)) {
					c.readyOnce.Do(func() { close(c.ready) })
				}
			})
		})
	}
	var member broker.Subscription // the members queue's, closed below
	if c.cfg.Shards > 0 {
		lwg.Go(func() { member = c.balance(ctx, loops) })
	}
	lwg.Wait()

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
		var cwg sync.WaitGroup
		for _, l := range loops {
			if l.sub != nil {
				cwg.Go(func() {
					l.sess.ended.Store(true)
					_ = l.sub.Close()
				})
			}
		}
		if member != nil {
			cwg.Go(func() { _ = member.Close() })
		}
		cwg.Wait()
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

// subscribe subscribes to queue, one of the group's; after the first
// attempt it declares the topology again first (the broker may have lost
// it).
func (c *Consumer) subscribe(ctx context.Context, queue string, attempts int) (broker.Subscription, error) {
	if attempts > 0 {
		if err := c.Declare(ctx); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	tag := fmt.Sprintf("eventbus-consume.%s.%s.%d.%d", queue, host, os.Getpid(), consumerTags.Add(1))
	if len(tag) > broker.MaxShortString {
		// A shard's queue name and a long host name: keep the unique end.
		tag = tag[len(tag)-broker.MaxShortString:]
	}
	sub, err := c.b.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: c.cfg.Prefetch, Tag: tag})
	if err != nil {
		return nil, fmt.Errorf("consume: subscribe to %s: %w", queue, err)
	}
	return sub, nil
}

// queueLoop consumes one of the group's queues: it subscribes, hands the
// deliveries to the workers, and subscribes again when the subscription
// ends, until ctx ends. It then keeps its last subscription open (sub,
// sess) for the handlers in flight to ack on; Run closes it.
type queueLoop struct {
	c     *Consumer
	queue string
	w     *workers
	// yield asks the loop to hand its queue to the next process waiting
	// for it (see balance).
	yield chan struct{}

	// active is set while the loop has a subscription.
	active atomic.Pointer[session]
	sub    broker.Subscription
	sess   *session
}

func (l *queueLoop) run(ctx context.Context, subscribed func()) {
	c := l.c
	var failures, opened int
	for ctx.Err() == nil {
		// Run declared the topology before the first attempt; later ones
		// declare it again, as the broker may have lost it.
		s, err := c.subscribe(ctx, l.queue, opened+failures)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			delay := resubscribeBackoff.Delay(failures)
			c.log.Warn("consume: cannot subscribe; trying again", "queue", l.queue, "err", err, "in", delay)
			backoff.Sleep(ctx, delay)
			continue
		}
		opened++
		select {
		case <-l.yield: // asked before this subscription: not about it
		default:
		}
		if opened > 1 {
			c.stats.resubscribes.Add(1)
			c.metrics.resubscribes.Inc()
			c.log.Info("consume: subscribed again", "queue", l.queue)
		} else {
			subscribed()
		}
		sess := &session{}
		l.sub, l.sess = s, sess
		l.active.Store(sess)
		started := time.Now()
		err = c.dispatch(ctx, s, sess, l.w, l.yield)
		for errors.Is(err, errYielded) && !l.drain(ctx, sess) && ctx.Err() == nil {
			// A handler of this shard has not returned: handing the shard
			// on now would let the next process handle the stream's later
			// events meanwhile. Keep it.
			c.log.Warn("consume: a handler of this shard is still running; keeping the shard", "queue", l.queue)
			err = c.dispatch(ctx, s, sess, l.w, l.yield)
		}
		if ctx.Err() != nil {
			break // keep the subscription: handlers in flight still ack on it
		}
		l.active.Store(nil)
		yielded := errors.Is(err, errYielded)
		sess.ended.Store(true)
		closeWithin(s, c.cfg.ShutdownTimeout)
		l.sub, l.sess = nil, nil
		if yielded {
			c.log.Info("consume: handed a shard to the next process waiting for it", "queue", l.queue)
			failures = 0
			continue // at once: to the back of the queue's waiting line
		}
		// A subscription that ends at once, again and again, must not spin.
		if time.Since(started) < 5*time.Second {
			failures++
		} else {
			failures = 0
		}
		delay := resubscribeBackoff.Delay(failures)
		c.log.Warn("consume: subscription ended; subscribing again", "queue", l.queue, "err", err, "in", delay)
		backoff.Sleep(ctx, delay)
	}
}

// drain waits until the jobs of sess that the workers took are processed,
// before a shard is handed on: the next process must not handle a later
// event of a stream while this one still handles an earlier one. It waits
// at most the shutdown timeout, and reports whether the jobs finished.
func (l *queueLoop) drain(ctx context.Context, sess *session) bool {
	deadline := time.Now().Add(l.c.cfg.ShutdownTimeout)
	for sess.pending.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		backoff.Sleep(ctx, 5*time.Millisecond)
	}
	return sess.pending.Load() == 0
}

// closeWithin closes s, waiting at most timeout: a broker that stops
// answering must not hold the loop (the close goes on in the background,
// and the broker drops the subscription with the connection).
func closeWithin(s broker.Subscription, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Close()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// errYielded ends a dispatch asked to hand its queue on.
var errYielded = errors.New("consume: queue handed on")

// dispatch hands the subscription's deliveries to the workers until ctx
// ends (nil), the subscription does (its error), or yield asks
// (errYielded).
func (c *Consumer) dispatch(ctx context.Context, sub broker.Subscription, sess *session, w *workers, yield <-chan struct{}) error {
	for {
		var d broker.Delivery
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-yield:
			return errYielded
		case d, ok = <-sub.Deliveries():
		}
		if !ok {
			if err := sub.Err(); err != nil {
				return err
			}
			return broker.ErrClosed
		}
		sess.lastDelivery.Store(time.Now().UnixNano())
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
				to = w.own[event.PartitionOf(subject, uuid.Nil, len(w.own))]
			}
		}
		sess.pending.Add(1)
		select {
		case to <- j:
		case <-ctx.Done():
			sess.pending.Add(-1)
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
			j.sess.pending.Add(-1)
		case j := <-w.shared:
			c.process(ctx, j)
			j.sess.pending.Add(-1)
		}
	}
}

// resubscribeBackoff paces the attempts to subscribe again after a
// subscription ended.
var resubscribeBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 10 * time.Second}
