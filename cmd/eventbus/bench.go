package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/cmd/eventbus/internal/bench"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/store"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		asJSON    bool
		duration  time.Duration
		events    int64
		scenarios []string
		quiet     bool
		lagRate   int
		lagBatch  int
		sizes     []int64
		reps      int
		plans     string
		parts     bool
		profile   string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the bus on the configured store and broker, beside their ceilings",
		Long: `bench measures the bus on the store and broker the configuration names
(PostgreSQL and RabbitMQ, or the embedded default) and sets each figure
beside a ceiling measured in the same run: raw single-row commits, COPY (or
bulk inserts), and raw publisher confirms. It checks the targets of the
design and prints PASS or MISS for each.

Scenarios: ` + strings.Join(bench.Scenarios(), ", ") + `.

The scenario reads runs only alone (--scenario reads): it loads a store of
--sizes events (1,000,000 then 5,000,000 by default: minutes, and about 4 GB
of disk on PostgreSQL), measures a set of reads at each size and reports how
each one's time grew with the store. --plans FILE writes EXPLAIN (ANALYZE,
BUFFERS) of every read at the largest size; --partitioned measures them also
against a copy partitioned by month. It needs no broker.

Everything it creates has names of its own and is removed at the end, also
on Ctrl-C: a PostgreSQL schema eventbus_bench_<random>, a RabbitMQ exchange
and queues eventbus.bench.<random>..., or a temporary directory. Your tables,
exchange and data directory are never touched. It loads the servers for the
whole run: do not run it against production.`,
		Example: `  eventbus bench
  eventbus bench --scenario e2e-16,relay-lag --duration 30s
  eventbus bench --scenario relay-lag --relay-lag-rate 2000
  eventbus bench --scenario relay-lag --relay-lag-batch 10
  eventbus bench --scenario replay --cpuprofile replay.pprof
  eventbus bench --scenario reads --sizes 1000000,5000000 --plans read-plans.md
  EVENTBUS_DATABASE_URL=postgres://... EVENTBUS_AMQP_URL=amqp://... eventbus bench --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			opts := bench.Options{Duration: duration, Events: events, RelayLagRate: lagRate, RelayLagBatch: lagBatch, Logger: a.logger, Progress: a.stderr}
			if quiet {
				opts.Progress = io.Discard
			}
			for _, s := range scenarios {
				for _, name := range strings.Split(s, ",") {
					if name = strings.TrimSpace(name); name != "" {
						opts.Scenarios = append(opts.Scenarios, name)
					}
				}
			}
			if slices.Contains(opts.Scenarios, bench.Reads) {
				if len(opts.Scenarios) > 1 {
					return usagef(cmd, "the scenario reads runs alone: --scenario reads")
				}
				if reps < 0 {
					return usagef(cmd, "--reps must not be negative")
				}
				return withCPUProfile(profile, func() error {
					return a.benchReads(cmd.Context(), cfg, bench.ReadsOptions{Sizes: sizes, Reps: reps, Partitioned: parts, Progress: opts.Progress}, plans, asJSON)
				})
			}
			if duration < 0 || events < 0 || lagRate < 0 {
				return usagef(cmd, "--duration, --events and --relay-lag-rate must not be negative")
			}
			if lagBatch < 1 || lagBatch > store.MaxBatch {
				return usagef(cmd, "--relay-lag-batch must be between 1 and %d events per transaction, not %d", store.MaxBatch, lagBatch)
			}
			if !cmd.Flags().Changed("duration") && events > 0 {
				opts.Duration = 0 // sized by --events alone
			}
			return withCPUProfile(profile, func() error {
				rep, err := bench.Run(cmd.Context(), cfg, opts)
				if errors.Is(err, bench.ErrUnknownScenario) {
					return usagef(cmd, "%v", err)
				}
				return a.benchReport(err, rep, len(rep.Scenarios) > 0, asJSON)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&duration, "duration", bench.DefaultDuration, "how long each scenario runs (relay-lag runs twice as long; each ceiling half as long)")
	cmd.Flags().Int64Var(&events, "events", 0, "at most this many events per scenario (alone: run each scenario to this many)")
	cmd.Flags().StringSliceVar(&scenarios, "scenario", nil, "scenarios to run, comma-separated (default all): "+strings.Join(bench.Scenarios(), ", "))
	cmd.Flags().IntVar(&lagRate, "relay-lag-rate", bench.DefaultRelayLagRate, "events/s of relay-lag's steady load")
	cmd.Flags().IntVar(&lagBatch, "relay-lag-batch", 1, "events per transaction in relay-lag's steady load")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress lines on stderr")
	cmd.Flags().Int64SliceVar(&sizes, "sizes", nil, "reads: store sizes in events, growing (default 1000000,5000000)")
	cmd.Flags().IntVar(&reps, "reps", 0, "reads: runs of each read per size (default 40)")
	cmd.Flags().StringVar(&plans, "plans", "", "reads: write the plan of every read at the largest size to this file (EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)")
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of this process over the whole run, ceilings and setup included, to this file (go tool pprof reads it; -focus picks a scenario's code)")
	cmd.Flags().BoolVar(&parts, "partitioned", false, "reads: measure also a copy of the store partitioned by month (PostgreSQL)")
	return cmd
}

// withCPUProfile runs run under a CPU profile written to the file at path,
// or without one when path is empty. A profile that cannot be started
// stops the run before it begins; one that cannot be written out fails it.
func withCPUProfile(path string, run func() error) (err error) {
	if path == "" {
		return run()
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	if perr := pprof.StartCPUProfile(f); perr != nil {
		f.Close()
		return fmt.Errorf("bench: --cpuprofile: %w", perr)
	}
	defer func() {
		pprof.StopCPUProfile()
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bench: --cpuprofile: write %s: %w", path, cerr)
		}
	}()
	return run()
}

// benchReads runs the reads scenario and prints its report.
func (a *app) benchReads(ctx context.Context, cfg config.Config, opts bench.ReadsOptions, plans string, asJSON bool) error {
	if plans != "" {
		f, err := os.Create(plans)
		if err != nil {
			return fmt.Errorf("bench: --plans: %w", err)
		}
		defer f.Close()
		opts.Plans = f
	}
	rep, err := bench.RunReads(ctx, cfg, opts)
	return a.benchReport(err, rep, len(rep.Reads) > 0, asJSON)
}

// benchReport prints a bench report that holds figures (has), as JSON or
// as a table, beside the run's error, and words an interrupted run.
func (a *app) benchReport(err error, rep interface{ WriteTable(io.Writer) error }, has, asJSON bool) error {
	if has {
		var perr error
		if asJSON {
			perr = printJSON(a.stdout, rep)
		} else {
			perr = rep.WriteTable(a.stdout)
		}
		err = errors.Join(err, perr)
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("bench: interrupted; what it created was removed")
	}
	return err
}
