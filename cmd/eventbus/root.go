package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/service"
)

// usageError is a mistake on the command line: exit code 2, with the usage.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// app is what every command shares: the configuration flags, the outputs
// and the logger.
type app struct {
	flags     *config.Flags
	stdout    io.Writer
	stderr    io.Writer
	logFormat string
	logLevel  string
	logger    *slog.Logger
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "eventbus",
		Short: "The EduPulse event bus: record domain events in PostgreSQL, deliver them through RabbitMQ",
		Long: `eventbus runs and operates the EduPulse event bus.

Configuration comes from the environment, overridden by flags:
  EVENTBUS_DATABASE_URL  PostgreSQL URL; unset: embedded SQLite under EVENTBUS_DATA_DIR (./eventbus-data)
  EVENTBUS_AMQP_URL      RabbitMQ URL(s), comma-separated; unset: in-process broker
  EVENTBUS_EXCHANGE      topic exchange (edupulse.events)
  EVENTBUS_HTTP_ADDR     HTTP API address (127.0.0.1:8080)
  EVENTBUS_API_TOKENS    name:token:scope1+scope2,... (publish, read, admin); unset: auth off

Exit codes: 0 success, 1 runtime failure, 2 usage error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogger(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	a.flags = config.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} })
	root.AddCommand(
		a.serveCmd(),
		a.migrateCmd(),
		a.publishCmd(),
		a.eventsCmd(),
		a.tailCmd(),
		a.replayCmd(),
		a.statusCmd(),
		a.dlqCmd(),
	)
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(root.FlagErrorFunc())
	}
	return root
}

func (a *app) setupLogger(cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usagef(cmd, "--log-level %q: use debug, info, warn or error", a.logLevel)
	}
	// Tools print their results; only the service narrates what it does.
	if cmd.Name() != "serve" && !cmd.Flags().Changed("log-level") {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	format := a.logFormat
	if format == "auto" {
		format = "json"
		if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		a.logger = slog.New(slog.NewJSONHandler(a.stderr, opts))
	case "text":
		a.logger = slog.New(slog.NewTextHandler(a.stderr, opts))
	default:
		return usagef(cmd, "--log-format %q: use auto, text or json", a.logFormat)
	}
	return nil
}

// config loads the configuration; a bad value is a usage error.
func (a *app) config(cmd *cobra.Command) (config.Config, error) {
	cfg, err := config.Load(os.LookupEnv, a.flags)
	if err != nil {
		return cfg, &usageError{cmd: cmd, err: err}
	}
	return cfg, nil
}

// open opens the service the configuration names.
func (a *app) open(cmd *cobra.Command, opts service.Options) (*service.Service, error) {
	cfg, err := a.config(cmd)
	if err != nil {
		return nil, err
	}
	opts.Logger = a.logger
	if opts.Source == "" {
		opts.Source = "eventbus-cli"
	}
	return service.Open(cmd.Context(), cfg, opts)
}

// isTerminal reports whether w is a terminal, for progress bars and
// colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// exactArgs is cobra.ExactArgs with a usage error that names the arguments.
func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "%s takes %d argument(s): %s; got %d", cmd.Name(), n, strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "%s takes no arguments; got %q", cmd.Name(), args)
	}
	return nil
}

// ctxErr turns an interrupted command into its own message.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted")
	}
	return err
}
