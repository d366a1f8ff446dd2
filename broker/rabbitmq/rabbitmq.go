// Package rabbitmq is the production broker: RabbitMQ 3.10 or later, through
// github.com/rabbitmq/amqp091-go.
//
// A Broker holds one AMQP connection to one node of a cluster and heals it.
// A supervisor goroutine notices the connection closing, dials the nodes in
// turn with exponential backoff and jitter, declares again every exchange,
// queue and binding declared through the Broker, and only then lets waiting
// calls through. Publishers, subscriptions and browsers belong to one
// connection and end with it; their users open new ones, and the calls that
// open them wait for a connection while their context allows.
//
// Queues are durable quorum queues; exchanges are durable topic exchanges.
// See DeclareQueue for the queue arguments.
//
// Calls that talk to the server (declares, Consume, Browse's Next) honour
// their context while they wait for a connection. Once sent, a request waits
// for the server's answer or for the connection to fail, which heartbeats
// bound (Config.Heartbeat).
//
// URLs carry passwords: no error or log line of this package contains one.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/backoff"
	"github.com/edupulse/eventbus/internal/connurl"
)

// Defaults for the zero fields of Config.
const (
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultConnectionName = "eventbus"
	// DefaultPrefetch is the prefetch of a subscription whose
	// ConsumeOptions.Prefetch is not positive.
	DefaultPrefetch = 100
)

// closeTimeout bounds how long Close waits for the server to acknowledge the
// connection's close.
const closeTimeout = 5 * time.Second

// Config configures Open. The zero Config is a broker that logs nothing,
// with every default below.
type Config struct {
	// Logger receives reconnects and topology problems. nil: discarded.
	Logger *slog.Logger
	// ReconnectBackoffMin and ReconnectBackoffMax are the shortest and the
	// longest wait between two reconnection attempts. The wait doubles
	// after each failed attempt, with jitter, from min up to max. 0:
	// DefaultBackoffMin and DefaultBackoffMax; a max below the min is the
	// min.
	ReconnectBackoffMin, ReconnectBackoffMax time.Duration
	// Heartbeat is the AMQP heartbeat interval, which bounds how long a dead
	// connection goes unnoticed (about two intervals). A heartbeat given in
	// the URL wins. 0: DefaultHeartbeat.
	Heartbeat time.Duration
	// ConnectTimeout bounds one connection attempt: TCP, TLS and the AMQP
	// handshake. 0: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ConnectionName is the name the connection shows in RabbitMQ's
	// management views. "": DefaultConnectionName.
	ConnectionName string
}

// config is Config with its defaults applied.
type config struct {
	logger         *slog.Logger
	backoffMin     time.Duration
	backoffMax     time.Duration
	heartbeat      time.Duration
	connectTimeout time.Duration
	connectionName string
}

func (c Config) withDefaults() config {
	cfg := config{
		logger:         c.Logger,
		backoffMin:     orDefault(c.ReconnectBackoffMin, DefaultBackoffMin),
		backoffMax:     orDefault(c.ReconnectBackoffMax, DefaultBackoffMax),
		heartbeat:      orDefault(c.Heartbeat, DefaultHeartbeat),
		connectTimeout: orDefault(c.ConnectTimeout, DefaultConnectTimeout),
		connectionName: c.ConnectionName,
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.connectionName == "" {
		cfg.connectionName = DefaultConnectionName
	}
	cfg.backoffMax = max(cfg.backoffMax, cfg.backoffMin)
	return cfg
}

// orDefault returns d unless it is zero or negative, else def.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// node is one RabbitMQ node: its URL, and the URL without password.
type node struct {
	url      string
	redacted string
}

// session is one live connection. lost is closed once the supervisor has
// seen the connection end and stopped handing it out.
type session struct {
	conn   *amqp.Connection
	node   *node
	closes chan *amqp.Error
	blocks chan amqp.Blocking
	lost   chan struct{}
}

// Broker is a self-healing connection to RabbitMQ. It implements
// broker.Broker and is safe for concurrent use.
type Broker struct {
	cfg      config
	log      *slog.Logger
	nodes    []node
	scrubber *strings.Replacer

	// ctx ends at Close; it bounds dials and every wait.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor, publisher and subscription goroutines

	mu       sync.Mutex
	cur      *session      // nil while reconnecting
	ready    chan struct{} // closed when cur is set
	closed   bool
	next     int    // the node the next connection attempt tries
	lastFail string // why the last connection attempt failed, scrubbed

	topoMu    sync.Mutex
	exchanges map[string]struct{}
	queues    map[string]broker.QueueSpec

	reconnects atomic.Int64
}

var _ broker.Broker = (*Broker)(nil)

// Open connects to the first reachable node of urls: one amqp:// or amqps://
// URL, or several separated by commas, the nodes of one cluster. It fails at
// once, with an error wrapping broker.ErrUnavailable, if no node can be
// reached; later, connection failures are healed in the background.
func Open(ctx context.Context, urls string, c Config) (*Broker, error) {
	cfg := c.withDefaults()
	var raws []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			raws = append(raws, u)
		}
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("rabbitmq: no AMQP URL given: set EVENTBUS_AMQP_URL to amqp://user:password@host:5672/: %w", broker.ErrUnavailable)
	}
	b := &Broker{
		cfg:       cfg,
		log:       cfg.logger,
		scrubber:  newScrubber(raws),
		ready:     make(chan struct{}),
		exchanges: map[string]struct{}{},
		queues:    map[string]broker.QueueSpec{},
	}
	for i, raw := range raws {
		if !strings.Contains(raw, "://") {
			// Perhaps the end of a password holding a comma, which split
			// the list: show none of it.
			return nil, fmt.Errorf("rabbitmq: AMQP entry %d of %d is not an amqp:// URL (separate URLs with commas, and percent-encode a comma in a password as %%2C): %w",
				i+1, len(raws), broker.ErrUnavailable)
		}
		if err := connurl.CheckUserInfo(raw); err != nil {
			return nil, fmt.Errorf("rabbitmq: AMQP URL %d of %d (%s): %w: %w", i+1, len(raws), redactURL(raw), err, broker.ErrUnavailable)
		}
		if _, err := amqp.ParseURI(raw); err != nil {
			// ParseURI's errors quote parts of the URL, of a password cut
			// short by a comma perhaps, which no scrubber knows whole.
			return nil, fmt.Errorf("rabbitmq: AMQP URL %d of %d (%s) is not valid (expected amqp://user:password@host:5672/vhost, with reserved characters percent-encoded): %w: %w",
				i+1, len(raws), redactURL(raw), broker.ErrUnavailable, &scrubbedError{err: err, text: "it does not parse"})
		}
		b.nodes = append(b.nodes, node{url: raw, redacted: redactURL(raw)})
	}

	var failures []string
	causes := []error{broker.ErrUnavailable}
	var firstErr error
	for i := range b.nodes {
		n := &b.nodes[i]
		s, err := b.dial(ctx, n)
		if err == nil {
			b.ctx, b.cancel = context.WithCancel(context.Background())
			b.next = (i + 1) % len(b.nodes)
			b.install(s)
			b.wg.Add(1)
			go b.supervise(s)
			b.log.Info("rabbitmq: connected", "node", n.redacted)
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		failures = append(failures, fmt.Sprintf("%s (%s)", n.redacted, reason(err, b.scrubber)))
		causes = append(causes, b.scrub(err))
		if ctx.Err() != nil {
			causes = append(causes, ctx.Err())
			break
		}
	}
	return nil, &unreachableError{
		msg:    fmt.Sprintf("rabbitmq: cannot reach %s: %s", strings.Join(failures, ", "), hint(firstErr)),
		causes: causes,
	}
}

// dial opens a connection to n. It gives up when ctx ends, even during the
// handshake.
func (b *Broker) dial(ctx context.Context, n *node) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := b.cfg.connectTimeout
	var (
		mu      sync.Mutex
		netConn net.Conn
	)
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(b.cfg.connectionName)
	cfg := amqp.Config{
		Heartbeat:  b.cfg.heartbeat,
		Properties: props,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// amqp091 clears the deadline once the handshake is done.
			if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
				c.Close()
				return nil, err
			}
			cc := newCoalescingConn(c)
			mu.Lock()
			netConn = cc
			mu.Unlock()
			return cc, nil
		},
	}
	// Closing the socket is the only way to interrupt a handshake.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if netConn != nil {
			netConn.Close()
		}
	})
	conn, err := amqp.DialConfig(n.url, cfg)
	interrupted := !stop()
	if err != nil {
		mu.Lock()
		if netConn != nil {
			netConn.Close() // ends its sender, if amqp091 has not
		}
		mu.Unlock()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if interrupted {
		conn.Close()
		return nil, ctx.Err()
	}
	s := &session{
		conn:   conn,
		node:   n,
		closes: conn.NotifyClose(make(chan *amqp.Error, 1)),
		blocks: conn.NotifyBlocked(make(chan amqp.Blocking, 4)),
		lost:   make(chan struct{}),
	}
	return s, nil
}

// install makes s the current session and wakes the calls waiting for one.
func (b *Broker) install(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = s
	close(b.ready)
}

// supervise watches the current session and replaces it when it fails,
// until Close.
func (b *Broker) supervise(s *session) {
	defer b.wg.Done()
	for {
		if !b.watch(s) {
			return
		}
		lostAt := time.Now()
		s = b.reconnect()
		if s == nil {
			return
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
			return
		}
		b.cur = s
		close(b.ready)
		b.mu.Unlock()
		n := b.reconnects.Add(1)
		b.log.Info("rabbitmq: reconnected", "node", s.node.redacted,
			"down_for", time.Since(lostAt).Round(time.Millisecond), "reconnects", n)
	}
}

// watch waits until s fails or the broker closes. It reports whether s
// failed, having withdrawn it.
func (b *Broker) watch(s *session) bool {
	blocks := s.blocks
	for {
		select {
		case <-b.ctx.Done():
			return false
		case blk, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			if blk.Active {
				b.log.Warn("rabbitmq: the server blocks publishing (resource alarm)", "node", s.node.redacted, "reason", blk.Reason)
			} else {
				b.log.Info("rabbitmq: the server accepts publishing again", "node", s.node.redacted)
			}
		case amqpErr := <-s.closes:
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				return false
			}
			b.cur = nil
			b.ready = make(chan struct{})
			b.mu.Unlock()
			close(s.lost)
			var err error = amqp.ErrClosed
			if amqpErr != nil {
				err = amqpErr
			}
			b.log.Warn("rabbitmq: connection lost, reconnecting", "node", s.node.redacted, "err", b.scrub(err).Error())
			return true
		}
	}
}

// reconnect dials the nodes in turn, starting after the one that failed,
// with backoff, until one connects and takes the topology, or Close.
func (b *Broker) reconnect() *session {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff.Policy{Min: b.cfg.backoffMin, Max: b.cfg.backoffMax}.Delay(attempt))
			select {
			case <-b.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		b.mu.Lock()
		n := &b.nodes[b.next]
		b.next = (b.next + 1) % len(b.nodes)
		b.mu.Unlock()
		s, err := b.dial(b.ctx, n)
		if err == nil {
			err = b.redeclare(s)
			if err != nil {
				_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
			}
		}
		if err == nil {
			return s
		}
		if b.ctx.Err() != nil {
			return nil
		}
		msg := fmt.Sprintf("%s (%s)", n.redacted, reason(err, b.scrubber))
		b.mu.Lock()
		b.lastFail = msg
		b.mu.Unlock()
		b.log.Warn("rabbitmq: reconnect attempt failed", "node", n.redacted, "attempt", attempt+1, "err", b.scrub(err).Error())
	}
}

// Reconnects returns how many times the broker has reconnected after losing
// its connection.
func (b *Broker) Reconnects() int64 { return b.reconnects.Load() }

// session returns the live session, waiting for one while ctx allows.
func (b *Broker) session(ctx context.Context, op string) (*session, error) {
	for {
		b.mu.Lock()
		closed, s, ready, lastFail := b.closed, b.cur, b.ready, b.lastFail
		b.mu.Unlock()
		if closed {
			return nil, fmt.Errorf("rabbitmq: %s: %w", op, broker.ErrClosed)
		}
		wait := ready
		if s != nil {
			if !s.conn.IsClosed() {
				return s, nil
			}
			wait = s.lost
		}
		select {
		case <-wait:
		case <-b.ctx.Done():
			return nil, fmt.Errorf("rabbitmq: %s: %w", op, broker.ErrClosed)
		case <-ctx.Done():
			why := "reconnecting"
			if lastFail != "" {
				why = "last attempt: " + lastFail
			}
			return nil, fmt.Errorf("rabbitmq: %s: no connection to RabbitMQ (%s): %w: %w", op, why, broker.ErrUnavailable, ctx.Err())
		}
	}
}

// channel opens a channel on the live session, waiting for one while ctx
// allows.
func (b *Broker) channel(ctx context.Context, op string) (*amqp.Channel, *session, error) {
	for {
		s, err := b.session(ctx, op)
		if err != nil {
			return nil, nil, err
		}
		ch, err := s.conn.Channel()
		if err == nil {
			return ch, s, nil
		}
		if !s.conn.IsClosed() {
			return nil, nil, b.wrap(op, err)
		}
		// The connection failed under us: wait for the next one.
	}
}

// withChannel runs fn on a channel of its own, which it closes afterwards.
// If the connection fails during fn, it runs fn again on the next
// connection: fn must be idempotent.
func (b *Broker) withChannel(ctx context.Context, op string, fn func(*amqp.Channel) error) error {
	for {
		ch, s, err := b.channel(ctx, op)
		if err != nil {
			return err
		}
		err = fn(ch)
		_ = ch.Close()
		if err == nil {
			return nil
		}
		if s.conn.IsClosed() && ctx.Err() == nil {
			continue
		}
		return b.wrap(op, err)
	}
}

// wrap adds context to an error from amqp091, maps it to broker's sentinel
// errors and removes secrets from its text.
func (b *Broker) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var amqpErr *amqp.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("rabbitmq: %s: %w", op, err)
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound:
		return fmt.Errorf("rabbitmq: %s: %w: %w", op, broker.ErrNotFound, b.scrub(err))
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed:
		return fmt.Errorf("rabbitmq: %s: the server refused (does it exist already with other arguments? delete it, or declare it as it is): %w", op, b.scrub(err))
	case errors.Is(err, amqp.ErrClosed):
		return fmt.Errorf("rabbitmq: %s: %w: %w", op, broker.ErrClosed, b.scrub(err))
	case errors.As(err, &amqpErr) && !amqpErr.Recover:
		// A hard error: the connection is gone.
		return fmt.Errorf("rabbitmq: %s: %w: %w", op, broker.ErrClosed, b.scrub(err))
	case isNetworkFailure(err):
		return fmt.Errorf("rabbitmq: %s: %w: connection failed: %w", op, broker.ErrClosed, b.scrub(err))
	}
	return fmt.Errorf("rabbitmq: %s: %w", op, b.scrub(err))
}

// isNetworkFailure reports an error of the socket under the connection: a
// failed write, a reset, an unexpected end of stream.
func isNetworkFailure(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// Ping checks that the broker answers: it opens and closes a channel, which
// takes a round trip. It waits for a connection while ctx allows.
func (b *Broker) Ping(ctx context.Context) error {
	return b.withChannel(ctx, "ping", func(*amqp.Channel) error { return nil })
}

// Close closes the connection and stops reconnecting. Open publishers,
// subscriptions and browsers end.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	s := b.cur
	b.mu.Unlock()
	b.cancel()
	var err error
	if s != nil {
		if cerr := s.conn.CloseDeadline(time.Now().Add(closeTimeout)); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = b.wrap("close", cerr)
		}
	}
	b.wg.Wait()
	return err
}

// goTracked runs fn on a goroutine that Close waits for. It reports false,
// running nothing, once the broker is closed.
func (b *Broker) goTracked(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
	return true
}
