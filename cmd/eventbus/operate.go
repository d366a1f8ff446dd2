package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
)

func (a *app) statusCmd() *cobra.Command {
	var (
		asJSON    bool
		maxLag    time.Duration
		relayName string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the relay's partitions (leader, checkpoint, backlog, lag); exit 1 when unhealthy",
		Long: `status reads the relay's state from the store: for each partition, which
process leads it, its checkpoint, the backlog of events not yet confirmed by
the broker and how far behind it is; the live relay processes and how many
partitions each holds; and whether an old open transaction holds readers
back. It exits 1 when no process holds a partition's lease, an event is
parked ('eventbus parked list'), or the lag exceeds --max-lag, so that
scripts and probes can use it.`,
		Example: `  eventbus status
  eventbus status --json --max-lag 30s
  eventbus status --relay badgeworker   # the relay of a worker on the embedded default`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Probes and cron jobs run status: a store that does not
			// answer must make it fail in bounded time, not hang it.
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			timeout := cfg.RequestTimeout
			if a.serverURL() != "" {
				timeout *= 2 // the server's bound, and the network's
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			cmd.SetContext(ctx)
			timedOut := func(err error) error {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("unhealthy: the store did not answer within %s (%s): %w", timeout, config.EnvRequestTimeout, err)
				}
				return err
			}
			st, err := a.readStatus(cmd, relayName, maxLag)
			if err != nil {
				return timedOut(err)
			}
			if asJSON {
				if err := printJSON(a.stdout, st); err != nil {
					return err
				}
			} else {
				printStatus(a.stdout, st)
			}
			if !st.Healthy {
				return fmt.Errorf("unhealthy: %s; check that the relay runs ('eventbus serve') and what its log says", strings.Join(st.Problems, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&maxLag, "max-lag", time.Minute, "lag above which the relay counts as unhealthy")
	cmd.Flags().StringVar(&relayName, "relay", relay.DefaultName, "the relay's name")
	a.addServerFlag(cmd, false, "read")
	return cmd
}

// readStatus reads the relay's status from the server of --server, or from
// the store. Through a server, the server's own lag threshold applies as
// well as maxLag.
func (a *app) readStatus(cmd *cobra.Command, relayName string, maxLag time.Duration) (wire.Status, error) {
	c, err := a.remote(cmd)
	if err != nil {
		return wire.Status{}, err
	}
	if c != nil {
		if err := noRelayFlag(cmd); err != nil {
			return wire.Status{}, err
		}
		st, err := c.Status(cmd.Context())
		if err != nil {
			return st, remoteError(c, err)
		}
		if maxLag > 0 && st.Lag.Duration() > maxLag {
			st.Healthy = false
			st.Problems = append(st.Problems, fmt.Sprintf("lag %s is over --max-lag %s", st.Lag.Duration().Round(time.Millisecond), maxLag))
		}
		return st, nil
	}
	svc, err := a.openReadOnly(cmd)
	if err != nil {
		return wire.Status{}, err
	}
	defer svc.Close()
	if err := checkRelayName(cmd, svc, relayName); err != nil {
		return wire.Status{}, err
	}
	st, err := relay.ReadStatus(cmd.Context(), svc.Store, relayName, maxLag)
	return service.WireStatus(st), err
}

// checkRelayName fails when the store knows no relay named name, and says
// which relays it knows, unless it knows none at all: then no relay has run
// yet, which the status of the default relay says best.
func checkRelayName(cmd *cobra.Command, svc *service.Service, name string) error {
	names, err := svc.Store.Relays(cmd.Context())
	if err != nil {
		return err
	}
	if slices.Contains(names, name) || (len(names) == 0 && name == relay.DefaultName) {
		return nil
	}
	if len(names) == 0 {
		return fmt.Errorf("no relay named %s has run on this store, nor any other; check --relay, and that the relay runs ('eventbus serve')", name)
	}
	return fmt.Errorf("no relay named %s has run on this store; its relays: %s (give one to --relay)", name, strings.Join(names, ", "))
}

func printStatus(w io.Writer, st wire.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(tw, "relay\t%s (%s), %d partitions, %d processes\n", st.Relay, health, max(st.PartitionCount, 1), len(st.Processes))
	for _, p := range st.Partitions {
		leader := p.Leader
		if leader == "" {
			leader = "none"
		}
		fmt.Fprintf(tw, "partition %d\tleader %s, checkpoint at position %d (updated %s), backlog %d, lag %s\n",
			p.Partition, leader, p.CheckpointPosition, p.UpdatedAt.Format(time.RFC3339), p.Backlog, p.Lag.Duration().Round(time.Millisecond))
	}
	for _, p := range st.Processes {
		fmt.Fprintf(tw, "process\t%s holds %d partitions\n", p.Holder, p.Partitions)
	}
	fmt.Fprintf(tw, "backlog\t%d events\n", st.Backlog)
	fmt.Fprintf(tw, "lag\t%s\n", time.Duration(st.Lag).Round(time.Millisecond))
	fmt.Fprintf(tw, "events stored\t%d\n", st.Events)
	fmt.Fprintf(tw, "held back\t%d events, by a transaction open for %s\n", st.HeldBack, time.Duration(st.OldestTxAge).Round(time.Millisecond))
	fmt.Fprintf(tw, "parked\t%d events\n", st.Parked)
	for _, p := range st.Problems {
		fmt.Fprintf(tw, "problem\t%s\n", p)
	}
	_ = tw.Flush()
}

func (a *app) replayCmd() *cobra.Command {
	var (
		f       filterFlags
		queue   string
		dryRun  bool
		rate    float64
		resume  string
		samples int
		all     bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Send stored events again, to every consumer or to one queue",
		Long: `replay sends the events the filters select again, in commit order, up to the
newest event at its start: to the exchange (every consumer bound to their
types), or with --queue to one consumer group's queue only. Each message
carries the header x-eventbus-replay. Consumers with an inbox skip events
they already handled.

Without a filter it refuses to run unless --all says so: replaying the
whole store is never an accident.

With --dry-run it prints how many events it would send and the first few.
If it is interrupted it prints the --resume token that goes on from there.

The in-process broker of the embedded default lives inside 'eventbus serve':
replay through it with --server.`,
		Example: `  eventbus replay --type quiz.submitted --since 24h --queue badges --dry-run
  eventbus replay --type quiz.submitted --since 24h --queue badges --rate 500
  eventbus replay --correlation-id 0190d1e2-0000-7000-8000-000000000001
  eventbus replay --from-position 1000 --to-position 2000 --resume AQID
  eventbus replay --server http://127.0.0.1:8080 --queue badges --all`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter(cmd)
			if err != nil {
				return err
			}
			if filter.After, err = parseCursor(cmd, "resume", resume); err != nil {
				return err
			}
			if rate < 0 {
				return usagef(cmd, "--rate must not be negative")
			}
			if !all && !replay.Selective(filter) {
				return usagef(cmd, "replay names no filter, so it would send every stored event again; give a filter (--type, --subject, --correlation-id, --since, --until, --from-position, --to-position, --resume), or --all to replay the whole store")
			}
			c, err := a.remote(cmd)
			if err != nil {
				return err
			}
			if c != nil {
				return a.replayViaServer(cmd, c, filter, queue, rate, dryRun, samples, all)
			}
			svc, err := a.open(cmd, service.Config{StoreOnly: dryRun, MustExist: true})
			if err != nil {
				return err
			}
			defer svc.Close()
			ctx := cmd.Context()
			if dryRun {
				total, sample, err := replay.Plan(ctx, svc.Store, filter, samples)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "would replay %d events to %s\n", total, target(svc.Config.Exchange, queue))
				return printEvents(a.stdout, sample, false, true)
			}
			if svc.Config.InProcessBroker() {
				return errors.New("replay needs the broker, and the in-process broker of the embedded default lives inside the process that runs it: use --server http://<its HTTP address> (and an admin token in " + envAPIToken + "), or set " + config.EnvAMQPURL)
			}
			opts := replay.Options{Filter: filter, Rate: rate}
			if queue != "" {
				opts.Target.Queue = queue
			} else {
				opts.Target.Exchange = svc.Config.Exchange
			}
			var bar *progressbar.ProgressBar
			if isTerminal(a.stderr) {
				opts.Progress = func(p replay.Progress) {
					if bar == nil {
						bar = progressbar.NewOptions64(p.Total, progressbar.OptionSetWriter(a.stderr),
							progressbar.OptionSetDescription("replay"), progressbar.OptionShowCount(),
							progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
							progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
					}
					_ = bar.Set64(p.Published)
				}
			}
			res, err := replay.Run(ctx, svc.Store, svc.Broker, opts)
			if bar != nil {
				if err == nil {
					_ = bar.Finish()
				} else {
					_ = bar.Set64(res.Published) // where it stopped, not 100%
					_ = bar.Exit()
				}
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				if res.Published > 0 || ctx.Err() != nil {
					fmt.Fprintf(a.stderr, "replay %s stopped after %d of %d events; go on with: --resume %s\n",
						res.ID, res.Published, res.Total, res.Resume)
				}
				return ctxErr(ctx, err)
			}
			fmt.Fprintf(a.stdout, "replayed %d events to %s (replay %s)\n", res.Published, target(svc.Config.Exchange, queue), res.ID)
			return nil
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&queue, "queue", "", "send to this queue only (one consumer group); default: the exchange")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the count and a sample; send nothing")
	cmd.Flags().Float64Var(&rate, "rate", 0, "at most this many events per second; 0: as fast as the broker confirms")
	cmd.Flags().StringVar(&resume, "resume", "", "go on after this token, printed by an interrupted replay")
	a.addServerFlag(cmd, false, "admin")
	cmd.Flags().IntVar(&samples, "sample", 5, "how many events --dry-run shows")
	cmd.Flags().BoolVar(&all, "all", false, "replay every stored event; needed when no filter is given")
	addStoredFlag(cmd)
	return cmd
}

func target(exchange, queue string) string {
	if queue != "" {
		return "queue " + queue
	}
	return "exchange " + exchange
}

// replayViaServer runs a replay, or plans it, through POST /v1/replay of a
// running serve.
func (a *app) replayViaServer(cmd *cobra.Command, c *remoteServer, filter store.Filter, queue string, rate float64, dryRun bool, samples int, all bool) error {
	f := clientFilter(filter)
	req := client.ReplayRequest{After: f.After, Types: f.Types, CorrelationID: f.CorrelationID, Subject: f.Subject,
		Since: f.Since, Until: f.Until, FromPosition: f.FromPosition, ToPosition: f.ToPosition,
		Queue: queue, Rate: rate, All: all}
	where := "the server's exchange"
	if queue != "" {
		where = "queue " + queue
	}
	ctx := cmd.Context()
	if dryRun {
		plan, err := c.PlanReplay(ctx, req)
		if err != nil {
			return remoteError(c, err)
		}
		fmt.Fprintf(a.stdout, "would replay %d events to %s\n", plan.Total, where)
		return printEvents(a.stdout, plan.Events[:min(samples, len(plan.Events))], false, true)
	}
	res, err := c.Replay(ctx, req)
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) && e.Resume != "" {
			fmt.Fprintf(a.stderr, "the replay stopped early; go on with: --resume %s\n", e.Resume)
		}
		if ctx.Err() != nil {
			return errors.New("interrupted; what the server sent up to then stays sent")
		}
		return remoteError(c, err)
	}
	fmt.Fprintf(a.stdout, "replayed %d events to %s (replay %s)\n", res.Published, where, res.ID)
	return nil
}

func (a *app) dlqCmd() *cobra.Command {
	dlq := subcommands(&cobra.Command{
		Use:   "dlq",
		Short: "List and requeue a consumer group's dead letters",
		Long: `dlq shows the messages a consumer group gave up on, with the reason, the
attempts and when, and puts them back on the group's queue.

The in-process broker of the embedded default lives inside the process that
runs it ('eventbus serve', or a worker that embeds the service and serves its
HTTP API): reach it with --server.`,
		Example: `  EVENTBUS_AMQP_URL=amqp://eventbus:secret@rabbit:5672/ eventbus dlq list badges
  EVENTBUS_AMQP_URL=amqp://eventbus:secret@rabbit:5672/ eventbus dlq requeue badges --all
  EVENTBUS_API_TOKEN=admin-token eventbus dlq list badges --server http://127.0.0.1:8080`,
	})
	a.addServerFlag(dlq, true, "admin")

	var (
		limit  int
		asJSON bool
	)
	list := &cobra.Command{
		Use:   "list GROUP",
		Short: "List a consumer group's dead letters, leaving them in place",
		Example: `  eventbus dlq list badges
  eventbus dlq list badges --json`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return usagef(cmd, "--limit must be at least 1")
			}
			letters, err := a.deadLetters(cmd, args[0], limit)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, letters)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tATTEMPTS\tFAILED AT\tREASON")
			for _, d := range letters {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", cell(d.MessageID, 60), cell(orDash(d.Type), 60), d.Attempts, d.FailedAt.Format(time.RFC3339), cell(d.Reason, 300))
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var (
		ids []string
		all bool
	)
	requeue := &cobra.Command{
		Use:   "requeue GROUP (--all | --id ID...)",
		Short: "Put dead letters back on the group's queue",
		Example: `  eventbus dlq requeue badges --all
  eventbus dlq requeue badges --id 0190d1e2-0000-7000-8000-000000000001`,
		Args: exactArgs(1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(ids) > 0) {
				return usagef(cmd, "give either --all or --id (one or more)")
			}
			for _, id := range ids {
				if _, err := uuid.Parse(id); err != nil {
					return usagef(cmd, "--id %q is not a UUID", id)
				}
			}
			n, err := a.requeue(cmd, args[0], ids)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "requeued %d dead letters to %s\n", n, args[0])
			return nil
		},
	}
	requeue.Flags().StringSliceVar(&ids, "id", nil, "the event ID of a dead letter to requeue (repeat for several)")
	requeue.Flags().BoolVar(&all, "all", false, "requeue every dead letter of the group")
	dlq.AddCommand(list, requeue)
	return dlq
}

// deadLetters lists a group's dead letters through the server of
// --server, or from RabbitMQ.
func (a *app) deadLetters(cmd *cobra.Command, group string, limit int) ([]wire.DeadLetter, error) {
	c, err := a.remote(cmd)
	if err != nil {
		return nil, err
	}
	if c != nil {
		letters, err := c.DeadLetters(cmd.Context(), group, limit)
		return letters, remoteError(c, err)
	}
	b, err := a.openBroker(cmd)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	letters, err := consume.DeadLetters(cmd.Context(), b, group, limit)
	out := make([]wire.DeadLetter, len(letters))
	for i, dl := range letters {
		out[i] = service.WireDeadLetter(dl)
	}
	return out, err
}

// requeue moves a group's dead letters with ids (all when none) back to
// its queue, through the server of --server or on RabbitMQ.
func (a *app) requeue(cmd *cobra.Command, group string, ids []string) (int, error) {
	c, err := a.remote(cmd)
	if err != nil {
		return 0, err
	}
	if c != nil {
		n, err := c.Requeue(cmd.Context(), group, ids)
		return n, remoteError(c, err)
	}
	b, err := a.openBroker(cmd)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	return consume.Requeue(cmd.Context(), b, group, service.PickDeadLetters(ids))
}

// openBroker opens RabbitMQ alone for the broker tools: they need neither
// the store nor the relay, so they work while PostgreSQL is down or its
// schema is behind. They cannot work on the in-process broker of another
// process.
func (a *app) openBroker(cmd *cobra.Command) (*rabbitmq.Broker, error) {
	cfg, err := a.config(cmd)
	if err != nil {
		return nil, err
	}
	if cfg.InProcessBroker() {
		return nil, errors.New("this needs the broker, and the in-process broker of the embedded default lives inside the process that runs it: use --server http://<its HTTP address> (and an admin token in " + envAPIToken + "), or set " + config.EnvAMQPURL)
	}
	return rabbitmq.Open(cmd.Context(), strings.Join(cfg.AMQPURLs, ","), rabbitmq.Config{Logger: a.logger})
}
