// Package config is the configuration of the eventbus service: where the
// event store and the broker are, which exchange to publish to, where the
// HTTP API listens and which tokens it accepts. It reads, each overriding
// the one before: built-in defaults, a YAML configuration file (--config or
// EVENTBUS_CONFIG) whose keys are the environment variables' names, the
// environment (EVENTBUS_*), and command-line flags. Explain says which of
// them gave each value.
//
// Configuration holds secrets (database and broker passwords, API tokens).
// Config's String, GoString and LogValue leave them out, and so do the
// errors of Load; Redact removes passwords from a URL for any other message.
package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/connurl"
	"github.com/edupulse/eventbus/store"
)

// Environment variables.
const (
	EnvDatabaseURL = "EVENTBUS_DATABASE_URL"
	EnvDataDir     = "EVENTBUS_DATA_DIR"
	EnvAMQPURL     = "EVENTBUS_AMQP_URL"
	EnvExchange    = "EVENTBUS_EXCHANGE"
	EnvHTTPAddr    = "EVENTBUS_HTTP_ADDR"
	EnvAPITokens   = "EVENTBUS_API_TOKENS"

	// EnvMasterKey holds the key-encryption keys of erasure (G10):
	// base64 of 32 bytes each, separated by commas, the primary first.
	EnvMasterKey = "EVENTBUS_MASTER_KEY"
	// EnvMasterKeyFile names a file holding them, one per line.
	EnvMasterKeyFile = "EVENTBUS_MASTER_KEY_FILE"

	EnvRequestTimeout  = "EVENTBUS_REQUEST_TIMEOUT"
	EnvShutdownTimeout = "EVENTBUS_SHUTDOWN_TIMEOUT"

	EnvRelayPartitions = "EVENTBUS_RELAY_PARTITIONS"
	// EnvSchemaDir is the directory of JSON Schema files that declare event
	// types ({type}.v{N}.json), and EnvAllowUnknownTypes lets events of
	// types neither registered nor declared through (DESIGN "Types
	// declared outside Go").
	EnvSchemaDir         = "EVENTBUS_SCHEMA_DIR"
	EnvAllowUnknownTypes = "EVENTBUS_ALLOW_UNKNOWN_TYPES"

	// EnvConfig names the configuration file, as --config does.
	EnvConfig = "EVENTBUS_CONFIG"
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

	// MasterKey is the text of the key-encryption keys of erasure, from
	// EVENTBUS_MASTER_KEY or the file EVENTBUS_MASTER_KEY_FILE names: base64
	// of 32 bytes each, the primary first. It is a secret. Empty: none
	// configured (the embedded default keeps one in its data directory).
	MasterKey string
	// MasterKeyFile is the file MasterKey was read from, "" for none.
	MasterKeyFile string

	// RequestTimeout bounds every HTTP request: when the store or the
	// broker has not answered by then, the client gets a 503 with
	// Retry-After.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds a process's stop after SIGTERM or Ctrl-C,
	// even when the store, the broker or a handler does not answer.
	ShutdownTimeout time.Duration

	// RelayPartitions is the relay's partition count: its work is split
	// by a hash of the stream, and the relay processes share the
	// partitions. Every process of a relay must have the same.
	RelayPartitions int
	// SchemaDir holds JSON Schema files that declare event types; "" for
	// none.
	SchemaDir string
	// AllowUnknownTypes stores events of types neither registered nor
	// declared, byte for byte, instead of refusing them.
	AllowUnknownTypes bool

	// File is the configuration file read, "" for none.
	File string
}

// Embedded reports whether the store is the embedded SQLite store.
func (c Config) Embedded() bool { return c.DatabaseURL == "" }

// InProcessBroker reports whether the broker is the in-process one.
func (c Config) InProcessBroker() bool { return len(c.AMQPURLs) == 0 }

// AuthEnabled reports whether the HTTP API checks tokens.
func (c Config) AuthEnabled() bool { return len(c.Tokens) > 0 }

// Flags are the command-line flags that override the environment and the
// configuration file. Their defaults are the built-in ones: the values of
// the environment and the file, which may hold secrets, never show in
// --help.
type Flags struct {
	fs *pflag.FlagSet
}

// Flag names.
const (
	FlagDatabaseURL   = "database-url"
	FlagDataDir       = "data-dir"
	FlagAMQPURL       = "amqp-url"
	FlagExchange      = "exchange"
	FlagHTTPAddr      = "http-addr"
	FlagAPITokens     = "api-tokens"
	FlagMasterKey     = "master-key"
	FlagMasterKeyFile = "master-key-file"

	FlagRequestTimeout  = "request-timeout"
	FlagShutdownTimeout = "shutdown-timeout"

	FlagRelayPartitions   = "relay-partitions"
	FlagSchemaDir         = "schema-dir"
	FlagAllowUnknownTypes = "allow-unknown-types"

	FlagConfig = "config"
)

// setting is one setting: its environment variable (also its key in the
// configuration file), its flag and its built-in default.
type setting struct {
	env, flag, def string
}

// settings are every setting, in the order Explain lists them.
var settings = []setting{
	{EnvDatabaseURL, FlagDatabaseURL, ""},
	{EnvDataDir, FlagDataDir, DefaultDataDir},
	{EnvAMQPURL, FlagAMQPURL, ""},
	{EnvExchange, FlagExchange, broker.DefaultEventsExchange},
	{EnvHTTPAddr, FlagHTTPAddr, DefaultHTTPAddr},
	{EnvAPITokens, FlagAPITokens, ""},
	{EnvMasterKey, FlagMasterKey, ""},
	{EnvMasterKeyFile, FlagMasterKeyFile, ""},
	{EnvRequestTimeout, FlagRequestTimeout, DefaultRequestTimeout.String()},
	{EnvShutdownTimeout, FlagShutdownTimeout, DefaultShutdownTimeout.String()},
	{EnvRelayPartitions, FlagRelayPartitions, "1"},
	{EnvSchemaDir, FlagSchemaDir, ""},
	{EnvAllowUnknownTypes, FlagAllowUnknownTypes, "false"},
}

// Origin is where a setting's value came from.
type Origin string

// Origins, from the weakest to the strongest.
const (
	OriginDefault Origin = "default"
	OriginFile    Origin = "file"
	OriginEnv     Origin = "env"
	OriginFlag    Origin = "flag"
)

// Setting is one setting of the effective configuration, for people to
// read: its value with every secret masked, and where the value came from.
type Setting struct {
	// Key is the environment variable, also the key in the file.
	Key string `json:"-" yaml:"-"`
	// Value is the value in effect, as the setting is written, with
	// passwords and token secrets replaced by xxxxx.
	Value  string `json:"value" yaml:"value"`
	Origin Origin `json:"origin" yaml:"origin"`
	// Line is the value's line in the configuration file, when Origin is
	// OriginFile.
	Line int `json:"line,omitempty" yaml:"line,omitempty"`
}

// AddFlags defines the configuration's flags on fs (for example a cobra
// command's PersistentFlags) and returns them, for Load.
func AddFlags(fs *pflag.FlagSet) *Flags {
	fs.String(FlagDatabaseURL, "", "PostgreSQL URL, postgres://user:password@host:5432/db ("+EnvDatabaseURL+"; unset: embedded SQLite in --"+FlagDataDir+")")
	fs.String(FlagDataDir, DefaultDataDir, "directory of the embedded SQLite store ("+EnvDataDir+")")
	fs.String(FlagAMQPURL, "", "RabbitMQ URL, amqp://user:password@host:5672/, or several separated by commas ("+EnvAMQPURL+"; unset: in-process broker)")
	fs.String(FlagExchange, broker.DefaultEventsExchange, "topic exchange events are published to ("+EnvExchange+")")
	fs.String(FlagHTTPAddr, DefaultHTTPAddr, "host:port the HTTP API listens on; port 0 picks a free one ("+EnvHTTPAddr+")")
	fs.String(FlagAPITokens, "", "HTTP API tokens, name:token:scope1+scope2,... with scopes publish, read, admin ("+EnvAPITokens+"; prefer it: command lines are visible to other users; unset: auth off)")
	fs.String(FlagMasterKey, "", "key-encryption keys of erasure, base64 of 32 bytes each, comma-separated, the primary first ("+EnvMasterKey+"; prefer it or --"+FlagMasterKeyFile+": command lines are visible to other users)")
	fs.String(FlagMasterKeyFile, "", "file holding the key-encryption keys of erasure, one per line, the primary first; mode 0600 ("+EnvMasterKeyFile+")")
	fs.String(FlagRequestTimeout, DefaultRequestTimeout.String(), "how long an HTTP request may wait for the store and the broker before it gets a 503 with Retry-After ("+EnvRequestTimeout+")")
	fs.String(FlagShutdownTimeout, DefaultShutdownTimeout.String(), "how long the process may take to stop after SIGTERM or Ctrl-C ("+EnvShutdownTimeout+")")
	fs.String(FlagRelayPartitions, "1", fmt.Sprintf("partitions the relay's work is split into by stream, shared by every serve and serve --relay-only process; the same in every process, 1 to %d (%s)", store.MaxPartitions, EnvRelayPartitions))
	fs.String(FlagSchemaDir, "", "directory of JSON Schema files declaring event types, {type}.v{N}.json ("+EnvSchemaDir+")")
	fs.String(FlagAllowUnknownTypes, "false", "store events of types neither registered nor declared, byte for byte ("+EnvAllowUnknownTypes+")")
	fs.String(FlagConfig, "", "YAML configuration file, keys named as the environment variables; the environment and flags override it ("+EnvConfig+")")
	return &Flags{fs: fs}
}

// Load reads the configuration: built-in defaults, overridden by the
// configuration file that --config or EVENTBUS_CONFIG names, overridden by
// the environment (lookupEnv, normally os.LookupEnv), overridden by the
// flags the user set (flags may be nil). Empty values in the file and the
// environment count as unset. It checks every value and reports the first
// problem; a problem with a value from the file names the file and the
// line.
func Load(lookupEnv func(string) (string, bool), flags *Flags) (Config, error) {
	c, _, err := load(lookupEnv, flags)
	return c, err
}

// Explain loads the configuration as Load does, and also returns every
// setting's value in effect, with secrets masked, and where it came from,
// in a fixed order.
func Explain(lookupEnv func(string) (string, bool), flags *Flags) (Config, []Setting, error) {
	c, origins, err := load(lookupEnv, flags)
	if err != nil {
		return Config{}, nil, err
	}
	tokens := make([]string, len(c.Tokens))
	for i, t := range c.Tokens {
		tokens[i] = t.Name + ":" + connurl.Redacted + ":" + t.Scopes.String()
	}
	shown := map[string]string{
		EnvDatabaseURL:       Redact(c.DatabaseURL),
		EnvDataDir:           c.DataDir,
		EnvAMQPURL:           c.brokerURLs(),
		EnvExchange:          c.Exchange,
		EnvHTTPAddr:          c.HTTPAddr,
		EnvAPITokens:         strings.Join(tokens, ","),
		EnvMasterKey:         maskedKeys(c),
		EnvMasterKeyFile:     c.MasterKeyFile,
		EnvRequestTimeout:    c.RequestTimeout.String(),
		EnvShutdownTimeout:   c.ShutdownTimeout.String(),
		EnvRelayPartitions:   strconv.Itoa(c.RelayPartitions),
		EnvSchemaDir:         c.SchemaDir,
		EnvAllowUnknownTypes: strconv.FormatBool(c.AllowUnknownTypes),
	}
	out := make([]Setting, len(settings))
	for i, s := range settings {
		out[i] = origins[s.env]
		out[i].Key, out[i].Value = s.env, shown[s.env]
	}
	return c, out, nil
}

// load reads the configuration's layers; it returns the configuration and
// the origin of every setting (Setting without Key and Value).
func load(lookupEnv func(string) (string, bool), flags *Flags) (Config, map[string]Setting, error) {
	var f file
	if path := filePath(lookupEnv, flags); path != "" {
		var err error
		if f, err = readFile(path); err != nil {
			return Config{}, nil, err
		}
	}
	origins := make(map[string]Setting, len(settings))
	values := make(map[string]string, len(settings))
	for _, s := range settings {
		v, o := s.def, Setting{Origin: OriginDefault}
		if fv, ok := f.values[s.env]; ok && fv.value != "" {
			v, o = fv.value, Setting{Origin: OriginFile, Line: fv.line}
		}
		if ev, ok := lookupEnv(s.env); ok && strings.TrimSpace(ev) != "" {
			v, o = strings.TrimSpace(ev), Setting{Origin: OriginEnv}
		}
		if flags != nil && flags.fs.Changed(s.flag) {
			fv, _ := flags.fs.GetString(s.flag)
			v, o = strings.TrimSpace(fv), Setting{Origin: OriginFlag}
		}
		values[s.env], origins[s.env] = v, o
	}
	var last string // the setting check read last, the one it refuses
	c, err := check(func(env, _, _ string) string { last = env; return values[env] })
	if err != nil {
		if o := origins[last]; o.Origin == OriginFile {
			return Config{}, nil, fmt.Errorf("%s:%d: %w", f.path, o.Line, err)
		}
		return Config{}, nil, err
	}
	c.File = f.path
	return c, origins, nil
}

// check makes the configuration from the values get returns for each
// setting, checking every value; it reports the first problem. Each value
// is read just before it is checked, so that a problem is about the value
// read last.
func check(get func(env, flag, def string) string) (Config, error) {
	var c Config
	c.DatabaseURL = get(EnvDatabaseURL, FlagDatabaseURL, "")
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		return Config{}, err
	}
	if c.DataDir = get(EnvDataDir, FlagDataDir, DefaultDataDir); c.DataDir == "" {
		return Config{}, fmt.Errorf("%w: %s is empty; give the directory of the embedded store, or leave it unset for %s", ErrInvalid, EnvDataDir, DefaultDataDir)
	}
	var err error
	if c.AMQPURLs, err = parseAMQPURLs(get(EnvAMQPURL, FlagAMQPURL, "")); err != nil {
		return Config{}, err
	}
	c.Exchange = get(EnvExchange, FlagExchange, broker.DefaultEventsExchange)
	if err := checkExchange(c.Exchange); err != nil {
		return Config{}, err
	}
	c.HTTPAddr = get(EnvHTTPAddr, FlagHTTPAddr, DefaultHTTPAddr)
	if err := checkHTTPAddr(c.HTTPAddr); err != nil {
		return Config{}, err
	}
	if c.Tokens, err = auth.ParseTokens(get(EnvAPITokens, FlagAPITokens, "")); err != nil {
		return Config{}, fmt.Errorf("%w: %s (or --%s): %w", ErrInvalid, EnvAPITokens, FlagAPITokens, err)
	}
	c.MasterKey = get(EnvMasterKey, FlagMasterKey, "")
	if err := checkMasterKey(EnvMasterKey, c.MasterKey); err != nil {
		return Config{}, err
	}
	if c.MasterKeyFile = get(EnvMasterKeyFile, FlagMasterKeyFile, ""); c.MasterKeyFile != "" {
		if c.MasterKey != "" {
			return Config{}, fmt.Errorf("%w: %s and %s are both set; set one of them", ErrInvalid, EnvMasterKey, EnvMasterKeyFile)
		}
		if c.MasterKey, err = readMasterKeyFile(c.MasterKeyFile); err != nil {
			return Config{}, err
		}
	}
	if c.RequestTimeout, err = parseTimeout(EnvRequestTimeout, FlagRequestTimeout, get(EnvRequestTimeout, FlagRequestTimeout, DefaultRequestTimeout.String())); err != nil {
		return Config{}, err
	}
	if c.ShutdownTimeout, err = parseTimeout(EnvShutdownTimeout, FlagShutdownTimeout, get(EnvShutdownTimeout, FlagShutdownTimeout, DefaultShutdownTimeout.String())); err != nil {
		return Config{}, err
	}
	if c.RelayPartitions, err = parsePartitions(get(EnvRelayPartitions, FlagRelayPartitions, "1")); err != nil {
		return Config{}, err
	}
	c.SchemaDir = get(EnvSchemaDir, FlagSchemaDir, "")
	allow := get(EnvAllowUnknownTypes, FlagAllowUnknownTypes, "false")
	if c.AllowUnknownTypes, err = strconv.ParseBool(allow); err != nil {
		return Config{}, fmt.Errorf("%w: %s (or --%s) %q must be true or false", ErrInvalid, EnvAllowUnknownTypes, FlagAllowUnknownTypes, allow)
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

// parsePartitions reads the relay's partition count.
func parsePartitions(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxPartitions {
		return 0, fmt.Errorf("%w: %s (or --%s) %q must be a whole number from 1 to %d: the partitions the relay processes share; "+
			"give every process of the relay the same", ErrInvalid, EnvRelayPartitions, FlagRelayPartitions, v, store.MaxPartitions)
	}
	return n, nil
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
	attrs := []slog.Attr{
		slog.String("database", d.Database),
		slog.String("broker", d.Broker),
		slog.String("exchange", d.Exchange),
		slog.String("http_addr", d.HTTPAddr),
		slog.String("auth", d.Auth),
	}
	if c.File != "" {
		attrs = append(attrs, slog.String("config_file", c.File))
	}
	return slog.GroupValue(attrs...)
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
	return c.brokerURLs()
}

// brokerURLs returns the broker URLs as the setting holds them, with
// passwords redacted.
func (c Config) brokerURLs() string {
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

// maskedKeys shows the master keys setting: how many keys, never one.
func maskedKeys(c Config) string {
	if c.MasterKey == "" || c.MasterKeyFile != "" {
		return ""
	}
	n := len(splitKeys(c.MasterKey))
	if n == 1 {
		return connurl.Redacted
	}
	return strings.TrimSuffix(strings.Repeat(connurl.Redacted+",", n), ",")
}

// splitKeys splits the text of master keys at commas and line ends.
func splitKeys(text string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkMasterKey checks the text of master keys from setting: each is
// standard base64 of 32 bytes. The error never quotes a key.
func checkMasterKey(setting, text string) error {
	if text == "" {
		return nil
	}
	keys := splitKeys(text)
	if len(keys) == 0 {
		return fmt.Errorf("%w: %s holds no key; give base64 of 32 random bytes (openssl rand -base64 32)", ErrInvalid, setting)
	}
	for i, k := range keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return fmt.Errorf("%w: %s: key %d is not standard base64; give base64 of 32 random bytes (openssl rand -base64 32)", ErrInvalid, setting, i+1)
		}
		if len(b) != 32 {
			return fmt.Errorf("%w: %s: key %d is %d bytes; a key is 32 bytes (AES-256): openssl rand -base64 32", ErrInvalid, setting, i+1, len(b))
		}
	}
	return nil
}

// maxMasterKeyFile bounds the master key file: a few keys.
const maxMasterKeyFile = 4 << 10

// readMasterKeyFile reads and checks the master key file. Like a
// configuration file with secrets, it must not be readable by others than
// its owner (root's may be readable by its group).
func readMasterKeyFile(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrInvalid, EnvMasterKeyFile, err)
	}
	if !info.Mode().IsRegular() || info.Size() > maxMasterKeyFile {
		return "", fmt.Errorf("%w: %s %s is not a file of at most %d bytes", ErrInvalid, EnvMasterKeyFile, path, maxMasterKeyFile)
	}
	if err := checkSecretFileMode(path, info); err != nil {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrInvalid, EnvMasterKeyFile, err)
	}
	text := string(data)
	if err := checkMasterKey(EnvMasterKeyFile+" "+path, text); err != nil {
		return "", err
	}
	return text, nil
}
