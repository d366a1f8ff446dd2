// Package config is the configuration of the eventbus service: where the
// event store and the broker are, which exchange to publish to, where the
// HTTP API listens and which tokens it accepts. It reads the environment
// (EVENTBUS_*) and command-line flags, which override it.
//
// Configuration holds secrets (database and broker passwords, API tokens).
// Config's String, GoString and LogValue leave them out, and so do the
// errors of Load; Redact removes passwords from a URL for any other message.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/connurl"
)

// Environment variables.
const (
	EnvDatabaseURL = "EVENTBUS_DATABASE_URL"
	EnvDataDir     = "EVENTBUS_DATA_DIR"
	EnvAMQPURL     = "EVENTBUS_AMQP_URL"
	EnvExchange    = "EVENTBUS_EXCHANGE"
	EnvHTTPAddr    = "EVENTBUS_HTTP_ADDR"
	EnvAPITokens   = "EVENTBUS_API_TOKENS"

	EnvRequestTimeout  = "EVENTBUS_REQUEST_TIMEOUT"
	EnvShutdownTimeout = "EVENTBUS_SHUTDOWN_TIMEOUT"
)

// Defaults.
const (
	DefaultDataDir  = "./eventbus-data"
	DefaultHTTPAddr = "127.0.0.1:8080"

	// DefaultRequestTimeout bounds each HTTP request's store and broker
	// calls (DESIGN "Bounded answers").
	DefaultRequestTimeout = 5 * time.Second
	// DefaultShutdownTimeout bounds a process's stop after SIGTERM.
	DefaultShutdownTimeout = 15 * time.Second
)

// ErrInvalid reports a configuration value that cannot be used. Messages
// name the setting, say what is wrong and what to do, and never contain a
// secret.
var ErrInvalid = errors.New("invalid configuration")

// Config is the service's configuration.
type Config struct {
	// DatabaseURL is the PostgreSQL store's URL (postgres://...) or
	// key=value DSN. Empty: the embedded SQLite store under DataDir.
	DatabaseURL string
	// DataDir holds the embedded store's files.
	DataDir string
	// AMQPURLs are the RabbitMQ nodes, tried in turn on every reconnect.
	// Empty: the in-process broker.
	AMQPURLs []string
	// Exchange is the topic exchange events are published to.
	Exchange string
	// HTTPAddr is where the HTTP API listens, host:port.
	HTTPAddr string
	// Tokens are the HTTP API's tokens. Empty: auth is off.
	Tokens []auth.Token

	// RequestTimeout bounds every HTTP request: when the store or the
	// broker has not answered by then, the client gets a 503 with
	// Retry-After.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds a process's stop after SIGTERM or Ctrl-C,
	// even when the store, the broker or a handler does not answer.
	ShutdownTimeout time.Duration
}

// Embedded reports whether the store is the embedded SQLite store.
func (c Config) Embedded() bool { return c.DatabaseURL == "" }

// InProcessBroker reports whether the broker is the in-process one.
func (c Config) InProcessBroker() bool { return len(c.AMQPURLs) == 0 }

// AuthEnabled reports whether the HTTP API checks tokens.
func (c Config) AuthEnabled() bool { return len(c.Tokens) > 0 }

// Flags are the command-line flags that override the environment. Their
// defaults are the built-in ones: the environment's values, which may hold
// secrets, never show in --help.
type Flags struct {
	fs *pflag.FlagSet
}

// Flag names.
const (
	FlagDatabaseURL = "database-url"
	FlagDataDir     = "data-dir"
	FlagAMQPURL     = "amqp-url"
	FlagExchange    = "exchange"
	FlagHTTPAddr    = "http-addr"
	FlagAPITokens   = "api-tokens"

	FlagRequestTimeout  = "request-timeout"
	FlagShutdownTimeout = "shutdown-timeout"
)

// AddFlags defines the configuration's flags on fs (for example a cobra
// command's PersistentFlags) and returns them, for Load.
func AddFlags(fs *pflag.FlagSet) *Flags {
	fs.String(FlagDatabaseURL, "", "PostgreSQL URL, postgres://user:password@host:5432/db ("+EnvDatabaseURL+"; unset: embedded SQLite in --"+FlagDataDir+")")
	fs.String(FlagDataDir, DefaultDataDir, "directory of the embedded SQLite store ("+EnvDataDir+")")
	fs.String(FlagAMQPURL, "", "RabbitMQ URL, amqp://user:password@host:5672/, or several separated by commas ("+EnvAMQPURL+"; unset: in-process broker)")
	fs.String(FlagExchange, broker.DefaultEventsExchange, "topic exchange events are published to ("+EnvExchange+")")
	fs.String(FlagHTTPAddr, DefaultHTTPAddr, "host:port the HTTP API listens on; port 0 picks a free one ("+EnvHTTPAddr+")")
	fs.String(FlagAPITokens, "", "HTTP API tokens, name:token:scope1+scope2,... with scopes publish, read, admin ("+EnvAPITokens+"; prefer it: command lines are visible to other users; unset: auth off)")
	fs.String(FlagRequestTimeout, DefaultRequestTimeout.String(), "how long an HTTP request may wait for the store and the broker before it gets a 503 with Retry-After ("+EnvRequestTimeout+")")
	fs.String(FlagShutdownTimeout, DefaultShutdownTimeout.String(), "how long the process may take to stop after SIGTERM or Ctrl-C ("+EnvShutdownTimeout+")")
	return &Flags{fs: fs}
}

// Load reads the configuration: built-in defaults, overridden by the
// environment (lookupEnv, normally os.LookupEnv; empty values count as
// unset), overridden by the flags the user set (flags may be nil). It
// checks every value and reports the first problem.
func Load(lookupEnv func(string) (string, bool), flags *Flags) (Config, error) {
	get := func(env, flag, def string) string {
		if flags != nil && flags.fs.Changed(flag) {
			v, _ := flags.fs.GetString(flag)
			return strings.TrimSpace(v)
		}
		if v, ok := lookupEnv(env); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	c := Config{
		DatabaseURL: get(EnvDatabaseURL, FlagDatabaseURL, ""),
		DataDir:     get(EnvDataDir, FlagDataDir, DefaultDataDir),
		Exchange:    get(EnvExchange, FlagExchange, broker.DefaultEventsExchange),
		HTTPAddr:    get(EnvHTTPAddr, FlagHTTPAddr, DefaultHTTPAddr),
	}
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		return Config{}, err
	}
	if c.DataDir == "" {
		return Config{}, fmt.Errorf("%w: %s is empty; give the directory of the embedded store, or leave it unset for %s", ErrInvalid, EnvDataDir, DefaultDataDir)
	}
	var err error
	if c.AMQPURLs, err = parseAMQPURLs(get(EnvAMQPURL, FlagAMQPURL, "")); err != nil {
		return Config{}, err
	}
	if err := checkExchange(c.Exchange); err != nil {
		return Config{}, err
	}
	if err := checkHTTPAddr(c.HTTPAddr); err != nil {
		return Config{}, err
	}
	if c.Tokens, err = auth.ParseTokens(get(EnvAPITokens, FlagAPITokens, "")); err != nil {
		return Config{}, fmt.Errorf("%w: %s (or --%s): %w", ErrInvalid, EnvAPITokens, FlagAPITokens, err)
	}
	if c.RequestTimeout, err = parseTimeout(EnvRequestTimeout, FlagRequestTimeout, get(EnvRequestTimeout, FlagRequestTimeout, DefaultRequestTimeout.String())); err != nil {
		return Config{}, err
	}
	if c.ShutdownTimeout, err = parseTimeout(EnvShutdownTimeout, FlagShutdownTimeout, get(EnvShutdownTimeout, FlagShutdownTimeout, DefaultShutdownTimeout.String())); err != nil {
		return Config{}, err
	}
	return c, nil
}

// maxTimeout bounds the timeouts: past an hour, a "timeout" is a hang.
const maxTimeout = time.Hour

// parseTimeout reads a timeout setting: a Go duration such as 5s or 1m30s.
func parseTimeout(env, flag, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
			return 0, fmt.Errorf("%w: %s (or --%s) %q needs a unit, for example %ss", ErrInvalid, env, flag, v, v)
		}
		return 0, fmt.Errorf("%w: %s (or --%s) %q is not a duration; write it as 5s, 500ms or 1m30s", ErrInvalid, env, flag, v)
	}
	if d <= 0 || d > maxTimeout {
		return 0, fmt.Errorf("%w: %s (or --%s) %s must be above 0 and at most %s", ErrInvalid, env, flag, v, maxTimeout)
	}
	return d, nil
}

func checkDatabaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	if !strings.Contains(raw, "://") {
		if strings.Contains(raw, "=") {
			return nil // a key=value DSN; the driver checks its keys
		}
		return fmt.Errorf("%w: %s is neither a postgres:// URL nor a key=value DSN; for example postgres://user:password@localhost:5432/eventbus", ErrInvalid, EnvDatabaseURL)
	}
	if err := connurl.CheckUserInfo(raw); err != nil {
		return fmt.Errorf("%w: %s (%s): %w", ErrInvalid, EnvDatabaseURL, Redact(raw), err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password included: leave it out.
		return fmt.Errorf("%w: %s (%s) is not a valid URL; percent-encode special characters in the password", ErrInvalid, EnvDatabaseURL, Redact(raw))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%w: %s (%s) must start with postgres://", ErrInvalid, EnvDatabaseURL, Redact(raw))
	}
	return nil
}

func parseAMQPURLs(list string) ([]string, error) {
	if list == "" {
		return nil, nil
	}
	var urls []string
	for i, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if !strings.Contains(raw, "://") {
			// Not a URL: perhaps the end of a password holding a comma,
			// which split the list. Show none of it.
			return nil, fmt.Errorf("%w: %s: entry %d is not an amqp:// URL; separate URLs with commas, and percent-encode a comma in a password as %%2C", ErrInvalid, EnvAMQPURL, i+1)
		}
		if err := connurl.CheckUserInfo(raw); err != nil {
			return nil, fmt.Errorf("%w: %s: URL %d (%s): %w", ErrInvalid, EnvAMQPURL, i+1, Redact(raw), err)
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: %s: URL %d (%s) is not a valid URL; percent-encode special characters in the password", ErrInvalid, EnvAMQPURL, i+1, Redact(raw))
		case u.Scheme != "amqp" && u.Scheme != "amqps":
			return nil, fmt.Errorf("%w: %s: URL %d (%s) must start with amqp:// or amqps://, for example amqp://guest:guest@localhost:5672/", ErrInvalid, EnvAMQPURL, i+1, Redact(raw))
		case u.Hostname() == "":
			return nil, fmt.Errorf("%w: %s: URL %d (%s) has no host", ErrInvalid, EnvAMQPURL, i+1, Redact(raw))
		}
		urls = append(urls, raw)
	}
	return urls, nil
}

// checkExchange applies AMQP's rules for exchange names: up to 255
// characters of letters, digits, '-', '_', '.' and ':'; "amq." is reserved.
func checkExchange(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w: %s must be 1 to 255 characters; leave it unset for %s", ErrInvalid, EnvExchange, broker.DefaultEventsExchange)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Errorf("%w: %s %q may hold only letters, digits, '-', '_', '.' and ':'", ErrInvalid, EnvExchange, name)
		}
	}
	if strings.HasPrefix(name, "amq.") {
		return fmt.Errorf("%w: %s %q: names starting with \"amq.\" are reserved by RabbitMQ; choose another", ErrInvalid, EnvExchange, name)
	}
	return nil
}

func checkHTTPAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if _, err = strconv.ParseUint(port, 10, 16); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %q must be host:port with a port from 0 (any free port) to 65535, for example %s or :8080 (every interface)", ErrInvalid, EnvHTTPAddr, addr, DefaultHTTPAddr)
}

// String describes c with every secret left out.
func (c Config) String() string {
	d := c.describe()
	return "database=" + d.Database + " broker=" + d.Broker + " exchange=" + d.Exchange + " http_addr=" + d.HTTPAddr + " auth=" + d.Auth
}

// GoString keeps %#v from printing secrets.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }

// LogValue implements slog.LogValuer with every secret left out.
func (c Config) LogValue() slog.Value {
	d := c.describe()
	return slog.GroupValue(
		slog.String("database", d.Database),
		slog.String("broker", d.Broker),
		slog.String("exchange", d.Exchange),
		slog.String("http_addr", d.HTTPAddr),
		slog.String("auth", d.Auth),
	)
}

// MarshalJSON encodes c as LogValue does, with every secret left out.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.describe()) }

// description is Config as it may be shown.
type description struct {
	Database string `json:"database"`
	Broker   string `json:"broker"`
	Exchange string `json:"exchange"`
	HTTPAddr string `json:"http_addr"`
	Auth     string `json:"auth"`
}

func (c Config) describe() description {
	return description{Database: c.storeDescription(), Broker: c.brokerDescription(), Exchange: c.Exchange,
		HTTPAddr: c.HTTPAddr, Auth: c.authDescription()}
}

func (c Config) storeDescription() string {
	if c.Embedded() {
		return "sqlite:" + c.DataDir
	}
	return Redact(c.DatabaseURL)
}

func (c Config) brokerDescription() string {
	if c.InProcessBroker() {
		return "in-process"
	}
	urls := make([]string, len(c.AMQPURLs))
	for i, u := range c.AMQPURLs {
		urls[i] = Redact(u)
	}
	return strings.Join(urls, ",")
}

func (c Config) authDescription() string {
	if !c.AuthEnabled() {
		return "off"
	}
	names := make([]string, len(c.Tokens))
	for i, t := range c.Tokens {
		names[i] = t.String()
	}
	return strings.Join(names, ",")
}
