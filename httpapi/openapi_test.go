package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

// contract validates real requests and answers against the OpenAPI
// document that the server embeds, and records which operations and status
// codes were exercised.
type contract struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	// seen maps "METHOD /path" (the document's path) to the statuses
	// validated for it.
	seen map[string]map[int]bool
}

func loadContract(t *testing.T) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPI())
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("the document is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, doc: doc, router: router, seen: map[string]map[int]bool{}}
}

// operations returns "METHOD /path" of every operation in the document,
// with the scope its security requirement names ("public" for none).
func (c *contract) operations() map[string]string {
	ops := map[string]string{}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			scope := httpapi.ScopePublic
			if op.Security != nil && len(*op.Security) > 0 {
				scopes := (*op.Security)[0]["bearer"]
				if len(*op.Security) != 1 || len(scopes) != 1 {
					c.t.Fatalf("%s %s: want one bearer requirement naming one scope, got %v", method, path, *op.Security)
				}
				scope = scopes[0]
			}
			ops[method+" "+path] = scope
		}
	}
	return ops
}

// apiCase is one request and the status it must get.
type apiCase struct {
	req    request
	status int
	// docRefuses says that the request breaks the document (a missing
	// field, a parameter out of range, a wrong media type): the validator
	// must refuse it as the server does. Otherwise it must accept it.
	docRefuses bool
	// bodyIsData: a CloudEvent in binary mode, whose body is its data. The
	// document cannot make a body's schema depend on a header (its
	// application/json schema is the envelope's), so the validator checks
	// the headers and not the body.
	bodyIsData bool
}

// check sends the case's request to the real server, checks the status,
// and validates the request and the answer against the document.
func (c *contract) check(h *harness, tc apiCase) response {
	t := c.t
	t.Helper()
	name := fmt.Sprintf("%s %s (token %q)", tc.req.method, tc.req.path, tokenName(tc.req.token))
	res := h.do(tc.req)
	if res.status != tc.status {
		t.Fatalf("%s: status %d, want %d; body %.600s", name, res.status, tc.status, res.body)
	}
	// The same request again, for the validator, which reads its body.
	r, err := http.NewRequest(tc.req.method, h.srv.URL+tc.req.path, strings.NewReader(tc.req.body))
	if err != nil {
		t.Fatal(err)
	}
	if tc.req.token != "" {
		r.Header.Set("Authorization", "Bearer "+tc.req.token)
	}
	if tc.req.contentType != "" {
		r.Header.Set("Content-Type", tc.req.contentType)
	}
	for k, v := range tc.req.header {
		r.Header.Set(k, v)
	}
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		t.Fatalf("%s: the document has no operation for it: %v", name, err)
	}
	ctx := context.Background()
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, IncludeResponseStatus: true}
	reqOpts := opts
	if tc.bodyIsData {
		withoutBody := *opts
		withoutBody.ExcludeRequestBody = true
		reqOpts = &withoutBody
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: reqOpts}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case tc.docRefuses && err == nil:
		t.Fatalf("%s: the server refuses it with %d, the document accepts it", name, res.status)
	case !tc.docRefuses && err != nil:
		t.Fatalf("%s: the request breaks the document: %v", name, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.status, Header: res.header,
		Body: io.NopCloser(bytes.NewReader(res.body)), Options: opts}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Fatalf("%s: answer %d breaks the document: %v\nContent-Type %s\nbody %.2000s", name, res.status, err, res.header.Get("Content-Type"), res.body)
	}
	key := route.Method + " " + route.Path
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][res.status] = true
	return res
}

// checkAuth checks that the protected route of tc answers 401 without a
// token and 403 with a token that lacks scope, as the document says, and
// then tc itself.
func (c *contract) checkAuth(h *harness, tc apiCase, scope string) response {
	c.t.Helper()
	noToken := tc
	noToken.req.token, noToken.status = "", 401
	c.check(h, noToken)
	lacking := tc
	lacking.req.token, lacking.status = readSecret, 403
	if scope == "read" {
		lacking.req.token = publishSecret
	}
	c.check(h, lacking)
	return c.check(h, tc)
}

func tokenName(secret string) string {
	switch secret {
	case publishSecret:
		return "publish"
	case readSecret:
		return "read"
	case adminSecret:
		return "admin"
	}
	return secret
}

// TestOpenAPIDocumentMatchesEveryEndpoint exercises every route of the real
// server (PostgreSQL store, RabbitMQ broker, auth on) with its main status
// codes, and validates each request and answer against the document with
// kin-openapi. It ends by checking that every operation in the document
// was exercised with a success and an error.
func TestOpenAPIDocumentMatchesEveryEndpoint(t *testing.T) {
	c := loadContract(t)
	b, brokerOpt := withBroker(t)
	var notReady atomic.Bool
	h := newHarness(t, harnessOption{config: func(cfg *httpapi.Config) {
		brokerOpt.config(cfg)
		cfg.Parked = service.HTTPParked(cfg.Reader.(*postgres.Store), relay.DefaultName)
		cfg.Admin.RetryParked = service.HTTPAdmin(cfg.Reader.(*postgres.Store), nil, relay.DefaultName, "").RetryParked
		// The erasure itself is tested with the service (package erasure);
		// here, the shape of its request and answer.
		cfg.Admin.Erase = func(_ context.Context, subject, _ string) (wire.Erasure, error) {
			if err := service.CheckDataSubject(subject); err != nil {
				return wire.Erasure{}, err
			}
			return wire.Erasure{DataSubject: subject, ErasedAt: time.Now().UTC(), EventID: uuid.NewString()}, nil
		}
		cfg.Ready = append(cfg.Ready, httpapi.Check{Name: "switch", Check: func(context.Context) error {
			if notReady.Load() {
				return fmt.Errorf("switched off by the test")
			}
			return nil
		}})
		cfg.MaxBodyBytes = 64 << 10
	}})
	const jsonType = "application/json"
	publish := func(body string) request {
		return request{method: "POST", path: "/v1/events", token: publishSecret, contentType: jsonType, body: body}
	}
	get := func(path string) request { return request{method: "GET", path: path, token: readSecret} }
	admin := func(method, path, body string) request {
		r := request{method: method, path: path, token: adminSecret, body: body}
		if body != "" {
			r.contentType = jsonType
		}
		return r
	}

	// POST /v1/events
	subject := testenv.Name("openapi-stream")
	single := `{"type":"quiz.submitted","subject":"` + subject + `","data":` + quizData(7) + `}`
	created := c.checkAuth(h, apiCase{req: publish(single), status: 201}, "publish")
	testenv.Settle(t, h.store)
	stored, err := event.Decode(created.body)
	if err != nil {
		t.Fatal(err)
	}
	c.check(h, apiCase{req: publish(`{"id":"` + stored.ID.String() + `","type":"quiz.submitted","data":` + quizData(7) + `}`), status: 200})
	c.check(h, apiCase{req: publish(`{"events":[{"type":"quiz.submitted","data":` + quizData(1) + `},{"type":"lesson.published","data":{"lesson_id":"` +
		uuid.NewString() + `","teacher_id":"` + uuid.NewString() + `","title":"Fractions"}}]}`), status: 201})
	testenv.Settle(t, h.store)
	c.check(h, apiCase{req: publish(`{"type":"quiz.submitted"}`), status: 400, docRefuses: true})
	c.check(h, apiCase{req: publish(`{"type":"quiz.submitted","specversion":"1.0","data":{}}`), status: 400, docRefuses: true})
	c.check(h, apiCase{req: publish(`{"type":"quiz.submitted","subject":"` + subject + `","expected_version":5,"data":` + quizData(2) + `}`), status: 409})
	c.check(h, apiCase{req: publish(`{"type":"quiz.submitted","data":{"pad":"` + strings.Repeat("x", 64<<10) + `"}}`), status: 413})
	textBody := publish(single)
	textBody.contentType = "text/plain"
	c.check(h, apiCase{req: textBody, status: 415, docRefuses: true})
	c.check(h, apiCase{req: publish(`{"type":"no.such.type","data":{}}`), status: 422})
	c.check(h, apiCase{req: publish(`{"type":"quiz.submitted","data":{"quiz_id":"not a uuid"}}`), status: 422})

	// The same route with CloudEvents: structured, batched and binary mode.
	cloudEvent := func(contentType, body string, header map[string]string) request {
		return request{method: "POST", path: "/v1/events", token: publishSecret, contentType: contentType, body: body, header: header}
	}
	ceJSON := func(extra, data string) string {
		return `{"specversion":"1.0","id":"` + uuid.NewString() + `","source":"/quiz-service","type":"quiz.submitted",` + extra + `"data":` + data + `}`
	}
	binary := func(pairs ...string) map[string]string {
		h := map[string]string{"ce-specversion": "1.0", "ce-id": uuid.NewString(), "ce-source": "/quiz-service", "ce-type": "quiz.submitted"}
		for i := 0; i+1 < len(pairs); i += 2 {
			h["ce-"+pairs[i]] = pairs[i+1]
		}
		return h
	}
	ceSubject := testenv.Name("openapi-ce")
	c.check(h, apiCase{req: cloudEvent("application/cloudevents+json", ceJSON(`"subject":"`+ceSubject+`","time":"2026-01-02T03:04:05.5Z",`+
		`"correlationid":"`+uuid.NewString()+`","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","expectedversion":0,"x":null,`, quizData(1)), nil), status: 201})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents-batch+json", `[`+ceJSON(`"subject":"`+ceSubject+`","expectedversion":"1",`, quizData(2))+`,`+
		ceJSON(`"datacontenttype":"application/json","data_base64":null,`, quizData(3))+`]`, nil), status: 201})
	c.check(h, apiCase{req: cloudEvent("application/json", quizData(4), binary("subject", ceSubject, "expectedversion", "2", "time", "2026-01-02T03:04:05Z")),
		status: 201, bodyIsData: true})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents+json", `{"specversion":"1.0","source":"/s","type":"quiz.submitted","data":{}}`, nil), status: 400, docRefuses: true})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents+json", ceJSON(`"comexampleext":"v",`, quizData(5)), nil), status: 400, docRefuses: true})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents-batch+json", `[]`, nil), status: 400, docRefuses: true})
	c.check(h, apiCase{req: cloudEvent("application/json", quizData(6), binary("specversion", "0.3")), status: 400, docRefuses: true, bodyIsData: true})
	c.check(h, apiCase{req: cloudEvent("application/json", quizData(6), binary("subject", "50%zz")), status: 400, bodyIsData: true})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents+json", ceJSON(`"subject":"`+ceSubject+`","expectedversion":0,`, quizData(7)), nil), status: 409})
	c.check(h, apiCase{req: cloudEvent("application/cloudevents+avro", ceJSON("", quizData(8)), nil), status: 415, docRefuses: true})
	testenv.Settle(t, h.store)

	// GET /v1/events, /v1/events/{id}, /v1/streams/{subject}
	c.checkAuth(h, apiCase{req: get("/v1/events?type=quiz.submitted&type=lesson.published&limit=10"), status: 200}, "read")
	c.check(h, apiCase{req: get("/v1/events?limit=0"), status: 400, docRefuses: true})
	c.check(h, apiCase{req: get("/v1/events?after=not-a-cursor"), status: 400})
	c.checkAuth(h, apiCase{req: get("/v1/events/" + stored.ID.String()), status: 200}, "read")
	c.check(h, apiCase{req: get("/v1/events/not-a-uuid"), status: 400, docRefuses: true})
	c.check(h, apiCase{req: get("/v1/events/" + uuid.NewString()), status: 404})
	c.checkAuth(h, apiCase{req: get("/v1/streams/" + subject + "?from=1&limit=5"), status: 200}, "read")
	c.check(h, apiCase{req: get("/v1/streams/" + subject + "?from=0"), status: 400, docRefuses: true})
	// GET /v1/events/stream's 200 never ends: checkStream reads its start.
	for _, token := range []string{"", publishSecret, readSecret} {
		c.checkStream(h, token)
	}
	c.check(h, apiCase{req: get("/v1/events/stream?after=not-a-cursor"), status: 400})
	c.check(h, apiCase{req: get("/v1/events/stream?limit=5"), status: 400})

	// GET /v1/status
	c.checkAuth(h, apiCase{req: get("/v1/status"), status: 200}, "read")
	// GET /v1/schemas
	c.checkAuth(h, apiCase{req: get("/v1/schemas"), status: 200}, "read")

	// POST /v1/replay
	queue := testenv.Name("openapi_replay")
	declareQueue(t, b, queue)
	c.checkAuth(h, apiCase{req: admin("POST", "/v1/replay?dry_run=true&type=quiz.submitted", ""), status: 200}, "admin")
	c.check(h, apiCase{req: admin("POST", "/v1/replay?type=quiz.submitted&queue="+queue, ""), status: 200})
	c.check(h, apiCase{req: admin("POST", "/v1/replay?dry_run=maybe&type=quiz.submitted", ""), status: 400, docRefuses: true})
	c.check(h, apiCase{req: admin("POST", "/v1/replay?dry_run=true", ""), status: 400})
	c.check(h, apiCase{req: admin("POST", "/v1/replay?dry_run=true&all=true", ""), status: 200})
	c.check(h, apiCase{req: admin("POST", "/v1/replay", `{"type":["quiz.submitted"],"dry_run":true}`), status: 200})

	// GET /v1/parked, POST /v1/parked/retry
	parked := store.ParkedEvent{Partition: store.Partition{Relay: relay.DefaultName}, EventID: uuid.Must(uuid.NewV7()), Position: 42,
		Type: "quiz.submitted", Stream: "quiz-1", StreamVersion: 3, Reason: relay.ReasonRefused + "too big", Attempts: 1}
	if err := h.store.Park(context.Background(), parked); err != nil {
		t.Fatal(err)
	}
	c.checkAuth(h, apiCase{req: get("/v1/parked"), status: 200}, "read")
	c.check(h, apiCase{req: get("/v1/parked?limit=1"), status: 400})
	c.checkAuth(h, apiCase{req: admin("POST", "/v1/parked/retry", `{"event_ids":["`+parked.EventID.String()+`"]}`), status: 202}, "admin")
	c.check(h, apiCase{req: admin("POST", "/v1/parked/retry", `{"all":true}`), status: 202})
	c.check(h, apiCase{req: admin("POST", "/v1/parked/retry", `{"event_ids":["`+uuid.NewString()+`"]}`), status: 404})
	c.check(h, apiCase{req: admin("POST", "/v1/parked/retry", `{"all":false}`), status: 400, docRefuses: true})
	c.check(h, apiCase{req: admin("POST", "/v1/parked/retry", ""), status: 400, docRefuses: true})

	// GET /v1/dead-letters/{group}, POST /v1/dead-letters/{group}/requeue:
	// a dead event and a dead message that is no event.
	group := testenv.Name("openapi_group")
	declareQueue(t, b, group)
	declareQueue(t, b, consume.DeadLetterQueue(group))
	failed, err := broker.EnvelopeMessage(stored)
	if err != nil {
		t.Fatal(err)
	}
	failed.Headers[broker.HeaderFailureReason] = "grading service said no"
	failed.Headers[broker.HeaderAttempt] = int64(3)
	failed.Headers[broker.HeaderFailedQueue] = group
	failed.Headers[broker.HeaderFailedAt] = "2026-01-02T03:04:05Z"
	ctx := testenv.Context(t, 10*time.Second)
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, m := range []broker.Message{failed, {MessageID: "junk-1", Body: []byte{0xff, 0x00}, Headers: map[string]any{}},
		{MessageID: "json-1", Body: []byte(`{"not":"an event"}`), Headers: map[string]any{}}} {
		conf, err := pub.Publish(ctx, broker.NamelessExchange, consume.DeadLetterQueue(group), m)
		if err != nil {
			t.Fatal(err)
		}
		<-conf.Done()
	}
	res := c.checkAuth(h, apiCase{req: admin("GET", "/v1/dead-letters/"+group+"?limit=10", ""), status: 200}, "admin")
	if n := strings.Count(string(res.body), `"message_id"`); n != 3 {
		t.Fatalf("dead letters listed %d, want 3: %s", n, res.body)
	}
	c.check(h, apiCase{req: admin("GET", "/v1/dead-letters/"+group+"?limit=-1", ""), status: 400, docRefuses: true})
	c.check(h, apiCase{req: admin("GET", "/v1/dead-letters/"+testenv.Name("no_such_group"), ""), status: 404})
	c.checkAuth(h, apiCase{req: admin("POST", "/v1/dead-letters/"+group+"/requeue", `{"ids":["`+stored.ID.String()+`"]}`), status: 200}, "admin")
	c.check(h, apiCase{req: admin("POST", "/v1/dead-letters/"+group+"/requeue", `{"ids":"all"}`), status: 400, docRefuses: true})
	c.check(h, apiCase{req: admin("POST", "/v1/dead-letters/"+group+"/requeue", ""), status: 200})
	c.check(h, apiCase{req: admin("POST", "/v1/dead-letters/"+testenv.Name("no_such_group")+"/requeue", ""), status: 404})

	c.checkAuth(h, apiCase{req: admin("POST", "/v1/data-subjects/learner-42/erase", ""), status: 200}, "admin")
	c.check(h, apiCase{req: admin("POST", "/v1/data-subjects/"+strings.Repeat("x", 256)+"/erase", ""), status: 422, docRefuses: true})

	// The open routes.
	open := func(path string) request { return request{method: "GET", path: path} }
	c.check(h, apiCase{req: open("/healthz"), status: 200})
	c.check(h, apiCase{req: open("/readyz"), status: 200})
	notReady.Store(true)
	c.check(h, apiCase{req: open("/readyz"), status: 503})
	notReady.Store(false)
	c.check(h, apiCase{req: open("/metrics"), status: 200})
	res = c.check(h, apiCase{req: open("/v1/openapi.json"), status: 200})
	if !bytes.Equal(res.body, httpapi.OpenAPI()) {
		t.Fatal("GET /v1/openapi.json does not answer the embedded document")
	}
	c.check(h, apiCase{req: open("/v1"), status: 200})

	// The routes that are not configured answer 501, without auth.
	bare := newHarness(t, harnessOption{noAuth: true})
	for _, r := range []request{
		{method: "GET", path: "/v1/parked"},
		{method: "POST", path: "/v1/parked/retry", contentType: jsonType, body: `{"all":true}`},
		{method: "POST", path: "/v1/replay?type=quiz.submitted"},
		{method: "GET", path: "/v1/dead-letters/grading"},
		{method: "POST", path: "/v1/dead-letters/grading/requeue"},
		{method: "POST", path: "/v1/data-subjects/learner-42/erase"},
	} {
		c.check(bare, apiCase{req: r, status: 501})
	}
	bareStatus := newHarness(t, harnessOption{noAuth: true, config: func(cfg *httpapi.Config) { cfg.Status = nil }})
	c.check(bareStatus, apiCase{req: request{method: "GET", path: "/v1/status"}, status: 501})

	// Every operation was exercised with a success and an error, and every
	// protected one with 401 and 403.
	for op, scope := range c.operations() {
		var ok, failed bool
		for status := range c.seen[op] {
			ok = ok || status < 300
			failed = failed || status >= 400
		}
		public := op == "GET /healthz" || op == "GET /metrics" || op == "GET /v1/openapi.json" || op == "GET /v1"
		switch {
		case !ok:
			t.Errorf("%s: no success validated (saw %v)", op, c.seen[op])
		case !failed && !public:
			t.Errorf("%s: no error validated (saw %v)", op, c.seen[op])
		case scope != httpapi.ScopePublic && !(c.seen[op][401] && c.seen[op][403]):
			t.Errorf("%s: 401 and 403 not both validated (saw %v)", op, c.seen[op])
		}
	}
}

// TestEndpointsMatchOpenAPI: GET /v1 lists the routes as the server
// registers them (the list is recorded by the same call that registers each
// route in the mux), and they are exactly the document's operations, with
// the same scope and summary.
func TestEndpointsMatchOpenAPI(t *testing.T) {
	c := loadContract(t)
	h := newHarness(t, harnessOption{})
	res := h.do(request{method: "GET", path: "/v1"})
	if res.status != 200 {
		t.Fatalf("GET /v1 = %d %s", res.status, res.body)
	}
	var list struct{ Endpoints []httpapi.Endpoint }
	if err := json.Unmarshal(res.body, &list); err != nil {
		t.Fatal(err)
	}
	ops := c.operations()
	listed := map[string]bool{}
	for _, e := range list.Endpoints {
		key := e.Method + " " + e.Path
		if listed[key] {
			t.Errorf("%s is listed twice", key)
		}
		listed[key] = true
		scope, ok := ops[key]
		if !ok {
			t.Errorf("%s is served but not in the OpenAPI document", key)
			continue
		}
		op := c.doc.Paths.Find(e.Path).GetOperation(e.Method)
		if e.Scope != scope || op.Extensions["x-eventbus-scope"] != scope {
			t.Errorf("%s: scope %q in GET /v1, %q in the document's security, %v in x-eventbus-scope", key, e.Scope, scope, op.Extensions["x-eventbus-scope"])
		}
		if e.Summary == "" || e.Summary != op.Summary {
			t.Errorf("%s: summary %q in GET /v1, %q in the document", key, e.Summary, op.Summary)
		}
		// The route is registered: the mux does not answer it with its own
		// 404 or 405 (whose problems carry no route).
		path := strings.ReplaceAll(strings.ReplaceAll(e.Path, "{id}", uuid.NewString()), "{", "x")
		if path == "/v1/events/stream" {
			path += "?limit=1" // a 400: the stream itself would not end
		}
		probe := h.do(request{method: e.Method, path: path, token: adminSecret})
		if probe.status == http.StatusMethodNotAllowed || (probe.status == 404 && strings.Contains(string(probe.body), "no route matches")) {
			t.Errorf("%s is listed but the server does not route it: %d %s", key, probe.status, probe.body)
		}
	}
	for op := range ops {
		if !listed[op] {
			t.Errorf("%s is in the OpenAPI document but the server does not register it", op)
		}
	}
}

// TestOpenAPIStoreDownAnswers503: with the store unreachable, the routes
// that read or write it answer the 503 problem the document describes,
// Retry-After included (Bounded answers).
func TestOpenAPIStoreDownAnswers503(t *testing.T) {
	c := loadContract(t)
	base, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, base.Host)
	h := newHarness(t, harnessOption{
		dbURL: func(schemaURL string) string { return testenv.WithHost(schemaURL, proxy.Addr()) },
		config: func(cfg *httpapi.Config) {
			cfg.Parked = service.HTTPParked(cfg.Reader.(*postgres.Store), relay.DefaultName)
		},
	})
	proxy.Down()
	for _, tc := range []apiCase{
		{req: request{method: "POST", path: "/v1/events", token: publishSecret, contentType: "application/json",
			body: `{"type":"quiz.submitted","data":` + quizData(1) + `}`}, status: 503},
		{req: request{method: "GET", path: "/v1/events", token: readSecret}, status: 503},
		{req: request{method: "GET", path: "/v1/events/" + uuid.NewString(), token: readSecret}, status: 503},
		{req: request{method: "GET", path: "/v1/streams/quiz-1", token: readSecret}, status: 503},
		{req: request{method: "GET", path: "/v1/parked", token: readSecret}, status: 503},
		{req: request{method: "POST", path: "/v1/replay?dry_run=true&type=quiz.submitted", token: adminSecret}, status: 503},
		{req: request{method: "GET", path: "/readyz"}, status: 503},
	} {
		res := c.check(h, tc)
		if res.header.Get("Retry-After") == "" {
			t.Fatalf("%s %s: 503 without Retry-After", tc.req.method, tc.req.path)
		}
	}
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
}

var eventStreamDecoder sync.Once

// checkStream opens GET /v1/events/stream with token, validates the
// status, the headers and the first message against the document, and
// records the status as check does. The stream itself never ends: the
// request is cancelled once its first message is read.
func (c *contract) checkStream(h *harness, token string) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/v1/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := h.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body []byte
	if res.StatusCode == 200 {
		line, err := bufio.NewReader(res.Body).ReadString('\n')
		if err != nil || line != ": stream open\n" {
			t.Fatalf("stream (token %q): first line %q, %v", tokenName(token), line, err)
		}
		body = []byte(line + "\n")
	} else if body, err = io.ReadAll(res.Body); err != nil {
		t.Fatal(err)
	}
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		t.Fatalf("the document has no operation for the stream: %v", err)
	}
	// The validator decodes answers by their media type; an event stream
	// is text, and its schema is a string.
	eventStreamDecoder.Do(func() { openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder) })
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Fatalf("stream request breaks the document: %v", err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("stream answer %d breaks the document: %v\nbody %.600s", res.StatusCode, err, body)
	}
	key := route.Method + " " + route.Path
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][res.StatusCode] = true
}
