package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/sqlite"
)

// boundTimeout is the request timeout of the tests below; boundPatience is
// how long their client waits for an answer. It is generous: the tests
// check that an answer comes (the requests hung for 60 s and more before),
// not how fast.
const (
	boundTimeout  = time.Second
	boundPatience = 15 * time.Second
)

// routeCase is one request of the route table.
type routeCase struct {
	name   string
	req    request
	store  bool // it calls the store
	broker bool // it calls the broker
}

// everyRoute lists a request for every route that calls the store or the
// broker, with the token it needs.
func everyRoute() []routeCase {
	quiz := `{"type":"quiz.submitted","data":{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":3}}`
	return []routeCase{
		{"publish", request{method: "POST", path: "/v1/events", token: publishSecret, contentType: "application/json", body: quiz}, true, false},
		{"list", request{method: "GET", path: "/v1/events", token: readSecret}, true, false},
		{"get", request{method: "GET", path: "/v1/events/" + uuid.NewString(), token: readSecret}, true, false},
		{"stream", request{method: "GET", path: "/v1/streams/x", token: readSecret}, true, false},
		{"status", request{method: "GET", path: "/v1/status", token: readSecret}, true, false},
		{"replay", request{method: "POST", path: "/v1/replay?type=quiz.submitted", token: adminSecret}, true, true},
		{"replay dry run", request{method: "POST", path: "/v1/replay?type=quiz.submitted&dry_run=true", token: adminSecret}, true, false},
		{"readyz", request{method: "GET", path: "/readyz"}, true, true},
		{"dead letters", request{method: "GET", path: "/v1/dead-letters/" + testenv.Name("grading"), token: adminSecret}, false, true},
		{"requeue", request{method: "POST", path: "/v1/dead-letters/" + testenv.Name("grading") + "/requeue", token: adminSecret}, false, true},
	}
}

// boundedDo sends req and returns the answer, failing the test if none
// comes within boundPatience.
func boundedDo(t *testing.T, base string, req request) (response, time.Duration) {
	t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(req.method, base+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	client := &http.Client{Timeout: boundPatience}
	start := time.Now()
	res, err := client.Do(r)
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", req.method, req.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.method, req.path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}, time.Since(start)
}

// assertUnavailable checks that res is a 503 problem with Retry-After.
func assertUnavailable(t *testing.T, rc routeCase, res response) {
	t.Helper()
	typ := httpapi.ProblemUnavailable
	if rc.req.path == "/readyz" {
		typ = httpapi.ProblemNotReady
	}
	res.problem(t, http.StatusServiceUnavailable, typ)
	if res.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %s", res.body)
	}
}

// withBrokerAt opens RabbitMQ at url and wires the admin operations to it.
func withBrokerAt(t *testing.T, url string) (*rabbitmq.Broker, func(*httpapi.Config)) {
	t.Helper()
	b, err := rabbitmq.Open(testenv.Context(t, 30*time.Second), url, rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, func(c *httpapi.Config) {
		st := c.Reader.(*postgres.Store)
		c.RequestTimeout = boundTimeout
		c.Ready = append(c.Ready, httpapi.Check{Name: "broker", Check: b.Ping})
		c.Admin = service.HTTPAdmin(st, b, relay.DefaultName, testenv.Name("bound"))
	}
}

// Finding 3 of issue 12: with PostgreSQL behind a proxy that accepts and
// never answers, requests hung for a minute and more. Every request must
// now get an answer: a 503 with Retry-After from the routes that need the
// store, whatever the others answer.
func TestEveryRouteAnswersWhenPostgreSQLFallsSilent(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	pgProxy := testenv.NewFaultProxy(t, hostPort(t, testenv.PostgresURL()))
	_, withAdmin := withBrokerAt(t, testenv.AMQPURL())
	h := newHarness(t, harnessOption{
		dbURL:  func(schemaURL string) string { return testenv.WithHost(schemaURL, pgProxy.Addr()) },
		config: withAdmin,
	})
	if res := h.publish(everyRoute()[0].req.body); res.status != http.StatusCreated {
		t.Fatalf("publish before the fault: %d %s", res.status, res.body)
	}
	if err := pgProxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	// Lift the fault before the store closes; deferred, it runs first.
	t.Cleanup(pgProxy.ClearFaults)
	for _, rc := range everyRoute() {
		t.Run(rc.name, func(t *testing.T) {
			res, took := boundedDo(t, h.srv.URL, rc.req)
			t.Logf("%s %s: %d after %s", rc.req.method, rc.req.path, res.status, took.Round(time.Millisecond))
			if rc.store {
				assertUnavailable(t, rc, res)
			}
		})
	}
}

// The same with RabbitMQ silent: the routes that call the broker answer
// 503 with Retry-After.
func TestEveryBrokerRouteAnswersWhenRabbitMQFallsSilent(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	mqProxy := testenv.NewFaultProxy(t, hostPort(t, testenv.AMQPURL()))
	_, withAdmin := withBrokerAt(t, testenv.WithHost(testenv.AMQPURL(), mqProxy.Addr()))
	h := newHarness(t, harnessOption{config: withAdmin})
	if res := h.publish(everyRoute()[0].req.body); res.status != http.StatusCreated {
		t.Fatalf("publish before the fault: %d %s", res.status, res.body)
	}
	if err := mqProxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mqProxy.ClearFaults)
	for _, rc := range everyRoute() {
		t.Run(rc.name, func(t *testing.T) {
			res, took := boundedDo(t, h.srv.URL, rc.req)
			t.Logf("%s %s: %d after %s", rc.req.method, rc.req.path, res.status, took.Round(time.Millisecond))
			if rc.broker {
				assertUnavailable(t, rc, res)
			}
		})
	}
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		t.Fatalf("%s has no port", rawURL)
	}
	return u.Host
}

// The answer does not depend on the store honouring its context: a status
// func that ignores it and never returns still gets the client a 503 in
// time.
func TestACallThatIgnoresItsContextDoesNotHoldTheAnswer(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, harnessOption{config: func(c *httpapi.Config) {
		c.RequestTimeout = boundTimeout
		c.Status = func(context.Context) (wire.Status, error) {
			<-release
			return wire.Status{}, nil
		}
	}})
	t.Cleanup(func() { close(release) })
	rc := routeCase{req: request{method: "GET", path: "/v1/status", token: readSecret}}
	res, _ := boundedDo(t, h.srv.URL, rc.req)
	assertUnavailable(t, rc, res)
	if res := h.get("/v1/events"); res.status != http.StatusOK {
		t.Fatalf("list, which the store answers in time: %d %s", res.status, res.body)
	}
}

// Finding 6 of issue 12: a corrupted page of the SQLite file gave 503
// "retry" for ever while /readyz said 200. Damage is not transient: the API
// answers 500 saying the file is damaged and what to do, and /readyz says
// not ready, and why.
func TestDamagedSQLiteFileIsReportedNotRetried(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "eventbus.db")
	s, err := sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	bus := eventbus.New(s, eventbus.Config{Registry: edupulse.Registry()})
	for range 50 {
		if _, err := bus.Append(ctx, []event.Draft{quizDraft()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.CorruptSQLitePage(t, path, "event_store")

	s, err = sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	logs := &syncBuffer{}
	api, err := httpapi.New(httpapi.Config{
		Bus:    eventbus.New(s, eventbus.Config{Registry: edupulse.Registry()}),
		Reader: s,
		Status: service.HTTPStatus(s, relay.DefaultName, 0),
		Ready:  []httpapi.Check{{Name: "store", Check: s.Ping}},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	for _, req := range []request{
		{method: "GET", path: "/v1/events"},
		{method: "GET", path: "/v1/status"},
	} {
		res, _ := boundedDo(t, srv.URL, req)
		p := res.problem(t, http.StatusInternalServerError, httpapi.ProblemStoreDamaged)
		if res.header.Get("Retry-After") != "" {
			t.Errorf("%s: a damaged store is not worth retrying, yet Retry-After is %q", req.path, res.header.Get("Retry-After"))
		}
		if !strings.Contains(p.Detail, "damaged") || !strings.Contains(p.Detail, "backup") || !strings.Contains(p.Detail, "integrity_check") {
			t.Errorf("%s: detail %q should say the file is damaged and what to do", req.path, p.Detail)
		}
	}
	res, _ := boundedDo(t, srv.URL, request{method: "GET", path: "/readyz"})
	p := res.problem(t, http.StatusServiceUnavailable, httpapi.ProblemNotReady)
	if p.Checks["store"] != "damaged" || !strings.Contains(p.Detail, "damaged") || !strings.Contains(p.Detail, "backup") {
		t.Fatalf("readyz: %s; want the store check damaged, and the detail to say what to do", res.body)
	}
	if !strings.Contains(logs.String(), path) {
		t.Errorf("the log does not name the damaged file %s", path)
	}
}

func quizDraft() event.Draft {
	data, _ := json.Marshal(map[string]any{"quiz_id": uuid.NewString(), "learner_id": uuid.NewString(), "score_raw": 7})
	return event.Draft{Type: "quiz.submitted", Data: data}
}
