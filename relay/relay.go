package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/backoff"
	"github.com/edupulse/eventbus/store"
)

// Config configures a Relay. The zero value of every field but the store and
// broker selects a default.
type Config struct {
	// Name names the relay; relays with the same name share partitions and
	// elect one publisher each. Default "default".
	Name string
	// Partition is the partition this relay publishes. Default 0; there is
	// one partition until partitioned relays are built.
	Partition int
	// Exchange is the topic exchange to publish to. Default
	// "edupulse.events".
	Exchange string
	// StoredVersions publishes every event in the version of its type it
	// was stored in. By default the relay publishes the latest version
	// (the store's read transforms upcast it; DESIGN "Type versions"); the
	// dataschema of each message names the version it carries.
	StoredVersions bool
	// Holder identifies this relay instance in the lease. Default: host,
	// process ID and a random suffix.
	Holder string
	// BatchSize is how many events one read of the store returns at most.
	// Default 1000. A full page is followed by the next read at once.
	BatchSize int
	// Window is how many messages may await their publisher confirm.
	// Default 2000.
	Window int
	// MinPoll and MaxPoll bound the pause between reads of the store when
	// it has nothing new: the pause starts at MinPoll and doubles up to
	// MaxPoll while it stays idle. Defaults 1ms and 10ms. Wake cuts a pause
	// short.
	MinPoll, MaxPoll time.Duration
	// Gather and MaxGather bound the least time between the start of a
	// read that found fewer than BatchSize events and the next read, Wake
	// or not: events that commit meanwhile are read, published and
	// confirmed together. Under a steady stream of commits this turns a
	// read per commit into a read per gather, and the broker's cost per
	// message falls with the messages per publish (a quorum queue spends
	// about 10 times as much per message published one at a time as in
	// a pipeline of thousands; BENCHMARKS.md). The relay adapts the
	// gather to the rate it reads at: the time that rate takes to bring
	// gatherTarget events, within [Gather, MaxGather]. It adds at most
	// MaxGather to the lag, and nothing to a relay that has been idle
	// for longer. Defaults 2ms and 8ms; a negative Gather reads again at
	// once.
	Gather, MaxGather time.Duration
	// LeaseTTL is how long a lease lasts without renewal: the longest a
	// dead relay blocks its standby. Default 3s. The holder renews it four
	// times per TTL, and a standby tries to claim it every StandbyPoll
	// (default 500ms).
	LeaseTTL    time.Duration
	StandbyPoll time.Duration
	// CheckpointInterval is how often the checkpoint is written while
	// publishing. Default 200ms. After a crash, at most the events
	// confirmed since are published again.
	CheckpointInterval time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failure, before the
	// relay tries again. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// ParkAfterNacks is how many negative confirms in a row, for one event
	// sent alone, park it (when the broker confirms other events
	// meanwhile). Default 10, which with the default backoff is about 20s
	// of nacks: a queue that is full for a moment (reject-publish) stalls
	// the relay rather than parking events.
	ParkAfterNacks int
	// ParkedPoll is how often a relay with parked events looks for retry
	// requests (eventbus parked retry). Default 1s.
	ParkedPoll time.Duration
	// DrainTimeout bounds how long a stopping relay waits for the confirms
	// of messages in flight. Default 5s.
	DrainTimeout time.Duration
	// Logger receives the relay's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the relay's figures; nil keeps them unexported.
	Metrics *Metrics
	// OnConfirmed, if set, is called with the lag of each event the broker
	// confirms: the time from its recording in the store to the confirm.
	// Benchmarks use it. It runs on the publishing path: keep it cheap.
	OnConfirmed func(lag time.Duration)
}

func (c *Config) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Exchange == "" {
		c.Exchange = broker.DefaultEventsExchange
	}
	if c.Holder == "" {
		c.Holder = defaultHolder()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Window <= 0 {
		c.Window = 2000
	}
	if c.Gather == 0 {
		c.Gather = 2 * time.Millisecond
	}
	if c.MaxGather <= 0 {
		c.MaxGather = 8 * time.Millisecond
	}
	c.MaxGather = max(c.MaxGather, c.Gather)
	def(&c.MinPoll, time.Millisecond)
	def(&c.MaxPoll, 10*time.Millisecond)
	def(&c.LeaseTTL, 3*time.Second)
	def(&c.StandbyPoll, 500*time.Millisecond)
	def(&c.CheckpointInterval, 200*time.Millisecond)
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 5*time.Second)
	def(&c.DrainTimeout, 5*time.Second)
	def(&c.ParkedPoll, time.Second)
	if c.ParkAfterNacks <= 0 {
		c.ParkAfterNacks = 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
}

func defaultHolder() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Relay publishes committed events from a store to a broker. Create it with
// New and start it with Run.
type Relay struct {
	cfg       Config
	store     store.Store
	broker    broker.Broker
	partition store.Partition
	log       *slog.Logger
	wake      chan struct{}
	leader    atomic.Bool
	backoff   backoff.Policy
	// parked is the partition's parked events, while leading.
	parked *parkedSet
	// unroutable holds the types already warned about.
	unroutable unroutableTypes
}

// New returns a relay from s to b.
func New(s store.Store, b broker.Broker, cfg Config) (*Relay, error) {
	if s == nil || b == nil {
		return nil, errors.New("relay: a store and a broker are required")
	}
	cfg.setDefaults()
	if cfg.MinPoll > cfg.MaxPoll {
		return nil, fmt.Errorf("relay: MinPoll %s exceeds MaxPoll %s", cfg.MinPoll, cfg.MaxPoll)
	}
	return &Relay{
		cfg:       cfg,
		store:     s,
		broker:    b,
		partition: store.Partition{Relay: cfg.Name, Number: cfg.Partition},
		log:       cfg.Logger.With("relay", cfg.Name, "partition", cfg.Partition, "holder", cfg.Holder),
		wake:      make(chan struct{}, 1),
		backoff:   backoff.Policy{Min: cfg.MinBackoff, Max: cfg.MaxBackoff},
		parked:    newParkedSet(),
	}, nil
}

// Holder returns the identity this relay holds its lease under.
func (r *Relay) Holder() string { return r.cfg.Holder }

// Leader reports whether the relay holds its partition's lease and
// publishes.
func (r *Relay) Leader() bool { return r.leader.Load() }

// setLeader records whether the relay publishes, for Leader and the metric.
func (r *Relay) setLeader(leading bool) {
	r.leader.Store(leading)
	if leading {
		r.cfg.Metrics.leader.Set(1)
	} else {
		r.cfg.Metrics.leader.Set(0)
	}
}

// Wake tells the relay that events have just committed, so that it reads the
// store now rather than at its next poll. It never blocks. The bus calls it
// after it commits in the same process (eventbus.Config.OnCommit).
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run runs the relay until ctx ends: it waits as a standby until it can claim
// the partition's lease, then publishes until it loses the lease or fails,
// and starts over. It returns nil after a clean stop, in which it waits for
// the confirms in flight, saves the checkpoint and releases the lease.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.StoredVersions {
		ctx = event.WithStoredVersions(ctx)
	}
	r.log.Info("relay starting", "exchange", r.cfg.Exchange)
	defer r.log.Info("relay stopped")
	failures := 0
	for ctx.Err() == nil {
		lease, err := r.store.Claim(ctx, r.partition, r.cfg.Holder, r.cfg.LeaseTTL)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.cfg.Metrics.errors.WithLabelValues("lease").Inc()
			failures++
			pause := r.backoff.Delay(failures)
			r.log.Warn("relay cannot claim its lease; retrying", "err", err, "retry_in", pause)
			backoff.Sleep(ctx, pause)
			continue
		case lease.Holder != r.cfg.Holder:
			backoff.Sleep(ctx, r.cfg.StandbyPoll)
			continue
		}
		r.log.Info("relay is the leader", "checkpoint_position", lease.Checkpoint.Position)
		err = r.lead(ctx, lease.Checkpoint)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, store.ErrLeaseLost) {
			r.log.Warn("relay lost its lease to another relay; standing by", "err", err)
			failures = 0
			continue
		}
		failures++
		pause := r.backoff.Delay(failures)
		r.log.Warn("relay interrupted; resuming from its checkpoint", "err", err, "retry_in", pause)
		backoff.Sleep(ctx, pause)
	}
	return nil
}

// tag travels with each published message through the pipeline.
type tag struct {
	cursor     store.Cursor
	recordedAt time.Time
	skipped    bool // parked, not published
}

// errLeaseExpired stops a leader that could not renew its lease in time: a
// standby may have taken over, so it must not publish on.
var errLeaseExpired = errors.New("relay: lease expired before it could be renewed")

// lead publishes from checkpoint on while this relay holds the lease.
func (r *Relay) lead(ctx context.Context, checkpoint store.Cursor) error {
	r.setLeader(true)
	defer r.setLeader(false)
	r.cfg.Metrics.checkpoint.Set(float64(checkpoint.Position))

	var (
		mu        sync.Mutex
		confirmed = checkpoint
		renewedAt = time.Now()
		saved     = checkpoint
	)
	getConfirmed := func() store.Cursor {
		mu.Lock()
		defer mu.Unlock()
		return confirmed
	}

	// publishCtx ends publishing: on a failure anywhere, on a lost lease,
	// and when ctx ends.
	publishCtx, stopPublishing := context.WithCancelCause(ctx)
	defer stopPublishing(nil)

	// The keeper renews the lease and saves the checkpoint while the relay
	// publishes. It outlives publishing by the final save in the deferred
	// function below.
	keeperDone := make(chan struct{})
	go func() {
		defer close(keeperDone)
		every := min(r.cfg.CheckpointInterval, r.cfg.LeaseTTL/4)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-publishCtx.Done():
				return
			case <-tick.C:
			}
			c := getConfirmed()
			if c == saved && time.Since(renewedAt)+every < r.cfg.LeaseTTL/4 {
				// Nothing new to save, and the lease needs no renewal
				// before the next tick: an idle relay writes about four
				// times per TTL, not at every tick.
				continue
			}
			// A renewal that cannot finish before the lease may be taken
			// over is abandoned, so that a hung connection cannot keep the
			// relay publishing past it.
			renewCtx, cancel := context.WithDeadline(publishCtx, renewedAt.Add(r.cfg.LeaseTTL*3/4))
			err := r.store.Advance(renewCtx, r.partition, r.cfg.Holder, c, r.cfg.LeaseTTL)
			cancel()
			switch {
			case err == nil:
				renewedAt, saved = time.Now(), c
				r.cfg.Metrics.checkpoint.Set(float64(c.Position))
			case errors.Is(err, store.ErrLeaseLost):
				stopPublishing(err)
				return
			case publishCtx.Err() != nil:
				return
			default:
				r.cfg.Metrics.errors.WithLabelValues("checkpoint").Inc()
				// Renewals are tried four times per TTL. Stop in time
				// when they keep failing: past the TTL another relay
				// may lead.
				if time.Since(renewedAt) > r.cfg.LeaseTTL*3/4 {
					stopPublishing(fmt.Errorf("%w: %w", errLeaseExpired, err))
					return
				}
			}
		}
	}()

	err := r.publish(publishCtx, checkpoint, func(c store.Cursor) {
		mu.Lock()
		confirmed = c
		mu.Unlock()
	})
	if cause := context.Cause(publishCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the keeper's reason is the real one
	}
	stopPublishing(err)
	<-keeperDone
	r.setLeader(false) // it publishes no more; the rest is bookkeeping

	// Save what was confirmed, even when ctx has ended, so that a restart
	// does not publish it again; then hand the lease over at once.
	final := getConfirmed()
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if errors.Is(err, store.ErrLeaseLost) {
		return err
	}
	if saveErr := r.store.Advance(saveCtx, r.partition, r.cfg.Holder, final, r.cfg.LeaseTTL); saveErr != nil {
		r.log.Warn("relay could not save its last checkpoint; events after the previous one will be published again",
			"err", saveErr, "position", final.Position)
	} else {
		r.cfg.Metrics.checkpoint.Set(float64(final.Position))
	}
	if ctx.Err() != nil {
		if relErr := r.store.Release(saveCtx, r.partition, r.cfg.Holder); relErr != nil {
			r.log.Warn("relay could not release its lease; a standby takes over when it expires", "err", relErr)
		}
	}
	return err
}

// publish reads the store from checkpoint on and publishes, until publishCtx
// ends or something fails. advance is called with each cursor the broker
// has confirmed or the relay has parked, in order. When publishing stops, it
// waits up to DrainTimeout for the confirms in flight.
//
// Parked events that are marked for retry are published first, one at a
// time; then the pipeline runs until it fails or a retry is due. A failure
// that one message may have caused is followed by isolate, which parks that
// message; any other failure is returned, and the relay retries with
// backoff.
func (r *Relay) publish(publishCtx context.Context, checkpoint store.Cursor, advance func(store.Cursor)) error {
	if err := r.broker.DeclareExchange(publishCtx, r.cfg.Exchange); err != nil {
		r.cfg.Metrics.errors.WithLabelValues("broker").Inc()
		return fmt.Errorf("relay: declare exchange %q: %w", r.cfg.Exchange, err)
	}
	sp := &serial{r: r}
	defer sp.drop()
	cursor := checkpoint
	settle := func(t tag) {
		cursor = t.cursor
		advance(t.cursor)
		if t.skipped {
			return
		}
		lag := time.Since(t.recordedAt)
		r.cfg.Metrics.published.Inc()
		r.cfg.Metrics.lag.Observe(lag.Seconds())
		if r.cfg.OnConfirmed != nil {
			r.cfg.OnConfirmed(lag)
		}
	}
	// retry is due at the start, for what the last leader left marked.
	retry := true
	for {
		if retry {
			retry = false
			if err := r.retryParked(publishCtx, sp, cursor); err != nil {
				if publishCtx.Err() != nil {
					return nil
				}
				return err
			}
		}
		pub, err := sp.get(publishCtx)
		if err != nil {
			return err
		}
		readUpTo := &readMark{}
		err = broker.Pipeline(publishCtx, pub, broker.PipelineConfig[tag]{
			Window:       r.cfg.Window,
			DrainTimeout: r.cfg.DrainTimeout,
			Next:         r.tail(cursor, readUpTo),
			Confirmed:    settle,
		})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRetryDue):
			retry = true // the messages in flight are confirmed
			continue
		case errors.Is(err, broker.ErrRefused), errors.Is(err, broker.ErrNacked):
			// One message may have caused it: find it among those not
			// confirmed. The pipeline may have left a publish running on
			// this publisher: use a new one.
			if errors.Is(err, broker.ErrNacked) {
				r.cfg.Metrics.errors.WithLabelValues("nack").Inc()
			}
			sp.drop()
			if err := r.isolate(publishCtx, sp, cursor, readUpTo.get(), settle); err != nil {
				if publishCtx.Err() != nil {
					return nil
				}
				return err
			}
			continue
		case errors.Is(err, errStoreRead):
		default:
			r.cfg.Metrics.errors.WithLabelValues("broker").Inc()
		}
		return fmt.Errorf("relay: %w", err)
	}
}

var errStoreRead = errors.New("read the store")

// readMark is the cursor of the last event the tail handed to the
// pipeline: isolate looks no further. The tail runs on the pipeline's
// goroutine, which may outlive a failed pipeline for a moment.
type readMark struct {
	mu sync.Mutex
	c  store.Cursor
}

func (m *readMark) set(c store.Cursor) {
	m.mu.Lock()
	m.c = c
	m.mu.Unlock()
}

func (m *readMark) get() store.Cursor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

// tail returns the pipeline's source: the store's events after cursor, in
// commit order. When the store has nothing new it waits, from MinPoll
// doubling up to MaxPoll while idle, or until Wake.
//
// It records in readUpTo the cursor of the last event it returned, and
// stops with errRetryDue when parked events are marked for retry.
func (r *Relay) tail(cursor store.Cursor, readUpTo *readMark) func(context.Context) ([]broker.Outgoing[tag], error) {
	idle := r.cfg.MinPoll
	full := false
	gather := r.cfg.Gather
	var lastRead time.Time
	return func(ctx context.Context) ([]broker.Outgoing[tag], error) {
		for {
			if err := ctx.Err(); err != nil {
				return nil, err // the pipeline stopped: no more reads, no more parking
			}
			if due, err := r.retryDue(ctx); err != nil {
				return nil, fmt.Errorf("%w: %w", errStoreRead, err) // counted as a store error once, in loadParked
			} else if due {
				return nil, errRetryDue
			}
			if !full {
				t := time.NewTimer(idle)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-r.wake:
					t.Stop()
					idle = r.cfg.MinPoll
				case <-t.C:
				}
				// Let the commits that follow this one gather.
				if wait := time.Until(lastRead.Add(gather)); wait > 0 {
					if !backoff.Sleep(ctx, wait) {
						return nil, ctx.Err()
					}
				}
			}
			since := time.Since(lastRead)
			lastRead = time.Now()
			page, err := r.store.Read(ctx, store.Filter{After: cursor, Limit: r.cfg.BatchSize})
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.cfg.Metrics.errors.WithLabelValues("store").Inc()
				return nil, fmt.Errorf("%w: %w", errStoreRead, err)
			}
			full = len(page.Events) == r.cfg.BatchSize // more is waiting: read again at once
			gather = r.nextGather(len(page.Events), since)
			if len(page.Events) == 0 {
				idle = min(idle*2, r.cfg.MaxPoll)
				continue
			}
			idle = r.cfg.MinPoll
			out := make([]broker.Outgoing[tag], len(page.Events))
			for i, env := range page.Events {
				if out[i], err = r.outgoing(ctx, env); err != nil {
					return nil, err
				}
			}
			cursor = page.Next
			readUpTo.set(store.CursorOf(page.Events[len(page.Events)-1]))
			return out, nil
		}
	}
}

// gatherTarget is the events per read that the gather aims at: beyond a
// few dozen messages per publish, RabbitMQ's cost per message falls
// little (BENCHMARKS.md).
const gatherTarget = 64

// nextGather returns the gather before the next read, after one that found
// n events, since after the start of the read before it: the time that
// rate takes to bring gatherTarget events, within [Gather, MaxGather].
func (r *Relay) nextGather(n int, since time.Duration) time.Duration {
	if r.cfg.Gather < 0 {
		return r.cfg.Gather
	}
	if n == 0 {
		return r.cfg.Gather
	}
	since = min(since, time.Second) // the first read's is from the zero time
	want := since * gatherTarget / time.Duration(n)
	return min(max(want, r.cfg.Gather), r.cfg.MaxGather)
}

// message maps env to the message the relay publishes.
func (r *Relay) message(env event.Envelope) (broker.Outgoing[tag], error) {
	msg, err := broker.EnvelopeMessage(env)
	if err != nil {
		return broker.Outgoing[tag]{}, err
	}
	return broker.Outgoing[tag]{Exchange: r.cfg.Exchange, RoutingKey: env.Type, Message: msg,
		Tag: tag{cursor: store.CursorOf(env), recordedAt: env.RecordedAt}}, nil
}

// outgoing returns what the relay does with env: publish it, or skip it
// because it is parked: already, behind an earlier parked event of its
// stream (which parks it now), or because it cannot be encoded (which parks
// it now too: a stored event must never stop the relay).
func (r *Relay) outgoing(ctx context.Context, env event.Envelope) (broker.Outgoing[tag], error) {
	skip := broker.Outgoing[tag]{Skip: true, Tag: tag{cursor: store.CursorOf(env), recordedAt: env.RecordedAt, skipped: true}}
	if r.parked.has(env.ID) {
		return skip, nil
	}
	if head, ok := r.parked.blocking(env.Subject, env.StreamVersion); ok {
		return skip, r.parkBehind(ctx, env, head)
	}
	o, err := r.message(env)
	if err != nil {
		r.cfg.Metrics.errors.WithLabelValues("encode").Inc()
		return skip, r.parkRefused(ctx, env, ReasonEncode+err.Error())
	}
	return o, nil
}

func (r *Relay) returned(m broker.Returned) { r.noteUnroutable(m) }
