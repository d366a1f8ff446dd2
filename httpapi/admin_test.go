package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestAdminRoutesAnswer501UntilConfigured(t *testing.T) {
	h := newHarness(t, harnessOption{})
	for _, r := range []request{
		{method: "POST", path: "/v1/replay?all=true"},
		{method: "GET", path: "/v1/dead-letters/grading"},
		{method: "POST", path: "/v1/dead-letters/grading/requeue"},
	} {
		// The scope is checked first: a read token learns nothing more.
		r.token = readSecret
		h.do(r).problem(t, 403, httpapi.ProblemForbidden)
		r.token = adminSecret
		h.do(r).problem(t, 501, httpapi.ProblemNotImplemented)
	}
	// A dry run only reads the store: it needs no replay func.
	if res := h.do(request{method: "POST", path: "/v1/replay?dry_run=true&all=true", token: adminSecret}); res.status != 200 {
		t.Fatalf("dry run: %d %s", res.status, res.body)
	}
}

// withBroker opens the shared RabbitMQ and wires the admin operations to it.
func withBroker(t *testing.T) (*rabbitmq.Broker, harnessOption) {
	t.Helper()
	url := testenv.AMQPURL()
	testenv.Need(t, "RabbitMQ", url)
	b, err := rabbitmq.Open(testenv.Context(t, 30*time.Second), url, rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, harnessOption{config: func(c *httpapi.Config) {
		st := c.Reader.(*postgres.Store)
		c.Admin = service.HTTPAdmin(st, b, relay.DefaultName, "")
	}}
}

func declareQueue(t *testing.T, b broker.Broker, name string) {
	t.Helper()
	ctx := testenv.Context(t, 10*time.Second)
	if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.DeleteQueue(context.Background(), name) })
}

func queueDepth(t *testing.T, b broker.Broker, name string) int {
	t.Helper()
	info, err := b.InspectQueue(testenv.Context(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

func TestReplayThroughTheAPI(t *testing.T) {
	b, opt := withBroker(t)
	h := newHarness(t, opt)
	for i := 0; i < 3; i++ {
		h.publish(`{"type":"quiz.submitted","data":` + quizData(i) + `}`)
	}
	h.publish(`{"type":"badge.awarded","data":{"badge_id":"0190d1e2-0000-7000-8000-000000000001","recipient_id":"0190d1e2-0000-7000-8000-000000000002","reason":"r"}}`)
	q := testenv.Name("httpapi_replay")
	declareQueue(t, b, q)

	res := h.do(request{method: "POST", path: "/v1/replay?type=quiz.submitted&dry_run=true&queue=" + q, token: adminSecret})
	events, _, obj := eventList(t, res.body)
	if res.status != 200 || len(events) != 3 || string(obj["total"]) != "3" || string(obj["dry_run"]) != "true" {
		t.Fatalf("dry run: %d %s", res.status, res.body)
	}
	if n := queueDepth(t, b, q); n != 0 {
		t.Fatalf("a dry run sent %d messages", n)
	}

	res = h.do(request{method: "POST", path: "/v1/replay?type=quiz.submitted&rate=1000&queue=" + q, token: adminSecret})
	var result struct {
		ID        string `json:"id"`
		Published int64  `json:"published"`
		Total     int64  `json:"total"`
		Resume    string `json:"resume"`
		Complete  bool   `json:"complete"`
	}
	if err := json.Unmarshal(res.body, &result); err != nil || res.status != 200 {
		t.Fatalf("replay: %d %s", res.status, res.body)
	}
	if result.Published != 3 || result.Total != 3 || !result.Complete || result.ID == "" || result.Resume == "" {
		t.Fatalf("replay result %+v", result)
	}
	if n := queueDepth(t, b, q); n != 3 {
		t.Fatalf("queue holds %d messages, want the 3 replayed", n)
	}
	// Without a queue, a replay goes to the exchange, which is not set here.
	h.do(request{method: "POST", path: "/v1/replay?all=true", token: adminSecret}).problem(t, 501, httpapi.ProblemNotImplemented)
	for _, query := range []string{"limit=5", "rate=-1", "rate=NaN", "dry_run=maybe", "queue=" + strings.Repeat("q", 256), "max=3"} {
		h.do(request{method: "POST", path: "/v1/replay?" + query, token: adminSecret}).problem(t, 400, httpapi.ProblemInvalidParameter)
	}
}

// TestReplayDoesOnlyWhatItIsAskedFor: POST /v1/replay takes its parameters
// from the query string or from a JSON body with the same names. A body
// used to be ignored, which replayed the whole store to the exchange. A
// request that names no filter, or that the API cannot read exactly, is a
// 400 (415 for a body that is not JSON) and replays nothing.
func TestReplayDoesOnlyWhatItIsAskedFor(t *testing.T) {
	b, opt := withBroker(t)
	h := newHarness(t, opt)
	for i := 0; i < 2; i++ {
		h.publish(`{"type":"quiz.submitted","data":` + quizData(i) + `}`)
	}
	h.publish(`{"type":"badge.awarded","data":{"badge_id":"0190d1e2-0000-7000-8000-000000000001","recipient_id":"0190d1e2-0000-7000-8000-000000000002","reason":"r"}}`)
	testenv.Settle(t, h.store)
	q := testenv.Name("httpapi_replay_body")
	declareQueue(t, b, q) // a consumer's queue: it must receive only what is asked for
	jq, _ := json.Marshal(q)

	for _, c := range []struct {
		name, query, contentType, body string
		status                         int
		field                          string
	}{
		{"no filter in the query", "queue=" + q, "", "", 400, "all"},
		{"no filter in the body", "", "application/json", `{"queue":` + string(jq) + `}`, 400, "all"},
		{"all=false", "", "application/json", `{"queue":` + string(jq) + `,"all":false}`, 400, "all"},
		{"an empty type list", "", "application/json", `{"queue":` + string(jq) + `,"type":[]}`, 400, "all"},
		{"an unknown field", "", "application/json", `{"queue":` + string(jq) + `,"all":true,"typ":"quiz.submitted"}`, 400, "typ"},
		{"a field given twice", "", "application/json", `{"queue":` + string(jq) + `,"type":"badge.awarded","type":"quiz.submitted"}`, 400, "type"},
		{"a wrong type", "", "application/json", `{"queue":` + string(jq) + `,"all":"yes"}`, 400, "all"},
		{"a position as text", "", "application/json", `{"queue":` + string(jq) + `,"from_position":"x"}`, 400, "from_position"},
		{"malformed JSON", "", "application/json", `{"queue":` + string(jq) + `,"all":true`, 400, ""},
		{"two JSON values", "", "application/json", `{"queue":` + string(jq) + `,"all":true} {}`, 400, ""},
		{"not an object", "", "application/json", `[` + string(jq) + `]`, 400, ""},
		{"both query and body", "queue=" + q, "application/json", `{"all":true}`, 400, ""},
		{"a body that is not JSON", "", "text/plain", `{"queue":` + string(jq) + `,"all":true}`, 415, ""},
	} {
		path := "/v1/replay"
		if c.query != "" {
			path += "?" + c.query
		}
		res := h.do(request{method: "POST", path: path, token: adminSecret, contentType: c.contentType, body: c.body})
		var p struct {
			Field  string `json:"field"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(res.body, &p)
		if res.status != c.status || res.header.Get("Content-Type") != httpapi.ProblemContentType || p.Detail == "" || (c.field != "" && p.Field != c.field) {
			t.Errorf("%s: %d %s; want a %d problem naming %q", c.name, res.status, res.body, c.status, c.field)
		}
		if n := queueDepth(t, b, q); n != 0 {
			t.Fatalf("%s: the bad request replayed %d events into the queue", c.name, n)
		}
	}

	var result struct {
		Published int64 `json:"published"`
		Total     int64 `json:"total"`
	}
	res := h.do(request{method: "POST", path: "/v1/replay", token: adminSecret, contentType: "application/json",
		body: `{"type":["quiz.submitted"],"queue":` + string(jq) + `,"rate":1000}`})
	if err := json.Unmarshal(res.body, &result); err != nil || res.status != 200 || result.Published != 2 {
		t.Fatalf("replay with a JSON body: %d %s; want the 2 quiz events", res.status, res.body)
	}
	if n := queueDepth(t, b, q); n != 2 {
		t.Fatalf("the queue holds %d messages, want the 2 replayed", n)
	}
	res = h.do(request{method: "POST", path: "/v1/replay", token: adminSecret, contentType: "application/json",
		body: `{"all":true,"dry_run":true,"queue":` + string(jq) + `}`})
	if err := json.Unmarshal(res.body, &result); err != nil || res.status != 200 || result.Total != 3 {
		t.Fatalf("dry run of everything with a JSON body: %d %s; want a total of 3", res.status, res.body)
	}
}

// A replay that outlasts the server's WriteTimeout still answers: the
// handler lifts the deadline, so the client sees the result, not a broken
// connection it might retry.
func TestReplayOutlastsTheWriteTimeout(t *testing.T) {
	b, opt := withBroker(t)
	const writeTimeout = 100 * time.Millisecond
	opt.server = func(s *http.Server) { s.WriteTimeout = writeTimeout }
	h := newHarness(t, opt)
	// Stored straight into the store: a publish through the API would be
	// under the tiny write timeout too.
	const events = 4
	drafts := make([]event.Draft, events)
	for i := range drafts {
		drafts[i] = event.Draft{ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Source: "http-test",
			CorrelationID: uuid.Must(uuid.NewV7()), OccurredAt: time.Now(), Data: json.RawMessage(quizData(i))}
	}
	if _, err := h.store.Append(testenv.Context(t, 30*time.Second), drafts); err != nil {
		t.Fatal(err)
	}
	testenv.Settle(t, h.store)
	q := testenv.Name("httpapi_slow_replay")
	declareQueue(t, b, q)

	// At 10 events a second, the 4 events take about 300 ms: three times
	// the write timeout.
	start := time.Now()
	res := h.do(request{method: "POST", path: "/v1/replay?all=true&rate=10&queue=" + q, token: adminSecret})
	if took := time.Since(start); took <= writeTimeout {
		t.Fatalf("the replay took %v, not longer than the write timeout %v: the test proves nothing", took, writeTimeout)
	}
	var result struct {
		Published int64 `json:"published"`
		Complete  bool  `json:"complete"`
	}
	if err := json.Unmarshal(res.body, &result); err != nil || res.status != 200 || result.Published != events || !result.Complete {
		t.Fatalf("replay past the write timeout: %d %s", res.status, res.body)
	}
	if n := queueDepth(t, b, q); n != events {
		t.Fatalf("queue holds %d messages, want %d", n, events)
	}
}

func TestDeadLettersThroughTheAPI(t *testing.T) {
	b, opt := withBroker(t)
	h := newHarness(t, opt)
	group := testenv.Name("httpapi_group")
	declareQueue(t, b, group)
	declareQueue(t, b, consume.DeadLetterQueue(group))

	// Put two dead letters in the group's dead-letter queue, as the consumer
	// runtime would: an event that failed, and a message that is no event.
	stored := h.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`).body
	env, err := event.Decode(stored)
	if err != nil {
		t.Fatal(err)
	}
	failed, err := broker.EnvelopeMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	failed.Headers[broker.HeaderFailureReason] = "grading service said no"
	failed.Headers[broker.HeaderAttempt] = int64(3)
	failed.Headers[broker.HeaderFailedQueue] = group
	failed.Headers[broker.HeaderFailedAt] = "2026-01-02T03:04:05Z"
	junk := broker.Message{MessageID: "junk-1", Body: []byte{0xff, 0x00}, Headers: map[string]any{}}
	ctx := testenv.Context(t, 10*time.Second)
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, m := range []broker.Message{failed, junk} {
		conf, err := pub.Publish(ctx, broker.NamelessExchange, consume.DeadLetterQueue(group), m)
		if err != nil {
			t.Fatal(err)
		}
		<-conf.Done()
	}

	// The event in the listing is the stored event, byte for byte.
	res := h.do(request{method: "GET", path: "/v1/dead-letters/" + group + "?limit=10", token: adminSecret})
	want := `{"dead_letters":[{"message_id":"` + env.ID.String() + `","type":"quiz.submitted","queue":"` + group +
		`","attempts":3,"reason":"grading service said no","failed_at":"2026-01-02T03:04:05Z","event":` + string(stored) +
		`},{"message_id":"junk-1","attempts":0,"body_base64":"/wA="}]}`
	if res.status != 200 || string(res.body) != want {
		t.Fatalf("dead letters: %d\n%s\nwant\n%s", res.status, res.body, want)
	}

	res = h.do(request{method: "POST", path: "/v1/dead-letters/" + group + "/requeue", token: adminSecret,
		contentType: "application/json", body: `{"ids":["` + env.ID.String() + `"]}`})
	if res.status != 200 || string(res.body) != `{"requeued":1}` {
		t.Fatalf("requeue one: %d %s", res.status, res.body)
	}
	if n := queueDepth(t, b, group); n != 1 {
		t.Fatalf("group queue holds %d, want the requeued event", n)
	}
	h.do(request{method: "POST", path: "/v1/dead-letters/" + group + "/requeue", token: adminSecret,
		contentType: "application/json", body: `{"ids":"all"}`}).problem(t, 400, httpapi.ProblemMalformedRequest)
	res = h.do(request{method: "POST", path: "/v1/dead-letters/" + group + "/requeue", token: adminSecret})
	if res.status != 200 || string(res.body) != `{"requeued":1}` {
		t.Fatalf("requeue the rest: %d %s", res.status, res.body)
	}
	h.do(request{method: "GET", path: "/v1/dead-letters/" + testenv.Name("no_such_group"), token: adminSecret}).
		problem(t, 404, httpapi.ProblemNotFound)

	// A dead letter whose group queue is gone stays where it is: 404.
	conf, err := pub.Publish(ctx, broker.NamelessExchange, consume.DeadLetterQueue(group), failed)
	if err != nil {
		t.Fatal(err)
	}
	<-conf.Done()
	if err := b.DeleteQueue(ctx, group); err != nil {
		t.Fatal(err)
	}
	h.do(request{method: "POST", path: "/v1/dead-letters/" + group + "/requeue", token: adminSecret}).
		problem(t, 404, httpapi.ProblemNotFound)
	// The broker hands a browsed message back asynchronously.
	for deadline := time.Now().Add(5 * time.Second); queueDepth(t, b, consume.DeadLetterQueue(group)) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the dead letter was not kept after a failed requeue")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
