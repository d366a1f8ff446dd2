package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/service"
)

// Names of what a run creates. The random part keeps runs apart, and the
// fixed part tells an operator whose objects they are.
const (
	schemaPrefix = "eventbus_bench_"
	objectPrefix = "eventbus.bench."
	sourcePrefix = "eventbus-bench"
	// effectsTable is the table the consume-inbox handler writes to.
	effectsTable = "bench_effects"
)

type cleanupKind int

const (
	cleanupBroker cleanupKind = iota // needs the broker connection
	cleanupStore                     // after the service has closed
)

type cleanup struct {
	kind cleanupKind
	fn   func(ctx context.Context) error
}

// environment is a run's own corner of the servers: the configuration that
// points the service at it, and how to remove it.
type environment struct {
	cfg    config.Config // the bench's: its schema, exchange, data directory
	user   config.Config // the user's, for the store's URL without the schema
	prefix string        // eventbus.bench.<random>
	schema string        // PostgreSQL: eventbus_bench_<random>
	token  string        // the HTTP API's publish token
	// ctx is the run's context without its cancellation: cleanups run on it
	// when the run is interrupted.
	ctx context.Context

	mu       sync.Mutex
	queues   []string
	cleanups []cleanup
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// isolate prepares the run's own schema, exchange name, data directory and
// API token, and returns the configuration that uses them.
func isolate(ctx context.Context, user config.Config) (*environment, error) {
	suffix := randomHex(5)
	e := &environment{user: user, cfg: user, prefix: objectPrefix + suffix, ctx: context.WithoutCancel(ctx)}
	e.cfg.Exchange = e.prefix
	e.cfg.HTTPAddr = "127.0.0.1:0"
	e.token = randomHex(16)
	tok, err := auth.NewToken("bench", e.token, auth.ScopePublish)
	if err != nil {
		return nil, fmt.Errorf("bench: API token: %w", err)
	}
	e.cfg.Tokens = []auth.Token{tok}

	if user.Embedded() {
		dir, err := os.MkdirTemp("", "eventbus-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: create a temporary directory for the embedded store: %w", err)
		}
		e.cfg.DataDir = dir
		e.onCleanupKind(cleanupStore, func(context.Context) error {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("bench: remove %s: %w", dir, err)
			}
			return nil
		})
		return e, nil
	}

	e.schema = schemaPrefix + suffix
	conn, err := connect(ctx, user.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to PostgreSQL at %s: %w", config.Redact(user.DatabaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+e.schema); err != nil {
		return nil, fmt.Errorf("bench: create schema %s: %w", e.schema, err)
	}
	e.onCleanupKind(cleanupStore, e.dropSchema)
	if e.cfg.DatabaseURL, err = benchURL(user.DatabaseURL, e.schema); err != nil {
		return nil, err
	}
	return e, nil
}

// applicationName names the run's PostgreSQL connections, so that an
// operator (and the CPU meter) can tell them apart.
const applicationName = "eventbus-bench"

// benchURL returns the database URL (or key=value DSN) rawURL with its
// search_path set to schema, so that every connection of the service works
// in it, and its application_name set to applicationName unless the URL
// sets one.
func benchURL(rawURL, schema string) (string, error) {
	if !strings.Contains(rawURL, "://") {
		out := rawURL + " search_path=" + schema
		if !strings.Contains(rawURL, "application_name") {
			out += " application_name=" + applicationName
		}
		return out, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("bench: the database URL %s is not valid", config.Redact(rawURL))
	}
	q := u.Query()
	q.Set("search_path", schema)
	if !q.Has("application_name") {
		q.Set("application_name", applicationName)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (e *environment) dropSchema(ctx context.Context) error {
	conn, err := connect(ctx, e.user.DatabaseURL)
	if err != nil {
		return fmt.Errorf("bench: drop schema %s: %w (drop it by hand)", e.schema, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE"); err != nil {
		return fmt.Errorf("bench: drop schema %s: %w (drop it by hand)", e.schema, err)
	}
	return nil
}

// onCleanup registers fn to run at the end, before the broker closes.
func (e *environment) onCleanup(fn func(ctx context.Context) error) {
	e.onCleanupKind(cleanupBroker, fn)
}

func (e *environment) onCleanupKind(kind cleanupKind, fn func(ctx context.Context) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, cleanup{kind: kind, fn: fn})
}

// runCleanups runs the cleanups of kind, newest first, each once.
func (e *environment) runCleanups(kind cleanupKind) error {
	e.mu.Lock()
	var run []cleanup
	kept := e.cleanups[:0]
	for _, c := range e.cleanups {
		if c.kind == kind {
			run = append(run, c)
		} else {
			kept = append(kept, c)
		}
	}
	e.cleanups = kept
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	var errs []error
	for i := len(run) - 1; i >= 0; i-- {
		errs = append(errs, run[i].fn(ctx))
	}
	return errors.Join(errs...)
}

// cleanup removes everything the run created.
func (e *environment) cleanup() error {
	return errors.Join(e.runCleanups(cleanupBroker), e.runCleanups(cleanupStore))
}

// queue returns the name of the run's queue for what, and remembers to
// delete it.
func (e *environment) queue(what string) string {
	name := e.prefix + "." + what
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queues = append(e.queues, name)
	return name
}

func (e *environment) sinkQueue() string { return e.queue("sink") }

func (e *environment) removeBrokerObjects(ctx context.Context, b broker.Broker) error {
	e.mu.Lock()
	queues := append([]string(nil), e.queues...)
	e.mu.Unlock()
	var errs []error
	for _, q := range queues {
		if err := b.DeleteQueue(ctx, q); err != nil && !errors.Is(err, broker.ErrNotFound) {
			errs = append(errs, fmt.Errorf("bench: delete queue %s: %w", q, err))
		}
	}
	if err := b.DeleteExchange(ctx, e.cfg.Exchange); err != nil && !errors.Is(err, broker.ErrNotFound) {
		errs = append(errs, fmt.Errorf("bench: delete exchange %s: %w", e.cfg.Exchange, err))
	}
	return errors.Join(errs...)
}

func (e *environment) storeKind() string {
	if e.cfg.Embedded() {
		return "sqlite"
	}
	return "postgresql"
}

func (e *environment) brokerKind() string {
	if e.cfg.InProcessBroker() {
		return "in-process"
	}
	return "rabbitmq"
}

// storeVersion asks the store's server for its version.
func (e *environment) storeVersion(ctx context.Context) string {
	var v string
	if e.cfg.Embedded() {
		db, err := sql.Open("sqlite", ":memory:")
		if err != nil {
			return ""
		}
		defer db.Close()
		if err := db.QueryRowContext(ctx, "SELECT 'SQLite ' || sqlite_version()").Scan(&v); err != nil {
			return ""
		}
		return v
	}
	conn, err := connect(ctx, e.user.DatabaseURL)
	if err != nil {
		return ""
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return ""
	}
	return v
}

// prepareStore creates the table the consume-inbox handler writes to, in the
// bench's own schema or database file.
func (e *environment) prepareStore(ctx context.Context, svc *service.Service) error {
	const ddl = `CREATE TABLE ` + effectsTable + ` (event_id text NOT NULL, subject text NOT NULL, score integer NOT NULL)`
	var err error
	if pg, ok := svc.Postgres(); ok {
		_, err = pg.Pool().Exec(ctx, ddl)
	} else if lite, ok := svc.SQLite(); ok {
		_, err = lite.DB().ExecContext(ctx, ddl)
	}
	if err != nil {
		return fmt.Errorf("bench: create table %s: %w", effectsTable, err)
	}
	return nil
}

// connect opens one connection to the database at url. The URL may carry
// the pool settings the store accepts (pool_max_conns...), which
// pgx.Connect would send to the server as parameters.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("the database URL is not valid")
	}
	return pgx.ConnectConfig(ctx, cfg.ConnConfig)
}
