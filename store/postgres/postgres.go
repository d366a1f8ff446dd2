// Package postgres is the event store on PostgreSQL 13 or later, through pgx.
//
// Events live in the table event_store, one row per event, which auditors can
// query with plain SQL. Appending is one round trip. One event is two plain
// SQL statements sent together: the stream's lock, then one statement that
// finds a duplicate, checks the expected version, numbers the stream and
// inserts. A batch of several events calls the function eventbus_append
// (see the migrations), which does the same set-wise. Concurrent appends of
// one event without a caller's transaction share one transaction (group
// commit, group.go). Readers page in commit order by (commit_order, id) and
// stop at the snapshot's xmin, so that no reader skips an event whose
// transaction commits late.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/eventbus/internal/connurl"
	"github.com/edupulse/eventbus/store"
)

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	redacted string // the server, for error messages: never the password
	group    *groupCommit
}

var (
	_ store.TxStore[pgx.Tx] = (*Store)(nil)
	_ store.Migrator        = (*Store)(nil)
)

// DefaultMaxConns is the pool size Open uses when the URL does not set
// pool_max_conns. PostgreSQL commits fastest with few active connections per
// core of its own: on a 2-core server, 8 connections gave the throughput of
// 24 with a third of the latency (BENCHMARKS.md). Callers beyond it queue in
// the pool. Raise it with the URL's pool_max_conns for a larger server.
const DefaultMaxConns = 8

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN) and returns a store that owns its pool. It does not migrate: call
// Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	if err := connurl.CheckUserInfo(url); err != nil {
		// pgx would read a host, port or database out of the password,
		// and every message would show them.
		return nil, fmt.Errorf("postgres: the database URL %s is not valid: %w: %w", connurl.Redact(url), err, store.ErrUnavailable)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, fmt.Errorf("postgres: the database URL is not valid (expected postgres://user:password@host:port/database): %w", store.ErrUnavailable)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	setNetworkTimeouts(cfg, url)
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "eventbus"
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		// The store's statements are short index walks. JIT compiling
		// one costs tens of milliseconds, and PostgreSQL starts doing it
		// once a plan's estimated cost passes jit_above_cost, which a
		// read's probes of a wide window reach on a guess of their rows.
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect to %s: %w", describeServer(cfg.ConnConfig), err)
	}
	s := New(pool)
	s.ownsPool = true
	return s, nil
}

// Network timeouts of the connections Open makes. A server that accepts a
// connection and never answers, or a peer that vanished (a host down, a
// firewall dropping packets), must not hang a caller whose context has no
// deadline: connecting gives up after DefaultConnectTimeout, and the
// kernel gives up on a connection whose peer stops acknowledging data
// (TCP_USER_TIMEOUT) or keepalive probes. Calls made for HTTP requests
// carry deadlines of their own (the request timeout).
const (
	DefaultConnectTimeout = 10 * time.Second
	tcpKeepAliveIdle      = 15 * time.Second
	tcpKeepAliveInterval  = 5 * time.Second
	tcpKeepAliveCount     = 3
	tcpUserTimeout        = 30 * time.Second
)

// setNetworkTimeouts sets the connect timeout (unless url sets
// connect_timeout) and TCP keepalive and user timeout on the connections
// cfg dials.
func setNetworkTimeouts(cfg *pgxpool.Config, url string) {
	timeout := cfg.ConnConfig.ConnectTimeout
	if !strings.Contains(url, "connect_timeout") || timeout <= 0 {
		timeout = DefaultConnectTimeout
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	d := &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: tcpKeepAliveIdle, Interval: tcpKeepAliveInterval, Count: tcpKeepAliveCount,
		},
		Control: setTCPUserTimeout,
	}
	cfg.ConnConfig.DialFunc = d.DialContext
}

// New returns a store on an existing pool. Close does not close the pool.
func New(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool, redacted: describeServer(pool.Config().ConnConfig)}
	s.group = &groupCommit{s: s}
	return s
}

// Pool returns the store's connection pool, for callers that want to open
// their own transactions against the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close waits for the appends under way, and closes the pool if Open
// created it.
func (s *Store) Close() error {
	s.group.wait()
	if s.ownsPool {
		s.pool.Close()
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return s.wrap(err, "ping")
	}
	return nil
}

// describeServer names the server for messages: user, host, port and
// database, never the password.
func describeServer(c *pgx.ConnConfig) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// SQLSTATEs eventbus_append raises.
const (
	codeVersionConflict  = "EB409"
	codeConcurrentAppend = "EB002"
)

// wrap adds context to err and maps it to the store's sentinel errors.
func (s *Store) wrap(err error, op string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeVersionConflict:
			return fmt.Errorf("postgres: %s: %w: %s", op, store.ErrVersionConflict, pgErr.Message)
		case codeConcurrentAppend:
			return fmt.Errorf("postgres: %s: %w", op, store.ErrConcurrentAppend)
		case "40P01", "40001": // deadlock detected, serialization failure
			return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrTxConflict, err)
		case "23505": // unique violation
			if pgErr.ConstraintName == "event_store_stream_idx" {
				// Under REPEATABLE READ or SERIALIZABLE the stream's head
				// is read from the transaction's snapshot, which a
				// concurrent append to the stream made stale.
				return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrTxConflict, err)
			}
		case "57P01", "57P02", "57P03": // admin shutdown, crash shutdown, cannot connect now
			return fmt.Errorf("postgres: %s on %s: %w: %w", op, s.redacted, store.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	// Anything else is the connection failing: dial errors, resets, EOF.
	return fmt.Errorf("postgres: %s on %s: %w: %w", op, s.redacted, store.ErrUnavailable, err)
}
