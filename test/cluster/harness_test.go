package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// apiSecret is the publish token serve accepts.
const apiSecret = "cluster-SECRET-3f9a1c7e52"

// Bounds of the waits of a run.
const (
	serveReady    = 90 * time.Second // serve answers /readyz
	flowing       = 90 * time.Second // the first events reach the observer; and again after the fault
	settleTimeout = 2 * time.Minute  // every acknowledged and stored event reaches the observer
)

// rig is the bus under test: `eventbus serve` as a subprocess on the given
// servers, producers posting over HTTP, and an observer consumer group in
// the test process that checks the order of each stream.
type rig struct {
	t        testing.TB
	dbURL    string // serve's EVENTBUS_DATABASE_URL
	amqpURLs string // serve's and the observer's EVENTBUS_AMQP_URL
	exchange string
	group    string

	serve  *serveProc
	obs    *testenv.StreamObserver
	broker *rabbitmq.Broker // the observer's
	load   *load
}

// serveOptions are what a rig's serve runs with besides the servers.
type serveOptions struct {
	args []string // after serve --migrate
	env  []string
}

// newRig declares the exchange and the observer's queue (before any event
// is published: the relay drops what no queue is bound for), starts the
// observer and serve, and waits until serve is ready.
func newRig(t testing.TB, ctx context.Context, dbURL, amqpURLs string, opts ...serveOptions) *rig {
	t.Helper()
	r := &rig{t: t, dbURL: dbURL, amqpURLs: amqpURLs,
		exchange: testenv.Name("cluster_x"), group: testenv.Name("cluster_observer"), obs: testenv.NewStreamObserver()}
	var err error
	r.broker, err = rabbitmq.Open(ctx, amqpURLs, rabbitmq.Config{ConnectionName: observerConnection,
		ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("open the observer's broker: %v", err)
	}
	t.Cleanup(func() { _ = r.broker.Close() })
	t.Cleanup(func() { r.deleteTopology() })
	c, err := consume.New(r.broker, consume.Config{
		Group:           r.group,
		Exchange:        r.exchange,
		Concurrency:     4,
		OrderedByStream: true,
		MaxAttempts:     1,
		// A lost connection redelivers the whole prefetch window: never
		// mistake that for a poison message.
		MaxDeliveries:   1000,
		ShutdownTimeout: 10 * time.Second,
		Logger:          slog.New(slog.DiscardHandler),
	}, consume.OnAny(func(_ context.Context, env event.Envelope) error {
		r.obs.Record(env)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Declare(ctx); err != nil {
		t.Fatalf("declare the observer's queues: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the observer: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("the observer stopped before it subscribed: %v", err)
	case <-ctx.Done():
		t.Fatalf("the observer has not subscribed: %v", ctx.Err())
	}

	env := []string{
		"EVENTBUS_DATABASE_URL=" + dbURL,
		"EVENTBUS_AMQP_URL=" + amqpURLs,
		"EVENTBUS_EXCHANGE=" + r.exchange,
		"EVENTBUS_API_TOKENS=cluster:" + apiSecret + ":publish+read",
	}
	var args []string
	for _, o := range opts {
		env, args = append(env, o.env...), append(args, o.args...)
	}
	r.serve = startServe(t, ctx, env, args...)
	r.load = newLoad(t, r.serve.url)
	return r
}

// deleteTopology deletes the observer's queues and the exchange: the
// PostgreSQL tests use the shared RabbitMQ server.
func (r *rig) deleteTopology() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range []string{r.group, consume.DeadLetterQueue(r.group)} {
		if err := r.broker.DeleteQueue(ctx, q); err != nil {
			r.t.Logf("delete queue %s: %v", q, err)
		}
	}
	if err := r.broker.DeleteExchange(ctx, r.exchange); err != nil {
		r.t.Logf("delete exchange %s: %v", r.exchange, err)
	}
}

// observerConnection names the observer's AMQP connection, to find it in
// rabbitmqctl list_connections; serve's is rabbitmq.DefaultConnectionName.
const observerConnection = "cluster-observer"

// serveProc is `eventbus serve` running as a subprocess.
type serveProc struct {
	url    string
	log    string // the file of its stderr
	exited chan struct{}
	err    error // its exit, once exited is closed
}

// startServe starts `eventbus serve --migrate` with env and args and waits
// until it answers /readyz. It stops (SIGTERM, then SIGKILL) when the test
// ends.
func startServe(t testing.TB, ctx context.Context, env []string, args ...string) *serveProc {
	t.Helper()
	port := freePort(t)
	p := &serveProc{url: "http://127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(t.TempDir(), "serve.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.EventbusBinary(t, raceEnabled), append([]string{"serve", "--migrate", "--log-format", "json", "--log-level", "warn"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Env = append(cmd.Env, "EVENTBUS_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
		// Every process of one database needs the same master key: without
		// it each would make one in its working directory.
		masterKeyEnv)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	// No serve outlives a test binary that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start serve: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(serveReady)
	for {
		res, err := client.Get(p.url + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("serve exited during startup (%v):\n%s", p.err, p.tail())
		case <-ctx.Done():
			t.Fatalf("serve not ready: %v\n%s", ctx.Err(), p.tail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready within %v:\n%s", serveReady, p.tail())
		}
	}
}

// running reports whether serve still runs: the same process from start to
// end, never restarted.
func (p *serveProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the end of serve's log.
func (p *serveProc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// masterKeyEnv gives every process of a test the same key-encryption key:
// without it each would make one in its working directory, and refuse to
// start on a store whose subject keys another one wrapped.
var masterKeyEnv = "EVENTBUS_MASTER_KEY=" + base64.StdEncoding.EncodeToString([]byte("cluster-test-master-key-32bytes!"))

// cleanEnv is this process's environment without the EVENTBUS_ variables,
// so that a developer's settings cannot leak into serve.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "EVENTBUS_") })
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// load is the producers: each posts single events to serve's POST
// /v1/events, one at a time, on streams of its own, and sends an event again
// (same id, so stored once) until it is acknowledged. Each producer's
// streams then get their versions in the order it sent them, and an
// acknowledged event is one serve answered 2xx for.
type load struct {
	t      testing.TB
	url    string
	client *http.Client

	mu    sync.Mutex
	acked map[uuid.UUID]time.Time // when each acknowledged event was

	requests, failures atomic.Int64 // requests; those answered other than 2xx, or not at all
	statuses           sync.Map     // answers other than 2xx: status (0: no answer) → *atomic.Int64

	stop context.CancelFunc
	wg   sync.WaitGroup
}

func newLoad(t testing.TB, url string) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &load{t: t, url: url, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, acked: map[uuid.UUID]time.Time{}}
}

// start runs n producers, each on streams streams of its own, until stop.
func (l *load) start(n, streams int) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = func() {
		cancel()
		l.wg.Wait()
	}
	l.t.Cleanup(l.stop)
	for p := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				l.produce(ctx, fmt.Sprintf("p%d-learner-%d", p, i%streams))
			}
		}()
	}
}

// produce posts one event until it is acknowledged or ctx ends.
func (l *load) produce(ctx context.Context, subject string) {
	payload := edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: 42}
	data, _ := json.Marshal(payload)
	id := uuid.New()
	body, _ := json.Marshal(map[string]any{"id": id, "type": payload.EventType(), "subject": subject, "data": json.RawMessage(data)})
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url+"/v1/events", bytes.NewReader(body))
		if err != nil {
			l.t.Errorf("request: %v", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiSecret)
		l.requests.Add(1)
		res, err := l.client.Do(req)
		status := 0
		if err == nil {
			status = res.StatusCode
			msg, _ := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case res.StatusCode < 300:
				l.ack(id)
				return
			case res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != http.StatusConflict && res.StatusCode != http.StatusTooManyRequests:
				// A valid event refused: the test's own fault.
				l.t.Errorf("POST /v1/events of %s: %d %s", id, res.StatusCode, msg)
				return
			}
		}
		if ctx.Err() != nil {
			return // the load stopped: no answer expected
		}
		// Unavailable, or no answer: the same event again.
		l.failures.Add(1)
		n, _ := l.statuses.LoadOrStore(status, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (l *load) ack(id uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[id] = time.Now()
}

// failureStatuses describes the answers other than 2xx: "503 ×12, none ×2".
func (l *load) failureStatuses() string {
	var parts []string
	l.statuses.Range(func(k, v any) bool {
		name := strconv.Itoa(k.(int))
		if k.(int) == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// ackedSince returns the events acknowledged at or after from, and the
// first of those acknowledgements.
func (l *load) ackedSince(from time.Time) (ids []uuid.UUID, first time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, at := range l.acked {
		if !at.Before(from) {
			ids = append(ids, id)
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return ids, first
}

// waitFor waits until cond holds, checking every 50 ms, for at most
// timeout; it fails the test with what describe says otherwise, or when
// serve exits.
func (r *rig) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool, describe func() string) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !r.serve.running() {
			r.t.Fatalf("%s: serve exited (%v):\n%s", what, r.serve.err, r.serve.tail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.t.Fatalf("%s: not within %v: %s\nserve's log:\n%s", what, timeout, describe(), r.serve.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// observedCount returns how many of ids the observer has received.
func (r *rig) observedCount(ids []uuid.UUID) int {
	n := 0
	for _, id := range ids {
		if r.obs.Seen(id) {
			n++
		}
	}
	return n
}

// faultRun is what a run with one fault found.
type faultRun struct {
	acked, ackedBefore, ackedAfter int
	stored                         int
	summary                        testenv.ObserverSummary
	lost                           []uuid.UUID // acknowledged, not delivered
	storedNotDelivered             int
	firstAckAfter                  time.Duration // from the fault to serve's first acknowledgement after it
	firstDeliveryAfter             time.Duration // from the fault to the observer's first event acknowledged after it
	requests, failures             int64
	failureStatuses                string
}

// runWithFault runs the load, calls fault once events flow end to end,
// goes on until events acknowledged after the fault reach the observer,
// stops the load and waits until every acknowledged and every stored event
// has reached the observer. fault returns once the component it fails is
// down: events acknowledged from then on are "after the fault". storedIDs
// reads the event ids in the store. It fails the test on an order violation
// or serve exiting; report fails it on a lost event.
func (r *rig) runWithFault(ctx context.Context, producers, streams, before, after int, fault func() time.Time, storedIDs func(context.Context) ([]uuid.UUID, error)) faultRun {
	r.t.Helper()
	l := r.load
	l.start(producers, streams)
	r.waitFor(ctx, flowing, fmt.Sprintf("%d events delivered before the fault", before),
		func() bool { return r.obs.Distinct() >= before },
		func() string { return fmt.Sprintf("%d delivered", r.obs.Distinct()) })

	down := fault()
	var firstDelivery time.Duration
	afterFault := func() (acked, delivered int) {
		ids, _ := l.ackedSince(down)
		n := r.observedCount(ids)
		if n > 0 && firstDelivery == 0 {
			firstDelivery = time.Since(down)
		}
		return len(ids), n
	}
	r.waitFor(ctx, flowing, fmt.Sprintf("%d events acknowledged after the fault delivered", after),
		func() bool { _, n := afterFault(); return n >= after },
		func() string {
			a, n := afterFault()
			return fmt.Sprintf("%d acknowledged after the fault, %d of them delivered", a, n)
		})
	l.stop()

	all, _ := l.ackedSince(time.Time{})
	r.waitFor(ctx, settleTimeout, "every acknowledged event delivered",
		func() bool { return r.observedCount(all) == len(all) },
		func() string {
			return fmt.Sprintf("%d of %d acknowledged events delivered", r.observedCount(all), len(all))
		})
	var stored []uuid.UUID
	r.waitFor(ctx, settleTimeout, "every stored event delivered",
		func() bool {
			ids, err := storedIDs(ctx)
			if err != nil {
				return false
			}
			stored = ids
			return r.observedCount(ids) == len(ids)
		},
		func() string {
			return fmt.Sprintf("%d of %d stored events delivered", r.observedCount(stored), len(stored))
		})

	afterIDs, firstAck := l.ackedSince(down)
	res := faultRun{acked: len(all), ackedAfter: len(afterIDs), stored: len(stored), summary: r.obs.Summary(),
		firstAckAfter: firstAck.Sub(down), firstDeliveryAfter: firstDelivery, requests: l.requests.Load(), failures: l.failures.Load(), failureStatuses: l.failureStatuses()}
	res.ackedBefore = res.acked - res.ackedAfter
	for _, id := range all {
		if !r.obs.Seen(id) {
			res.lost = append(res.lost, id)
		}
	}
	res.storedNotDelivered = len(stored) - r.observedCount(stored)
	if res.summary.Violations > 0 {
		r.t.Errorf("G3: %d first deliveries out of stream order: %s", res.summary.Violations, strings.Join(res.summary.Examples, "; "))
	}
	if !r.serve.running() {
		r.t.Errorf("serve exited (%v): the bus must heal without a restart\n%s", r.serve.err, r.serve.tail())
	}
	return res
}

// report logs a run's figures, and writes them to the file
// EVENTBUS_CLUSTER_REPORT names, if set.
func (res faultRun) report(t testing.TB, what string, extra ...string) {
	lines := []string{
		fmt.Sprintf("%s: events acknowledged %d (%d before the fault, %d after), stored %d, delivered %d (%d deliveries, %d redeliveries), lost %d, stored but not delivered %d, order violations %d",
			what, res.acked, res.ackedBefore, res.ackedAfter, res.stored, res.summary.Distinct, res.summary.Deliveries, res.summary.Redeliveries,
			len(res.lost), res.storedNotDelivered, res.summary.Violations),
		fmt.Sprintf("%s: from the fault, serve's first acknowledgement came after %v and the observer's first event acknowledged after the fault after %v; %d HTTP requests, %d answered other than 2xx or not at all and sent again (%s)",
			what, res.firstAckAfter.Round(time.Millisecond), res.firstDeliveryAfter.Round(time.Millisecond), res.requests, res.failures, res.failureStatuses),
	}
	lines = append(lines, extra...)
	for _, line := range lines {
		t.Log(line)
	}
	if path := os.Getenv("EVENTBUS_CLUSTER_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(lines, "\n    "))
			_ = f.Close()
		}
	}
	if len(res.lost) > 0 {
		t.Errorf("G1: %d acknowledged events never delivered, for example %v", len(res.lost), res.lost[:min(5, len(res.lost))])
	}
}

// storedEventIDs reads the ids of the events in the store at url.
func storedEventIDs(url string) func(context.Context) ([]uuid.UUID, error) {
	return func(ctx context.Context) ([]uuid.UUID, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(ctx, `SELECT event_id FROM event_store`)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	}
}
