// Package bench is the engine of `eventbus bench`: it measures the bus on
// the store and broker the configuration names (PostgreSQL and RabbitMQ, or
// the embedded SQLite store and the in-process broker) and sets each figure
// beside a ceiling measured in the same run: what the servers do when the
// bus is not in the way.
//
// Everything a run creates has names of its own and is removed at the end,
// also when the run is interrupted: a PostgreSQL schema
// eventbus_bench_<random> (the service reaches it through the URL's
// search_path), a RabbitMQ exchange and queues named eventbus.bench.<random>…,
// or a temporary directory for the embedded store. The user's own tables,
// exchange and data directory are never touched.
//
// The scenarios (see Scenarios) run one after the other on one service (the
// relay runs throughout, and a consumer on a queue bound to the bench
// exchange receives every event), each followed by a wait until the consumer
// has received everything the scenario recorded, so that none leaves work
// for the next.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
)

// Scenario names.
const (
	// DispatchLatency dispatches one event per transaction from one caller;
	// the latency is that of the Dispatch call, commit included.
	DispatchLatency = "dispatch-latency"
	// E2E16 dispatches one event per transaction from 16 callers, on many
	// streams, and measures until the consumer has received the last one;
	// the latency is from the start of Dispatch to the consumer's receipt.
	E2E16 = "e2e-16"
	// E2EBatch is E2E16 with batches of events per transaction.
	E2EBatch = "e2e-batch"
	// E2EStream is one caller recording batches of events in one stream,
	// as a bulk import into one aggregate does: the relay has one event of
	// a stream awaiting its confirm at a time, so this measures a stream's
	// own pace.
	E2EStream = "e2e-stream"
	// RelayLag dispatches at a steady rate and measures the relay's lag
	// from an event's recording to the broker's confirm.
	RelayLag = "relay-lag"
	// HTTP16 posts one event per request to POST /v1/events from 16
	// clients; the latency is the request's.
	HTTP16 = "http-16"
	// ConsumeInbox measures a consumer group whose handler writes one row
	// in the inbox transaction, 16 handlers at once; the latency is the
	// inbox transaction's (begin, record, handler, commit).
	ConsumeInbox = "consume-inbox"
	// ConsumeInbox1 is ConsumeInbox with one handler.
	ConsumeInbox1 = "consume-inbox-1"
	// Replay replays the stored events to one queue.
	Replay = "replay"
)

// Scenarios returns the scenario names in the order a run takes them.
// Replay comes after the others, so that it replays what they stored; all
// but e2e-stream, whose one long stream would go at that stream's pace
// (which e2e-stream measures) and hide replay's own.
func Scenarios() []string {
	return []string{DispatchLatency, E2E16, E2EBatch, RelayLag, HTTP16, ConsumeInbox, ConsumeInbox1, Replay, E2EStream}
}

// ErrUnknownScenario reports a scenario name Run does not know.
var ErrUnknownScenario = errors.New("unknown scenario")

// Defaults for Options.
const (
	DefaultDuration     = 10 * time.Second
	DefaultCallers      = 16
	DefaultBatchSize    = 100
	DefaultBatchCallers = 4
	DefaultRelayLagRate = 5000
	DefaultDrainTimeout = 2 * time.Minute
	DefaultReplayEvents = 50000
)

// Options sizes a run. The zero value runs every scenario for
// DefaultDuration (relay-lag for twice that).
type Options struct {
	// Scenarios to run, by name (see Scenarios); empty runs all, in the
	// order of Scenarios.
	Scenarios []string
	// Duration is how long each scenario records events; DefaultDuration
	// if zero, unless Events is set, when scenarios run until they reach
	// Events.
	Duration time.Duration
	// Events, when set, is how many events each scenario records at most
	// (relay-lag: at its rate; replay: how many to replay, stored first if
	// the store holds fewer).
	Events int64
	// ReplayEvents is how many events replay wants in the store when Events
	// is not set: it stores the missing ones first, then replays the store
	// again and again until Duration is up; DefaultReplayEvents if zero.
	ReplayEvents int64
	// RelayLagDuration is how long relay-lag runs; 2 × Duration if zero.
	RelayLagDuration time.Duration
	// CeilingDuration is how long each ceiling is measured; Duration / 2
	// (at least one second) if zero.
	CeilingDuration time.Duration
	// Callers is how many goroutines dispatch at once in e2e-16, relay-lag
	// and http-16; DefaultCallers if zero.
	Callers int
	// BatchSize is how many events e2e-batch records per transaction,
	// from BatchCallers callers; DefaultBatchSize and DefaultBatchCallers if
	// zero.
	BatchSize    int
	BatchCallers int
	// RelayLagRate is relay-lag's steady rate, events/s;
	// DefaultRelayLagRate if zero.
	RelayLagRate int
	// RelayLagBatch is how many events each of relay-lag's transactions
	// records; 1 if zero. The same rate in fewer transactions leaves the
	// relay more of the machine: one event per transaction at 5,000/s
	// takes more CPU than two cores have on PostgreSQL + RabbitMQ.
	RelayLagBatch int
	// DrainTimeout bounds the wait, after a scenario, for the relay and the
	// consumer to catch up; DefaultDrainTimeout if zero.
	DrainTimeout time.Duration
	// Relay tunes the service's relay (BatchSize, Window, Gather...), to
	// compare settings; its OnConfirmed is the bench's own.
	Relay relay.Config
	// Progress, if set, receives a line as each step starts and ends.
	Progress io.Writer
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios()
	}
	known := Scenarios()
	var picked []string
	for _, name := range known { // run order, whatever order they were given in
		if slices.Contains(o.Scenarios, name) {
			picked = append(picked, name)
		}
	}
	for _, name := range o.Scenarios {
		if !slices.Contains(known, name) {
			return fmt.Errorf("bench: %w %q (known: %s)", ErrUnknownScenario, name, strings.Join(known, ", "))
		}
	}
	o.Scenarios = picked
	switch {
	case o.Duration < 0, o.Events < 0, o.ReplayEvents < 0, o.RelayLagDuration < 0, o.CeilingDuration < 0, o.Callers < 0,
		o.BatchSize < 0, o.BatchCallers < 0, o.RelayLagRate < 0, o.RelayLagBatch < 0:
		return errors.New("bench: durations, sizes and counts must not be negative")
	}
	if o.Duration == 0 && o.Events == 0 {
		o.Duration = DefaultDuration
	}
	if o.RelayLagDuration == 0 {
		if o.Duration > 0 {
			o.RelayLagDuration = 2 * o.Duration
		}
	}
	if o.CeilingDuration == 0 {
		o.CeilingDuration = max(o.Duration/2, time.Second)
		if o.Duration > 0 && o.Duration < time.Second {
			o.CeilingDuration = o.Duration
		}
	}
	if o.Callers == 0 {
		o.Callers = DefaultCallers
	}
	if o.ReplayEvents == 0 {
		o.ReplayEvents = DefaultReplayEvents
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchCallers == 0 {
		o.BatchCallers = DefaultBatchCallers
	}
	if o.RelayLagRate == 0 {
		o.RelayLagRate = DefaultRelayLagRate
	}
	if o.RelayLagBatch == 0 {
		o.RelayLagBatch = 1
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Run measures the bus on the store and broker cfg names, as opts says, and
// returns the report. It creates everything it uses under names of its own
// and removes it before returning, also when ctx ends; then it returns the
// scenarios measured so far with ctx's error. A scenario that fails is
// reported with its error, and the run goes on; Run fails only when it
// cannot set up or when ctx ends.
func Run(ctx context.Context, cfg config.Config, opts Options) (rep Report, err error) {
	if err := opts.setDefaults(); err != nil {
		return Report{}, err
	}
	rep = Report{Started: time.Now().UTC(), Options: reportOptions(opts)}
	rep.Machine = describeMachine()
	rep.Machine.LoadStart = loadAverage()
	defer func() {
		rep.Machine.LoadEnd = loadAverage()
		rep.Targets = evaluateTargets(rep)
	}()

	env, err := isolate(ctx, cfg)
	if err != nil {
		return rep, err
	}
	defer func() {
		if cerr := env.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep.Store, rep.Broker, rep.Objects = env.storeKind(), env.brokerKind(), env.prefix
	rep.Machine.StoreVersion = env.storeVersion(ctx)

	progress(opts.Progress, "bench: store %s, broker %s; bench objects %s", rep.Store, rep.Broker, env.prefix)
	m, err := openMeter(ctx, env)
	if err != nil {
		return rep, err
	}
	defer m.close()
	rep.Ceilings = measureCeilings(ctx, env, opts, m, &rep.Machine)
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}

	r, err := start(ctx, env, opts, m)
	if err != nil {
		return rep, err
	}
	defer func() {
		if serr := r.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()

	for _, name := range opts.Scenarios {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		res := r.run(ctx, name)
		res.attachCeiling(rep.Ceilings)
		rep.Scenarios = append(rep.Scenarios, res)
		progress(opts.Progress, "bench: %s", res.summary())
	}
	return rep, ctx.Err()
}

// runner holds the open service and what the scenarios share.
type runner struct {
	env    *environment
	opts   Options
	meter  *meter
	svc    *service.Service
	sink   *sink
	cancel context.CancelFunc
	done   chan error
	// httpAddr is where the service's HTTP API listens.
	httpAddr string
	// lag receives the relay's commit-to-confirm lags while relay-lag runs.
	lag atomic.Pointer[histogram]
	seq atomic.Int64
	// The scenario's measurement: the memory sampler, and the counters at
	// its start (see measureFromHere).
	rss    *rssSampler
	before usage
}

// measureFromHere starts the scenario's memory and CPU measurement again,
// for a scenario that had to prepare first (replay stores events).
func (r *runner) measureFromHere(ctx context.Context) {
	r.rss.peak.Store(residentBytes())
	r.before = r.meter.snapshot(ctx)
}

// start opens the service on env, runs its relay (and its HTTP API when a
// scenario needs it), and starts the consumer that receives every event.
func start(ctx context.Context, env *environment, opts Options, m *meter) (*runner, error) {
	r := &runner{env: env, opts: opts, meter: m, done: make(chan error, 1)}
	progress(opts.Progress, "bench: opening the service")
	relayConfig := opts.Relay
	relayConfig.OnConfirmed = func(lag time.Duration) {
		if h := r.lag.Load(); h != nil {
			h.record(lag)
		}
	}
	svc, err := service.Open(ctx, env.cfg, service.Config{
		Logger:  opts.Logger,
		Migrate: true,
		Source:  sourcePrefix,
		Relay:   relayConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: open the service: %w", err)
	}
	r.svc = svc
	env.onCleanup(func(ctx context.Context) error { return env.removeBrokerObjects(ctx, svc.Broker) })
	ok := false
	defer func() {
		if !ok {
			_ = r.stop()
		}
	}()
	if err := env.prepareStore(ctx, svc); err != nil {
		return nil, err
	}

	ready := make(chan string, 1)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	wantHTTP := slices.Contains(opts.Scenarios, HTTP16)
	go func() {
		r.done <- svc.Run(runCtx, service.RunOptions{HTTP: wantHTTP, Relay: true, ShutdownTimeout: 10 * time.Second,
			Ready: func(addr string) { ready <- addr }})
	}()
	if wantHTTP {
		select {
		case r.httpAddr = <-ready:
		case err := <-r.done:
			r.done <- err
			return nil, fmt.Errorf("bench: the service stopped: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := waitFor(ctx, 30*time.Second, func() bool { return svc.Relay().Leader() }); err != nil {
		return nil, fmt.Errorf("bench: the relay did not start publishing: %w", err)
	}
	if r.sink, err = startSink(ctx, svc.Broker, env.cfg.Exchange, env.sinkQueue()); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// stop stops the consumer and the service, and closes it.
func (r *runner) stop() error {
	var errs []error
	if r.sink != nil {
		r.sink.stop()
	}
	if r.cancel != nil {
		r.cancel()
		select {
		case err := <-r.done:
			errs = append(errs, err)
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("bench: the service did not stop within 30 s"))
		}
	}
	// The broker objects go before the broker connection does.
	errs = append(errs, r.env.runCleanups(cleanupBroker))
	errs = append(errs, r.svc.Close())
	return errors.Join(errs...)
}

// run runs one scenario, with the memory sampler, and waits until what it
// recorded has reached the consumer.
func (r *runner) run(ctx context.Context, name string) Result {
	progress(r.opts.Progress, "bench: %s ...", name)
	// Start each scenario from the memory it needs, not the last one's.
	runtime.GC()
	debug.FreeOSMemory()
	r.rss = startRSS()
	r.before = r.meter.snapshot(ctx)
	res := r.scenario(ctx, name)
	res.CPU, res.WAL = between(r.before, r.meter.snapshot(ctx), res.Events)
	res.PeakRSSBytes = r.rss.finish()
	if name == Replay && res.Error == "" {
		// After the scenario's CPU and memory are taken: the pairs, half
		// of them a ceiling, are not part of them.
		res.Beside = r.replayBeside(ctx)
	}
	return res
}

func (r *runner) scenario(ctx context.Context, name string) Result {
	var (
		res Result
		err error
	)
	switch name {
	case DispatchLatency:
		res, err = r.dispatchLatency(ctx)
	case E2E16:
		res, err = r.endToEnd(ctx, name, r.opts.Callers, 1)
	case E2EBatch:
		res, err = r.endToEnd(ctx, name, r.opts.BatchCallers, r.opts.BatchSize)
	case E2EStream:
		res, err = r.endToEnd(ctx, name, 1, r.opts.BatchSize)
	case RelayLag:
		res, err = r.relayLag(ctx)
	case HTTP16:
		res, err = r.httpPublish(ctx)
	case ConsumeInbox:
		res, err = r.consumeInbox(ctx, name, 16)
	case ConsumeInbox1:
		res, err = r.consumeInbox(ctx, name, 1)
	case Replay:
		res, err = r.replay(ctx)
	}
	res.Name = name
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// waitFor polls cond until it holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("still waiting after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, format+"\n", args...)
}
