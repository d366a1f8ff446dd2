package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestChaos runs the whole bus under a seeded random schedule of faults and
// checks every guarantee on what it did (see the package doc).
func TestChaos(t *testing.T) {
	seed := *flagChaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()%1_000_000_000 + 1
	}
	d := chaosDuration()
	replay := fmt.Sprintf("go test ./test/chaos -run 'TestChaos$' -v -chaos.seed=%d -chaos.duration=%v", seed, d)
	t.Logf("chaos: seed %d, %v of faults, producers at %d events/s; replay the schedule with: %s", seed, d, *flagChaosRate, replay)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos: FAILED with seed %d; replay the schedule with: %s", seed, replay)
		}
	})

	h := newHarness(t, harnessOptions{faults: true})
	ctx := testenv.Context(t, d+15*time.Minute)
	sys := h.startSystem(ctx)
	defer sys.stop()

	plan := schedule(seed, d)
	produce, stopProducing := context.WithTimeout(ctx, d)
	defer stopProducing()
	settle, stopSettling := context.WithCancel(ctx)
	defer stopSettling()
	l := newLoad(h, seed, *flagChaosRate, 64, produce, settle)
	if err := l.start(8, 4, h.dbURL(proxyProducersPG, "chaos_producers")); err != nil {
		t.Fatal(err)
	}
	log := newFaultLog()
	in := &injector{h: h, log: log}
	start := time.Now()
	injected := make(chan struct{})
	go func() {
		defer close(injected)
		in.run(produce, start, plan)
	}()

	<-produce.Done()
	<-injected
	in.stop()
	h.heal()
	faultsEnded := time.Now()
	// Requests in flight retry until they get an answer: the system is
	// whole again, so they soon do.
	giveUp := time.AfterFunc(2*time.Minute, stopSettling)
	l.wait()
	giveUp.Stop()
	if err := h.waitSettled(ctx, sys.obs, 3*time.Minute); err != nil {
		t.Errorf("the system did not settle: %v", err)
	}
	settled := time.Since(faultsEnded)
	sys.stop()

	v := h.check(ctx, run{load: l, obs: sys.obs, workerA: sys.workerA.c, observer: sys.observer.c, faults: log})
	header := []string{
		fmt.Sprintf("chaos run, seed %d: %v of faults and load, then %v to settle; %d faults injected",
			seed, d, settled.Round(time.Millisecond), log.total()),
		"faults: " + strings.Join(log.byKind(), ", "),
		"faults by target: " + log.byTarget(),
	}
	log.mu.Lock()
	if len(log.notes) > 0 {
		header = append(header, "notes: "+strings.Join(log.notes, "; "))
	}
	log.mu.Unlock()
	report := fmt.Sprintf("chaos report\n%s\n%s", strings.Join(header, "\n"), v)
	if len(v.failures) > 0 {
		report += fmt.Sprintf("\nFAILED: replay the schedule with: %s", replay)
	}
	t.Log(report)
	saveReport(t, report)
	for _, f := range v.failures {
		t.Error(f)
	}
}

// reportEnv names a file the reports are appended to, for CI logs: go
// test ./... shows nothing of a passing package but "ok".
const reportEnv = "EVENTBUS_CHAOS_REPORT"

// saveReport appends report to the file reportEnv names, if any.
func saveReport(t *testing.T, report string) {
	path := os.Getenv(reportEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = fmt.Fprintf(f, "=== %s %s\n%s\n\n", t.Name(), time.Now().UTC().Format(time.RFC3339), report)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Errorf("%s: %v", reportEnv, err)
	}
}

// system is the running bus: serve, the second relay, the effect group's
// two consumers and the observer.
type system struct {
	h        *harness
	obs      *observer
	observer *running
	workerA  *running
	closers  []func()
	stopped  bool
}

// startSystem starts serve, the second relay and the consumers, and waits
// until they are ready.
func (h *harness) startSystem(ctx context.Context) *system {
	h.t.Helper()
	s := &system{h: h, obs: newObserver()}
	h.startServe(ctx)
	if err := h.relay2.start(); err != nil {
		h.t.Fatal(err)
	}

	ob, err := rabbitmq.Open(ctx, h.amqpURL(proxyObserverAMQP), rabbitmq.Config{ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	s.closers = append(s.closers, func() { _ = ob.Close() })
	oc, err := consume.New(ob, observerConfig(h.observers, h.exchange), consume.OnAny(func(_ context.Context, env event.Envelope) error {
		s.obs.Record(env)
		return nil
	}))
	if err != nil {
		h.t.Fatal(err)
	}
	if s.observer, err = runConsumer(ctx, oc); err != nil {
		h.t.Fatal(err)
	}

	wa, err := openWorker(ctx, h.dbURL(proxyWorkerAPG, "chaos_workerA"), h.amqpURL(proxyWorkerAAMQP), h.exchange, h.workers, "workerA", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	s.closers = append(s.closers, wa.close)
	if s.workerA, err = runConsumer(ctx, wa.c); err != nil {
		h.t.Fatal(err)
	}
	if err := h.workerB.start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(s.stop)
	return s
}

// stop stops the consumers, then serve and the relay, gracefully.
func (s *system) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	for _, r := range []*running{s.workerA, s.observer} {
		if r != nil {
			r.stop()
		}
	}
	s.h.workerB.stop(15 * time.Second)
	s.h.relay2.stop(15 * time.Second)
	s.h.serve.stop(15 * time.Second)
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}
