package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/internal/testenv"
)

// TestCommandsThroughServer runs events, tail, status, replay, dlq and
// parked against a running `eventbus serve` with --server (or
// EVENTBUS_SERVER), on the embedded default and on PostgreSQL with
// RabbitMQ: they print what they print without it, and the server's
// refusals say what to do.
func TestCommandsThroughServer(t *testing.T) {
	const (
		reader    = "reader-token-0123456789"
		publisher = "publisher-token-0123456789"
		admin     = "admin-token-0123456789"
	)
	tokens := "EVENTBUS_API_TOKENS=dashboard:" + reader + ":read,quizzes:" + publisher + ":publish,ops:" + admin + ":admin"
	for _, backend := range []struct {
		name string
		env  func(t *testing.T) []string
	}{
		{"embedded", func(*testing.T) []string { return nil }},
		{"postgres+rabbitmq", func(t *testing.T) []string {
			testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
			return []string{"EVENTBUS_DATABASE_URL=" + testenv.PostgresSchema(t), "EVENTBUS_AMQP_URL=" + testenv.AMQPURL(),
				"EVENTBUS_EXCHANGE=" + testenv.Name("cli_remote")}
		}},
	} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			serveEnv := append(backend.env(t), tokens)
			serve := start(t, eventbusBin, t.TempDir(), serveEnv, "serve", "--http-addr", "127.0.0.1:0", "--migrate")
			// The CLI runs elsewhere: no store, no broker, only the server.
			dir := t.TempDir()
			as := func(token string) []string { return []string{"EVENTBUS_API_TOKEN=" + token} }
			var ids []string
			for i := range 3 {
				status, body := serve.call("POST", "/v1/events", publisher, `{"type":"quiz.submitted","subject":"quiz-7","data":`+quizJSON(i)+`}`)
				if status != 201 {
					t.Fatalf("publish: %d %s", status, body)
				}
				ids = append(ids, eventIDs(t, body)...)
			}

			// A reader in commit order sees an event once every transaction
			// before it has ended: on PostgreSQL, a moment after its commit.
			for deadline := time.Now().Add(30 * time.Second); ; {
				_, body := serve.call("GET", "/v1/events", reader, "")
				if strings.Count(body, `"type":"quiz.submitted"`) == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the 3 events are not visible after 30 s: %s", body)
				}
				time.Sleep(10 * time.Millisecond) // a poll: the condition is above
			}
			r := mustRunCLI(t, dir, as(reader), "events", "--server", serve.url(), "--type", "quiz.submitted", "--json")
			if got := eventIDs(t, r.stdout); strings.Join(got, ",") != strings.Join(ids, ",") {
				t.Fatalf("events --server --json: %v, want %v; %v", got, ids, r)
			}
			r = mustRunCLI(t, dir, append(as(reader), "EVENTBUS_SERVER="+serve.url()), "events", "--limit", "2")
			if !strings.Contains(r.stdout, "POSITION") || strings.Count(r.stdout, "quiz.submitted") != 2 || !strings.Contains(r.stderr, "more events follow: --after ") {
				t.Fatalf("events with EVENTBUS_SERVER --limit 2: %v", r)
			}
			after := strings.TrimSpace(strings.TrimPrefix(lastLine(r.stderr), "more events follow: --after "))
			r = mustRunCLI(t, dir, as(reader), "events", "--server", serve.url(), "--after", after, "--json")
			if got := eventIDs(t, r.stdout); len(got) != 1 || got[0] != ids[2] {
				t.Fatalf("events --after the printed token: %v", r)
			}

			// status: healthy once the serve's relay leads and has caught up.
			var status result
			for deadline := time.Now().Add(30 * time.Second); ; {
				status = runCLI(t, dir, as(reader), "status", "--server", serve.url(), "--json")
				if status.code == 0 || time.Now().After(deadline) {
					break
				}
			}
			var st struct {
				Relay   string `json:"relay"`
				Healthy bool   `json:"healthy"`
				Events  int64  `json:"events"`
			}
			if err := json.Unmarshal([]byte(status.stdout), &st); err != nil || status.code != 0 || !st.Healthy || st.Relay == "" {
				t.Fatalf("status --server --json: %+v %v; %v", st, err, status)
			}
			// The table (healthy or not: on a loaded machine a lease may
			// lapse between two calls, which status rightly reports).
			if r := runCLI(t, dir, as(reader), "status", "--server", serve.url()); r.code > 1 || !strings.Contains(r.stdout, "relay ") || !strings.Contains(r.stdout, "backlog ") {
				t.Errorf("status --server: %v", r)
			}
			if r := runCLI(t, dir, as(reader), "status", "--server", serve.url(), "--relay", "other"); r.code != 2 || !strings.Contains(r.stderr, "--relay does not go with --server") {
				t.Errorf("status --server --relay: %v", r)
			}

			// parked: nothing parked.
			if r := mustRunCLI(t, dir, as(reader), "parked", "list", "--server", serve.url(), "--json"); strings.TrimSpace(r.stdout) != "[]" {
				t.Errorf("parked list --server --json: %v", r)
			}
			if r := mustRunCLI(t, dir, as(admin), "parked", "retry", "--all", "--server", serve.url()); !strings.Contains(r.stdout, "nothing is parked") {
				t.Errorf("parked retry --all --server: %v", r)
			}
			if r := runCLI(t, dir, as(admin), "parked", "retry", ids[0], "--server", serve.url()); r.code != 1 || !strings.Contains(r.stdout, ids[0]+" is not parked") {
				t.Errorf("parked retry ID --server of an event that is not parked: %v", r)
			}

			// replay: a plan, then a replay to the exchange.
			r = mustRunCLI(t, dir, as(admin), "replay", "--server", serve.url(), "--subject", "quiz-7", "--dry-run")
			if !strings.Contains(r.stdout, "would replay 3 events to the server's exchange") {
				t.Errorf("replay --server --dry-run: %v", r)
			}
			r = mustRunCLI(t, dir, as(admin), "replay", "--server", serve.url(), "--subject", "quiz-7", "--from-position", "1")
			if !strings.Contains(r.stdout, "replayed 3 events to the server's exchange") {
				t.Errorf("replay --server: %v", r)
			}

			// dlq of a group whose queues do not exist: 404, said plainly.
			if r := runCLI(t, dir, as(admin), "dlq", "list", "nogroup", "--server", serve.url()); r.code != 1 || !strings.Contains(r.stderr, "404 Not found") {
				t.Errorf("dlq list --server of an unknown group: %v", r)
			}

			// Refusals: no token, the wrong scope, a bad filter.
			if r := runCLI(t, dir, nil, "events", "--server", serve.url()); r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "set EVENTBUS_API_TOKEN") {
				t.Errorf("events --server without a token: %v", r)
			}
			if r := runCLI(t, dir, as(reader), "replay", "--server", serve.url(), "--all", "--dry-run"); r.code != 1 || !strings.Contains(r.stderr, "403 Forbidden") {
				t.Errorf("replay --server with a read token: %v", r)
			}
			if r := runCLI(t, dir, as(reader), "events", "--server", "localhost:8080"); r.code != 2 || !strings.Contains(r.stderr, "http://host:port") {
				t.Errorf("events --server without a scheme: %v", r)
			}

			// tail: from a position, then what commits while it follows.
			cmd, lines := startLines(t, dir, as(reader), "tail", "--server", serve.url(), "--from", "2", "--json", "--poll", "20ms")
			next := func() string {
				t.Helper()
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatal("tail --server stopped printing")
					}
					return strings.Join(eventIDs(t, line), "")
				case <-time.After(30 * time.Second):
					t.Fatal("tail --server printed nothing for 30s")
				}
				return ""
			}
			for _, want := range ids[1:] {
				if got := next(); got != want {
					t.Fatalf("tail --server --from 2 printed %s, want %s", got, want)
				}
			}
			status2, body := serve.call("POST", "/v1/events", publisher, `{"type":"quiz.submitted","data":`+quizJSON(9)+`}`)
			if status2 != 201 {
				t.Fatalf("publish: %d %s", status2, body)
			}
			if got, want := next(), eventIDs(t, body)[0]; got != want {
				t.Fatalf("tail --server printed %s, want the new event %s", got, want)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			for range lines {
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("tail --server after SIGTERM: %v, want exit 0", err)
			}
		})
	}
}
