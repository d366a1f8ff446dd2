package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

func parkedHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, harnessOption{config: func(c *httpapi.Config) {
		c.Parked = service.HTTPParked(c.Reader.(*postgres.Store), relay.DefaultName)
		c.Admin.RetryParked = service.HTTPAdmin(c.Reader.(*postgres.Store), nil, relay.DefaultName, "").RetryParked
	}})
	return h
}

// TestParkedListAndStatus: GET /v1/parked (read scope) lists the parked
// events ([] when none), and GET /v1/status counts them and is unhealthy.
func TestParkedListAndStatus(t *testing.T) {
	h := parkedHarness(t)
	res := h.get("/v1/parked")
	if res.status != 200 || string(res.body) != "[]" {
		t.Fatalf("GET /v1/parked with nothing parked = %d %s; want 200 []", res.status, res.body)
	}
	h.do(request{method: "GET", path: "/v1/parked"}).problem(t, 401, httpapi.ProblemUnauthorized)
	h.do(request{method: "GET", path: "/v1/parked", token: publishSecret}).problem(t, 403, httpapi.ProblemForbidden)

	e := store.ParkedEvent{Partition: store.Partition{Relay: relay.DefaultName}, EventID: uuid.Must(uuid.NewV7()), Position: 42,
		Type: "quiz.submitted", Stream: "quiz-1", StreamVersion: 3, Reason: relay.ReasonRefused + "too big", Attempts: 1}
	if err := h.store.Park(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	res = h.get("/v1/parked")
	var list []map[string]any
	if err := json.Unmarshal(res.body, &list); err != nil || res.status != 200 || len(list) != 1 {
		t.Fatalf("GET /v1/parked = %d %s (%v); want one event", res.status, res.body, err)
	}
	got := list[0]
	for k, want := range map[string]any{"relay": "default", "partition": 0.0, "event_id": e.EventID.String(), "position": 42.0,
		"type": "quiz.submitted", "stream": "quiz-1", "stream_version": 3.0, "reason": e.Reason, "attempts": 1.0, "retry_requested": false} {
		if got[k] != want {
			t.Fatalf("parked event %s = %v, want %v (all: %s)", k, got[k], want, res.body)
		}
	}
	if got["parked_at"] == nil || got["last_attempt_at"] == nil {
		t.Fatalf("parked event lacks its times: %s", res.body)
	}

	var st struct {
		Parked  int  `json:"parked"`
		Healthy bool `json:"healthy"`
	}
	if err := json.Unmarshal(h.get("/v1/status").body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Parked != 1 || st.Healthy {
		t.Fatalf("status parked %d, healthy %v; want 1 and unhealthy", st.Parked, st.Healthy)
	}
}

// TestParkedRetryRequest: POST /v1/parked/retry (admin) marks events for the
// leading relay to retry; a body that is neither {"event_ids": [...]} nor
// {"all": true} is a 400 naming the field.
func TestParkedRetryRequest(t *testing.T) {
	h := parkedHarness(t)
	ctx := context.Background()
	p := store.Partition{Relay: relay.DefaultName}
	first := store.ParkedEvent{Partition: p, EventID: uuid.Must(uuid.NewV7()), Position: 10, Type: "t", Stream: "s", StreamVersion: 1, Reason: "refused", Attempts: 1}
	second := store.ParkedEvent{Partition: p, EventID: uuid.Must(uuid.NewV7()), Position: 11, Type: "t", Stream: "s", StreamVersion: 2, Reason: "behind"}
	other := store.ParkedEvent{Partition: p, EventID: uuid.Must(uuid.NewV7()), Position: 12, Type: "t", Reason: "refused", Attempts: 1}
	for _, e := range []store.ParkedEvent{first, second, other} {
		if err := h.store.Park(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	post := func(token, body string) response {
		return h.do(request{method: "POST", path: "/v1/parked/retry", token: token, contentType: "application/json", body: body})
	}
	post(readSecret, `{"all": true}`).problem(t, 403, httpapi.ProblemForbidden)
	for body, field := range map[string]string{
		``:                               "event_ids",
		`{}`:                             "event_ids",
		`{"all": false}`:                 "all",
		`{"all": true, "all": true}`:     "all",
		`{"all": "yes"}`:                 "all",
		`{"all": true, "event_ids": []}`: "all",
		`{"event_ids": []}`:              "event_ids",
		`{"event_ids": "x"}`:             "event_ids",
		`{"event_ids": ["nope"]}`:        "event_ids",
		`{"ids": ["` + first.EventID.String() + `"]}`: "ids",
		`[]`: "",
	} {
		prob := post(adminSecret, body).problem(t, 400, httpapi.ProblemMalformedRequest)
		if prob.Field != field {
			t.Fatalf("body %q: problem names field %q, want %q (%s)", body, prob.Field, field, prob.Detail)
		}
	}
	h.do(request{method: "POST", path: "/v1/parked/retry", token: adminSecret, contentType: "text/plain", body: `{"all": true}`}).
		problem(t, 415, httpapi.ProblemUnsupportedMediaType)
	post(adminSecret, `{"event_ids": ["`+uuid.NewString()+`"]}`).problem(t, 404, httpapi.ProblemNotFound)

	// Retrying the second event of a stream takes the first along.
	unknown := uuid.New()
	res := post(adminSecret, `{"event_ids": ["`+second.EventID.String()+`", "`+unknown.String()+`"]}`)
	var rr wire.RetryResult
	if err := json.Unmarshal(res.body, &rr); err != nil || res.status != 202 {
		t.Fatalf("retry = %d %s (%v); want 202", res.status, res.body, err)
	}
	if len(rr.Requested) != 2 || rr.Requested[0].EventID != first.EventID || rr.Requested[1].EventID != second.EventID ||
		!rr.Requested[0].RetryRequested || len(rr.NotParked) != 1 || rr.NotParked[0] != unknown {
		t.Fatalf("retry answered %s; want the stream's two events requested and the unknown id not parked", res.body)
	}
	res = post(adminSecret, `{"all": true}`)
	if err := json.Unmarshal(res.body, &rr); err != nil || res.status != 202 || len(rr.Requested) != 3 || rr.NotParked == nil {
		t.Fatalf("retry all = %d %s; want 202 with three events and not_parked []", res.status, res.body)
	}
}
