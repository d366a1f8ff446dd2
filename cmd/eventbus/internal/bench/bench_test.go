package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/cmd/eventbus/internal/bench"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tiny sizes a run for a smoke test: every scenario, a few hundred events
// each. The figures mean nothing at this size; the test checks that each is
// there and sane, never how fast anything was.
func tiny() bench.Options {
	return bench.Options{
		Events:           500,
		RelayLagDuration: 250 * time.Millisecond,
		CeilingDuration:  150 * time.Millisecond,
		RelayLagRate:     2000,
	}
}

func TestRunEmbedded(t *testing.T) {
	rep := run(t, config.Config{DataDir: t.TempDir(), Exchange: broker.DefaultEventsExchange})
	if rep.Store != "sqlite" || rep.Broker != "in-process" {
		t.Errorf("store %q, broker %q; want sqlite, in-process", rep.Store, rep.Broker)
	}
	if !strings.HasPrefix(rep.Machine.StoreVersion, "SQLite 3.") {
		t.Errorf("store version %q", rep.Machine.StoreVersion)
	}
}

func TestRunServers(t *testing.T) {
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	cfg := config.Config{DatabaseURL: testenv.PostgresURL(), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: broker.DefaultEventsExchange}
	rep := run(t, cfg)
	if rep.Store != "postgresql" || rep.Broker != "rabbitmq" {
		t.Errorf("store %q, broker %q; want postgresql, rabbitmq", rep.Store, rep.Broker)
	}
	if !strings.HasPrefix(rep.Machine.StoreVersion, "PostgreSQL ") || rep.Machine.BrokerVersion == "" {
		t.Errorf("server versions %q, %q", rep.Machine.StoreVersion, rep.Machine.BrokerVersion)
	}
	checkRemoved(t, rep.Objects)
}

// run runs every scenario at the tiny size and checks the report.
func run(t *testing.T, cfg config.Config) bench.Report {
	t.Helper()
	var progress bytes.Buffer
	opts := tiny()
	opts.Progress = &progress
	rep, err := bench.Run(testenv.Context(t, 3*time.Minute), cfg, opts)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if got, want := len(rep.Scenarios), len(bench.Scenarios()); got != want {
		t.Fatalf("%d scenarios reported, want %d", got, want)
	}
	for _, s := range rep.Scenarios {
		if s.Error != "" {
			t.Errorf("%s failed: %s", s.Name, s.Error)
			continue
		}
		if s.Events <= 0 || s.Seconds <= 0 || s.PerSecond <= 0 || s.PeakRSSBytes <= 0 {
			t.Errorf("%s: events %d, seconds %g, per second %g, peak RSS %d: want all positive",
				s.Name, s.Events, s.Seconds, s.PerSecond, s.PeakRSSBytes)
		}
		if s.Events > opts.Events {
			t.Errorf("%s: %d events, more than the %d asked for", s.Name, s.Events, opts.Events)
		}
		if s.Name != bench.Replay {
			if l := s.Latency; l == nil || l.Samples == 0 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 {
				t.Errorf("%s: latency %+v: want ordered positive quantiles", s.Name, l)
			}
		}
		if s.Ceiling == "" || s.Ratio <= 0 {
			t.Errorf("%s: ceiling %q, ratio %g", s.Name, s.Ceiling, s.Ratio)
		}
		if s.Beside != nil {
			t.Errorf("%s, sized by events, was measured in turns with its ceiling: %+v", s.Name, s.Beside)
		}
	}
	if len(rep.Ceilings) != 3 {
		t.Errorf("%d ceilings, want 3", len(rep.Ceilings))
	}
	for _, c := range rep.Ceilings {
		if c.Error != "" || c.PerSecond <= 0 {
			t.Errorf("ceiling %s: %g/s, error %q", c.Name, c.PerSecond, c.Error)
		}
	}
	if len(rep.Targets) != 7 {
		t.Errorf("%d targets, want 7", len(rep.Targets))
	}
	for _, tg := range rep.Targets {
		if tg.Status != "PASS" && tg.Status != "MISS" {
			t.Errorf("target %q: status %q", tg.Name, tg.Status)
		}
	}
	if rep.Machine.Cores <= 0 || rep.Machine.GoVersion == "" {
		t.Errorf("machine %+v", rep.Machine)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(bench.Scenarios(), "targets", "ceilings", "p999", "peak RSS") {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	for _, s := range bench.Scenarios() {
		if !strings.Contains(progress.String(), s) {
			t.Errorf("no progress line for %s:\n%s", s, progress.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Scenarios) != len(rep.Scenarios) || back.Scenarios[0].Latency == nil {
		t.Errorf("JSON round trip lost scenarios: %s", js)
	}
	t.Logf("\n%s", table.String())
	return rep
}

// checkRemoved checks that nothing of the run named objects is left on the
// servers.
func checkRemoved(t *testing.T, objects string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	schema := strings.ReplaceAll(objects, ".", "_")
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("schema %s is still there", schema)
	}
	b, err := rabbitmq.Open(ctx, testenv.AMQPURL(), rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, q := range []string{objects + ".sink", objects + ".replay", objects + "." + bench.ConsumeInbox} {
		if _, err := b.InspectQueue(ctx, q); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("queue %s: %v, want it deleted", q, err)
		}
	}
}

// TestRunInterrupted stops a run midway: it returns the context's error,
// and what it created is removed all the same.
func TestRunInterrupted(t *testing.T) {
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	cfg := config.Config{DatabaseURL: testenv.PostgresURL(), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: broker.DefaultEventsExchange}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The scenario would run for minutes: a run that ends within one was
	// interrupted.
	opts := bench.Options{Duration: 3 * time.Minute, CeilingDuration: 100 * time.Millisecond, Scenarios: []string{bench.E2E16}}
	// Stop once the scenario has begun.
	var progress lineWatcher
	progress.on = func(line string) {
		if strings.Contains(line, bench.E2E16+" ...") {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
	}
	opts.Progress = &progress
	start := time.Now()
	rep, err := bench.Run(ctx, cfg, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("Run took %v after being interrupted", took)
	}
	if rep.Objects == "" {
		t.Fatal("the report does not name the run's objects")
	}
	checkRemoved(t, rep.Objects)
}

type lineWatcher struct{ on func(string) }

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.on(string(p))
	return len(p), nil
}

func TestUnknownScenario(t *testing.T) {
	_, err := bench.Run(context.Background(), config.Config{DataDir: t.TempDir()}, bench.Options{Scenarios: []string{"e2e-99"}})
	if !errors.Is(err, bench.ErrUnknownScenario) {
		t.Fatalf("Run: %v, want ErrUnknownScenario", err)
	}
}

// TestRelayLagInBatches runs relay-lag with several events per transaction:
// every event is counted and its lag recorded, and the report says how
// the load was made.
func TestRelayLagInBatches(t *testing.T) {
	opts := tiny()
	opts.Scenarios = []string{bench.RelayLag}
	opts.RelayLagBatch = 10
	rep, s := runOneEmbedded(t, opts)
	if s.Error != "" || s.Events != opts.Events {
		t.Fatalf("relay-lag: %d events, error %q; want %d events", s.Events, s.Error, opts.Events)
	}
	if s.Latency == nil || s.Latency.Samples != opts.Events {
		t.Errorf("relay-lag: latency %+v, want %d samples", s.Latency, opts.Events)
	}
	if !strings.Contains(s.What, "10 events per transaction") || rep.Options.RelayLagBatch != 10 {
		t.Errorf("relay-lag: %q, options %+v: want 10 events per transaction", s.What, rep.Options)
	}
}

func TestNegativeRelayLagBatch(t *testing.T) {
	_, err := bench.Run(context.Background(), config.Config{DataDir: t.TempDir()}, bench.Options{RelayLagBatch: -1})
	if err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Fatalf("Run: %v, want a refusal of the negative size", err)
	}
}

// TestReplayForADuration runs replay timed by a duration over a small
// store: it replays the store again until the time is up, and counts
// every event of every pass. Sized by Events too, it makes one pass.
func TestReplayForADuration(t *testing.T) {
	opts := bench.Options{Scenarios: []string{bench.Replay}, Duration: time.Second, CeilingDuration: 150 * time.Millisecond, ReplayEvents: 300}
	_, s := runOneEmbedded(t, opts)
	if s.Error != "" || s.Events <= opts.ReplayEvents || !strings.Contains(s.What, "passes over them") {
		t.Fatalf("replay: %d events, %q, error %q; want several passes over %d events", s.Events, s.What, s.Error, opts.ReplayEvents)
	}
	if s.Beside != nil {
		t.Errorf("replay on the in-process broker was measured in turns with its ceiling: %+v", s.Beside)
	}
	if s.Seconds < opts.Duration.Seconds() {
		t.Errorf("replay ran %gs, want the whole %v", s.Seconds, opts.Duration)
	}

	// Sized by Events as well, it is one pass over that many.
	opts.Events = 200
	if _, s = runOneEmbedded(t, opts); s.Error != "" || s.Events != opts.Events || strings.Contains(s.What, "passes") {
		t.Fatalf("replay of %d events for %v: %d events, %q, error %q; want one pass over %d", opts.Events, opts.Duration, s.Events, s.What, s.Error, opts.Events)
	}
}

// TestStreamStaysWithinItsBacklog: e2e-stream's caller records batches far
// faster than one stream is delivered (one event per confirm round trip on
// RabbitMQ), so it waits while it is streamBacklog events ahead of the
// consumer. Unchecked, it recorded in 3 s what took far longer than the
// drain's 10 s to deliver, and the scenario failed; a default run (10 s,
// a drain of 2 min) failed so on a slow evening.
func TestStreamStaysWithinItsBacklog(t *testing.T) {
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	cfg := config.Config{DatabaseURL: testenv.PostgresURL(), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: broker.DefaultEventsExchange}
	opts := bench.Options{Scenarios: []string{bench.E2EStream}, Duration: 3 * time.Second, CeilingDuration: 150 * time.Millisecond, DrainTimeout: 10 * time.Second}
	rep, err := bench.Run(testenv.Context(t, 2*time.Minute), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 {
		t.Fatalf("%d scenarios reported, want 1", len(rep.Scenarios))
	}
	if s := rep.Scenarios[0]; s.Error != "" || s.Events <= 0 || !strings.Contains(s.What, "ahead of the consumer") {
		t.Fatalf("e2e-stream: %d events, %q, error %q", s.Events, s.What, s.Error)
	}
	checkRemoved(t, rep.Objects)
}

// TestReplayBesideItsCeiling: a replay timed by a duration on RabbitMQ is
// measured again in turns with the confirm ceiling, in pairs of slices of
// a fifth of the duration; the ratio is the totals', and each pair's is
// reported for the spread. Every slice's queue is removed.
func TestReplayBesideItsCeiling(t *testing.T) {
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	cfg := config.Config{DatabaseURL: testenv.PostgresURL(), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: broker.DefaultEventsExchange}
	opts := bench.Options{Scenarios: []string{bench.Replay}, Duration: 2 * time.Second, CeilingDuration: 150 * time.Millisecond, ReplayEvents: 2000}
	rep, err := bench.Run(testenv.Context(t, 2*time.Minute), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 {
		t.Fatalf("%d scenarios reported, want 1", len(rep.Scenarios))
	}
	s := rep.Scenarios[0]
	bs := s.Beside
	if s.Error != "" || bs == nil || bs.Error != "" {
		t.Fatalf("replay: error %q, beside %+v", s.Error, bs)
	}
	if bs.Pairs != 5 || len(bs.PairRatios) != 5 || bs.SliceSeconds != 0.4 || bs.PerSecond <= 0 || bs.CeilingPerSecond <= 0 {
		t.Fatalf("beside %+v: want 5 pairs of 0.4 s slices with positive rates", bs)
	}
	if got, want := bs.Ratio, bs.PerSecond/bs.CeilingPerSecond; math.Abs(got-want) > 1e-9*want {
		t.Errorf("ratio %g, want the rates' %g", got, want)
	}
	for i, r := range bs.PairRatios {
		if r <= 0 || math.IsInf(r, 0) {
			t.Errorf("pair %d: ratio %g", i+1, r)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "replay in turns with publish-confirms, 5 pairs of 0.4s slices: ") {
		t.Errorf("the table does not give the pairs:\n%s", table.String())
	}
	checkRemoved(t, rep.Objects)
	b, err := rabbitmq.Open(testenv.Context(t, time.Minute), testenv.AMQPURL(), rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range bs.Pairs {
		for _, q := range []string{fmt.Sprintf("%s.replay-beside-%d", rep.Objects, i), fmt.Sprintf("%s.ceiling-beside-%d", rep.Objects, i)} {
			if _, err := b.InspectQueue(testenv.Context(t, time.Minute), q); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("queue %s: %v, want it deleted", q, err)
			}
		}
	}
}

// runOneEmbedded runs the one scenario opts names on the embedded default
// and returns the report and that scenario's result.
func runOneEmbedded(t *testing.T, opts bench.Options) (bench.Report, bench.Result) {
	t.Helper()
	rep, err := bench.Run(testenv.Context(t, time.Minute), config.Config{DataDir: t.TempDir(), Exchange: broker.DefaultEventsExchange}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 {
		t.Fatalf("%d scenarios reported, want 1", len(rep.Scenarios))
	}
	return rep, rep.Scenarios[0]
}
