package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
)

func (a *app) parkedCmd() *cobra.Command {
	parked := subcommands(&cobra.Command{
		Use:   "parked",
		Short: "List the events the relay parked, and publish them again",
		Long: `The relay parks an event that the broker refuses in a way that sending it
again cannot fix (a message over the broker's max_message_size, a property
too long for AMQP), and the later events of its stream behind it, so that
order per stream holds; every other event flows on. 'parked list' shows them
with the reason; once the cause is fixed, 'parked retry' has the leading
relay publish them again, in order. Both read and write the store directly,
or go through a running serve with --server.`,
		Example: `  eventbus parked list
  eventbus parked retry --all
  eventbus parked retry 0190d1e2-0000-7000-8000-000000000001`,
	})
	var relayName string
	parked.PersistentFlags().StringVar(&relayName, "relay", relay.DefaultName, "the relay's name")
	a.addServerFlag(parked, true, "read")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the parked events with why they are parked",
		Example: `  eventbus parked list
  eventbus parked list --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ops, err := a.parkedOps(cmd, relayName)
			if err != nil {
				return err
			}
			defer ops.close()
			events, err := ops.list(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, events)
			}
			printParked(a.stdout, events)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var (
		all  bool
		wait time.Duration
	)
	retry := &cobra.Command{
		Use:   "retry (--all | EVENT_ID...)",
		Short: "Have the leading relay publish parked events again, in order",
		Long: `retry marks parked events for retry: those named, with the events parked
before them in their streams, or every one with --all. The relay that leads
the partition publishes each stream's parked events in order, before any
newer event of the stream. An event that fails again stays parked, its
attempts counted. retry waits up to --wait for the relay's verdict and exits
1 when an event stays parked or no relay acted in time.`,
		Example: `  eventbus parked retry --all
  eventbus parked retry 0190d1e2-0000-7000-8000-000000000001 0190d1e2-0000-7000-8000-000000000002
  eventbus parked retry --all --wait 0   # mark them and return`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usagef(cmd, "give either --all or one or more event IDs")
			}
			if wait < 0 {
				return usagef(cmd, "--wait must not be negative")
			}
			var ids []uuid.UUID
			for _, arg := range args {
				id, err := uuid.Parse(arg)
				if err != nil || len(arg) != 36 {
					return usagef(cmd, "%q is not an event ID (a UUID such as 0190d1e2-7c4a-7b3e-8f00-1234567890ab)", arg)
				}
				ids = append(ids, id)
			}
			ops, err := a.parkedOps(cmd, relayName)
			if err != nil {
				return err
			}
			defer ops.close()
			ctx := cmd.Context()
			res, err := ops.retry(ctx, ids, all)
			if err != nil {
				return err
			}
			for _, id := range res.NotParked {
				fmt.Fprintf(a.stdout, "%s is not parked (published already, or never parked)\n", id)
			}
			if len(res.Requested) == 0 {
				if len(res.NotParked) > 0 {
					return fmt.Errorf("none of the events is parked; 'eventbus parked list' shows those that are")
				}
				fmt.Fprintln(a.stdout, "nothing is parked")
				return nil
			}
			fmt.Fprintf(a.stdout, "asked the relay to publish %d parked events again\n", len(res.Requested))
			if wait == 0 {
				return nil
			}
			deadline := time.Now().Add(wait)
			for {
				events, err := ops.list(ctx)
				if err != nil {
					return ctxErr(ctx, err)
				}
				now := map[uuid.UUID]wire.Parked{}
				for _, e := range events {
					now[e.EventID] = e
				}
				pending, failed := 0, []wire.Parked{}
				for _, e := range res.Requested {
					switch p, ok := now[e.EventID]; {
					case !ok:
					case p.RetryRequested:
						pending++
					default:
						failed = append(failed, p)
					}
				}
				if pending == 0 {
					fmt.Fprintf(a.stdout, "published %d; %d still parked\n", len(res.Requested)-len(failed), len(failed))
					if len(failed) > 0 {
						printParked(a.stdout, failed)
						return fmt.Errorf("%d events are still parked: fix the cause their reason names, then retry again", len(failed))
					}
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("no relay acted on the retry within %s (%d events wait for it); check that the relay runs ('eventbus serve') and what its log says", wait, pending)
				}
				select {
				case <-ctx.Done():
					return ctxErr(ctx, ctx.Err())
				case <-time.After(100 * time.Millisecond):
				}
			}
		},
	}
	needsScope(retry, "admin")
	retry.Flags().BoolVar(&all, "all", false, "retry every parked event")
	retry.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the relay's verdict; 0 returns at once")
	parked.AddCommand(list, retry)
	return parked
}

// parkedOps are the parked-event operations, on the store or through a
// server.
type parkedOps struct {
	list  func(ctx context.Context) ([]wire.Parked, error)
	retry func(ctx context.Context, ids []uuid.UUID, all bool) (wire.RetryResult, error)
	close func()
}

// parkedOps returns the operations through the server of --server, or on
// the store (which they never create: they ask a relay of an existing one).
func (a *app) parkedOps(cmd *cobra.Command, relayName string) (parkedOps, error) {
	c, err := a.remote(cmd)
	if err != nil {
		return parkedOps{}, err
	}
	if c != nil {
		if err := noRelayFlag(cmd); err != nil {
			return parkedOps{}, err
		}
		return parkedOps{
			list: func(ctx context.Context) ([]wire.Parked, error) {
				list, err := c.Parked(ctx)
				return list, remoteError(c, err)
			},
			retry: func(ctx context.Context, ids []uuid.UUID, all bool) (wire.RetryResult, error) {
				var res wire.RetryResult
				var err error
				if all {
					res, err = c.RetryAllParked(ctx)
				} else {
					res, err = c.RetryParked(ctx, ids)
				}
				if errors.Is(err, client.ErrNotFound) {
					// None of them is parked: the server says so with a 404.
					return wire.RetryResult{NotParked: ids}, nil
				}
				return res, remoteError(c, err)
			},
			close: func() {},
		}, nil
	}
	svc, err := a.openReadOnly(cmd)
	if err != nil {
		return parkedOps{}, err
	}
	return parkedOps{
		list:  service.HTTPParked(svc.Store, relayName),
		retry: service.HTTPAdmin(svc.Store, nil, relayName, "").RetryParked,
		close: func() { svc.Close() },
	}, nil
}

func printParked(w io.Writer, events []wire.Parked) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT ID\tPOSITION\tSTREAM\tTYPE\tATTEMPTS\tPARKED AT\tREASON")
	for _, e := range events {
		stream := orDash(e.Stream)
		if e.Stream != "" {
			stream = fmt.Sprintf("%s@%d", e.Stream, e.StreamVersion)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\n", e.EventID, e.Position, cell(stream, 60), cell(e.Type, 60),
			e.Attempts, e.ParkedAt.Format(time.RFC3339), cell(e.Reason, 300))
	}
	_ = tw.Flush()
}

// cell keeps a value on one table row: control characters become
// spaces, and it is cut at n bytes.
func cell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
