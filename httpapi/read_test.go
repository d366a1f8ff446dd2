package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/store"
)

func TestListEventsPagesInCommitOrderWithFilters(t *testing.T) {
	h := newHarness(t, harnessOption{})
	corr := uuid.New()
	var ids []string
	for i := 0; i < 5; i++ {
		typ, data := "quiz.submitted", quizData(i)
		if i%2 == 1 {
			typ = "badge.awarded"
			data = fmt.Sprintf(`{"badge_id":%q,"recipient_id":%q,"reason":"streak %d"}`, uuid.New(), uuid.New(), i)
		}
		extra := ""
		if i < 3 {
			extra = fmt.Sprintf(`,"correlation_id":%q`, corr)
		}
		res := h.publish(fmt.Sprintf(`{"type":%q,"subject":"s-%d"%s,"data":%s}`, typ, i%2, extra, data))
		if res.status != 201 {
			t.Fatalf("publish %d: %d %s", i, res.status, res.body)
		}
		ids = append(ids, cloudEvent(t, res.body).ID())
	}

	// Page through everything, two at a time.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		res := h.get("/v1/events?limit=2&after=" + url.QueryEscape(after))
		if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s", res.status, res.body)
		}
		events, _, obj := eventList(t, res.body)
		if err := json.Unmarshal(obj["next"], &after); err != nil {
			t.Fatalf("next: %s", obj["next"])
		}
		if len(events) == 0 {
			break
		}
		for _, e := range events {
			got = append(got, e.ID())
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("paged %v, want %v", got, ids)
	}

	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"type=badge.awarded", []int{1, 3}},
		{"type=badge.awarded&type=quiz.submitted", []int{0, 1, 2, 3, 4}},
		{"type=badge.awarded,lesson.published", []int{1, 3}},
		{"correlation_id=" + corr.String(), []int{0, 1, 2}},
		{"subject=s-0", []int{0, 2, 4}},
		{"subject=s-1&type=quiz.submitted", nil},
		{"since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&correlation_id=" + corr.String(), []int{0, 1, 2}},
		{"until=2000-01-01T00:00:00Z", nil},
		{"type=&subject=", []int{0, 1, 2, 3, 4}}, // empty values are absent
	} {
		res := h.get("/v1/events?" + tc.query)
		if res.status != 200 {
			t.Fatalf("%s: %d %s", tc.query, res.status, res.body)
		}
		events, _, _ := eventList(t, res.body)
		var gotIDs, wantIDs []string
		for _, e := range events {
			gotIDs = append(gotIDs, e.ID())
		}
		for _, i := range tc.want {
			wantIDs = append(wantIDs, ids[i])
		}
		if strings.Join(gotIDs, ",") != strings.Join(wantIDs, ",") {
			t.Errorf("%s: got %v, want %v", tc.query, gotIDs, wantIDs)
		}
	}
}

func TestListEventsByPosition(t *testing.T) {
	h := newHarness(t, harnessOption{})
	var ids, positions []string
	for i := 0; i < 5; i++ {
		res := h.publish(`{"type":"quiz.submitted","data":` + quizData(i) + `}`)
		if res.status != 201 {
			t.Fatalf("publish %d: %d %s", i, res.status, res.body)
		}
		e := cloudEvent(t, res.body)
		ids = append(ids, e.ID())
		positions = append(positions, fmt.Sprint(e.Extensions()["position"]))
	}
	for _, tc := range []struct {
		query string
		want  []int
	}{
		{"from_position=" + positions[1] + "&to_position=" + positions[3], []int{1, 2, 3}},
		{"from_position=" + positions[3], []int{3, 4}},
		{"to_position=" + positions[1], []int{0, 1}},
		{"from_position=" + positions[2] + "&to_position=" + positions[2], []int{2}},
		{"from_position=0&to_position=0", []int{0, 1, 2, 3, 4}}, // 0: no bound
	} {
		events, _, _ := eventList(t, h.get("/v1/events?"+tc.query).body)
		var got, want []string
		for _, e := range events {
			got = append(got, e.ID())
		}
		for _, i := range tc.want {
			want = append(want, ids[i])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got %v, want %v", tc.query, got, want)
		}
	}
	// A replay selects by position alike.
	res := h.do(request{method: "POST", path: "/v1/replay?dry_run=true&from_position=" + positions[1] + "&to_position=" + positions[3], token: adminSecret})
	if _, _, obj := eventList(t, res.body); res.status != 200 || string(obj["total"]) != "3" {
		t.Fatalf("replay dry run by position: %d %s", res.status, res.body)
	}
	h.do(request{method: "POST", path: "/v1/replay?dry_run=true&to_position=-3", token: adminSecret}).problem(t, 400, httpapi.ProblemInvalidParameter)
}

func TestListEventsRejectsBadParameters(t *testing.T) {
	h := newHarness(t, harnessOption{})
	for _, tc := range []struct{ query, field string }{
		{"limit=-1", "limit"},
		{"limit=0", "limit"},
		{"limit=10001", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"limit=ten", "limit"},
		{"limit=1&limit=2", "limit"},
		{"after=not-a-cursor", "after"},
		{"after=" + store.Cursor{Order: 1, Position: 1}.String() + "x", "after"},
		{"type=quiz+submitted!", "type"},
		{"correlation_id=42", "correlation_id"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"},
		{"subject=" + strings.Repeat("s", 513), "subject"},
		{"subject=%ff", "subject"},
		{"correlationId=" + uuid.NewString(), "correlationId"},
		{"limit=%zz", ""},
		{"from_position=-1", "from_position"},
		{"from_position=1.5", "from_position"},
		{"to_position=last", "to_position"},
		{"to_position=99999999999999999999", "to_position"},
		{"from_position=5&to_position=4", "to_position"},
	} {
		t.Run(tc.query[:min(len(tc.query), 40)], func(t *testing.T) {
			p := h.get("/v1/events?"+tc.query).problem(t, 400, httpapi.ProblemInvalidParameter)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", p.Field, tc.field, p.Detail)
			}
		})
	}
}

func TestGetEvent(t *testing.T) {
	h := newHarness(t, harnessOption{})
	missing := uuid.New()
	p := h.get("/v1/events/"+missing.String()).problem(t, 404, httpapi.ProblemNotFound)
	if !strings.Contains(p.Detail, missing.String()) {
		t.Fatalf("detail %q", p.Detail)
	}
	h.get("/v1/events/not-a-uuid").problem(t, 400, httpapi.ProblemInvalidParameter)
}

func TestReadStreamInVersionOrder(t *testing.T) {
	h := newHarness(t, harnessOption{})
	const subject = "course/42/quiz 7" // slashes and a space: the path takes them
	for i := 0; i < 4; i++ {
		if res := h.publish(fmt.Sprintf(`{"type":"quiz.submitted","subject":%q,"data":%s}`, subject, quizData(i))); res.status != 201 {
			t.Fatalf("%d %s", res.status, res.body)
		}
	}
	h.publish(`{"type":"quiz.submitted","subject":"other","data":` + quizData(9) + `}`)
	path := "/v1/streams/" + strings.ReplaceAll(url.PathEscape(subject), "%2F", "/")
	res := h.get(path + "?from=2&limit=2")
	if res.status != 200 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	events, _, obj := eventList(t, res.body)
	if len(events) != 2 || events[0].Extensions()["streamversion"] != "2" || events[1].Extensions()["streamversion"] != "3" ||
		events[0].Subject() != subject || string(obj["next_version"]) != "4" {
		t.Fatalf("answer %s", res.body)
	}
	res = h.get("/v1/streams/nothing-here")
	if _, _, obj := eventList(t, res.body); res.status != 200 || string(obj["next_version"]) != "1" {
		t.Fatalf("empty stream: %d %s", res.status, res.body)
	}
	h.get(path+"?from=0").problem(t, 400, httpapi.ProblemInvalidParameter)
	h.get(path+"?limit=x").problem(t, 400, httpapi.ProblemInvalidParameter)
	h.get(path+"?after=x").problem(t, 400, httpapi.ProblemInvalidParameter)
}

func TestStatus(t *testing.T) {
	h := newHarness(t, harnessOption{})
	h.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`)
	res := h.get("/v1/status")
	var st struct {
		Relay   string  `json:"relay"`
		Events  int64   `json:"events"`
		Backlog int64   `json:"backlog"`
		Lag     float64 `json:"lag"`
		Healthy bool    `json:"healthy"`
	}
	if err := json.Unmarshal(res.body, &st); err != nil || res.status != 200 {
		t.Fatalf("%d %s: %v", res.status, res.body, err)
	}
	// No relay runs in this test: the event waits, and the status says so.
	if st.Relay != "default" || st.Events != 1 || st.Backlog != 1 || st.Healthy {
		t.Fatalf("status %+v", st)
	}

	unconfigured := newHarness(t, harnessOption{config: func(c *httpapi.Config) { c.Status = nil }})
	unconfigured.get("/v1/status").problem(t, 501, httpapi.ProblemNotImplemented)
}

func TestOpenRoutesNeedNoToken(t *testing.T) {
	h := newHarness(t, harnessOption{})
	if res := h.do(request{method: "GET", path: "/healthz"}); res.status != 200 || string(res.body) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", res.status, res.body)
	}
	if res := h.do(request{method: "GET", path: "/readyz"}); res.status != 200 || !strings.Contains(string(res.body), `"store":"ok"`) {
		t.Fatalf("readyz: %d %s", res.status, res.body)
	}
	h.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`)
	h.publish(`{"type":"quiz.submitted"}`)
	res := h.do(request{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`eventbus_http_requests_total{code="201",method="POST",route="/v1/events"} 1`,
		`eventbus_http_requests_total{code="400",method="POST",route="/v1/events"} 1`,
		`eventbus_http_requests_total{code="200",method="GET",route="/readyz"} 1`,
		`eventbus_http_request_duration_seconds_count{method="POST",route="/v1/events"} 2`,
		`eventbus_http_events_total{outcome="stored"} 1`,
	} {
		if !strings.Contains(string(res.body), want) {
			t.Errorf("metrics lack %s:\n%s", want, res.body)
		}
	}
}

func TestUnmatchedRoutesAnswerProblems(t *testing.T) {
	h := newHarness(t, harnessOption{})
	h.get("/v1/nothing").problem(t, 404, httpapi.ProblemNotFound)
	res := h.do(request{method: "DELETE", path: "/v1/events", token: adminSecret})
	res.problem(t, 405, httpapi.ProblemMethodNotAllowed)
	if allow := res.header.Get("Allow"); !strings.Contains(allow, "POST") || !strings.Contains(allow, "GET") {
		t.Fatalf("Allow %q", allow)
	}
	if res := h.do(request{method: "GET", path: "/metrics"}); !strings.Contains(string(res.body), `route="unmatched"`) {
		t.Fatalf("unmatched requests are not counted:\n%s", res.body)
	}
}

func TestPanicAnswers500AndIsLogged(t *testing.T) {
	h := newHarness(t, harnessOption{config: func(c *httpapi.Config) {
		c.Status = func(ctx context.Context) (wire.Status, error) { panic("status exploded") }
	}})
	res := h.get("/v1/status")
	p := res.problem(t, 500, httpapi.ProblemInternal)
	if strings.Contains(p.Detail, "exploded") {
		t.Fatalf("the panic shows in the answer: %q", p.Detail)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "status exploded") || !strings.Contains(logs, p.RequestID) || !strings.Contains(logs, `"status":500`) {
		t.Fatalf("the panic is not logged with its request ID:\n%s", logs)
	}
	// The server goes on.
	if res := h.do(request{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Fatalf("after the panic: %d", res.status)
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t, harnessOption{})
	res := h.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": "trace-me.42"}})
	if res.header.Get("X-Request-ID") != "trace-me.42" {
		t.Fatalf("X-Request-ID %q", res.header.Get("X-Request-ID"))
	}
	if !strings.Contains(h.logs.String(), `"request_id":"trace-me.42"`) {
		t.Fatalf("the log lacks the request ID:\n%s", h.logs.String())
	}
	for _, given := range []string{"", "has spaces", strings.Repeat("x", 129), "quote\"s"} {
		res := h.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": given}})
		id := res.header.Get("X-Request-ID")
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("given %q, answered %q: want a generated UUID", given, id)
		}
	}
}

func TestAuthOff(t *testing.T) {
	h := newHarness(t, harnessOption{noAuth: true})
	res := h.do(request{method: "POST", path: "/v1/events", contentType: "application/json", body: `{"type":"quiz.submitted","data":` + quizData(1) + `}`})
	if res.status != 201 {
		t.Fatalf("publish without auth: %d %s", res.status, res.body)
	}
	if res := h.do(request{method: "GET", path: "/v1/events"}); res.status != 200 {
		t.Fatalf("read without auth: %d %s", res.status, res.body)
	}
}

// TestSecretsStayOutOfLogsAndAnswers sends every token, right and wrong, in
// every place a careless server might echo it, and greps what came out.
func TestSecretsStayOutOfLogsAndAnswers(t *testing.T) {
	h := newHarness(t, harnessOption{})
	const wrongSecret = "wrong-SECRET-0b9e3f1d7c"
	var answers strings.Builder
	record := func(res response) {
		answers.Write(res.body)
		for k, vs := range res.header {
			answers.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
	}
	body := `{"type":"quiz.submitted","data":` + quizData(1) + `}`
	for _, secret := range []string{publishSecret, readSecret, adminSecret, wrongSecret} {
		for _, path := range []string{"/v1/events", "/v1/events/" + uuid.NewString(), "/v1/status", "/v1/replay", "/nowhere"} {
			record(h.do(request{method: "GET", path: path, token: secret}))
			record(h.do(request{method: "POST", path: path, token: secret, contentType: "application/json", body: body}))
		}
		record(h.do(request{method: "POST", path: "/v1/events", contentType: "application/json", body: body,
			header: map[string]string{"Authorization": "Token " + secret}}))
		record(h.do(request{method: "POST", path: "/v1/events", contentType: "application/json", body: body,
			header: map[string]string{"Authorization": "Bearer " + secret + " extra"}}))
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"token":"producer"`) {
		t.Fatalf("the log does not name the token used:\n%s", logs)
	}
	for _, secret := range []string{publishSecret, readSecret, adminSecret, wrongSecret, "SECRET", "Bearer", "Authorization"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
		// Answers may explain the header ("Authorization: Bearer <token>").
		if strings.Contains(answers.String(), secret) && secret != "Bearer" && secret != "Authorization" {
			t.Errorf("an answer contains %q", secret)
		}
	}
}
