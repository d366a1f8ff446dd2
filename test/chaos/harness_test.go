package chaos

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

// The fault proxies: one per component and server, so that a fault hits one
// component's connections to one server.
const (
	proxyServePG      = "serve.pg"
	proxyServeAMQP    = "serve.amqp"
	proxyRelayPG      = "relay2.pg"
	proxyRelayAMQP    = "relay2.amqp"
	proxyProducersPG  = "producers.pg"
	proxyWorkerAPG    = "workerA.pg"
	proxyWorkerAAMQP  = "workerA.amqp"
	proxyWorkerBPG    = "workerB.pg"
	proxyWorkerBAMQP  = "workerB.amqp"
	proxyObserverAMQP = "observer.amqp"
)

var proxyNames = []string{proxyServePG, proxyServeAMQP, proxyRelayPG, proxyRelayAMQP, proxyProducersPG,
	proxyWorkerAPG, proxyWorkerAAMQP, proxyWorkerBPG, proxyWorkerBAMQP, proxyObserverAMQP}

// The processes.
const (
	procServe   = "serve"
	procRelay   = "relay2"
	procWorkerB = "workerB"
)

// apiSecret is the publish+read token serve accepts.
const apiSecret = "chaos-SECRET-7e4b2a9c1d"

// harness is the system under test: serve and a second relay as
// subprocesses, the consumer groups, and the fault proxies between every
// component and the servers. Everything lives in a schema and an exchange of
// the test's own.
type harness struct {
	t         testing.TB
	schemaURL string // the schema, direct
	schema    string
	exchange  string
	workers   string // the effect group
	observers string // the order-checking group
	direct    *pgxpool.Pool
	amqp      *rabbitmq.Broker // direct: topology and inspection
	proxies   map[string]*testenv.FaultProxy
	http      *http.Client

	serve   *proc
	relay2  *proc
	workerB *proc
	bStats  *statsReader

	serveAddr atomic.Pointer[string]
}

type harnessOptions struct {
	// faults puts a fault proxy between every component and the servers.
	// Without, components connect directly (the soak, which counts each
	// process's own connections).
	faults bool
}

func newHarness(t testing.TB, opt harnessOptions) *harness {
	t.Helper()
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := testenv.Context(t, 2*time.Minute)
	h := &harness{
		t:         t,
		schemaURL: testenv.PostgresSchema(t),
		exchange:  testenv.Name("chaos_x"),
		workers:   testenv.Name("chaos_workers"),
		observers: testenv.Name("chaos_observer"),
		proxies:   map[string]*testenv.FaultProxy{},
	}
	u, err := url.Parse(h.schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	h.schema = u.Query().Get("search_path")

	// The schema: the store's tables, then the test's own.
	st, err := postgres.Open(ctx, h.schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if h.direct, err = pgxpool.New(ctx, h.schemaURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.direct.Close)
	// No unique key on effects: a duplicate effect must show, not fail.
	for _, ddl := range []string{
		`CREATE TABLE effects (event_id uuid NOT NULL, worker text NOT NULL, subject text, version bigint,
			at timestamptz NOT NULL DEFAULT clock_timestamp())`,
		`CREATE INDEX effects_event_idx ON effects (event_id)`,
		// The business rows of the library producers' transactions.
		`CREATE TABLE business (tx_id uuid PRIMARY KEY, events int NOT NULL)`,
	} {
		if _, err := h.direct.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}

	// The exchange and both groups' queues exist before any event is
	// published: the relay drops what no queue is bound for.
	if h.amqp, err = rabbitmq.Open(ctx, testenv.AMQPURL(), rabbitmq.Config{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.amqp.Close() })
	if err := h.amqp.DeclareExchange(ctx, h.exchange); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []consume.Config{workerConfig(h.workers, h.exchange), observerConfig(h.observers, h.exchange)} {
		c, err := consume.New(h.amqp, cfg, consume.OnAny(func(context.Context, event.Envelope) error { return nil }))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Declare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(h.deleteTopology)

	for _, name := range proxyNames {
		if opt.faults {
			upstream := hostPort(t, testenv.PostgresURL())
			if strings.HasSuffix(name, ".amqp") {
				upstream = hostPort(t, testenv.AMQPURL())
			}
			h.proxies[name] = testenv.NewFaultProxy(t, upstream)
		}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	h.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	bin := eventbusBinary(t)
	h.serve = newProc(t, procServe, bin, []string{"serve", "--migrate", "--log-format", "json", "--log-level", "warn"},
		func() []string {
			port, err := freePort()
			if err != nil {
				port = 0
			}
			addr := "127.0.0.1:" + strconv.Itoa(port)
			h.serveAddr.Store(&addr)
			return h.serviceEnv(proxyServePG, proxyServeAMQP, "chaos_serve", addr)
		})
	h.relay2 = newProc(t, procRelay, bin, []string{"serve", "--relay-only", "--log-format", "json", "--log-level", "warn"},
		func() []string { return h.serviceEnv(proxyRelayPG, proxyRelayAMQP, "chaos_relay2", "127.0.0.1:0") })
	h.bStats = newStatsReader()
	h.workerB = newProc(t, procWorkerB, testBinary(), []string{"-test.run=^$"}, func() []string {
		return append(cleanEnv(), workerEnv+"=1",
			"CHAOS_DATABASE_URL="+h.dbURL(proxyWorkerBPG, "chaos_workerB"),
			"CHAOS_AMQP_URL="+h.amqpURL(proxyWorkerBAMQP),
			"CHAOS_EXCHANGE="+h.exchange,
			"CHAOS_GROUP="+h.workers,
			"CHAOS_WORKER_NAME="+procWorkerB)
	})
	h.workerB.stdout = h.bStats
	return h
}

func hostPort(t testing.TB, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// dbURL is the schema's URL for a component: through its proxy when there
// is one, with an application_name of its own so that its connections can
// be counted.
func (h *harness) dbURL(proxy, app string) string {
	raw := h.schemaURL
	if p := h.proxies[proxy]; p != nil {
		raw = testenv.WithHost(raw, p.Addr())
	}
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set("application_name", h.appName(app))
	u.RawQuery = q.Encode()
	return u.String()
}

// appName is a component's application_name: unique to this test.
func (h *harness) appName(app string) string { return app + "_" + h.schema }

func (h *harness) amqpURL(proxy string) string {
	if p := h.proxies[proxy]; p != nil {
		return testenv.WithHost(testenv.AMQPURL(), p.Addr())
	}
	return testenv.AMQPURL()
}

// serviceEnv is the environment of a serve process.
func (h *harness) serviceEnv(pgProxy, amqpProxy, app, httpAddr string) []string {
	return append(cleanEnv(),
		"EVENTBUS_DATABASE_URL="+h.dbURL(pgProxy, app),
		"EVENTBUS_AMQP_URL="+h.amqpURL(amqpProxy),
		"EVENTBUS_EXCHANGE="+h.exchange,
		"EVENTBUS_HTTP_ADDR="+httpAddr,
		"EVENTBUS_API_TOKENS=chaos:"+apiSecret+":publish+read",
		"EVENTBUS_RELAY_PARTITIONS="+strconv.Itoa(*flagPartitions),
		// Every process of one database needs the same master key: without
		// it each would make one in its working directory.
		"EVENTBUS_MASTER_KEY="+masterKey)
}

// masterKey is the key-encryption key of every serve process of the run
// (base64 of 32 bytes).
var masterKey = base64.StdEncoding.EncodeToString([]byte("chaos-test-master-key-32-bytes!!"))

// serveURL is the base URL of serve's running incarnation.
func (h *harness) serveURL() string {
	if a := h.serveAddr.Load(); a != nil {
		return "http://" + *a
	}
	return "http://127.0.0.1:1"
}

// startServe starts serve and waits until it is ready.
func (h *harness) startServe(ctx context.Context) {
	h.t.Helper()
	if err := h.serve.start(); err != nil {
		h.t.Fatal(err)
	}
	if err := h.waitReady(ctx, time.Minute); err != nil {
		h.t.Fatalf("serve not ready: %v\n%s", err, h.serve.logs.tail(20))
	}
}

// waitReady waits until serve answers /readyz with 200.
func (h *harness) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.serveURL()+"/readyz", nil)
		if err != nil {
			return err
		}
		res, err := h.http.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heal ends every fault: proxies up and without latency, every process
// running.
func (h *harness) heal() {
	for name, p := range h.proxies {
		p.ClearFaults()
		if err := p.Up(); err != nil {
			h.t.Errorf("heal proxy %s: %v", name, err)
		}
	}
	for _, p := range []*proc{h.serve, h.relay2, h.workerB} {
		if err := p.start(); err != nil {
			h.t.Errorf("heal: %v", err)
		}
	}
}

// queueDepth returns how many messages wait in a queue.
func (h *harness) queueDepth(ctx context.Context, queue string) (int, error) {
	info, err := h.amqp.InspectQueue(ctx, queue)
	if err != nil {
		return 0, err
	}
	return info.Messages, nil
}

// deleteTopology deletes the test's queues and exchange.
func (h *harness) deleteTopology() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	queues := []string{h.workers, consume.DeadLetterQueue(h.workers), h.observers, consume.DeadLetterQueue(h.observers)}
	for n := 1; n < workerMaxAttempts; n++ {
		queues = append(queues, consume.RetryQueue(h.workers, n))
	}
	for _, q := range queues {
		if err := h.amqp.DeleteQueue(ctx, q); err != nil && !errors.Is(err, broker.ErrNotFound) {
			h.t.Logf("delete queue %s: %v", q, err)
		}
	}
	if err := h.amqp.DeleteExchange(ctx, h.exchange); err != nil {
		h.t.Logf("delete exchange %s: %v", h.exchange, err)
	}
}
