package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/internal/backoff"
)

// options are what a run is told by its flags.
type options struct {
	Duration, Warmup, Drain time.Duration
	Callers                 []int
	// Rate paces the callers to this many events per second in all; 0
	// lets them call as fast as they can.
	Rate                 int
	DatabaseURL, AMQPURL string
	Scenarios            []string // empty: all
	Progress             io.Writer
}

// point is where one scenario runs at one caller count: a PostgreSQL schema,
// a RabbitMQ exchange and a quorum queue of its own, all created fresh.
type point struct {
	callers  int
	dbURL    string // the user's URL with search_path set to schema
	amqpURL  string
	schema   string
	exchange string
	// lag receives, from the designs that can tell, each event's lag from
	// its recording to the broker's confirm.
	lag *latencies
}

// instance is a scenario set up at a point.
type instance struct {
	// call records or publishes one event, as a caller of that design does.
	call func(ctx context.Context) error
	// close releases what setup opened; it is called after the measurement.
	close func(ctx context.Context) error
	// callers overrides the point's caller count (the confirm ceiling
	// publishes from one pipelined publisher).
	callers int
	// noLatency says that a call does not wait for what it starts, so its
	// latency means nothing.
	noLatency bool
}

// scenario is one design, or one ceiling.
type scenario struct {
	name, what string
	// delivers says that its events reach the consumer: false for the
	// commit ceiling, whose rows go nowhere.
	delivers bool
	// once says it runs at one caller count only.
	once  bool
	setup func(ctx context.Context, p point) (*instance, error)
}

// result is a scenario's figures at one caller count.
type result struct {
	scenario, what string
	callers        int
	events         int64 // dispatched during the measured interval
	received       int64 // of those, counted by the consumer
	seconds        float64
	p50, p99       time.Duration
	hasLatency     bool
	lagP50, lagP99 time.Duration
	hasLag         bool
	delivers       bool
	cpu            cpuDelta
	err            error
}

func (r result) perSecond() float64 {
	if r.seconds <= 0 {
		return 0
	}
	return float64(r.events) / r.seconds
}

func (r result) perEvent(d time.Duration) float64 {
	if r.events == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.events)
}

// callTimeout bounds one call: a server that stops answering fails the
// point instead of hanging it.
const callTimeout = 30 * time.Second

// setupTimeout bounds creating and removing a point's objects.
const setupTimeout = 2 * time.Minute

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runAll runs every chosen scenario at every caller count, one after the
// other, and returns their results in that order.
func runAll(ctx context.Context, o options) []result {
	runID := randomHex(4)
	var out []result
	for _, sc := range chosen(o.Scenarios) {
		counts := o.Callers
		if sc.once {
			counts = counts[:1]
		}
		for _, n := range counts {
			if ctx.Err() != nil {
				return out
			}
			progress(o.Progress, "peers: %s, %d caller(s) ...", sc.name, n)
			r := runPoint(ctx, o, sc, n, runID)
			if r.err != nil {
				progress(o.Progress, "peers: %s, %d caller(s): FAILED: %v", sc.name, r.callers, r.err)
			} else {
				progress(o.Progress, "peers: %s, %d caller(s): %.0f events/s", sc.name, r.callers, r.perSecond())
			}
			out = append(out, r)
		}
	}
	return out
}

func chosen(names []string) []scenario {
	all := scenarios()
	if len(names) == 0 {
		return all
	}
	var out []scenario
	for _, sc := range all {
		for _, n := range names {
			if sc.name == n {
				out = append(out, sc)
			}
		}
	}
	return out
}

func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.name)
	}
	return names
}

// runPoint sets a scenario up on fresh objects, warms it up, waits for the
// consumer to catch up, measures, waits for the consumer again, and removes
// everything it created.
func runPoint(ctx context.Context, o options, sc scenario, callers int, runID string) (res result) {
	res = result{scenario: sc.name, what: sc.what, callers: callers, delivers: sc.delivers}
	suffix := runID + "_" + strings.ReplaceAll(sc.name, "-", "_") + fmt.Sprintf("_%d", callers)
	p := point{callers: callers, amqpURL: o.AMQPURL, schema: "peers_" + suffix,
		exchange: "eventbus.peers." + strings.ReplaceAll(suffix, "_", "."), lag: &latencies{}}
	queue := p.exchange + ".counted"
	cleanCtx := context.WithoutCancel(ctx)

	var err error
	if p.dbURL, err = withSearchPath(o.DatabaseURL, p.schema); err != nil {
		res.err = err
		return res
	}
	if err := createSchema(ctx, o.DatabaseURL, p.schema); err != nil {
		res.err = err
		return res
	}
	defer func() { res.err = errors.Join(res.err, dropSchema(cleanCtx, o.DatabaseURL, p.schema)) }()
	defer func() { res.err = errors.Join(res.err, deleteBrokerObjects(cleanCtx, o.AMQPURL, p.exchange, queue)) }()

	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	cons, err := startConsumer(setupCtx, o.AMQPURL, p.exchange, queue)
	if err != nil {
		cancel()
		res.err = err
		return res
	}
	defer cons.stop()
	inst, err := sc.setup(setupCtx, p)
	cancel()
	if err != nil {
		res.err = fmt.Errorf("set up: %w", err)
		return res
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(cleanCtx, setupTimeout)
		defer cancel()
		if err := inst.close(closeCtx); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("close: %w", err))
		}
	}()
	if inst.callers > 0 {
		callers = inst.callers
		res.callers = callers
	}

	// Warm-up: connections, caches, the relay's or forwarder's first reads.
	warm, err := drive(ctx, callers, o.Warmup, o.Rate, inst.call, nil)
	if err != nil {
		res.err = fmt.Errorf("warm-up: %w", err)
		return res
	}
	base := cons.received.Load()
	if sc.delivers {
		if err := cons.waitFor(ctx, warm, o.Drain); err != nil {
			res.err = fmt.Errorf("warm-up: %w", err)
			return res
		}
		base = cons.received.Load()
	}
	p.lag.reset()

	lat := &latencies{}
	before := readCPU()
	start := time.Now()
	n, err := drive(ctx, callers, o.Duration, o.Rate, inst.call, lat)
	end := time.Now()
	res.events = n
	if err != nil {
		res.err = err
		return res
	}
	if sc.delivers {
		err = cons.waitFor(ctx, base+n, o.Drain)
		end = time.Unix(0, cons.last.Load())
	}
	after := readCPU()
	res.received = cons.received.Load() - base
	res.seconds = end.Sub(start).Seconds()
	res.cpu = deltaCPU(before, after)
	if !inst.noLatency {
		res.p50, res.p99, res.hasLatency = lat.quantile(0.50), lat.quantile(0.99), true
	}
	if p.lag.count() > 0 {
		res.lagP50, res.lagP99, res.hasLag = p.lag.quantile(0.50), p.lag.quantile(0.99), true
	}
	res.err = err
	return res
}

// drive runs call on n goroutines for d, and returns how many calls
// succeeded. The first failure stops them all. lat, if set, receives each
// call's latency. A rate above zero paces the calls: call i of the run
// starts no earlier than i/rate seconds after the first, and callers that
// fall behind catch up at once, so that the rate holds on average.
func drive(parent context.Context, n int, d time.Duration, rate int, call func(ctx context.Context) error, lat *latencies) (int64, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	start := time.Now()
	deadline := start.Add(d)
	var next atomic.Int64
	pace := func() bool {
		if rate <= 0 {
			return true
		}
		due := start.Add(time.Duration(next.Add(1)-1) * time.Second / time.Duration(rate))
		if wait := time.Until(due); wait > 0 && !backoff.Sleep(ctx, wait) {
			return false
		}
		return time.Now().Before(deadline)
	}
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	for range n {
		wg.Go(func() {
			var mine []time.Duration
			if lat != nil {
				mine = make([]time.Duration, 0, 4096)
				defer func() { lat.add(mine) }()
			}
			for ctx.Err() == nil && time.Now().Before(deadline) && pace() {
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				t0 := time.Now()
				err := call(cctx)
				took := time.Since(t0)
				ccancel()
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { ferr = err; cancel() })
					}
					return
				}
				done.Add(1)
				if lat != nil {
					mine = append(mine, took)
				}
			}
		})
	}
	wg.Wait()
	if ferr == nil {
		ferr = parent.Err()
	}
	return done.Load(), ferr
}

// withSearchPath returns the database URL with its search_path set to
// schema, so that every connection of a scenario works in its own schema.
func withSearchPath(rawURL, schema string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("the database URL is not a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", "eventbus-peers")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func createSchema(ctx context.Context, dbURL, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	return nil
}

func dropSchema(ctx context.Context, dbURL, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("drop schema %s: %w (drop it by hand)", schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w (drop it by hand)", schema, err)
	}
	return nil
}

func deleteBrokerObjects(ctx context.Context, amqpURL, exchange, queue string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	conn, err := dialAMQP(ctx, amqpURL, "peers-cleanup")
	if err != nil {
		return fmt.Errorf("delete %s and %s: %w (delete them by hand)", queue, exchange, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("delete %s and %s: %w", queue, exchange, err)
	}
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		return fmt.Errorf("delete queue %s: %w", queue, err)
	}
	if err := ch.ExchangeDelete(exchange, false, false); err != nil {
		return fmt.Errorf("delete exchange %s: %w", exchange, err)
	}
	return nil
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
