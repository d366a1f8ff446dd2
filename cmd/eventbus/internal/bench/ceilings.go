package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	_ "modernc.org/sqlite" // the driver of the embedded ceilings

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// Ceiling sizes, as in the Go benchmarks of store/postgres and
// broker/rabbitmq.
const (
	ceilingConns  = 16   // single-row commits from this many connections
	ceilingChunk  = 1000 // rows per COPY or bulk transaction
	ceilingWindow = 4096 // publisher confirms in flight
)

// ceilingRowData is the data column of the ceilings' rows: a quiz.submitted
// payload, as the bus stores.
const ceilingRowData = `{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":90}`

// measureCeilings measures the ceilings the chosen scenarios are set
// beside. A ceiling that fails is reported with its error.
func measureCeilings(ctx context.Context, env *environment, opts Options, meter *meter, m *Machine) []Ceiling {
	need := map[string]bool{}
	for _, s := range opts.Scenarios {
		need[ceilingOf[s]] = true
	}
	d := opts.CeilingDuration
	var out []Ceiling
	// A ceiling calls begin when it is set up, which starts its clock and
	// says until when to run, and done when its clock stops, before it
	// closes its connections: the CPU of a closed backend cannot be read.
	measure := func(name, what string, fn func(ctx context.Context, t *timing) (int64, error)) {
		if !need[name] || ctx.Err() != nil {
			return
		}
		progress(opts.Progress, "bench: ceiling %s ...", name)
		c := Ceiling{Name: name, Description: what}
		t := &timing{meter: meter, d: d}
		n, err := fn(ctx, t)
		t.done(ctx)
		c.Count, c.Seconds = n, t.elapsed.Seconds()
		c.CPU, c.WAL = between(t.before, t.after, n)
		switch {
		case err != nil:
			c.Error = err.Error()
		case n == 0:
			c.Error = fmt.Sprintf("nothing completed in %v", d)
		case c.Seconds > 0:
			c.PerSecond = float64(n) / c.Seconds
		}
		out = append(out, c)
		progress(opts.Progress, "bench: ceiling %s: %s/s", name, group(c.PerSecond))
	}
	if env.cfg.Embedded() {
		dir := env.cfg.DataDir
		measure(CeilingSingleRow, fmt.Sprintf("raw SQLite single-row INSERT commits, %d goroutines, WAL, synchronous=FULL", ceilingConns),
			func(ctx context.Context, t *timing) (int64, error) {
				return sqliteSingleRow(ctx, dir, t)
			})
		measure(CeilingBulk, fmt.Sprintf("raw SQLite INSERTs of %d rows per transaction, prepared", ceilingChunk),
			func(ctx context.Context, t *timing) (int64, error) {
				return sqliteBulk(ctx, dir, t)
			})
	} else {
		measure(CeilingSingleRow, fmt.Sprintf("raw pgx single-row INSERT commits into a bare table, %d connections", ceilingConns),
			func(ctx context.Context, t *timing) (int64, error) {
				return pgSingleRow(ctx, env.cfg.DatabaseURL, t)
			})
		measure(CeilingBulk, fmt.Sprintf("COPY of %d-row chunks into a bare table, rows/s", ceilingChunk),
			func(ctx context.Context, t *timing) (int64, error) {
				return pgCopy(ctx, env.cfg.DatabaseURL, t)
			})
	}
	if env.cfg.InProcessBroker() {
		measure(CeilingConfirms, fmt.Sprintf("in-process broker: publish through a topic exchange with confirms, %d in flight, consumed", ceilingWindow),
			func(ctx context.Context, t *timing) (int64, error) {
				return memoryConfirms(ctx, t)
			})
	} else {
		measure(CeilingConfirms, fmt.Sprintf("raw amqp091 pipelined publisher confirms into one quorum queue, %d in flight", ceilingWindow),
			func(ctx context.Context, t *timing) (int64, error) {
				return rabbitConfirms(ctx, env.cfg.AMQPURLs, env.prefix+".ceiling", t, &m.BrokerVersion)
			})
	}
	if m.BrokerVersion == "" && !env.cfg.InProcessBroker() {
		m.BrokerVersion = rabbitVersion(ctx, env.cfg.AMQPURLs)
	}
	return out
}

// parallel runs fn on n goroutines until until, ctx's end or the first
// error, and returns how many units they did in all.
func parallel(ctx context.Context, n int, until time.Time, fn func(ctx context.Context) (int64, error)) (int64, error) {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				k, err := fn(ctx)
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { ferr = err; cancel() })
					}
					return
				}
				done.Add(k)
			}
		})
	}
	wg.Wait()
	return done.Load(), ferr
}

func pgSingleRow(ctx context.Context, dbURL string, t *timing) (int64, error) {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return 0, errors.New("the database URL is not valid")
	}
	pcfg.MaxConns, pcfg.MinConns = ceilingConns, ceilingConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_ceiling_rows (id bigserial PRIMARY KEY, event_id uuid, type text, data json)`); err != nil {
		return 0, err
	}
	until := t.begin(ctx)
	n, err := parallel(ctx, ceilingConns, until, func(ctx context.Context) (int64, error) {
		_, err := pool.Exec(ctx, `INSERT INTO bench_ceiling_rows (event_id, type, data) VALUES ($1, $2, $3)`,
			uuid.New(), edupulse.TypeQuizSubmitted, ceilingRowData)
		return 1, err
	})
	t.done(ctx)
	return n, err
}

func pgCopy(ctx context.Context, dbURL string, t *timing) (int64, error) {
	conn, err := connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE TABLE bench_ceiling_copy (id bigserial PRIMARY KEY, event_id uuid, type text, data json)`); err != nil {
		return 0, err
	}
	rows := make([][]any, ceilingChunk)
	var n int64
	until := t.begin(ctx)
	for time.Now().Before(until) && ctx.Err() == nil {
		for i := range rows {
			rows[i] = []any{uuid.New(), edupulse.TypeQuizSubmitted, ceilingRowData}
		}
		k, err := conn.CopyFrom(ctx, pgx.Identifier{"bench_ceiling_copy"}, []string{"event_id", "type", "data"}, pgx.CopyFromRows(rows))
		if err != nil {
			return n, err
		}
		n += k
	}
	t.done(ctx)
	return n, ctx.Err()
}

// openCeilingSQLite opens a database file of the ceilings' own beside the
// embedded store, as the store opens its write connection.
func openCeilingSQLite(ctx context.Context, dir, name string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", "15000")
	db, err := sql.Open("sqlite", filepath.Join(dir, name)+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE rows (id INTEGER PRIMARY KEY, event_id TEXT, type TEXT, data TEXT)`); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func sqliteSingleRow(ctx context.Context, dir string, t *timing) (int64, error) {
	db, err := openCeilingSQLite(ctx, dir, "ceiling-single.db")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	until := t.begin(ctx)
	n, err := parallel(ctx, ceilingConns, until, func(ctx context.Context) (int64, error) {
		_, err := db.ExecContext(ctx, `INSERT INTO rows (event_id, type, data) VALUES (?, ?, ?)`,
			uuid.NewString(), edupulse.TypeQuizSubmitted, ceilingRowData)
		return 1, err
	})
	t.done(ctx)
	return n, err
}

func sqliteBulk(ctx context.Context, dir string, t *timing) (int64, error) {
	db, err := openCeilingSQLite(ctx, dir, "ceiling-bulk.db")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	until := t.begin(ctx)
	for time.Now().Before(until) && ctx.Err() == nil {
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			st, err := tx.PrepareContext(ctx, `INSERT INTO rows (event_id, type, data) VALUES (?, ?, ?)`)
			if err != nil {
				return err
			}
			for range ceilingChunk {
				if _, err := st.ExecContext(ctx, uuid.NewString(), edupulse.TypeQuizSubmitted, ceilingRowData); err != nil {
					return err
				}
			}
			return tx.Commit()
		}()
		if err != nil {
			return n, err
		}
		n += ceilingChunk
	}
	t.done(ctx)
	return n, ctx.Err()
}

// ceilingMessage is the message the relay publishes for a quiz.submitted
// event of the scenarios, properties and headers included (its dataschema
// too, which every event of a registered type carries), so that a ceiling
// costs the broker what the bus's messages cost it.
func ceilingMessage() broker.Message {
	m, err := broker.EnvelopeMessage(event.Envelope{
		ID: uuid.Must(uuid.NewV7()), Type: edupulse.TypeQuizSubmitted, Source: sourcePrefix, Subject: "quiz-1",
		StreamVersion: 1, OccurredAt: time.Now().UTC(), RecordedAt: time.Now().UTC(), CorrelationID: uuid.Must(uuid.NewV7()),
		Position: 1, Data: []byte(ceilingRowData), DataSchema: ceilingDataSchema(),
	})
	if err != nil {
		panic(err) // a fixed, valid envelope
	}
	return m
}

// ceilingDataSchema is the dataschema the bus gives a new quiz.submitted.
func ceilingDataSchema() string {
	s, ok := edupulse.Registry().LatestSchema(edupulse.TypeQuizSubmitted)
	if !ok {
		panic("bench: quiz.submitted is not registered") // edupulse registers it
	}
	return s
}

// rabbitConfirms publishes with amqp091 directly, pipelined, into a quorum
// queue of its own, which it deletes. It records the server's version.
func rabbitConfirms(ctx context.Context, urls []string, queue string, t *timing, version *string) (int64, error) {
	conn, err := dialRabbit(urls)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	*version = serverVersion(conn)
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return 0, err
	}
	defer func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			_ = ch.Close()
		}
	}()
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	m := ceilingMessage()
	pub := amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: m.MessageID, CorrelationId: m.CorrelationID, Type: m.Type, AppId: m.AppID,
		ContentType: m.ContentType, Timestamp: m.Timestamp, Headers: amqp.Table{}, Body: m.Body}
	for k, v := range m.Headers {
		pub.Headers[k] = v
	}
	inflight := make([]*amqp.DeferredConfirmation, 0, ceilingWindow)
	var n int64
	until := t.begin(ctx)
	settle := func(dc *amqp.DeferredConfirmation) error {
		acked, err := dc.WaitContext(ctx)
		switch {
		case err != nil:
			return err
		case !acked:
			return errors.New("RabbitMQ nacked a message")
		}
		n++
		return nil
	}
	for time.Now().Before(until) && ctx.Err() == nil {
		if len(inflight) == ceilingWindow {
			if err := settle(inflight[0]); err != nil {
				return n, err
			}
			inflight = inflight[1:]
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, pub)
		if err != nil {
			return n, err
		}
		inflight = append(inflight, dc)
	}
	for _, dc := range inflight {
		if err := settle(dc); err != nil {
			return n, err
		}
	}
	t.done(ctx)
	return n, nil
}

func dialRabbit(urls []string) (*amqp.Connection, error) {
	var errs []error
	for _, u := range urls {
		conn, err := amqp.DialConfig(u, amqp.Config{Heartbeat: 10 * time.Second,
			Properties: amqp.Table{"connection_name": "eventbus-bench"}})
		if err == nil {
			return conn, nil
		}
		// amqp091's errors do not carry the URL; say which node it was.
		errs = append(errs, fmt.Errorf("%s: %w", config.Redact(u), err))
	}
	return nil, fmt.Errorf("no RabbitMQ node reachable: %w", errors.Join(errs...))
}

func serverVersion(conn *amqp.Connection) string {
	v, _ := conn.Properties["version"].(string)
	return v
}

func rabbitVersion(_ context.Context, urls []string) string {
	conn, err := dialRabbit(urls)
	if err != nil {
		return ""
	}
	defer conn.Close()
	return serverVersion(conn)
}

// memoryConfirms publishes into an in-process broker of its own through a
// topic exchange, pipelined, while a consumer takes the messages (else they
// would pile up in memory).
func memoryConfirms(ctx context.Context, t *timing) (int64, error) {
	b := memory.New()
	defer b.Close()
	if err := b.DeclareExchange(ctx, "x"); err != nil {
		return 0, err
	}
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: "q", Bindings: []broker.Binding{{Exchange: "x", Pattern: "#"}}}); err != nil {
		return 0, err
	}
	sub, err := b.Consume(ctx, "q", broker.ConsumeOptions{Prefetch: sinkPrefetch})
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range sub.Deliveries() {
			_ = d.Ack()
		}
	})
	defer func() { _ = sub.Close(); wg.Wait() }()
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	m := ceilingMessage()
	var n int64
	until := t.begin(ctx)
	err = broker.Pipeline(ctx, pub, broker.PipelineConfig[struct{}]{
		Window: ceilingWindow,
		Next: func(ctx context.Context) ([]broker.Outgoing[struct{}], error) {
			if !time.Now().Before(until) {
				return nil, io.EOF
			}
			out := make([]broker.Outgoing[struct{}], 256)
			for i := range out {
				out[i] = broker.Outgoing[struct{}]{Exchange: "x", RoutingKey: m.Type, Message: m}
			}
			return out, nil
		},
		Confirmed: func(struct{}) { n++ },
	})
	t.done(ctx)
	return n, err
}

// timing is a ceiling's clock and CPU counters.
type timing struct {
	meter          *meter
	d              time.Duration
	start          time.Time
	elapsed        time.Duration
	before, after  usage
	started, ended bool
}

// begin starts the clock, once the ceiling is set up, and returns when it
// must stop.
func (t *timing) begin(ctx context.Context) time.Time {
	t.before = t.meter.snapshot(ctx)
	t.start, t.started = time.Now(), true
	return t.start.Add(t.d)
}

// done stops the clock; only the first call counts.
func (t *timing) done(ctx context.Context) {
	if !t.started || t.ended {
		return
	}
	t.ended = true
	t.elapsed = time.Since(t.start)
	t.after = t.meter.snapshot(ctx)
}
