package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

// Test tokens. They are long enough for ParseTokens and distinctive enough
// to grep for in logs.
const (
	publishSecret = "pub-SECRET-4f1c9a7e2b"
	readSecret    = "read-SECRET-8d3e6b0c1a"
	adminSecret   = "admin-SECRET-5a2f7c9e4d"
	tokenList     = "producer:" + publishSecret + ":publish,auditor:" + readSecret + ":read,ops:" + adminSecret + ":admin"
)

// harness is the HTTP API on a real listener, over a bus on a PostgreSQL
// store in a schema of the test's own.
type harness struct {
	t      testing.TB
	store  *postgres.Store
	direct *pgx.Conn // to the schema, bypassing any fault proxy, for counting rows
	srv    *httptest.Server
	logs   *syncBuffer
	reg    *prometheus.Registry
}

type harnessOption struct {
	dbURL  func(schemaURL string) string // the URL the store opens, e.g. through a proxy
	bus    eventbus.Config               // the bus; Registry and Source default to the EduPulse types and "http-test"
	config func(*httpapi.Config)
	server func(*http.Server) // adjusts the server before it starts
	noAuth bool
}

func newHarness(t testing.TB, opt harnessOption) *harness {
	t.Helper()
	ctx := context.Background()
	schemaURL := testenv.PostgresSchema(t)
	storeURL := schemaURL
	if opt.dbURL != nil {
		storeURL = opt.dbURL(schemaURL)
	}
	s, err := postgres.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.Connect(ctx, schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Close(context.Background()) })

	busCfg := opt.bus
	if busCfg.Registry == nil {
		busCfg.Registry = edupulse.Registry()
	}
	if busCfg.Source == "" {
		busCfg.Source = "http-test"
	}
	bus := eventbus.New(s, busCfg)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	cfg := httpapi.Config{
		Bus:     bus,
		Reader:  s,
		Status:  service.HTTPStatus(s, relay.DefaultName, 0),
		Ready:   []httpapi.Check{{Name: "store", Check: s.Ping}},
		Metrics: reg,
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if !opt.noAuth {
		if cfg.Tokens, err = auth.ParseTokens(tokenList); err != nil {
			t.Fatal(err)
		}
	}
	if opt.config != nil {
		opt.config(&cfg)
	}
	h, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if opt.server != nil {
		opt.server(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &harness{t: t, store: s, direct: direct, srv: srv, logs: logs, reg: reg}
}

// rows counts the stored events, straight from the database.
func (h *harness) rows() int {
	h.t.Helper()
	var n int
	if err := h.direct.QueryRow(context.Background(), "SELECT count(*) FROM event_store").Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// request describes one HTTP request; zero fields are left out.
type request struct {
	method, path, token, contentType, body string
	header                                 map[string]string
}

func (h *harness) do(req request) response {
	h.t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(req.method, h.srv.URL+req.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	res, err := h.srv.Client().Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// publish posts body as JSON with the publish token. It returns once what
// it stored is visible to readers (see testenv.Settle).
func (h *harness) publish(body string) response {
	h.t.Helper()
	res := h.do(request{method: "POST", path: "/v1/events", token: publishSecret, contentType: "application/json", body: body})
	if res.status < 300 {
		testenv.Settle(h.t, h.store)
	}
	return res
}

// get reads path with the read token.
func (h *harness) get(path string) response {
	h.t.Helper()
	return h.do(request{method: "GET", path: path, token: readSecret})
}

// problem checks that res is an RFC 9457 problem with status and type, and
// returns it.
func (res response) problem(t *testing.T, status int, typ string) httpapi.Problem {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d; body %s", res.status, status, res.body)
	}
	if mt, _, _ := mime.ParseMediaType(res.header.Get("Content-Type")); mt != httpapi.ProblemContentType {
		t.Fatalf("Content-Type %q, want %s; body %s", res.header.Get("Content-Type"), httpapi.ProblemContentType, res.body)
	}
	var p httpapi.Problem
	dec := json.NewDecoder(bytes.NewReader(res.body))
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", res.body, err)
	}
	if p.Status != status || p.Type != typ || p.Title == "" || p.Detail == "" || p.Instance == "" || p.RequestID == "" {
		t.Fatalf("problem %+v, want status %d, type %s, and title, detail, instance and request_id set", p, status, typ)
	}
	if p.RequestID != res.header.Get("X-Request-ID") {
		t.Fatalf("problem request_id %q, header X-Request-ID %q", p.RequestID, res.header.Get("X-Request-ID"))
	}
	return p
}

// cloudEvent parses body with the official CloudEvents SDK and validates it.
func cloudEvent(t *testing.T, body []byte) ce.Event {
	t.Helper()
	e := ce.New()
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("CloudEvents SDK cannot parse %s: %v", body, err)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("CloudEvents SDK rejects %s: %v", body, err)
	}
	return e
}

// eventList parses a {"events": [...]} answer with the SDK, keeping each
// event's raw bytes too.
func eventList(t *testing.T, body []byte) ([]ce.Event, []json.RawMessage, map[string]json.RawMessage) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(obj["events"], &raws); err != nil {
		t.Fatalf("answer %s: events: %v", body, err)
	}
	events := make([]ce.Event, len(raws))
	for i, raw := range raws {
		events[i] = cloudEvent(t, raw)
	}
	return events, raws, obj
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
