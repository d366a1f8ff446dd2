package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/auth"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/service"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

const (
	publishToken = "pub-SECRET-4f1c9a7e2b"
	readToken    = "read-SECRET-8d3e6b0c1a"
	adminToken   = "admin-SECRET-5a2f7c9e4d"
	tokenList    = "producer:" + publishToken + ":publish,auditor:" + readToken + ":read,ops:" + adminToken + ":admin"
)

// backends are the stores and brokers a server runs on: the embedded
// default and PostgreSQL with RabbitMQ.
var backends = []struct {
	name   string
	config func(t *testing.T) config.Config
}{
	{"embedded", func(t *testing.T) config.Config {
		return config.Config{DataDir: t.TempDir(), Exchange: testenv.Name("client")}
	}},
	{"postgres+rabbitmq", func(t *testing.T) config.Config {
		testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
		return config.Config{DatabaseURL: testenv.PostgresSchema(t), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: testenv.Name("client")}
	}},
}

// server runs the HTTP API of a service on cfg, with auth on.
func server(t *testing.T, cfg config.Config) (*service.Service, string) {
	t.Helper()
	var err error
	if cfg.Tokens, err = auth.ParseTokens(tokenList); err != nil {
		t.Fatal(err)
	}
	svc, err := service.Open(testenv.Context(t, 30*time.Second), cfg, service.Config{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	h, err := svc.Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return svc, srv.URL
}

func newClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	return newClientConfig(t, url, client.Config{Token: token})
}

func newClientConfig(t *testing.T, url string, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func quiz(score int) client.NewEvent {
	data, _ := json.Marshal(map[string]any{"quiz_id": uuid.NewString(), "learner_id": uuid.NewString(), "score_raw": score})
	return client.NewEvent{Type: "quiz.submitted", Data: data, Subject: "quiz-" + uuid.NewString()}
}

// problemOf returns the *client.Error in err, or fails.
func problemOf(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is no *client.Error", err, err)
	}
	return e
}

// TestClientAgainstServer calls every route of a real server through the
// client, on both backends: the answers decode into the wire types, and
// error answers into errors that match the sentinels and name the field.
func TestClientAgainstServer(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			svc, url := server(t, b.config(t))
			ctx := testenv.Context(t, 60*time.Second)
			pub := newClient(t, url, publishToken)
			reader := newClient(t, url, readToken)
			admin := newClient(t, url, adminToken)

			if err := newClient(t, url, "").Healthz(ctx); err != nil {
				t.Fatalf("healthz: %v", err)
			}
			if r, err := newClient(t, url, "").Readyz(ctx); err != nil || r.Status != "ready" || r.Checks["store"] != "ok" {
				t.Fatalf("readyz: %+v %v", r, err)
			}

			// Publish: new, then the same id again.
			e := quiz(90)
			e.ID = uuid.Must(uuid.NewV7())
			first, err := pub.Publish(ctx, e)
			if err != nil || !first.New || first.Event.ID != e.ID || string(first.Event.Data) != string(e.Data) {
				t.Fatalf("publish: %+v %v", first, err)
			}
			again, err := pub.Publish(ctx, e)
			if err != nil || again.New || again.Event.Position != first.Event.Position {
				t.Fatalf("publish again: %+v %v", again, err)
			}
			// Erase the learner: the event reads erased, its score null; a
			// publish token may not erase.
			var q struct {
				LearnerID string `json:"learner_id"`
			}
			if err := json.Unmarshal(e.Data, &q); err != nil {
				t.Fatal(err)
			}
			if _, err := pub.Erase(ctx, q.LearnerID); !errors.Is(err, client.ErrForbidden) {
				t.Fatalf("erase with a publish token: %v, want ErrForbidden", err)
			}
			erasure, err := admin.Erase(ctx, q.LearnerID)
			if err != nil || erasure.DataSubject != q.LearnerID || erasure.ErasedAt.IsZero() || erasure.EventID == "" {
				t.Fatalf("erase: %+v %v", erasure, err)
			}
			if got, err := reader.Event(ctx, e.ID); err != nil || !got.Erased || !strings.Contains(string(got.Data), `"score_raw":null`) {
				t.Fatalf("the erased learner's quiz reads %s erased %v (%v)", got.Data, got.Erased, err)
			}
			batch, err := pub.PublishBatch(ctx, []client.NewEvent{quiz(1), quiz(2)})
			if err != nil || !batch.New || len(batch.Events) != 2 || batch.Events[0].Position >= batch.Events[1].Position {
				t.Fatalf("publish a batch: %+v %v", batch, err)
			}

			// A refused event: 422 naming the field; nothing stored.
			bad := quiz(3)
			bad.Data = json.RawMessage(`{"quiz_id":"nope","learner_id":"` + uuid.NewString() + `","score_raw":1}`)
			_, err = pub.Publish(ctx, bad)
			if p := problemOf(t, err); !errors.Is(err, client.ErrInvalidEvent) || p.Status != 422 || p.Field != "data.quiz_id" {
				t.Fatalf("publish bad data: %v (%+v)", err, p.Problem)
			}
			bad = quiz(4)
			bad.Type = "no spaces allowed"
			_, err = pub.PublishBatch(ctx, []client.NewEvent{quiz(5), bad})
			if p := problemOf(t, err); !errors.Is(err, client.ErrInvalidEvent) || p.Status != 400 || p.Field != "type" || p.Event == nil || *p.Event != 1 {
				t.Fatalf("publish a bad batch: %v (%+v)", err, p.Problem)
			}

			// Reading: a page, every page, one event, a stream. A reader
			// in commit order sees an event once every transaction before
			// it has ended, which on PostgreSQL may be a moment after its
			// own commit.
			visible(t, reader, 3)
			page, err := reader.Events(ctx, client.Filter{Limit: 2})
			if err != nil || len(page.Events) != 2 || page.Events[0].ID != e.ID || page.Next == "" {
				t.Fatalf("events: %+v %v", page, err)
			}
			var all []event.Envelope
			for ev, err := range reader.All(ctx, client.Filter{Limit: 1, Types: []string{"quiz.submitted"}}) {
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, ev)
			}
			if len(all) != 3 || all[2].ID != batch.Events[1].ID {
				t.Fatalf("all: %d events, want 3", len(all))
			}
			if got, err := reader.Event(ctx, e.ID); err != nil || got.ID != e.ID || got.CorrelationID == uuid.Nil {
				t.Fatalf("event: %+v %v", got, err)
			}
			_, err = reader.Event(ctx, uuid.Must(uuid.NewV7()))
			if p := problemOf(t, err); !errors.Is(err, client.ErrNotFound) || p.Type != httpapi.ProblemNotFound || p.RequestID == "" {
				t.Fatalf("a missing event: %v", err)
			}
			stream, err := reader.Stream(ctx, e.Subject, 1, 0)
			if err != nil || len(stream.Events) != 1 || stream.NextVersion != 2 {
				t.Fatalf("stream: %+v %v", stream, err)
			}
			_, err = reader.Events(ctx, client.Filter{Limit: client.MaxLimit + 1})
			if p := problemOf(t, err); !errors.Is(err, client.ErrInvalidRequest) || p.Status != 400 || p.Field != "limit" {
				t.Fatalf("events over the limit: %v", err)
			}

			// Auth: no token, a token without the scope.
			_, err = newClient(t, url, "").Events(ctx, client.Filter{})
			if !errors.Is(err, client.ErrUnauthorized) || problemOf(t, err).Status != 401 {
				t.Fatalf("no token: %v", err)
			}
			_, err = reader.PlanReplay(ctx, client.ReplayRequest{All: true})
			if !errors.Is(err, client.ErrForbidden) {
				t.Fatalf("a read token replays: %v", err)
			}

			// Status and parked events.
			st, err := reader.Status(ctx)
			if err != nil || st.Events < 3 || len(st.Partitions) == 0 {
				t.Fatalf("status: %+v %v", st, err)
			}
			if parked, err := reader.Parked(ctx); err != nil || parked == nil || len(parked) != 0 {
				t.Fatalf("parked: %v %v", parked, err)
			}
			if _, err := admin.RetryParked(ctx, []uuid.UUID{e.ID}); !errors.Is(err, client.ErrNotFound) || problemOf(t, err).Field != "event_ids" {
				t.Fatalf("retry an event that is not parked: %v", err)
			}
			if res, err := admin.RetryAllParked(ctx); err != nil || len(res.Requested) != 0 {
				t.Fatalf("retry all: %+v %v", res, err)
			}
			if _, err := admin.RetryParked(ctx, nil); !errors.Is(err, client.ErrInvalidRequest) {
				t.Fatalf("retry nothing: %v", err)
			}

			// Replay: a plan, a refusal without a filter, a replay to a queue.
			plan, err := admin.PlanReplay(ctx, client.ReplayRequest{Types: []string{"quiz.submitted"}})
			if err != nil || plan.Total != 3 || len(plan.Events) != 3 || !plan.DryRun {
				t.Fatalf("plan: %+v %v", plan, err)
			}
			_, err = admin.PlanReplay(ctx, client.ReplayRequest{})
			if p := problemOf(t, err); !errors.Is(err, client.ErrInvalidRequest) || p.Field != "all" {
				t.Fatalf("a replay of everything without all: %v", err)
			}
			queue := testenv.Name("client_replay")
			declare(t, svc.Broker, queue)
			res, err := admin.Replay(ctx, client.ReplayRequest{Subject: e.Subject, Queue: queue})
			if err != nil || res.Published != 1 || !res.Complete || res.Resume == "" {
				t.Fatalf("replay: %+v %v", res, err)
			}

			// Dead letters: none for an unknown group; one listed and requeued.
			if _, err := admin.DeadLetters(ctx, testenv.Name("no_such_group"), 10); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("dead letters of an unknown group: %v", err)
			}
			group := testenv.Name("client_group")
			declare(t, svc.Broker, group)
			declare(t, svc.Broker, consume.DeadLetterQueue(group))
			deadLetter(t, svc.Broker, group, first.Event)
			letters, err := admin.DeadLetters(ctx, group, 10)
			if err != nil || len(letters) != 1 || letters[0].Event == nil || letters[0].Event.ID != e.ID || letters[0].Reason != "said no" {
				t.Fatalf("dead letters: %+v %v", letters, err)
			}
			if n, err := admin.Requeue(ctx, group, []string{e.ID.String()}); err != nil || n != 1 {
				t.Fatalf("requeue: %d %v", n, err)
			}
			if n, err := admin.Requeue(ctx, group, nil); err != nil || n != 0 {
				t.Fatalf("requeue the rest: %d %v", n, err)
			}

			// Tail: from the end, it sees what commits next.
			end, err := reader.End(ctx, client.Filter{})
			if err != nil || end == "" {
				t.Fatalf("end: %q %v", end, err)
			}
			next, err := pub.Publish(ctx, quiz(7))
			if err != nil {
				t.Fatal(err)
			}
			tailCtx, stop := context.WithCancel(ctx)
			defer stop()
			for ev, err := range reader.Tail(tailCtx, client.Filter{After: end}, 10*time.Millisecond) {
				if err != nil || ev.ID != next.Event.ID {
					t.Fatalf("tail: %v %v, want %s", ev.ID, err, next.Event.ID)
				}
				stop()
			}
		})
	}
}

// visible waits until a reader sees n events, for up to 30 s.
func visible(t *testing.T, c *client.Client, n int) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	for {
		page, err := c.Events(ctx, client.Filter{Limit: client.MaxLimit})
		if err != nil {
			t.Fatalf("waiting for %d events to be visible: %v", n, err)
		}
		if len(page.Events) >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d events visible after 30 s, want %d", len(page.Events), n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func declare(t *testing.T, b broker.Broker, queue string) {
	t.Helper()
	if err := b.DeclareQueue(testenv.Context(t, 10*time.Second), broker.QueueSpec{Name: queue}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.DeleteQueue(context.Background(), queue) })
}

// deadLetter puts env in group's dead-letter queue, as the consumer
// runtime does when it gives up.
func deadLetter(t *testing.T, b broker.Broker, group string, env event.Envelope) {
	t.Helper()
	ctx := testenv.Context(t, 10*time.Second)
	m, err := broker.EnvelopeMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	m.Headers[broker.HeaderFailureReason] = "said no"
	m.Headers[broker.HeaderAttempt] = int64(3)
	m.Headers[broker.HeaderFailedQueue] = group
	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	testenv.PublishAll(t, ctx, pub, broker.NamelessExchange, consume.DeadLetterQueue(group), m)
}

// fake serves h, for the answers no real server gives.
func fake(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSilentServer: a server that takes the request and never answers
// makes the call fail within its bound, with an error that says so.
func TestSilentServer(t *testing.T) {
	release := make(chan struct{})
	url := fake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := newClientConfig(t, url, client.Config{Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := c.Status(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer from") {
		t.Fatalf("a silent server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the call took %s, bound 100ms", d)
	}
	// The caller's own cancellation is its own error, not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled call: %v", err)
	}
}

// TestUnreadableAnswers: an answer that is not what the API documents is
// an error that wraps ErrBadAnswer and shows what came.
func TestUnreadableAnswers(t *testing.T) {
	for _, tc := range []struct{ name, contentType, body string }{
		{"not JSON", "text/html", "<html>proxy error</html>"},
		{"cut JSON", "application/json", `{"relay":"default","partitions":[`},
		{"wrong shape", "application/json", `{"relay": 42}`},
		{"empty", "application/json", ``},
		{"null", "application/json", `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := fake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = io.WriteString(w, tc.body)
			})
			_, err := newClient(t, url, "").Status(context.Background())
			if !errors.Is(err, client.ErrBadAnswer) || !strings.Contains(err.Error(), "is not a relay status") ||
				!strings.Contains(err.Error(), tc.contentType) {
				t.Fatalf("%s: %v", tc.name, err)
			}
		})
	}
}

// TestErrorAnswers: a problem document becomes an *Error with its members
// and Retry-After; an error answer without one (a proxy's page) still
// becomes an *Error, with the status and what came.
func TestErrorAnswers(t *testing.T) {
	url := fake(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/status":
			w.Header().Set("Content-Type", httpapi.ProblemContentType)
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"type":"urn:eventbus:problem:unavailable","title":"Service unavailable","status":503,"detail":"the event store cannot be reached","request_id":"r-1"}`)
		default:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = io.WriteString(w, "<html>bad gateway</html>")
		}
	})
	c := newClient(t, url, "")
	_, err := c.Status(context.Background())
	p := problemOf(t, err)
	if !errors.Is(err, client.ErrUnavailable) || p.RetryAfter != 7*time.Second || p.RequestID != "r-1" || p.Type != httpapi.ProblemUnavailable ||
		!strings.Contains(err.Error(), "the event store cannot be reached") || !strings.Contains(err.Error(), "GET /v1/status") {
		t.Fatalf("503: %v %+v", err, p)
	}
	_, err = c.Parked(context.Background())
	if p := problemOf(t, err); p.Status != 502 || !strings.Contains(p.Detail, "bad gateway") || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("502 without a problem: %v", err)
	}
}

// TestUnreachable: no server at the address is ErrUnreachable, at once.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	err = newClient(t, "http://"+addr, "").Healthz(context.Background())
	if !errors.Is(err, client.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("no server: %v", err)
	}
}

// TestRequests: what the client sends: the token, the path under the
// base URL's prefix with the subject escaped, the filters as the API's
// parameters, and JSON bodies.
func TestRequests(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan string, 1)
	url := fake(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.Contains(r.URL.Path, "/streams/"):
			_, _ = io.WriteString(w, `{"events":[],"next_version":1}`)
		case strings.HasSuffix(r.URL.Path, "/replay"):
			_, _ = io.WriteString(w, `{"events":[],"total":0,"dry_run":true}`)
		default:
			_, _ = io.WriteString(w, `{"events":[],"next":""}`)
		}
	})
	c := newClient(t, url+"/bus/", "tok-123456")
	ctx := context.Background()
	since := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if _, err := c.Events(ctx, client.Filter{Types: []string{"a.b", "c.d"}, Since: since, FromPosition: 3, Limit: 5, After: "AQID"}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	<-bodies
	if r.URL.Path != "/bus/v1/events" || r.Header.Get("Authorization") != "Bearer tok-123456" ||
		r.URL.RawQuery != "after=AQID&from_position=3&limit=5&since=2026-01-02T03%3A04%3A05.000000006Z&type=a.b&type=c.d" {
		t.Fatalf("events request: %s %s %q", r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"))
	}
	if _, err := c.Stream(ctx, "course/42 a", 2, 0); err != nil {
		t.Fatal(err)
	}
	r = <-got
	<-bodies
	if r.URL.EscapedPath() != "/bus/v1/streams/course%2F42%20a" || r.URL.RawQuery != "from=2" {
		t.Fatalf("stream request: %s %s", r.URL.EscapedPath(), r.URL.RawQuery)
	}
	if _, err := c.PlanReplay(ctx, client.ReplayRequest{Types: []string{"a.b"}, Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	r = <-got
	if body := <-bodies; r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		body != `{"type":["a.b"],"queue":"q","dry_run":true}` {
		t.Fatalf("replay request: %s %q %s", r.Method, r.Header.Get("Content-Type"), body)
	}
}

// TestNewRefusesBadURLs: New says what a base URL must look like.
func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://host", "http://", "http://host?x=1", "http://user:pw@host", "http://host/#x"} {
		if _, err := client.New(u, client.Config{}); err == nil || !strings.Contains(err.Error(), "http://host:port") {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}
