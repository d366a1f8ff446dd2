package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
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
	// Partitions is the relay's partition count, N: an event belongs to
	// partition event.PartitionOf(subject, id, N). Every process of the
	// relay must have the same; Run refuses to run next to processes with
	// another. Default 1, at most store.MaxPartitions.
	Partitions int
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
	// times per TTL. Every StandbyPoll (default 500ms) each process
	// announces itself for a LeaseTTL, and claims or hands over partitions
	// to hold its share.
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
	if c.Partitions == 0 {
		c.Partitions = 1
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

// Relay publishes committed events from a store to a broker: the
// partitions of its name that this process holds. Create it with New and
// start it with Run.
type Relay struct {
	cfg    Config
	store  store.Store
	broker broker.Broker
	log    *slog.Logger

	mu sync.Mutex
	// running are the partitions this process publishes, or is about to;
	// stopping those it is handing over.
	running  map[int]*partitionRun
	stopping map[int]*partitionRun
	// ended tells Run that a partition stopped by itself (its lease lost).
	ended chan struct{}
	held  atomic.Int32
	wg    sync.WaitGroup
}

// partitionRun is one partition being published.
type partitionRun struct {
	w    *worker
	stop context.CancelFunc
	done chan struct{}
}

// worker publishes one partition while this process holds its lease.
type worker struct {
	cfg       Config
	store     store.Store
	broker    broker.Broker
	partition store.Partition
	log       *slog.Logger
	wake      chan struct{}
	leader    atomic.Bool
	held      *atomic.Int32
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
	if err := store.CheckPartition(0, cfg.Partitions); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return &Relay{
		cfg:      cfg,
		store:    s,
		broker:   b,
		log:      cfg.Logger.With("relay", cfg.Name, "holder", cfg.Holder),
		running:  map[int]*partitionRun{},
		stopping: map[int]*partitionRun{},
		ended:    make(chan struct{}, 1),
	}, nil
}

func (r *Relay) newWorker(number int) *worker {
	return &worker{
		cfg:       r.cfg,
		store:     r.store,
		broker:    r.broker,
		partition: store.Partition{Relay: r.cfg.Name, Number: number},
		log:       r.log.With("partition", number),
		wake:      make(chan struct{}, 1),
		held:      &r.held,
		backoff:   backoff.Policy{Min: r.cfg.MinBackoff, Max: r.cfg.MaxBackoff},
		parked:    newParkedSet(),
	}
}

// Holder returns the identity this relay holds its leases under.
func (r *Relay) Holder() string { return r.cfg.Holder }

// Leader reports whether the relay holds a partition's lease and
// publishes.
func (r *Relay) Leader() bool { return r.held.Load() > 0 }

// Held returns the partitions this relay publishes now, in order.
func (r *Relay) Held() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for p, run := range r.running {
		if run.w.leader.Load() {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// setLeader records whether the worker publishes, for Leader and the
// metric.
func (w *worker) setLeader(leading bool) {
	if w.leader.Swap(leading) == leading {
		return
	}
	if leading {
		w.held.Add(1)
		w.cfg.Metrics.leader.Inc()
	} else {
		w.held.Add(-1)
		w.cfg.Metrics.leader.Dec()
	}
}

// Wake tells the relay that events have just committed, so that it reads the
// store now rather than at its next poll. It never blocks. The bus calls it
// after it commits in the same process (eventbus.Config.OnCommit).
func (r *Relay) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.running {
		select {
		case run.w.wake <- struct{}{}:
		default:
		}
	}
}

// ErrPartitionCount reports that this relay is configured with another
// partition count than the processes of its name that run: see
// store.ErrPartitionCount. Run returns it.
var ErrPartitionCount = store.ErrPartitionCount

// Run runs the relay until ctx ends. Every StandbyPoll it announces itself
// in the store (a heartbeat that lasts LeaseTTL) and takes its share of the
// partitions: with M live processes, each holds N/M of them, or one more;
// a process with more than its share hands the rest over, one with less
// claims free or expired partitions. Each partition it holds it publishes
// until it loses the lease or hands it over. It returns nil after a clean
// stop, in which every partition waits for the confirms in flight, saves
// its checkpoint and releases its lease; and an error wrapping
// ErrPartitionCount when processes with another partition count run.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.StoredVersions {
		ctx = event.WithStoredVersions(ctx)
	}
	r.log.Info("relay starting", "exchange", r.cfg.Exchange, "partitions", r.cfg.Partitions)
	defer r.log.Info("relay stopped")
	defer r.stopAll()
	tick := time.NewTicker(r.cfg.StandbyPoll)
	defer tick.Stop()
	failures := 0
	// The count the relay ran with, to say so when this process changes it.
	before := 0
	if st, err := r.store.RelayState(ctx, r.cfg.Name); err == nil {
		before = st.Partitions
	}
	for ctx.Err() == nil {
		err := r.balance(ctx)
		if err == nil && before != 0 && before != r.cfg.Partitions {
			r.log.Warn("relay partition count changed: every new partition starts from the lowest checkpoint of the old ones, "+
				"so events published after it by some old partitions are published again", "from", before, "to", r.cfg.Partitions)
			before = 0
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, store.ErrPartitionCount):
			r.log.Error("relay cannot run", "err", err)
			return fmt.Errorf("relay: %w", err)
		case err != nil:
			r.cfg.Metrics.errors.WithLabelValues("lease").Inc()
			failures++
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("relay cannot reach the store to share its partitions; the partitions it holds go on", "err", err)
			}
		default:
			failures = 0
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-r.ended:
		}
	}
	return nil
}

// stopAll stops every partition, which saves its checkpoint and releases
// its lease, and leaves the relay's live processes.
func (r *Relay) stopAll() {
	r.mu.Lock()
	for p, run := range r.running {
		run.stop()
		r.stopping[p] = run
		delete(r.running, p)
	}
	r.mu.Unlock()
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseTTL)
	defer cancel()
	if err := r.store.Leave(ctx, r.cfg.Name, r.cfg.Holder); err != nil {
		r.log.Warn("relay could not leave; the others take its share when its heartbeat expires", "err", err)
	}
}

// balance is one round of sharing: the heartbeat, then a claim of free
// partitions or a handover of extra ones, towards this process's share.
func (r *Relay) balance(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL)
	defer cancel()
	members, err := r.store.Heartbeat(ctx, r.cfg.Name, r.cfg.Holder, r.cfg.Partitions, r.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	leases, err := r.store.Leases(ctx, r.cfg.Name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	mine := make(map[int]bool, len(r.running))
	for p := range r.running {
		mine[p] = true
	}
	busy := make(map[int]bool, len(r.stopping))
	for p := range r.stopping {
		busy[p] = true // being handed over: not to claim again
	}
	r.mu.Unlock()
	plan := share(r.cfg.Holder, r.cfg.Partitions, members, leases, mine, busy, time.Now())
	for _, p := range plan.release {
		r.handOver(p)
	}
	claimed := 0
	for _, p := range plan.free {
		if claimed >= plan.claim {
			break
		}
		lease, err := r.store.Claim(ctx, store.Partition{Relay: r.cfg.Name, Number: p}, r.cfg.Holder, r.cfg.LeaseTTL)
		if err != nil {
			return err
		}
		if lease.Holder != r.cfg.Holder {
			continue // another process was quicker
		}
		claimed++
		r.start(ctx, p, lease)
	}
	return nil
}

// sharePlan is what one process does in a round of sharing.
type sharePlan struct {
	target  int   // the partitions it should hold
	claim   int   // how many more to claim
	free    []int // the partitions no live lease holds, to claim from
	release []int // the partitions to hand over
}

// share computes the plan of holder, given the live processes, the leases,
// the partitions holder runs (mine) and those it is handing over (busy),
// at now. Every process computes the same
// targets from the same view: N/M each, and one more for the N%M
// processes that hold the most now (ties by holder), so that a process
// that holds its share keeps it.
func share(holder string, n int, members []store.Member, leases []store.Lease, mine, busy map[int]bool, now time.Time) sharePlan {
	held := map[string]int{}
	for _, m := range members {
		held[m.Holder] = 0
	}
	held[holder] = len(mine)
	taken := map[int]bool{}
	for _, l := range leases {
		if l.Number >= n {
			continue
		}
		if l.Holder != "" && l.Until.After(now) {
			taken[l.Number] = true
			if l.Holder != holder {
				if _, ok := held[l.Holder]; ok {
					held[l.Holder]++
				}
			}
		}
	}
	order := make([]string, 0, len(held))
	for h := range held {
		order = append(order, h)
	}
	slices.SortFunc(order, func(a, b string) int {
		if held[a] != held[b] {
			return held[b] - held[a]
		}
		return strings.Compare(a, b)
	})
	base, extra := n/len(order), n%len(order)
	plan := sharePlan{target: base}
	if i := slices.Index(order, holder); i < extra {
		plan.target = base + 1
	}
	if over := len(mine) - plan.target; over > 0 {
		var ps []int
		for p := range mine {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		plan.release = ps[len(ps)-over:]
		return plan
	}
	plan.claim = plan.target - len(mine)
	if plan.claim == 0 {
		return plan
	}
	// Start looking at a place of its own, so that processes claiming at
	// once mostly try different partitions.
	start := int(event.StreamHash(holder, [16]byte{}) % uint32(n))
	for i := range n {
		p := (start + i) % n
		if !taken[p] && !mine[p] && !busy[p] {
			plan.free = append(plan.free, p)
		}
	}
	return plan
}

// start publishes partition p from lease, until it is handed over or lost.
func (r *Relay) start(ctx context.Context, p int, lease store.Lease) {
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	run := &partitionRun{w: r.newWorker(p), stop: stop, done: make(chan struct{})}
	r.mu.Lock()
	r.running[p] = run
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(run.done)
		defer stop()
		run.w.run(runCtx, lease)
		r.mu.Lock()
		if r.running[p] == run {
			delete(r.running, p)
		}
		if r.stopping[p] == run {
			delete(r.stopping, p)
		}
		r.mu.Unlock()
		select {
		case r.ended <- struct{}{}:
		default:
		}
	}()
}

// handOver stops publishing p: the worker waits for its confirms, saves
// the checkpoint and releases the lease, for another process to claim.
func (r *Relay) handOver(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run, ok := r.running[p]
	if !ok {
		return
	}
	r.log.Info("relay hands a partition over to share them", "partition", p)
	delete(r.running, p)
	r.stopping[p] = run
	run.stop()
}

// run publishes the partition from lease until ctx ends or the lease is
// lost; after another failure it claims the lease again and resumes from
// the stored checkpoint.
func (w *worker) run(ctx context.Context, lease store.Lease) {
	failures := 0
	for {
		w.log.Info("relay is the leader", "checkpoint_position", lease.Checkpoint.Position)
		err := w.lead(ctx, lease.Checkpoint)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrLeaseLost) {
			w.log.Warn("relay lost the partition's lease to another process", "err", err)
			return
		}
		failures++
		pause := w.backoff.Delay(failures)
		w.log.Warn("relay interrupted; resuming from its checkpoint", "err", err, "retry_in", pause)
		if !backoff.Sleep(ctx, pause) {
			return
		}
		lease, err = w.store.Claim(ctx, w.partition, w.cfg.Holder, w.cfg.LeaseTTL)
		if err != nil || lease.Holder != w.cfg.Holder {
			if err != nil && ctx.Err() == nil {
				w.cfg.Metrics.errors.WithLabelValues("lease").Inc()
				w.log.Warn("relay cannot claim the partition again; leaving it to the next round", "err", err)
			}
			return
		}
	}
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
func (r *worker) lead(ctx context.Context, checkpoint store.Cursor) error {
	r.setLeader(true)
	defer r.setLeader(false)
	r.cfg.Metrics.checkpoint.WithLabelValues(strconv.Itoa(r.partition.Number)).Set(float64(checkpoint.Position))

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
				r.cfg.Metrics.checkpoint.WithLabelValues(strconv.Itoa(r.partition.Number)).Set(float64(c.Position))
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
		r.cfg.Metrics.checkpoint.WithLabelValues(strconv.Itoa(r.partition.Number)).Set(float64(final.Position))
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
func (r *worker) publish(publishCtx context.Context, checkpoint store.Cursor, advance func(store.Cursor)) error {
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
func (r *worker) tail(cursor store.Cursor, readUpTo *readMark) func(context.Context) ([]broker.Outgoing[tag], error) {
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
			page, err := r.readPartition(ctx, cursor)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
			full = page.Full // more is waiting: read again at once
			gather = r.nextGather(len(page.Events), since)
			out := make([]broker.Outgoing[tag], len(page.Events), len(page.Events)+1)
			for i, env := range page.Events {
				if out[i], err = r.outgoing(ctx, env); err != nil {
					return nil, err
				}
			}
			if len(page.Events) == 0 || store.CursorOf(page.Events[len(page.Events)-1]) != page.Next {
				if page.Next == cursor {
					idle = min(idle*2, r.cfg.MaxPoll)
					continue
				}
				// The read passed other partitions' events: the
				// checkpoint moves past them too, in order, so that a
				// partition with quiet streams does not read them again.
				out = append(out, broker.Outgoing[tag]{Skip: true, Tag: tag{cursor: page.Next, skipped: true}})
			}
			idle = r.cfg.MinPoll
			cursor = page.Next
			readUpTo.set(page.Next)
			return out, nil
		}
	}
}

// readPartition reads the partition's events after cursor.
func (r *worker) readPartition(ctx context.Context, cursor store.Cursor) (store.PartitionPage, error) {
	page, err := r.store.ReadPartition(ctx, store.PartitionFilter{After: cursor, Limit: r.cfg.BatchSize,
		Number: r.partition.Number, Count: r.cfg.Partitions})
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Metrics.errors.WithLabelValues("store").Inc()
		}
		return page, fmt.Errorf("%w: %w", errStoreRead, err)
	}
	return page, nil
}

// gatherTarget is the events per read that the gather aims at: beyond a
// few dozen messages per publish, RabbitMQ's cost per message falls
// little (BENCHMARKS.md).
const gatherTarget = 64

// nextGather returns the gather before the next read, after one that found
// n events, since after the start of the read before it: the time that
// rate takes to bring gatherTarget events, within [Gather, MaxGather].
func (r *worker) nextGather(n int, since time.Duration) time.Duration {
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
func (r *worker) message(env event.Envelope) (broker.Outgoing[tag], error) {
	msg, err := broker.EnvelopeMessage(env)
	if err != nil {
		return broker.Outgoing[tag]{}, err
	}
	return broker.Outgoing[tag]{Exchange: r.cfg.Exchange, RoutingKey: env.Type, Message: msg, Stream: env.Subject,
		Tag: tag{cursor: store.CursorOf(env), recordedAt: env.RecordedAt}}, nil
}

// outgoing returns what the relay does with env: publish it, or skip it
// because it is parked: already, behind an earlier parked event of its
// stream (which parks it now), or because it cannot be encoded (which parks
// it now too: a stored event must never stop the relay).
func (r *worker) outgoing(ctx context.Context, env event.Envelope) (broker.Outgoing[tag], error) {
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

func (r *worker) returned(m broker.Returned) { r.noteUnroutable(m) }
