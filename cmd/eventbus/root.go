package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/service"
)

// usageError is a mistake on the command line or in the configuration:
// exit code 2, with one line that points to the command's --help.
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
	root      *cobra.Command
	lookupEnv func(string) (string, bool) // os.LookupEnv; tests give their own
	server    string                      // --server of the command run; see remote.go
}

// envToken is the older name of EVENTBUS_API_TOKEN, the token the CLI
// sends to a running serve (--server); still read.
const envToken = "EVENTBUS_TOKEN"

func newApp(stdout, stderr io.Writer) (*app, *cobra.Command) {
	a := &app{stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	root := &cobra.Command{
		Use:   "eventbus",
		Short: "The EduPulse event bus: record domain events in PostgreSQL, deliver them through RabbitMQ",
		Long: `eventbus runs and operates the EduPulse event bus.

Configuration comes from flags, over the environment, over a YAML file
(--config or EVENTBUS_CONFIG, keys named as the environment variables), over
the defaults; 'eventbus config' shows the result:
  EVENTBUS_DATABASE_URL  PostgreSQL URL; unset: embedded SQLite under EVENTBUS_DATA_DIR (./eventbus-data)
  EVENTBUS_AMQP_URL      RabbitMQ URL(s), comma-separated; unset: in-process broker
  EVENTBUS_EXCHANGE      topic exchange (edupulse.events)
  EVENTBUS_HTTP_ADDR     HTTP API address (127.0.0.1:8080)
  EVENTBUS_API_TOKENS    name:token:scope1+scope2,... (publish, read, admin); unset: auth off
  EVENTBUS_REQUEST_TIMEOUT   an HTTP request's wait for the store and the broker (5s), then 503
  EVENTBUS_SHUTDOWN_TIMEOUT  the longest a stop takes after SIGTERM or Ctrl-C (15s)
  EVENTBUS_RELAY_PARTITIONS  partitions the relay processes share, the same in every process (1)
  EVENTBUS_SERVER        a running serve's URL for events, tail, status, replay, dlq and parked (--server)
  EVENTBUS_API_TOKEN     the token sent to it

Exit codes: 0 success, 1 runtime failure, 2 usage error.`,
		Example: `  # On a bare machine: the whole bus, data under ./eventbus-data
  eventbus serve
  eventbus publish quiz.submitted '{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}'
  eventbus events --type quiz.submitted

  # Against PostgreSQL and RabbitMQ
  export EVENTBUS_DATABASE_URL=postgres://eventbus:secret@db:5432/eventbus
  export EVENTBUS_AMQP_URL=amqp://eventbus:secret@rabbit:5672/
  eventbus migrate && eventbus serve
  eventbus status --max-lag 30s`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unknown command %q", args[0])
			}
			return nil
		},
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if storedVersions(cmd) {
				// Every read of the command, local or through the
				// server, asks for the stored versions.
				cmd.SetContext(event.WithStoredVersions(cmd.Context()))
			}
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
		a.schemasCmd(),
		a.dlqCmd(),
		a.parkedCmd(),
		a.eraseCmd(),
		a.keysCmd(),
		a.benchCmd(),
		a.versionCmd(),
		a.configCmd(),
	)
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(root.FlagErrorFunc())
	}
	a.root = root
	return a, root
}

// secrets returns the secrets the configuration holds, from the environment
// and the flags: the passwords in the database and broker URLs, the API
// tokens and the client token. Values under 4 characters are left out:
// redacting them would mangle messages.
func (a *app) secrets() []string {
	value := func(env, flag string) []string {
		out := []string{os.Getenv(env), config.FileValues(a.lookupEnv, a.flags)[env]}
		if a.root != nil {
			if v, err := a.root.PersistentFlags().GetString(flag); err == nil {
				out = append(out, v)
			}
		}
		return out
	}
	var out []string
	for _, u := range value(config.EnvDatabaseURL, config.FlagDatabaseURL) {
		out = append(out, config.Passwords(u)...)
	}
	for _, list := range value(config.EnvAMQPURL, config.FlagAMQPURL) {
		for _, u := range strings.Split(list, ",") {
			out = append(out, config.Passwords(u)...)
		}
	}
	for _, list := range value(config.EnvAPITokens, config.FlagAPITokens) {
		out = append(out, auth.TokenSecrets(list)...)
	}
	for _, list := range value(config.EnvMasterKey, config.FlagMasterKey) {
		out = append(out, strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	out = append(out, os.Getenv(envToken), os.Getenv(envAPIToken))
	out = slices.DeleteFunc(out, func(s string) bool { return len(s) < 4 })
	// Longest first, so that a secret that contains another goes whole.
	slices.SortFunc(out, func(x, y string) int { return len(y) - len(x) })
	return slices.Compact(out)
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
	cfg, err := config.Load(a.lookupEnv, a.flags)
	if err != nil {
		return cfg, &usageError{cmd: cmd, err: err}
	}
	return cfg, nil
}

// open opens the service the configuration names.
func (a *app) open(cmd *cobra.Command, opts service.Config) (*service.Service, error) {
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

// openReadOnly opens the store for a command that only reads it: it never
// creates an embedded store (one run from another directory would find an
// empty one and report nothing), and says where it looked instead.
func (a *app) openReadOnly(cmd *cobra.Command) (*service.Service, error) {
	return a.open(cmd, service.Config{StoreOnly: true, MustExist: true})
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
			return usagef(cmd, "%s takes %d argument(s): %s; got %d", commandName(cmd), n, strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "%s takes no arguments; got %q", commandName(cmd), args)
	}
	return nil
}

// commandName is the command as typed after "eventbus", such as "dlq list".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// subcommands makes a command that only groups others refuse an unknown
// subcommand as a usage error, and print its help when given none.
func subcommands(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef(cmd, "unknown %s command %q", commandName(cmd), args[0])
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return cmd
}

// ctxErr turns an interrupted command into its own message.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted")
	}
	return err
}

// addStoredFlag adds --stored to a command that reads events.
func addStoredFlag(cmd *cobra.Command) {
	cmd.Flags().Bool("stored", false, "events in the version of their type they were stored in; default: upcast to the latest version")
}

// storedVersions reports whether the command was given --stored.
func storedVersions(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("stored")
	return f != nil && f.Value.String() == "true"
}
