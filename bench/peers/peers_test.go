package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	testDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	testAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/"
)

// needServers skips the test when the local servers are not there, unless
// EVENTBUS_REQUIRE_SERVICES=1 (as CI sets) makes that a failure.
func needServers(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if conn, err := pgx.Connect(ctx, testDatabaseURL); err != nil {
		errs = append(errs, err)
	} else {
		conn.Close(ctx)
	}
	if conn, err := dialAMQP(ctx, testAMQPURL, "peers-test"); err != nil {
		errs = append(errs, err)
	} else {
		_ = conn.Close()
	}
	if err := errors.Join(errs...); err != nil {
		if os.Getenv("EVENTBUS_REQUIRE_SERVICES") == "1" {
			t.Fatalf("the local PostgreSQL and RabbitMQ are required: %v", err)
		}
		t.Skipf("the local PostgreSQL and RabbitMQ are not reachable: %v", err)
	}
}

// TestEveryScenarioDeliversAllItsEvents runs each scenario briefly with 1
// and 2 callers and checks that the consumer received every event that was
// dispatched: correctness of the comparison, not speed.
func TestEveryScenarioDeliversAllItsEvents(t *testing.T) {
	needServers(t)
	o := options{Duration: time.Second, Warmup: 200 * time.Millisecond, Drain: time.Minute,
		Callers: []int{1, 2}, DatabaseURL: testDatabaseURL, AMQPURL: testAMQPURL}
	results := runAll(t.Context(), o)
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.scenario] = true
		if r.err != nil {
			t.Errorf("%s, %d callers: %v", r.scenario, r.callers, r.err)
			continue
		}
		if r.events == 0 {
			t.Errorf("%s, %d callers: no event was dispatched", r.scenario, r.callers)
		}
		if r.delivers && r.received < r.events {
			t.Errorf("%s, %d callers: the consumer received %d of %d events", r.scenario, r.callers, r.received, r.events)
		}
		if r.seconds <= 0 {
			t.Errorf("%s, %d callers: measured over %v s", r.scenario, r.callers, r.seconds)
		}
		tellsLag := r.scenario == BusInTx || r.scenario == BusOwnTx || r.scenario == CeilingOutbox || r.scenario == CeilingOutTx
		if r.hasLag != tellsLag || r.hasLag && (r.lagP50 <= 0 || r.lagP50 > r.lagP99) {
			t.Errorf("%s, %d callers: lag measured %v, p50 %v, p99 %v; want it measured (%v) with ordered positive quantiles",
				r.scenario, r.callers, r.hasLag, r.lagP50, r.lagP99, tellsLag)
		}
	}
	for _, name := range scenarioNames() {
		if !seen[name] {
			t.Errorf("scenario %s did not run", name)
		}
	}
	report := markdown(o, machine{cores: 2}, time.Now(), results)
	for _, want := range []string{"| bus-in-tx | 1 |", "| watermill | 2 |", "| ceiling-commit-tx | 2 |", "bus-in-tx / first-version", "What bounds an outbox"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
}

// TestBoundsOfAnOutboxInTheCallersTransaction checks the arithmetic of the
// bound: the floor is the two ceilings' CPU per event added, and the bound
// the lower of what the cores allow at that floor and the transaction
// ceiling's own rate.
func TestBoundsOfAnOutboxInTheCallersTransaction(t *testing.T) {
	point := func(name string, callers int, events int64, seconds float64, bench, postgres, rabbit time.Duration) result {
		return result{scenario: name, callers: callers, events: events, seconds: seconds,
			cpu: cpuDelta{bench: bench, postgres: postgres, rabbit: rabbit}}
	}
	results := []result{
		// 100 µs + 200 µs per event, at 4,000/s.
		point(CeilingTx, 16, 40000, 10, 4*time.Second, 8*time.Second, 0),
		// 20 µs + 80 µs per event.
		point(CeilingConfirm, 1, 100000, 5, 2*time.Second, 0, 8*time.Second),
		point(BusInTx, 16, 20000, 10, 4*time.Second, 6*time.Second, 2*time.Second),
		point(FirstVersion, 16, 30000, 10, 3*time.Second, 4*time.Second, 5*time.Second),
		// At one caller the transaction ceiling's rate (1,000/s) is the lower.
		point(CeilingTx, 1, 10000, 10, time.Second, time.Second, 0),
		point(BusInTx, 1, 5000, 10, time.Second, time.Second, time.Second),
	}
	var b strings.Builder
	writeBounds(&b, options{Callers: []int{1, 16}}, machine{cores: 2}, results)
	for _, want := range []string{
		// floor 300 + 100 = 400 µs; 2 cores allow 5,000/s; the ceiling 4,000/s.
		"| 16 | 400 | 4,000 | 2,000 | 0.50 | 4,500 |",
		// floor 200 + 100 = 300 µs; 2 cores allow 6,667/s; the ceiling 1,000/s.
		"| 1 | 300 | 1,000 | 500 | 0.50 | — |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the bounds lack %q:\n%s", want, b.String())
		}
	}
	var none strings.Builder
	writeBounds(&none, options{Callers: []int{16}}, machine{cores: 2}, results[2:])
	if none.Len() != 0 {
		t.Errorf("bounds without the confirm ceiling: %q, want nothing", none.String())
	}
}

// TestReadCPUFindsTheLocalServers checks that the CPU meter finds the
// PostgreSQL and RabbitMQ processes of the local servers.
func TestReadCPUFindsTheLocalServers(t *testing.T) {
	needServers(t)
	c := readCPU()
	if len(c.postgresProcs) == 0 {
		t.Error("no postgres process found in /proc")
	}
	if len(c.rabbitProcs) == 0 {
		t.Error("no beam.smp process found in /proc")
	}
	if c.bench <= 0 || c.machineBusy <= 0 {
		t.Errorf("bench CPU %v, machine busy %v: want both positive", c.bench, c.machineBusy)
	}
}

func TestFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--callers", "1,x"},
		{"--callers", "0"},
		{"--duration", "0s"},
		{"--scenarios", "kafka"},
		{"extra"},
	} {
		var out, errOut strings.Builder
		if err := run(args, &out, &errOut); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

func TestLatencyQuantiles(t *testing.T) {
	l := &latencies{}
	var part []time.Duration
	for i := 100; i >= 1; i-- {
		part = append(part, time.Duration(i)*time.Millisecond)
	}
	l.add(part)
	if got := l.quantile(0.5); got != 50*time.Millisecond {
		t.Errorf("p50 = %v, want 50ms", got)
	}
	if got := l.quantile(0.99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v, want 99ms", got)
	}
	if got := (&latencies{}).quantile(0.5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

// TestOutboxBoundsSetEachDesignBesideItsCheapestOutbox checks which
// scenarios the table pairs and the ratio it prints.
func TestOutboxBoundsSetEachDesignBesideItsCheapestOutbox(t *testing.T) {
	point := func(name string, callers int, events int64, p99 time.Duration) result {
		return result{scenario: name, callers: callers, events: events, seconds: 10, p99: p99, hasLatency: true}
	}
	results := []result{
		point(BusInTx, 1, 12000, 2500*time.Microsecond),
		point(CeilingOutTx, 1, 20000, 1500*time.Microsecond),
		point(BusOwnTx, 1, 15000, 2*time.Millisecond),
		point(CeilingOutbox, 1, 25000, 1200*time.Microsecond),
		point(FirstVersion, 1, 8000, 3*time.Millisecond),
		// At 16 callers only the bus in the caller's transaction ran.
		point(BusInTx, 16, 20000, 20*time.Millisecond),
	}
	var b strings.Builder
	writeOutboxBounds(&b, options{Callers: []int{1, 16}}, results)
	for _, want := range []string{
		"| 1 | in the caller's transaction | 2,000 | 1.50 ms | 1,200 | 2.50 ms | 0.60 | 1,200 |",
		"| 1 | in a transaction of its own | 2,500 | 1.20 ms | 1,500 | 2.00 ms | 0.60 | 1,200 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "| 16 |") {
		t.Errorf("a row for 16 callers without its cheapest outbox:\n%s", b.String())
	}
	var none strings.Builder
	writeOutboxBounds(&none, options{Callers: []int{16}}, results)
	if none.Len() != 0 {
		t.Errorf("a table without any pair: %q, want nothing", none.String())
	}
}

// TestLagsOnlyForTheDesignsThatTellThem checks the lag table: a row for
// each point that measured lag, none for the others.
func TestLagsOnlyForTheDesignsThatTellThem(t *testing.T) {
	results := []result{
		{scenario: BusOwnTx, callers: 16, events: 50000, seconds: 10, hasLag: true, lagP50: 12 * time.Millisecond, lagP99: 40 * time.Millisecond},
		{scenario: FirstVersion, callers: 16, events: 30000, seconds: 10},
	}
	var b strings.Builder
	writeLags(&b, results)
	if want := "| bus-own-tx | 16 | 5,000 | 12.00 ms | 40.00 ms |"; !strings.Contains(b.String(), want) {
		t.Errorf("the lag table lacks %q:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), FirstVersion) {
		t.Errorf("a lag row for a design that cannot tell it:\n%s", b.String())
	}
	var none strings.Builder
	writeLags(&none, results[1:])
	if none.Len() != 0 {
		t.Errorf("a lag table without lags: %q", none.String())
	}
}

// TestRatePacesTheCallers checks that --rate holds the callers back: no
// more calls start than the rate allows in the measured time.
func TestRatePacesTheCallers(t *testing.T) {
	needServers(t)
	const rate, seconds = 200, 1
	o := options{Duration: seconds * time.Second, Warmup: 100 * time.Millisecond, Drain: time.Minute, Rate: rate,
		Callers: []int{4}, Scenarios: []string{CeilingCommit}, DatabaseURL: testDatabaseURL, AMQPURL: testAMQPURL}
	results := runAll(t.Context(), o)
	if len(results) != 1 || results[0].err != nil {
		t.Fatalf("results %+v", results)
	}
	if n := results[0].events; n <= 0 || n > rate*seconds+1 {
		t.Errorf("%d calls in %d s at %d/s; want at most %d", n, seconds, rate, rate*seconds+1)
	}
	report := markdown(o, machine{cores: 2}, time.Now(), results)
	if !strings.Contains(report, "paced: the callers start 200 calls per second") {
		t.Errorf("the report does not say the run was paced:\n%s", report)
	}
}
