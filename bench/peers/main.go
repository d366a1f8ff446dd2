// Command peers compares this event bus with its peers on the same
// PostgreSQL and RabbitMQ, in one run: the first version's design (insert,
// then publish and wait for the confirm), Watermill's outbox forwarder, the
// bus with the event in the caller's transaction and in one of its own, and
// the ceilings of the same servers (single-row commits, pipelined confirms).
//
//	cd bench/peers && go run . [--duration 10s] [--callers 1,16] [--out peers.md]
//
// Every scenario runs on objects of its own (a PostgreSQL schema, a RabbitMQ
// exchange and quorum queue), created fresh and removed at the end, and one
// consumer counts what reaches the queue. See README.md.
//
// It is a module of its own so that the library does not depend on
// Watermill.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// errFailed reports a run whose table holds a failed scenario.
var errFailed = errors.New("some scenarios failed (see the table)")

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{Progress: stderr}
	var callers, only, out, cpuProfile string
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per scenario and caller count")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before each measurement (not counted)")
	fs.DurationVar(&o.Drain, "drain", time.Minute, "how long to wait for the consumer to receive every event; past it the scenario fails")
	fs.StringVar(&callers, "callers", "1,16", "comma-separated caller counts")
	fs.IntVar(&o.Rate, "rate", 0, "pace the callers to this many events/s in all (0: as fast as they go); the report then gives the lag at that rate")
	fs.StringVar(&o.DatabaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	fs.StringVar(&o.AMQPURL, "amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	fs.StringVar(&only, "scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(scenarioNames(), ", ")+")")
	fs.StringVar(&out, "out", "", "write the Markdown report to this file (default standard output)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (callers, relay or forwarder, consumer) over the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Duration <= 0 || o.Warmup < 0 || o.Drain <= 0 || o.Rate < 0 {
		return errors.New("--duration and --drain must be positive, --warmup and --rate not negative")
	}
	for _, f := range strings.Split(callers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("--callers: %q is not a caller count between 1 and 1024", f)
		}
		o.Callers = append(o.Callers, n)
	}
	if only != "" {
		for _, s := range strings.Split(only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(scenarioNames(), s) {
				return fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", s, strings.Join(scenarioNames(), ", "))
			}
			o.Scenarios = append(o.Scenarios, s)
		}
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now().UTC()
	m := describeMachine(ctx, o)
	results := runAll(ctx, o)
	report := markdown(o, m, started, results)

	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	if _, err := io.WriteString(w, report); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if out != "" {
		fmt.Fprintf(stderr, "peers: report written to %s\n", out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, r := range results {
		if r.err != nil {
			return errFailed
		}
	}
	return nil
}
