package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

// workerEnv starts the test binary as a consumer process of the effect
// group (see runWorkerProcess).
const workerEnv = "EVENTBUS_CHAOS_WORKER"

// workerMaxAttempts bounds the effect group's attempts: its handler fails
// only when its PostgreSQL connection does, so retries must outlast the
// longest outage the schedule makes (2 s) with room to spare.
const workerMaxAttempts = 12

// workerConfig is the effect group's configuration, the same in the test
// process and in the consumer subprocess.
func workerConfig(group, exchange string) consume.Config {
	return consume.Config{
		Group:           group,
		Exchange:        exchange,
		Concurrency:     8,
		Prefetch:        64,
		OrderedByStream: true,
		MaxAttempts:     workerMaxAttempts,
		// Kills and cuts redeliver whole prefetch windows: never mistake
		// that for a poison message.
		MaxDeliveries:   1000,
		Backoff:         consume.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2},
		ShutdownTimeout: 10 * time.Second,
		Logger:          quietLogger(),
	}
}

// observerConfig is the observer group's: one process whose handler never
// fails, where per-stream order is promised.
func observerConfig(group, exchange string) consume.Config {
	return consume.Config{
		Group:           group,
		Exchange:        exchange,
		Concurrency:     4,
		OrderedByStream: true,
		MaxAttempts:     1,
		MaxDeliveries:   1000,
		ShutdownTimeout: 10 * time.Second,
		Logger:          quietLogger(),
	}
}

func quietLogger() *slog.Logger {
	level := slog.LevelError + 1
	if os.Getenv("CHAOS_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// effectRoute writes one effect row per handled event, in the inbox's
// transaction: exactly once, whatever the broker redelivers. crash, when
// set, is called after the write and before the commit: the consumer
// process uses it to die there.
func effectRoute(worker string, crash func(env event.Envelope)) consume.Route {
	return consume.OnAnyTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope) error {
		// A little work, so that handlers overlap.
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, worker, subject, version) VALUES ($1, $2, $3, $4)`,
			env.ID, worker, env.Subject, env.StreamVersion)
		if err == nil && crash != nil {
			crash(env)
		}
		return err
	})
}

// worker is one consumer of the effect group.
type worker struct {
	c     *consume.Consumer
	store *postgres.Store
	b     *rabbitmq.Broker
}

func openWorker(ctx context.Context, dbURL, amqpURL, exchange, group, name string, crash func(event.Envelope)) (*worker, error) {
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	b, err := rabbitmq.Open(ctx, amqpURL, rabbitmq.Config{ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	cfg := workerConfig(group, exchange)
	cfg.Inbox = consume.NewInbox[pgx.Tx](st)
	c, err := consume.New(b, cfg, effectRoute(name, crash))
	if err != nil {
		_ = b.Close()
		_ = st.Close()
		return nil, err
	}
	return &worker{c: c, store: st, b: b}, nil
}

func (w *worker) close() {
	_ = w.b.Close()
	_ = w.store.Close()
}

// crashSignal asks the consumer process to SIGKILL itself in the middle of
// its next handler: inside the inbox transaction, after the effect's write
// and before the commit, with other handlers in flight and prefetched
// messages unacknowledged. A kill from outside could land while it idles.
const crashSignal = syscall.SIGUSR1

// runWorkerProcess is the consumer subprocess: the test binary started
// again with workerEnv set. It prints its stats as a JSON line every 20 ms,
// so that the test knows what it did until the moment it is killed.
func runWorkerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var armed atomic.Bool
	arm := make(chan os.Signal, 1)
	signal.Notify(arm, crashSignal)
	go func() {
		for range arm {
			armed.Store(true)
		}
	}()
	var w *worker
	crash := func(env event.Envelope) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		line, _ := json.Marshal(statsLine{PID: os.Getpid(), Stats: w.c.Stats(), KilledIn: env.ID.String()})
		fmt.Fprintf(os.Stdout, "%s\n", line)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	w, err := openWorker(ctx, os.Getenv("CHAOS_DATABASE_URL"), os.Getenv("CHAOS_AMQP_URL"),
		os.Getenv("CHAOS_EXCHANGE"), os.Getenv("CHAOS_GROUP"), os.Getenv("CHAOS_WORKER_NAME"), crash)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	defer w.close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			line, _ := json.Marshal(statsLine{PID: os.Getpid(), Stats: w.c.Stats()})
			fmt.Fprintf(os.Stdout, "%s\n", line)
		}
	}()
	err = w.c.Run(ctx)
	<-done
	line, _ := json.Marshal(statsLine{PID: os.Getpid(), Stats: w.c.Stats()})
	fmt.Fprintf(os.Stdout, "%s\n", line)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

type statsLine struct {
	PID   int           `json:"pid"`
	Stats consume.Stats `json:"stats"`
	// KilledIn is the event whose handler the process killed itself in.
	KilledIn string `json:"killed_in,omitempty"`
}

// statsReader reads the consumer subprocess's stats lines. Each
// incarnation's figures start at zero; the reader keeps the last line of
// each, by process id.
type statsReader struct {
	mu      sync.Mutex
	partial []byte
	byPID   map[int]consume.Stats
	last    int      // the pid of the latest line
	crashes []string // the processes that killed themselves mid-handler
}

func newStatsReader() *statsReader { return &statsReader{byPID: map[int]consume.Stats{}} }

var _ io.Writer = (*statsReader)(nil)

func (r *statsReader) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partial = append(r.partial, b...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		var l statsLine
		if json.Unmarshal(r.partial[:i], &l) == nil && l.PID != 0 {
			r.byPID[l.PID] = l.Stats
			r.last = l.PID
			if l.KilledIn != "" {
				r.crashes = append(r.crashes, fmt.Sprintf("killed in the handler of event %s with %d handlers in flight",
					l.KilledIn, l.Stats.InFlight))
			}
		}
		r.partial = r.partial[i+1:]
	}
	return len(b), nil
}

// lastCrash describes the latest self-kill.
func (r *statsReader) lastCrash() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.crashes) == 0 {
		return "(no report)"
	}
	return r.crashes[len(r.crashes)-1]
}

// total sums the stats of every incarnation, and returns the latest
// incarnation's on its own.
func (r *statsReader) total() (sum, latest consume.Stats, incarnations int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.byPID {
		sum = addStats(sum, s)
	}
	return sum, r.byPID[r.last], len(r.byPID)
}

func addStats(a, b consume.Stats) consume.Stats {
	return consume.Stats{
		Handled: a.Handled + b.Handled, Duplicates: a.Duplicates + b.Duplicates, Unrouted: a.Unrouted + b.Unrouted,
		Failed: a.Failed + b.Failed, Retried: a.Retried + b.Retried, DeadLettered: a.DeadLettered + b.DeadLettered,
		Resubscribes: a.Resubscribes + b.Resubscribes, InFlight: a.InFlight + b.InFlight,
	}
}

// testBinary is the path of this test binary, to start it again as a
// consumer process.
func testBinary() string { return os.Args[0] }

// observer records what the observer group receives and checks its order.
type observer = testenv.StreamObserver

func newObserver() *observer { return testenv.NewStreamObserver() }

// running is an in-process consumer and the way to stop it.
type running struct {
	c    *consume.Consumer
	stop func()
}

// runConsumer runs c until stop, and waits until it has subscribed.
func runConsumer(ctx context.Context, c *consume.Consumer) (*running, error) {
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	var once sync.Once
	r := &running{c: c, stop: func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}}
	select {
	case <-c.Ready():
		return r, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("consumer %s stopped before it subscribed: %v", c.Group(), err)
	case <-ctx.Done():
		r.stop()
		return nil, fmt.Errorf("consumer %s not subscribed: %w", c.Group(), ctx.Err())
	}
}
