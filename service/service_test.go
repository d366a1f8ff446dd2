package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

// TestPostgresErrorsSayWhatToCheck covers the failures the shared test
// server cannot produce (it trusts every local connection): each message
// is one line that names the server and what to check, never the password.
func TestPostgresErrorsSayWhatToCheck(t *testing.T) {
	const url = "postgres://quiz:s3cret-pw@db.example:6432/quizzes"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&pgconn.PgError{Code: "28P01", Message: "password authentication failed for user \"quiz\""}, "the password was refused; check the user and password in EVENTBUS_DATABASE_URL"},
		{&pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"}, "no connection slots left"},
		{&pgconn.PgError{Code: "XX000", Message: "something odd"}, "something odd (SQLSTATE XX000); check EVENTBUS_DATABASE_URL"},
		{syscall.ECONNREFUSED, "connection refused; check that PostgreSQL is running"},
		{context.DeadlineExceeded, "no answer within 10s"},
		{errors.New("first line\n\tsecond line"), "first line; check"},
	} {
		err := postgresError(url, "reach", fmt.Errorf("postgres: ping: %w", tc.err))
		msg := err.Error()
		if !strings.HasPrefix(msg, `cannot reach PostgreSQL at db.example:6432 (database "quizzes", user "quiz"): `) ||
			!strings.Contains(msg, tc.want) || strings.Contains(msg, "s3cret") || strings.Contains(msg, "\n") {
			t.Errorf("%v: message %q, want one line with %q and no password", tc.err, msg, tc.want)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: the cause is lost", tc.err)
		}
	}
}

// TestEmbeddedRelayWaitsForRetries: an event whose first attempt failed
// and that waits in a retry queue is not delivered yet: the relay's
// checkpoint stays behind it until the retry succeeds.
func TestEmbeddedRelayWaitsForRetries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, cfg := openEmbedded(t, ctx)
	attempts := make(chan int, 10)
	n := 0
	c, err := consume.New(svc.Broker, consume.Config{Group: "flaky", Exchange: cfg.Exchange, Logger: slog.New(slog.DiscardHandler),
		Backoff: consume.Backoff{Initial: 500 * time.Millisecond}},
		consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			n++
			attempts <- n
			if n == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runBoth(t, ctx, svc, c)
	defer stop()
	pos := appendQuiz(t, ctx, svc)
	<-attempts
	time.Sleep(300 * time.Millisecond) // within the backoff, past checkpoint intervals
	if got := checkpoint(t, ctx, svc); got != 0 {
		t.Fatalf("checkpoint at %d while the event waits for its retry", got)
	}
	<-attempts
	waitCheckpoint(t, ctx, svc, pos)
}

// openEmbedded opens the service on the embedded default in a directory of
// the test's own.
func openEmbedded(t *testing.T, ctx context.Context) (*Service, config.Config) {
	t.Helper()
	cfg, err := config.Load(func(k string) (string, bool) {
		return map[string]string{config.EnvDataDir: t.TempDir()}[k], k == config.EnvDataDir
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Open(ctx, cfg, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, cfg
}

// runBoth runs the consumer, then, once it is ready, the relay; stop ends
// both and waits for them.
func runBoth(t *testing.T, ctx context.Context, svc *Service, c *consume.Consumer) (stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 2)
	go func() { errc <- c.Run(runCtx) }()
	<-c.Ready()
	go func() { errc <- svc.Run(runCtx, RunOptions{Relay: true}) }()
	return func() {
		cancel()
		for range 2 {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
	}
}

// appendQuiz stores a quiz event and returns its position.
func appendQuiz(t *testing.T, ctx context.Context, svc *Service) int64 {
	t.Helper()
	res, err := svc.Bus.Append(ctx, []event.Draft{{Type: "quiz.submitted",
		Data: []byte(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}`)}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Envelope.Position
}

func waitCheckpoint(t *testing.T, ctx context.Context, svc *Service, pos int64) {
	t.Helper()
	for checkpoint(t, ctx, svc) != pos {
		if ctx.Err() != nil {
			t.Fatalf("the checkpoint never reached %d", pos)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEmbeddedDefault opens the service with no database or broker URL:
// SQLite under the data directory and the in-process broker, whose relay
// waits for consumers to settle an event before its checkpoint passes it.
func TestEmbeddedDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, cfg := openEmbedded(t, ctx)
	if _, ok := svc.SQLite(); !ok {
		t.Fatal("the embedded default has no SQLite store")
	}
	if _, ok := svc.Postgres(); ok {
		t.Fatal("the embedded default has a PostgreSQL store")
	}

	// A consumer that holds its first delivery until told.
	release := make(chan struct{})
	got := make(chan string, 10)
	c, err := consume.New(svc.Broker, consume.Config{Group: "holder", Exchange: cfg.Exchange, Inbox: svc.Inbox(),
		Logger: slog.New(slog.DiscardHandler)},
		consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			got <- env.ID.String()
			<-release
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	stop := runBoth(t, ctx, svc, c)
	defer stop()
	pos := appendQuiz(t, ctx, svc)
	<-got
	// Delivered, not settled: the checkpoint stays behind it.
	time.Sleep(300 * time.Millisecond) // several checkpoint intervals
	if got := checkpoint(t, ctx, svc); got != 0 {
		t.Fatalf("checkpoint at %d while the consumer still holds the event", got)
	}
	close(release)
	waitCheckpoint(t, ctx, svc, pos)
}

func checkpoint(t *testing.T, ctx context.Context, svc *Service) int64 {
	t.Helper()
	leases, err := svc.Store.Leases(ctx, svc.relayName)
	if err != nil {
		t.Fatal(err)
	}
	var pos int64
	for _, l := range leases {
		pos = max(pos, l.Checkpoint.Position)
	}
	return pos
}

// TestRunWaitsForRequestsInFlight: a graceful stop lets the requests in
// flight finish before Run returns, and so before the caller closes the
// store they need.
func TestRunWaitsForRequestsInFlight(t *testing.T) {
	schema := testenv.PostgresSchema(t)
	proxy := testenv.NewFaultProxy(t, "127.0.0.1:5432")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := config.Config{DatabaseURL: testenv.WithHost(schema, proxy.Addr()), HTTPAddr: "127.0.0.1:0",
		Exchange: broker.DefaultEventsExchange, DataDir: t.TempDir()}
	svc, err := Open(ctx, cfg, Config{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := proxy.AddLatency(400*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(runCtx, RunOptions{HTTP: true, Ready: func(a string) { addr <- a }}) }()
	base := "http://" + <-addr
	answered := make(chan int, 1)
	go func() {
		body := `{"type":"quiz.submitted","data":{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":1}}`
		res, err := http.Post(base+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			answered <- 0
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // the request now waits on the slow store
	stop()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case status := <-answered:
		if status != http.StatusCreated {
			t.Fatalf("the request in flight got %d, want 201", status)
		}
	default:
		t.Fatal("Run returned before the request in flight was answered")
	}
}
