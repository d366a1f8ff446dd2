package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/service"
)

func (a *app) serveCmd() *cobra.Command {
	var noRelay, relayOnly, migrate bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and the relay",
		Long: `serve runs the HTTP API and the relay, which publishes every committed
event to the broker. Several serve processes may run: they share the relay's
partitions (EVENTBUS_RELAY_PARTITIONS, default 1), each published by one
process at a time; when a process dies the others take its partitions
within seconds. serve --relay-only serves only /healthz, /readyz and
/metrics on EVENTBUS_HTTP_ADDR.

With no configuration it runs on the embedded default: a SQLite store under
./eventbus-data and a broker inside the process, which only consumers in the
same process reach (a worker embeds the service instead: see
examples/badgeworker). Messages in that broker die with the process; the
relay publishes every event not yet delivered again when it restarts.

It stops gracefully on SIGTERM or Ctrl-C: the HTTP API finishes the requests
in flight, the relay saves its checkpoint and hands its lease over.`,
		Example: `  # On a bare machine: the embedded default
  eventbus serve

  # In production
  EVENTBUS_DATABASE_URL=postgres://eventbus:secret@db:5432/eventbus \
  EVENTBUS_AMQP_URL=amqp://eventbus:secret@rabbit-1:5672/,amqp://eventbus:secret@rabbit-2:5672/ \
  EVENTBUS_API_TOKENS=orders:s3cr3t-token-1234:publish eventbus serve --migrate

  # A relay on its own, or the API on its own
  eventbus serve --relay-only
  eventbus serve --no-relay`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if noRelay && relayOnly {
				return usagef(cmd, "--no-relay and --relay-only exclude each other: give one")
			}
			svc, err := a.open(cmd, service.Config{Migrate: migrate, Source: "eventbus"})
			if err != nil {
				return err
			}
			a.logger.Info("eventbus serving", "config", svc.Config, "http", !relayOnly, "relay", !noRelay)
			done := make(chan error, 1)
			go func() {
				err := svc.Run(cmd.Context(), service.RunOptions{HTTP: !relayOnly, Relay: !noRelay, Probes: relayOnly})
				_ = svc.Close()
				done <- err
			}()
			if err := stopWithin(cmd.Context(), done, svc.Config.ShutdownTimeout); err != nil {
				a.logger.Error("eventbus stopped", "err", err)
				return err
			}
			a.logger.Info("eventbus stopped")
			return nil
		},
	}
	cmd.Flags().BoolVar(&noRelay, "no-relay", false, "run the HTTP API without the relay")
	cmd.Flags().BoolVar(&relayOnly, "relay-only", false, "run the relay without the HTTP API")
	cmd.Flags().BoolVar(&migrate, "migrate", false, "bring the PostgreSQL schema up to date before serving (the embedded store always does)")
	return cmd
}

// stopWithin waits for done, the end of the service's run and close. Once
// ctx ends (SIGTERM, Ctrl-C) it waits at most timeout more: a store or a
// broker that does not answer must not keep the process alive (DESIGN
// "Bounded answers"). Past it, it returns an error, and the process exits
// with what did not stop still running.
func stopWithin(ctx context.Context, done <-chan error, timeout time.Duration) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("did not stop within the shutdown timeout of %s (%s or --%s): the store or the broker did not answer; "+
			"exiting without them: events the relay published since its last checkpoint will be published again",
			timeout, config.EnvShutdownTimeout, config.FlagShutdownTimeout)
	}
}
