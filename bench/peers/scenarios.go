package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/store/postgres"
)

// Scenario names.
const (
	FirstVersion   = "first-version"
	Watermill      = "watermill"
	BusInTx        = "bus-in-tx"
	BusOwnTx       = "bus-own-tx"
	CeilingCommit  = "ceiling-commit"
	CeilingTx      = "ceiling-commit-tx"
	CeilingOutbox  = "ceiling-outbox"
	CeilingOutTx   = "ceiling-outbox-tx"
	CeilingConfirm = "ceiling-confirm"
)

// routingKey is the routing key of every scenario's messages, as the first
// version publishes quiz submissions.
const routingKey = "quiz.submitted"

// confirmWindow is how many publisher confirms the confirm ceiling keeps in
// flight, as the ceiling of `eventbus bench`.
const confirmWindow = 4096

func scenarios() []scenario {
	return []scenario{
		{name: FirstVersion, delivers: true, setup: setupFirstVersion,
			what: "the first version's design: INSERT … RETURNING id with autocommit, then publish and wait for that publisher confirm, in the caller (one shared channel, as the original shared one)"},
		{name: Watermill, delivers: true, setup: setupWatermill,
			what: "Watermill's outbox: watermill-sql publisher (wrapped by the forwarder's publisher) inside the caller's transaction; the forwarder (watermill components/forwarder) reads it and publishes with watermill-amqp, confirms on"},
		{name: BusInTx, delivers: true, setup: setupBus(true),
			what: "this bus: Dispatch inside the caller's pgx transaction, then Commit; the relay (package relay) in the same process publishes"},
		{name: BusOwnTx, delivers: true, setup: setupBus(false),
			what: "this bus: Dispatch, in a transaction of the bus's own; the relay in the same process publishes"},
		{name: CeilingCommit, delivers: false, setup: setupCeilingCommit,
			what: "ceiling: single-row autocommit INSERTs into a table as wide as the bus's event_store (primary key only); rows/s, nothing is published"},
		{name: CeilingTx, delivers: false, setup: setupCeilingTx,
			what: "ceiling: the same INSERT inside the caller's transaction (BEGIN, INSERT, COMMIT, as bus-in-tx's caller does); what any outbox in the caller's transaction pays before its own work"},
		{name: CeilingOutbox, delivers: true, setup: setupCeilingOutbox(false),
			what: fmt.Sprintf("ceiling: the cheapest outbox, for what delivering costs the callers: ceiling-commit's INSERT, then the caller hands the event in memory to one publisher that publishes what has gathered, at most every %v (the relay's longest gather), with confirms, to the same queue; no read back, no index but the primary key, not crash-safe", outboxGather)},
		{name: CeilingOutTx, delivers: true, setup: setupCeilingOutbox(true),
			what: "ceiling: the same with the INSERT inside the caller's transaction (BEGIN, INSERT, COMMIT, then the hand-over)"},
		{name: CeilingConfirm, delivers: true, once: true, setup: setupCeilingConfirm,
			what: fmt.Sprintf("ceiling: one publisher, pipelined publisher confirms (%d in flight) into the quorum queue", confirmWindow)},
	}
}

// seq numbers the events of a run: the streams and the scores come from it.
var seq atomic.Int64

// streams is how many streams (subjects) the bus's events are spread over,
// as in `eventbus bench`: quiz-0 … quiz-9999.
const streams = 10000

// quizSubmitted returns the event every scenario records, the same
// quiz.submitted data that each design wraps in its own envelope, and its
// number in the run.
func quizSubmitted() (edupulse.QuizSubmitted, int64) {
	n := seq.Add(1)
	return edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learners[n%int64(len(learners))], ScoreRaw: int32(n % 100)}, n
}

// learners are the data subjects of the quizzes, as in `eventbus bench`:
// a school's learners submit many quizzes each. The bus keeps a key per
// learner for their personal fields (erasure), made at a learner's first
// event, so a new learner per event would measure key creation instead.
var learners = func() []uuid.UUID {
	out := make([]uuid.UUID, 1000)
	for i := range out {
		out[i] = uuid.New()
	}
	return out
}()

// stream names the stream of event n.
func stream(n int64) string { return "quiz-" + strconv.FormatInt(n%streams, 10) }

func payloadJSON() ([]byte, error) {
	q, _ := quizSubmitted()
	return json.Marshal(q)
}

// openPool opens a pool of n connections to the point's schema.
func openPool(ctx context.Context, dbURL string, n int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("the database URL is not valid: %w", err)
	}
	cfg.MaxConns = int32(max(n, 2))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reach PostgreSQL: %w", err)
	}
	return pool, nil
}

// --- the first version's design ---------------------------------------

// firstVersionEnvelope is what the first version serialised: its
// EventEnvelope, the domain event tagged with its variant's name.
type firstVersionEnvelope struct {
	ID            int64               `json:"id"`
	OccurredAt    time.Time           `json:"occurred_at"`
	CorrelationID uuid.UUID           `json:"correlation_id"`
	Payload       firstVersionPayload `json:"payload"`
}

type firstVersionPayload struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func setupFirstVersion(ctx context.Context, p point) (*instance, error) {
	pool, err := openPool(ctx, p.dbURL, p.callers)
	if err != nil {
		return nil, err
	}
	// The first version's table and index, as it created them.
	if _, err := pool.Exec(ctx, `
		create table if not exists event_store (
			id bigserial primary key,
			occurred_at timestamptz not null,
			correlation_id uuid not null,
			payload jsonb not null
		);
		create index if not exists idx_event_store_corr on event_store (correlation_id);`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create the first version's table: %w", err)
	}
	conn, ch, err := dialConfirming(ctx, p.amqpURL, "peers-first-version")
	if err != nil {
		pool.Close()
		return nil, err
	}
	call := func(ctx context.Context) error {
		data, err := payloadJSON()
		if err != nil {
			return err
		}
		env := firstVersionEnvelope{OccurredAt: time.Now().UTC(), CorrelationID: uuid.New(),
			Payload: firstVersionPayload{Type: "QuizSubmitted", Data: data}}
		stored, err := json.Marshal(env.Payload)
		if err != nil {
			return err
		}
		// 1. Persist (autocommit).
		if err := pool.QueryRow(ctx, `insert into event_store (occurred_at, correlation_id, payload)
				values ($1, $2, $3) returning id`, env.OccurredAt, env.CorrelationID, stored).Scan(&env.ID); err != nil {
			return fmt.Errorf("persist: %w", err)
		}
		// 2. Publish and wait for the broker's ack.
		body, err := json.Marshal(env)
		if err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, routingKey, false, false,
			amqp.Publishing{ContentType: "application/json", Body: body})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("wait for the confirm: %w", err)
		}
		if !acked {
			return errors.New("publishing not confirmed by broker")
		}
		return nil
	}
	return &instance{call: call, close: func(context.Context) error {
		pool.Close()
		return conn.Close()
	}}, nil
}

// --- Watermill's outbox -----------------------------------------------

// watermillForwarderTopic is the watermill-sql topic the outbox rows go to
// (its table is "watermill_<topic>").
const watermillForwarderTopic = "events_to_forward"

// watermillPollInterval is how long the forwarder's SQL subscriber waits
// after a read that found nothing. Watermill's default is 1 s; 10 ms is the
// bus relay's longest idle pause, so neither waits longer than the other.
const watermillPollInterval = 10 * time.Millisecond

func setupWatermill(ctx context.Context, p point) (*instance, error) {
	// The callers' connections, and two for the forwarder's subscriber.
	pool, err := openPool(ctx, p.dbURL, p.callers+2)
	if err != nil {
		return nil, err
	}
	logger := wm.NopLogger{}
	schema := wmsql.DefaultPostgreSQLSchema{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
		SchemaAdapter:    schema,
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     watermillPollInterval,
	}, logger)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("watermill-sql subscriber: %w", err)
	}
	amqpCfg := wmamqp.NewDurableTopicConfig(p.amqpURL, p.exchange, "")
	amqpCfg.Exchange.Durable = true // as the consumer declared it
	amqpCfg.Publish.ConfirmDelivery = true
	pub, err := wmamqp.NewPublisher(amqpCfg, logger)
	if err != nil {
		_ = sub.Close()
		pool.Close()
		return nil, fmt.Errorf("watermill-amqp publisher: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sub, pub, logger, forwarder.Config{
		ForwarderTopic: watermillForwarderTopic, CloseTimeout: 10 * time.Second,
	})
	if err != nil {
		_ = pub.Close()
		_ = sub.Close()
		pool.Close()
		return nil, fmt.Errorf("watermill forwarder: %w", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- fwd.Run(runCtx) }()
	closeAll := func(context.Context) error {
		stop()
		var errs []error
		select {
		case err := <-runErr:
			errs = append(errs, err)
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("the watermill forwarder did not stop within 30s"))
		}
		errs = append(errs, fwd.Close(), pub.Close(), sub.Close())
		pool.Close()
		return errors.Join(errs...)
	}
	// Running closes once the forwarder has subscribed, which creates its
	// tables: callers may insert from then on.
	select {
	case <-fwd.Running():
	case err := <-runErr:
		runErr <- err
		_ = closeAll(ctx)
		return nil, fmt.Errorf("watermill forwarder: %w", err)
	case <-ctx.Done():
		_ = closeAll(ctx)
		return nil, fmt.Errorf("watermill forwarder did not start: %w", ctx.Err())
	}
	call := func(ctx context.Context) error {
		data, err := payloadJSON()
		if err != nil {
			return err
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
		// As Watermill's outbox examples do: a publisher on the caller's
		// transaction, wrapped so that the forwarder knows where to send.
		sqlPub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: schema}, logger)
		if err != nil {
			return err
		}
		out := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: watermillForwarderTopic})
		msg := message.NewMessage(wm.NewUUID(), data)
		msg.SetContext(ctx)
		if err := out.Publish(routingKey, msg); err != nil {
			return fmt.Errorf("watermill publish: %w", err)
		}
		return tx.Commit(ctx)
	}
	return &instance{call: call, close: closeAll}, nil
}

// --- this bus -----------------------------------------------------------

func setupBus(inTx bool) func(ctx context.Context, p point) (*instance, error) {
	return func(ctx context.Context, p point) (*instance, error) {
		st, err := postgres.Open(ctx, p.dbURL)
		if err != nil {
			return nil, err
		}
		if err := st.Migrate(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("migrate the event store: %w", err)
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		b, err := rabbitmq.Open(ctx, p.amqpURL, rabbitmq.Config{Logger: quiet, ConnectionName: "peers-bus-relay"})
		if err != nil {
			st.Close()
			return nil, err
		}
		var rel atomic.Pointer[relay.Relay]
		bus := eventbus.New(st, eventbus.Config{Registry: edupulse.Registry(), Source: "eventbus-peers",
			// As the service does: a commit of the bus's own wakes the relay.
			OnCommit: func() {
				if r := rel.Load(); r != nil {
					r.Wake()
				}
			}})
		r, err := relay.New(st, b, relay.Config{Exchange: p.exchange, Logger: quiet, OnConfirmed: p.lag.addOne})
		if err != nil {
			_ = b.Close()
			st.Close()
			return nil, err
		}
		rel.Store(r)
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		runErr := make(chan error, 1)
		go func() { runErr <- r.Run(runCtx) }()
		closeAll := func(ctx context.Context) error {
			stop()
			var err error
			select {
			case err = <-runErr:
			case <-ctx.Done():
				err = fmt.Errorf("the relay did not stop: %w", ctx.Err())
			}
			return errors.Join(err, b.Close(), st.Close())
		}
		dispatch := func(ctx context.Context, tx pgx.Tx) error {
			q, n := quizSubmitted()
			_, err := bus.DispatchTx(ctx, tx, q, eventbus.Subject(stream(n)))
			return err
		}
		call := func(ctx context.Context) error {
			q, n := quizSubmitted()
			_, err := bus.Dispatch(ctx, q, eventbus.Subject(stream(n)))
			return err
		}
		if inTx {
			call = func(ctx context.Context) error {
				return pgx.BeginFunc(ctx, st.Pool(), func(tx pgx.Tx) error { return dispatch(ctx, tx) })
			}
		}
		return &instance{call: call, close: closeAll}, nil
	}
}

// --- ceilings -----------------------------------------------------------

func setupCeilingCommit(ctx context.Context, p point) (*instance, error) {
	return setupCeilingRows(ctx, p, false)
}

func setupCeilingTx(ctx context.Context, p point) (*instance, error) {
	return setupCeilingRows(ctx, p, true)
}

// setupCeilingRows inserts rows as wide as the bus's events, one per
// call: with autocommit, or inside a transaction of the caller's.
func setupCeilingRows(ctx context.Context, p point, inTx bool) (*instance, error) {
	return setupRows(ctx, p, inTx, nil)
}

// setupRows is setupCeilingRows; once a row has committed, the call hands
// its event's data to deliver, if set, with the time its INSERT was sent.
func setupRows(ctx context.Context, p point, inTx bool, deliver func(ctx context.Context, data []byte, recordedAt time.Time) error) (*instance, error) {
	pool, err := openPool(ctx, p.dbURL, p.callers)
	if err != nil {
		return nil, err
	}
	// The columns of the bus's event_store, with its primary key and no
	// other index.
	if _, err := pool.Exec(ctx, `CREATE TABLE ceiling_rows (
		id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		event_id uuid NOT NULL, type text NOT NULL, source text NOT NULL,
		subject text, stream_version bigint, occurred_at timestamptz NOT NULL,
		recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		correlation_id uuid NOT NULL, causation_id uuid, traceparent text, tracestate text,
		data json NOT NULL, commit_order xid8 NOT NULL DEFAULT pg_current_xact_id())`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create the ceiling table: %w", err)
	}
	insert := func(ctx context.Context, q interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, n int64, data []byte) error {
		_, err := q.Exec(ctx, `INSERT INTO ceiling_rows (event_id, type, source, subject, stream_version, occurred_at, correlation_id, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			uuid.New(), edupulse.TypeQuizSubmitted, "eventbus-peers", stream(n), n/streams+1,
			time.Now(), uuid.New(), string(data))
		return err
	}
	call := func(ctx context.Context) error {
		ev, n := quizSubmitted()
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		var recordedAt time.Time
		if inTx {
			err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				recordedAt = time.Now()
				return insert(ctx, tx, n, data)
			})
		} else {
			recordedAt = time.Now()
			err = insert(ctx, pool, n, data)
		}
		if err != nil || deliver == nil {
			return err
		}
		return deliver(ctx, data, recordedAt)
	}
	return &instance{call: call, close: func(context.Context) error { pool.Close(); return nil }}, nil
}

// outboxGather is the cheapest outbox's least time between the starts of
// two publishes: the relay's longest gather (relay.Config.MaxGather), so
// that both publish about as many messages at a time at one caller.
const outboxGather = 8 * time.Millisecond

// setupCeilingOutbox is the cheapest outbox: ceiling-commit's INSERT (or
// ceiling-commit-tx's), then the event goes, in memory, to one publisher
// that publishes whatever has gathered, with confirms awaited while it
// gathers the next. It does the work that any outbox does to deliver an
// event, and nothing more: no read back from the table, no envelope
// headers, and nothing kept for a crash. Its rate bounds what an outbox can
// reach while it delivers on the same cores, and its latency and lag what
// the callers and the consumers of one wait.
func setupCeilingOutbox(inTx bool) func(ctx context.Context, p point) (*instance, error) {
	return func(ctx context.Context, p point) (*instance, error) {
		conn, ch, err := dialConfirming(ctx, p.amqpURL, "peers-ceiling-outbox")
		if err != nil {
			return nil, err
		}
		pub := &gatheringPublisher{ch: ch, exchange: p.exchange, lag: p.lag,
			queued: make(chan handed, confirmWindow), inflight: make(chan inflight, confirmWindow)}
		pub.wg.Go(pub.run)
		pub.wg.Go(pub.confirm)
		inst, err := setupRows(ctx, p, inTx, pub.hand)
		if err != nil {
			return nil, errors.Join(err, pub.stop(), conn.Close())
		}
		closeRows := inst.close
		inst.close = func(ctx context.Context) error {
			err := closeRows(ctx)
			return errors.Join(err, pub.stop(), conn.Close())
		}
		return inst, nil
	}
}

// gatheringPublisher publishes what callers hand it, at most every
// outboxGather, many messages at a time, and keeps up to confirmWindow
// messages awaiting their confirms, as the relay does.
type gatheringPublisher struct {
	ch       *amqp.Channel
	exchange string
	queued   chan handed
	inflight chan inflight
	lag      *latencies // each message's lag, from its INSERT to its confirm
	wg       sync.WaitGroup
	failed   atomic.Pointer[error]
}

// handed is an event handed to the publisher.
type handed struct {
	data       []byte
	recordedAt time.Time
}

// inflight is a published message awaiting its confirm.
type inflight struct {
	confirm    *amqp.DeferredConfirmation
	recordedAt time.Time
}

// hand queues data for the next publish; a full queue makes the caller
// wait, as a relay that falls behind would leave its backlog in the table.
func (g *gatheringPublisher) hand(ctx context.Context, data []byte, recordedAt time.Time) error {
	if e := g.failed.Load(); e != nil {
		return *e
	}
	select {
	case g.queued <- handed{data: data, recordedAt: recordedAt}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatheringPublisher) fail(err error) { g.failed.CompareAndSwap(nil, &err) }

// run publishes what gathered, at most every outboxGather.
func (g *gatheringPublisher) run() {
	defer close(g.inflight)
	var last time.Time
	for {
		first, open := <-g.queued
		if !open {
			return
		}
		if wait := time.Until(last.Add(outboxGather)); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		for h, more := first, true; more; {
			if g.failed.Load() == nil {
				if err := g.publish(h); err != nil {
					g.fail(err)
				}
			}
			select {
			case h, more = <-g.queued:
				if !more {
					return
				}
			default:
				more = false
			}
		}
	}
}

func (g *gatheringPublisher) publish(h handed) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	dc, err := g.ch.PublishWithDeferredConfirmWithContext(ctx, g.exchange, routingKey, false, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: h.data})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	g.inflight <- inflight{confirm: dc, recordedAt: h.recordedAt}
	return nil
}

// confirm awaits the confirms in order and records each message's lag.
func (g *gatheringPublisher) confirm() {
	for m := range g.inflight {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		acked, err := m.confirm.WaitContext(ctx)
		cancel()
		switch {
		case err != nil:
			g.fail(fmt.Errorf("wait for a confirm: %w", err))
		case !acked:
			g.fail(errors.New("publish nacked by the broker"))
		default:
			g.lag.addOne(time.Since(m.recordedAt))
		}
	}
}

// stop publishes what is queued and waits for its confirms.
func (g *gatheringPublisher) stop() error {
	close(g.queued)
	g.wg.Wait()
	if e := g.failed.Load(); e != nil {
		return *e
	}
	return nil
}

func setupCeilingConfirm(ctx context.Context, p point) (*instance, error) {
	conn, ch, err := dialConfirming(ctx, p.amqpURL, "peers-ceiling-confirm")
	if err != nil {
		return nil, err
	}
	// Publishing goes on while earlier confirms are awaited, in order, by
	// one goroutine; the window bounds how many are in flight.
	inflight := make(chan *amqp.DeferredConfirmation, confirmWindow)
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Go(func() {
		for dc := range inflight {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			acked, err := dc.WaitContext(ctx)
			cancel()
			if err == nil && !acked {
				err = errors.New("publish nacked by the broker")
			}
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}
	})
	call := func(ctx context.Context) error {
		if e := failed.Load(); e != nil {
			return *e
		}
		data, err := payloadJSON()
		if err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, routingKey, false, false,
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: data})
		if err != nil {
			return err
		}
		select {
		case inflight <- dc:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return &instance{call: call, callers: 1, noLatency: true, close: func(context.Context) error {
		close(inflight)
		wg.Wait()
		var err error
		if e := failed.Load(); e != nil {
			err = *e
		}
		return errors.Join(err, conn.Close())
	}}, nil
}
