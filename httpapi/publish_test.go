package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
)

// quizData is quiz.submitted data with odd spacing, key order and HTML
// characters: the bytes must come back exactly as sent.
func quizData(score int) string {
	return fmt.Sprintf(`{ "score_raw" : %d,  "quiz_id":"%s","learner_id":"%s", "note": "<b>5 & 6</b> \u00e9" }`,
		score, uuid.New(), uuid.New())
}

func TestPublishOneEventAnswers201WithTheStoredCloudEvent(t *testing.T) {
	h := newHarness(t, harnessOption{})
	id, corr, cause := uuid.New(), uuid.New(), uuid.New()
	data := quizData(90)
	res := h.publish(fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","subject":"quiz-1","source":"quiz-service",
		"correlation_id":%q,"causation_id":%q,"data":%s}`, id, corr, cause, data))
	if res.status != 201 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if loc := res.header.Get("Location"); loc != "/v1/events/"+id.String() {
		t.Fatalf("Location %q", loc)
	}
	e := cloudEvent(t, res.body)
	if e.ID() != id.String() || e.Type() != "quiz.submitted" || e.Subject() != "quiz-1" || e.Source() != "quiz-service" {
		t.Fatalf("event %v", e)
	}
	ext := e.Extensions()
	if ext["correlationid"] != corr.String() || ext["causationid"] != cause.String() || ext["streamversion"] != "1" || ext["position"] == nil {
		t.Fatalf("extensions %v", ext)
	}
	if !bytes.Equal(e.Data(), []byte(data)) || !bytes.Contains(res.body, []byte(`"data":`+data+`}`)) {
		t.Fatalf("data not verbatim:\n sent %s\n got  %s\n body %s", data, e.Data(), res.body)
	}
	if n := h.rows(); n != 1 {
		t.Fatalf("%d rows stored, want 1", n)
	}

	// Reading it back gives the same bytes.
	got := h.get("/v1/events/" + id.String())
	if got.status != 200 || !bytes.Equal(got.body, res.body) {
		t.Fatalf("GET: %d\n%s\nwant\n%s", got.status, got.body, res.body)
	}
}

func TestPublishTheSameIDAgainAnswers200WithTheOriginal(t *testing.T) {
	h := newHarness(t, harnessOption{})
	id := uuid.New()
	first := h.publish(fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","data":%s}`, id, quizData(1)))
	if first.status != 201 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	// A retry, even with other data, stores nothing and answers the original.
	again := h.publish(fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","data":%s}`, id, quizData(2)))
	if again.status != 200 {
		t.Fatalf("retry: %d %s", again.status, again.body)
	}
	if !bytes.Equal(cloudEvent(t, again.body).Data(), cloudEvent(t, first.body).Data()) {
		t.Fatalf("retry answered %s, want the original %s", again.body, first.body)
	}
	if n := h.rows(); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

func TestPublishBatch(t *testing.T) {
	h := newHarness(t, harnessOption{})
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	datas := []string{quizData(1), quizData(2), quizData(3)}
	batch := func(n int) string {
		var parts []string
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf(`{"id":%q,"type":"quiz.submitted","subject":"quiz-b","data":%s}`, ids[i], datas[i]))
		}
		return `{"events":[` + strings.Join(parts, ",") + `]}`
	}

	res := h.publish(batch(2))
	if res.status != 201 {
		t.Fatalf("batch: %d %s", res.status, res.body)
	}
	events, raws, _ := eventList(t, res.body)
	if len(events) != 2 {
		t.Fatalf("%d events answered", len(events))
	}
	for i, e := range events {
		if e.ID() != ids[i].String() || !bytes.Equal(e.Data(), []byte(datas[i])) || e.Extensions()["streamversion"] != fmt.Sprint(i+1) {
			t.Fatalf("event %d: %s", i, raws[i])
		}
	}

	// The same batch again: every id is stored, so 200 and the originals.
	if res := h.publish(batch(2)); res.status != 200 {
		t.Fatalf("repeated batch: %d %s", res.status, res.body)
	}
	// One more event with the two stored ones: 201, as something is new.
	res = h.publish(batch(3))
	if res.status != 201 {
		t.Fatalf("batch with one new: %d %s", res.status, res.body)
	}
	if events, _, _ := eventList(t, res.body); len(events) != 3 || events[2].Extensions()["streamversion"] != "3" {
		t.Fatalf("answer %s", res.body)
	}
	if n := h.rows(); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

func TestPublishHonoursTraceparent(t *testing.T) {
	h := newHarness(t, harnessOption{})
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const state = "congo=t61rcWkgMzE"
	res := h.do(request{method: "POST", path: "/v1/events", token: publishSecret, contentType: "application/json",
		body: `{"type":"quiz.submitted","data":` + quizData(5) + `}`, header: map[string]string{"traceparent": parent, "tracestate": state}})
	if res.status != 201 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	e := cloudEvent(t, res.body)
	if e.Extensions()["traceparent"] != parent || e.Extensions()["tracestate"] != state {
		t.Fatalf("extensions %v", e.Extensions())
	}
	var stored string
	if err := h.direct.QueryRow(context.Background(), "SELECT traceparent FROM event_store").Scan(&stored); err != nil || stored != parent {
		t.Fatalf("stored traceparent %q, %v", stored, err)
	}
}

// TestPublishUnknownTypeIsLossless: a bus that lets unknown types through
// (a gateway) stores and answers their data byte for byte (G6).
func TestPublishUnknownTypeIsLossless(t *testing.T) {
	h := newHarness(t, harnessOption{bus: eventbus.Config{AllowUnknownTypes: true}})
	data := `[1,  {"z":"<\u2028>", "a" :null}, "\ud83d\ude00" ]`
	res := h.publish(`{"type":"lesson.archived.v2","data":` + data + `}`)
	if res.status != 201 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if e := cloudEvent(t, res.body); !bytes.Equal(e.Data(), []byte(data)) {
		t.Fatalf("data %s, want %s", e.Data(), data)
	}
}

// Each failing status: the answer is a problem, and nothing is stored.

func TestPublishBadRequestAnswers400(t *testing.T) {
	h := newHarness(t, harnessOption{})
	ok := quizData(1)
	id := uuid.New()
	for _, tc := range []struct {
		name, body, typ, field string
	}{
		{"malformed JSON", `{"type":"quiz.submitted",`, httpapi.ProblemMalformedRequest, ""},
		{"syntax error", `{"type" "quiz.submitted"}`, httpapi.ProblemMalformedRequest, ""},
		{"empty body", ` `, httpapi.ProblemMalformedRequest, ""},
		{"not an object", `[{"type":"quiz.submitted"}]`, httpapi.ProblemMalformedRequest, ""},
		{"two values", `{"type":"quiz.submitted","data":` + ok + `} {}`, httpapi.ProblemMalformedRequest, ""},
		{"missing type", `{"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "type"},
		{"missing data", `{"type":"quiz.submitted"}`, httpapi.ProblemInvalidEvent, "data"},
		{"null data", `{"type":"quiz.submitted","data":null}`, httpapi.ProblemInvalidEvent, "data"},
		{"bad type name", `{"type":"quiz submitted!","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "type"},
		{"type not a string", `{"type":7,"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "type"},
		{"bad id", `{"id":"not-a-uuid","type":"quiz.submitted","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "id"},
		{"nil id", `{"id":"00000000-0000-0000-0000-000000000000","type":"quiz.submitted","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "id"},
		{"bad correlation id", `{"correlation_id":"x","type":"quiz.submitted","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "correlation_id"},
		{"bad causation id", `{"causation_id":"1234","type":"quiz.submitted","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "causation_id"},
		{"unknown field", `{"type":"quiz.submitted","expectedVersion":1,"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "expectedVersion"},
		{"expected_version without subject", `{"type":"quiz.submitted","expected_version":0,"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "expected_version"},
		{"negative expected_version", `{"type":"quiz.submitted","subject":"s","expected_version":-1,"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "expected_version"},
		{"expected_version not an integer", `{"type":"quiz.submitted","subject":"s","expected_version":1.5,"data":` + ok + `}`, httpapi.ProblemInvalidEvent, "expected_version"},
		{"subject too long", `{"type":"quiz.submitted","subject":"` + strings.Repeat("s", 513) + `","data":` + ok + `}`, httpapi.ProblemInvalidEvent, "subject"},
		{"empty batch", `{"events":[]}`, httpapi.ProblemMalformedRequest, "events"},
		{"batch with fields beside it", `{"type":"quiz.submitted","events":[{"type":"quiz.submitted","data":` + ok + `}]}`, httpapi.ProblemMalformedRequest, "events"},
		{"nested batch", `{"events":[{"events":[]}]}`, httpapi.ProblemMalformedRequest, "events"},
		{"bad event in batch", `{"events":[{"type":"quiz.submitted","data":` + ok + `},{"type":"quiz.submitted"}]}`, httpapi.ProblemInvalidEvent, "data"},
		{"same id twice in batch", fmt.Sprintf(`{"events":[{"id":%q,"type":"quiz.submitted","data":%s},{"id":%q,"type":"quiz.submitted","data":%s}]}`, id, ok, id, ok), httpapi.ProblemInvalidEvent, "id"},
		{"invalid UTF-8", "{\"type\":\"quiz.submitted\",\"data\":{\"x\":\"\xff\"}}", httpapi.ProblemMalformedRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.publish(tc.body).problem(t, 400, tc.typ)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored by bad requests", n)
	}
}

func TestPublishBatchReportsTheEventAtFault(t *testing.T) {
	h := newHarness(t, harnessOption{})
	p := h.publish(`{"events":[{"type":"quiz.submitted","data":`+quizData(1)+`},{"type":"quiz.submitted","id":"nope","data":{}}]}`).
		problem(t, 400, httpapi.ProblemInvalidEvent)
	if p.Event == nil || *p.Event != 1 || p.Field != "id" || !strings.Contains(p.Detail, "events[1]") {
		t.Fatalf("problem %+v", p)
	}
}

func TestPublishWithoutValidTokenAnswers401(t *testing.T) {
	h := newHarness(t, harnessOption{})
	body := `{"type":"quiz.submitted","data":` + quizData(1) + `}`
	for _, tc := range []struct{ name, authorization string }{
		{"no header", ""},
		{"unknown token", "Bearer not-a-configured-token-123"},
		{"another scheme", "Basic " + publishSecret},
		{"no token", "Bearer "},
		{"token with spaces", "Bearer " + publishSecret + " x"},
		{"prefix of a token", "Bearer " + publishSecret[:len(publishSecret)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request{method: "POST", path: "/v1/events", contentType: "application/json", body: body}
			if tc.authorization != "" {
				req.header = map[string]string{"Authorization": tc.authorization}
			}
			res := h.do(req)
			res.problem(t, 401, httpapi.ProblemUnauthorized)
			if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored without a token", n)
	}
}

func TestTokenWithoutTheScopeAnswers403(t *testing.T) {
	h := newHarness(t, harnessOption{})
	// A read token cannot publish.
	res := h.do(request{method: "POST", path: "/v1/events", token: readSecret, contentType: "application/json",
		body: `{"type":"quiz.submitted","data":` + quizData(1) + `}`})
	p := res.problem(t, 403, httpapi.ProblemForbidden)
	if !strings.Contains(p.Detail, "publish") || !strings.Contains(res.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("problem %+v, WWW-Authenticate %q", p, res.header.Get("WWW-Authenticate"))
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored with a read token", n)
	}
	// A publish token cannot read; an admin token can do both.
	for _, path := range []string{"/v1/events", "/v1/events/" + uuid.NewString(), "/v1/streams/s", "/v1/status"} {
		h.do(request{method: "GET", path: path, token: publishSecret}).problem(t, 403, httpapi.ProblemForbidden)
		if res := h.do(request{method: "GET", path: path, token: adminSecret}); res.status == 401 || res.status == 403 {
			t.Fatalf("admin GET %s: %d %s", path, res.status, res.body)
		}
	}
	if res := h.do(request{method: "POST", path: "/v1/events", token: adminSecret, contentType: "application/json",
		body: `{"type":"quiz.submitted","data":` + quizData(1) + `}`}); res.status != 201 {
		t.Fatalf("admin publish: %d %s", res.status, res.body)
	}
	// The read routes need a token too.
	h.do(request{method: "GET", path: "/v1/events"}).problem(t, 401, httpapi.ProblemUnauthorized)
}

func TestVersionConflictAnswers409(t *testing.T) {
	h := newHarness(t, harnessOption{})
	if res := h.publish(`{"type":"quiz.submitted","subject":"quiz-9","expected_version":0,"data":` + quizData(1) + `}`); res.status != 201 {
		t.Fatalf("first: %d %s", res.status, res.body)
	}
	p := h.publish(`{"type":"quiz.submitted","subject":"quiz-9","expected_version":0,"data":`+quizData(2)+`}`).
		problem(t, 409, httpapi.ProblemVersionConflict)
	if !strings.Contains(p.Detail, "version 1") {
		t.Fatalf("detail %q does not say the stream's version", p.Detail)
	}
	// In a batch, a conflict on the second event stores nothing of it.
	h.publish(`{"events":[{"type":"quiz.submitted","subject":"quiz-10","data":`+quizData(3)+`},
		{"type":"quiz.submitted","subject":"quiz-9","expected_version":5,"data":`+quizData(4)+`}]}`).
		problem(t, 409, httpapi.ProblemVersionConflict)
	if n := h.rows(); n != 1 {
		t.Fatalf("%d rows, want the first event only", n)
	}
}

func TestTooLargeAnswers413(t *testing.T) {
	h := newHarness(t, harnessOption{})
	// A body over the 1 MiB default.
	big := `{"type":"quiz.submitted","data":{"pad":"` + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `"}}`
	h.publish(big).problem(t, 413, httpapi.ProblemTooLarge)
	// A body within the limit, with data over the bus's per-event limit.
	data := fmt.Sprintf(`{"quiz_id":%q,"learner_id":%q,"score_raw":1,"pad":"%s"}`, uuid.New(), uuid.New(), strings.Repeat("x", eventbus.DefaultMaxDataBytes))
	h.publish(`{"type":"quiz.submitted","data":`+data+`}`).problem(t, 413, httpapi.ProblemTooLarge)
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

func TestNotJSONAnswers415(t *testing.T) {
	h := newHarness(t, harnessOption{})
	body := `{"type":"quiz.submitted","data":` + quizData(1) + `}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/xml"} {
		t.Run(ct, func(t *testing.T) {
			h.do(request{method: "POST", path: "/v1/events", token: publishSecret, contentType: ct, body: body}).
				problem(t, 415, httpapi.ProblemUnsupportedMediaType)
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
	// JSON media types with parameters and +json suffixes are accepted.
	for _, ct := range []string{"application/json; charset=UTF-8", "application/vnd.edupulse+json"} {
		if res := h.do(request{method: "POST", path: "/v1/events", token: publishSecret, contentType: ct,
			body: `{"type":"quiz.submitted","data":` + quizData(1) + `}`}); res.status != 201 {
			t.Fatalf("%s: %d %s", ct, res.status, res.body)
		}
	}
}

func TestDataThatDoesNotFitAnswers422(t *testing.T) {
	h := newHarness(t, harnessOption{})
	q, l := uuid.New(), uuid.New()
	for _, tc := range []struct {
		name, body, typ, field string
	}{
		{"unknown type", `{"type":"quiz.graded","data":{}}`, httpapi.ProblemUnknownType, "type"},
		{"missing field", fmt.Sprintf(`{"type":"quiz.submitted","data":{"quiz_id":%q,"score_raw":1}}`, q), httpapi.ProblemInvalidData, "data.learner_id"},
		{"wrong field type", fmt.Sprintf(`{"type":"quiz.submitted","data":{"quiz_id":%q,"learner_id":%q,"score_raw":"high"}}`, q, l), httpapi.ProblemInvalidData, "data.score_raw"},
		{"nil uuid", fmt.Sprintf(`{"type":"quiz.submitted","data":{"quiz_id":%q,"learner_id":"00000000-0000-0000-0000-000000000000","score_raw":1}}`, q), httpapi.ProblemInvalidData, "data.learner_id"},
		{"not an object", `{"type":"quiz.submitted","data":[1,2]}`, httpapi.ProblemInvalidData, "data"},
		{"empty title", fmt.Sprintf(`{"type":"lesson.published","data":{"lesson_id":%q,"teacher_id":%q,"title":"  "}}`, q, l), httpapi.ProblemInvalidData, "data.title"},
		{"bad event in batch", `{"events":[{"type":"quiz.submitted","data":` + quizData(1) + `},{"type":"badge.awarded","data":{}}]}`, httpapi.ProblemInvalidData, "data.badge_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.publish(tc.body).problem(t, 422, tc.typ)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
		})
	}
	if n := h.rows(); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

func TestStoreDownAnswers503WithRetryAfter(t *testing.T) {
	base, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, base.Host)
	// The store's URL carries a password that must not leak: the server's
	// own, or one the test server (trust) ignores.
	dbPassword, ok := base.User.Password()
	if !ok {
		dbPassword = "db-PASSWORD-7e1d"
	}
	h := newHarness(t, harnessOption{dbURL: func(schemaURL string) string {
		u, err := url.Parse(testenv.WithHost(schemaURL, proxy.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), dbPassword)
		return u.String()
	}})
	if res := h.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`); res.status != 201 {
		t.Fatalf("before the fault: %d %s", res.status, res.body)
	}
	proxy.Down()
	res := h.publish(`{"type":"quiz.submitted","data":` + quizData(2) + `}`)
	p := res.problem(t, 503, httpapi.ProblemUnavailable)
	if res.header.Get("Retry-After") != "5" {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
	if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(p.Detail, "postgres") {
		t.Fatalf("the detail shows the store's address: %q", p.Detail)
	}
	// The server cannot know that nothing was stored: the connection may
	// have failed after the commit (test/chaos saw it happen). The client
	// is told how to retry safely instead.
	if strings.Contains(p.Detail, "nothing was stored") || !strings.Contains(p.Detail, "same ids") {
		t.Fatalf("the detail must not promise that nothing was stored, and must say to retry with the same ids: %q", p.Detail)
	}
	h.get("/v1/events").problem(t, 503, httpapi.ProblemUnavailable)
	ready := h.do(request{method: "GET", path: "/readyz"})
	if rp := ready.problem(t, 503, httpapi.ProblemNotReady); rp.Checks["store"] != "failing" {
		t.Fatalf("readyz %s", ready.body)
	}
	if n := h.rows(); n != 1 { // counted on a direct connection
		t.Fatalf("%d rows, want only the event from before the fault", n)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"status":503`) || !strings.Contains(logs, "store unavailable") {
		t.Fatalf("the log does not record the failure:\n%s", logs)
	}
	if strings.Contains(logs, dbPassword) || bytes.Contains(res.body, []byte(dbPassword)) {
		t.Fatalf("the database password leaked:\n%s", logs)
	}
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	// The store recovers by itself once the database is back.
	if res := h.publish(`{"type":"quiz.submitted","data":` + quizData(3) + `}`); res.status != 201 {
		t.Fatalf("after the fault: %d %s", res.status, res.body)
	}
}
