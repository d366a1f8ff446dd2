package relay_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

// dispatchAll sends n events from `callers` goroutines over `streams`
// streams, and returns when all committed.
func dispatchAll(t *testing.T, h *harness, callers, n, streams int) {
	t.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				subject := "learner-" + strconv.Itoa(int(i)%streams)
				if _, err := h.bus.Dispatch(context.Background(), quiz(int32(i)), eventbus.Subject(subject)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dispatch: %v", err)
	}
}

// TestSurvivesConnectionCuts: 8 dispatchers send 20,000 events while the
// relay's AMQP connection is cut three times and its PostgreSQL connections
// once. Every event arrives, each stream in order.
func TestSurvivesConnectionCuts(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	pgProxy := testenv.NewFaultProxy(t, "127.0.0.1:5432")
	amqpProxy := testenv.NewFaultProxy(t, "127.0.0.1:5672")
	relayStore, err := postgres.Open(context.Background(), testenv.WithHost(h.dbURL, pgProxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relayStore.Close() })
	b := openBroker(t, testenv.WithHost(testenv.AMQPURL(), amqpProxy.Addr()))
	metrics := relay.NewMetrics()
	r, err := relay.New(relayStore, b, relay.Config{Exchange: h.exchange, Metrics: metrics, MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	const total = 20000
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		dispatchAll(t, h, 8, total, 200)
	}()
	// The faults, spread over the run as events flow.
	for i, cut := range []func() error{amqpProxy.Cut, amqpProxy.Cut, func() error { return pgProxy.Cut() }, amqpProxy.Cut} {
		col.waitFor((i+1)*total/5, 60*time.Second)
		if err := cut(); err != nil {
			t.Fatal(err)
		}
	}
	<-dispatched
	col.waitFor(total, 120*time.Second)
	dups := col.checkStreamOrder()
	t.Logf("%d events delivered, each stream in order; %d duplicates after %d AMQP and %d PostgreSQL cuts; relay errors: broker %v, store %v, checkpoint %v",
		total, dups, amqpProxy.Cuts(), pgProxy.Cuts(), metrics.Errors("broker"), metrics.Errors("store"), metrics.Errors("checkpoint"))
	if col.malforms > 0 {
		t.Fatalf("%d malformed messages", col.malforms)
	}
}

const subprocessEnv = "EVENTBUS_RELAY_SUBPROCESS"

// runSubprocessRelay is the relay process of TestKilledRelayResumes: the
// test binary started again with subprocessEnv set.
func runSubprocessRelay() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := postgres.Open(ctx, os.Getenv("EVENTBUS_DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	b, err := rabbitmq.Open(ctx, os.Getenv("EVENTBUS_AMQP_URL"), rabbitmq.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.Close()
	r, err := relay.New(s, b, relay.Config{Exchange: os.Getenv("EVENTBUS_EXCHANGE")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startSubprocessRelay(t *testing.T, h *harness) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), subprocessEnv+"=1", "EVENTBUS_DATABASE_URL="+h.dbURL,
		"EVENTBUS_AMQP_URL="+testenv.AMQPURL(), "EVENTBUS_EXCHANGE="+h.exchange)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestKilledRelayResumes: the relay runs as a process of its own and is
// killed with SIGKILL mid-stream. A new one takes over from the checkpoint;
// nothing is lost.
func TestKilledRelayResumes(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	const total = 6000
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		dispatchAll(t, h, 4, total, 50)
	}()
	first := startSubprocessRelay(t, h)
	col.waitFor(total/4, 60*time.Second)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	col.mu.Lock()
	atKill := len(col.byID)
	col.mu.Unlock()
	killedAt := time.Now()
	startSubprocessRelay(t, h)
	<-dispatched
	col.waitFor(total, 120*time.Second)
	dups := col.checkStreamOrder()
	t.Logf("killed the relay after %d of %d events; its successor delivered the rest within %v; %d duplicates",
		atKill, total, time.Since(killedAt).Round(time.Millisecond), dups)
}

// TestTwoRacingRelays: two relays run; only one publishes at a time. When
// the active one is cut off from both servers, the other takes over within
// 5 s, and nothing is skipped.
func TestTwoRacingRelays(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	pgProxy := testenv.NewFaultProxy(t, "127.0.0.1:5432")
	amqpProxy := testenv.NewFaultProxy(t, "127.0.0.1:5672")
	storeA, err := postgres.Open(context.Background(), testenv.WithHost(h.dbURL, pgProxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = storeA.Close() })
	brokerA := openBroker(t, testenv.WithHost(testenv.AMQPURL(), amqpProxy.Addr()))
	a, err := relay.New(storeA, brokerA, relay.Config{Exchange: h.exchange, Holder: "relay-a"})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(ctxA) }()
	t.Cleanup(func() { cancelA(); <-doneA })
	waitUntil(t, 10*time.Second, a.Leader)
	b, _ := startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Holder: "relay-b"})

	// Watch both: never two leaders at once.
	var both atomic.Int32
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
			if a.Leader() && b.Leader() {
				both.Add(1)
			}
		}
	}()

	const total = 4000
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		dispatchAll(t, h, 4, total, 40)
	}()
	col.waitFor(total/3, 60*time.Second)
	if b.Leader() {
		t.Fatal("the standby publishes while the leader is healthy")
	}
	cutAt := time.Now()
	amqpProxy.Down()
	pgProxy.Down()
	waitUntil(t, 10*time.Second, b.Leader)
	takeover := time.Since(cutAt)
	<-dispatched
	col.waitFor(total, 120*time.Second)
	close(stopWatch)
	<-watchDone
	if n := both.Load(); n > 0 {
		t.Fatalf("both relays led at once in %d samples", n)
	}
	if takeover > 5*time.Second {
		t.Fatalf("the standby took %v to take over, want under 5s", takeover)
	}
	dups := col.checkStreamOrder()
	t.Logf("standby took over %v after the leader was cut off; %d events delivered in order, %d duplicates", takeover.Round(time.Millisecond), total, dups)
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = uuid.Nil

// TestBrokerOutage: while the broker is unreachable, Dispatch goes on
// accepting events; when it is back, the relay delivers all of them.
func TestBrokerOutage(t *testing.T) {
	h := newHarness(t)
	col := newCollector(t, h.exchange, "#")
	amqpProxy := testenv.NewFaultProxy(t, "127.0.0.1:5672")
	b := openBroker(t, testenv.WithHost(testenv.AMQPURL(), amqpProxy.Addr()))
	startRelay(t, h, b, relay.Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	dispatchAll(t, h, 2, 100, 10)
	col.waitFor(100, 30*time.Second)

	amqpProxy.Down()
	dispatchAll(t, h, 4, 400, 10) // the bus does not need the broker
	time.Sleep(time.Second)       // the relay retries meanwhile
	col.mu.Lock()
	during := len(col.byID)
	col.mu.Unlock()
	if during != 100 {
		t.Fatalf("%d events arrived while the broker was unreachable, want the 100 from before", during)
	}
	if err := amqpProxy.Up(); err != nil {
		t.Fatal(err)
	}
	col.waitFor(500, 60*time.Second)
	col.checkStreamOrder()
}

// TestChannelClosedByBroker: the broker closes the relay's channel (here
// because the exchange was deleted under it). The relay opens a new channel,
// declares the exchange again and carries on.
func TestChannelClosedByBroker(t *testing.T) {
	h := newHarness(t)
	metrics := relay.NewMetrics()
	startRelay(t, h, openBroker(t, testenv.AMQPURL()), relay.Config{Metrics: metrics, MinBackoff: 20 * time.Millisecond})
	first := newCollector(t, h.exchange, "#")
	dispatchAll(t, h, 2, 50, 5)
	first.waitFor(50, 30*time.Second)

	deleteExchange(h.exchange) // takes the first collector's binding with it
	// Events now go to a missing exchange: the broker closes the channel.
	ctx := context.Background()
	if _, err := h.bus.Dispatch(ctx, quiz(1)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() bool { return metrics.Errors("broker") > 0 || metrics.Errors("nack") > 0 })
	// The relay declares the exchange again; a consumer that binds now
	// receives what follows.
	second := newCollector(t, h.exchange, "#")
	for i := 0; i < 20; i++ {
		if _, err := h.bus.Dispatch(ctx, quiz(int32(i))); err != nil {
			t.Fatal(err)
		}
	}
	second.waitFor(20, 30*time.Second)
	t.Logf("relay errors after the channel closed: broker %v, nack %v", metrics.Errors("broker"), metrics.Errors("nack"))
}

// TestHungDatabaseStopsTheLeaderInTime: the leader's connection to
// PostgreSQL hangs (latency far above the lease's time to live, no reset).
// It cannot renew its lease, so it must stop publishing before the lease
// can expire and a standby take over: renewals have a deadline.
func TestHungDatabaseStopsTheLeaderInTime(t *testing.T) {
	h := newHarness(t)
	pgProxy := testenv.NewFaultProxy(t, "127.0.0.1:5432")
	relayStore, err := postgres.Open(context.Background(), testenv.WithHost(h.dbURL, pgProxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relayStore.Close() })
	const ttl = time.Second
	r, err := relay.New(relayStore, openBroker(t, testenv.AMQPURL()), relay.Config{Exchange: h.exchange, LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		pgProxy.ClearFaults()
		cancel()
		<-done
	})
	waitUntil(t, 10*time.Second, r.Leader)
	time.Sleep(300 * time.Millisecond) // a renewal or two succeed first
	hungAt := time.Now()
	if err := pgProxy.AddLatency(10*ttl, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*ttl, func() bool { return !r.Leader() })
	if stopped := time.Since(hungAt); stopped >= ttl {
		t.Fatalf("the leader published on for %v with a hung database; it must stop within the lease's %v", stopped, ttl)
	}
}
