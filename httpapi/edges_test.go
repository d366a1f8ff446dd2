package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/httpapi"
)

// TestAdminOnlyRoutesSayAdminOnce: a token without the admin scope on an
// admin route is told the route needs admin, not "admin (or admin)".
func TestAdminOnlyRoutesSayAdminOnce(t *testing.T) {
	h := newHarness(t, harnessOption{})
	p := h.do(request{method: "POST", path: "/v1/replay?dry_run=true", token: readSecret}).problem(t, 403, httpapi.ProblemForbidden)
	if !strings.HasSuffix(p.Detail, "this route needs admin") || strings.Contains(p.Detail, "(or admin)") {
		t.Errorf("403 detail %q, want it to end with \"this route needs admin\"", p.Detail)
	}
	p = h.do(request{method: "GET", path: "/v1/events", token: publishSecret}).problem(t, 403, httpapi.ProblemForbidden)
	if !strings.HasSuffix(p.Detail, "this route needs read (or admin)") {
		t.Errorf("403 detail %q, want it to end with \"this route needs read (or admin)\"", p.Detail)
	}
}

// TestUnmatchedRoutesLogTheirBytes: the access log records the bytes of
// the problem answered to a request that matches no route.
func TestUnmatchedRoutesLogTheirBytes(t *testing.T) {
	h := newHarness(t, harnessOption{})
	for _, req := range []request{
		{method: "GET", path: "/v1/nothing", token: readSecret, header: map[string]string{"X-Request-ID": "unmatched-404"}},
		{method: "DELETE", path: "/v1/events", token: adminSecret, header: map[string]string{"X-Request-ID": "unmatched-405"}},
	} {
		res := h.do(req)
		if res.status != 404 && res.status != 405 {
			t.Fatalf("%s %s: %d", req.method, req.path, res.status)
		}
		line := accessLine(t, h.logs.String(), req.header["X-Request-ID"])
		if got, ok := line["bytes"].(float64); !ok || int(got) != len(res.body) {
			t.Errorf("%s %s: the access log says %v bytes, the answer had %d: %v", req.method, req.path, line["bytes"], len(res.body), line)
		}
	}
}

// accessLine returns the access log line of the request with id.
func accessLine(t *testing.T, logs, id string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "http request" && line["request_id"] == id {
			return line
		}
	}
	t.Fatalf("no access log line for request %s:\n%s", id, logs)
	return nil
}

// TestRelativeTimesAsTheCLITakesThem: since= and until= take what --since
// and --until of the CLI take, durations before now included; what neither
// takes stays a 400 that names the parameter.
func TestRelativeTimesAsTheCLITakesThem(t *testing.T) {
	h := newHarness(t, harnessOption{})
	if res := h.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`); res.status != 201 {
		t.Fatalf("publish: %d %s", res.status, res.body)
	}
	for _, tc := range []struct {
		query string
		n     int
	}{
		{"since=15m", 1},
		{"since=24h&until=0s", 1},
		{"until=15m", 0},
		{"since=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), 1},
	} {
		res := h.get("/v1/events?" + tc.query)
		if res.status != 200 {
			t.Fatalf("%s: %d %s", tc.query, res.status, res.body)
		}
		if events, _, _ := eventList(t, res.body); len(events) != tc.n {
			t.Errorf("%s: %d events, want %d", tc.query, len(events), tc.n)
		}
	}
	for _, q := range []string{"since=yesterday", "until=-5m", "since=15x"} {
		name, _, _ := strings.Cut(q, "=")
		p := h.get("/v1/events?"+q).problem(t, 400, httpapi.ProblemInvalidParameter)
		if p.Field != name || !strings.HasPrefix(p.Detail, name+": ") || !strings.Contains(p.Detail, "duration") {
			t.Errorf("%s: problem %+v, want one that names %s and says what it takes", q, p, name)
		}
	}
}

// TestEmptyListsAreEmptyArrays: a list with nothing in it is [], never
// null, in every answer that holds one.
func TestEmptyListsAreEmptyArrays(t *testing.T) {
	h := newHarness(t, harnessOption{})
	for _, path := range []string{"/v1/events", "/v1/events?type=nothing.here", "/v1/streams/nothing-here"} {
		res := h.get(path)
		if res.status != 200 || !strings.Contains(string(res.body), `"events":[]`) || strings.Contains(string(res.body), "null") {
			t.Errorf("GET %s: %d %s; want an empty events list", path, res.status, res.body)
		}
	}
	res := h.do(request{method: "POST", path: "/v1/replay?dry_run=true&type=nothing.here", token: adminSecret})
	if res.status != 200 || !strings.Contains(string(res.body), `"events":[]`) {
		t.Errorf("replay dry run: %d %s; want an empty events list", res.status, res.body)
	}
	res = h.get("/v1/status")
	if res.status != 200 || strings.Contains(string(res.body), "null") {
		t.Errorf("GET /v1/status: %d %s; want no null", res.status, res.body)
	}
}
