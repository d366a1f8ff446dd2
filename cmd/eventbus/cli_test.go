package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestEveryCommandHasHelpWithExamples: --help of each command exits 0 and
// shows its usage and examples.
func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []string{"", "serve", "migrate", "publish", "events", "tail", "replay", "status", "dlq", "dlq list", "dlq requeue", "bench"} {
		args := append(strings.Fields(c), "--help")
		r := runCLI(t, dir, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("eventbus %s --help: want exit 0 with usage and examples; %v", c, r)
		}
	}
}

// TestUsageErrorsExit2WithOneLine: mistakes on the command line or in the
// configuration exit 2 with one line that names the mistake and where the
// command's help is, not the whole usage.
func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"frob"}, nil, `unknown command "frob"`},
		{[]string{"--frob"}, nil, "unknown flag: --frob"},
		{[]string{"events", "--frob"}, nil, "unknown flag: --frob"},
		{[]string{"dlq", "frob"}, nil, `unknown dlq command "frob"`},
		{[]string{"events", "extra"}, nil, `events takes no arguments; got ["extra"]`},
		{[]string{"publish", "quiz.submitted"}, nil, "publish takes 2 argument(s): TYPE JSON; got 1"},
		{[]string{"dlq", "list"}, nil, "dlq list takes 1 argument(s): GROUP; got 0"},
		{[]string{"events", "--limit", "0"}, nil, "--limit 0: use 1 to"},
		{[]string{"events", "--since", "yesterday"}, nil, `--since: "yesterday" is neither an RFC 3339 time`},
		{[]string{"events", "--after", "not-a-cursor"}, nil, "--after:"},
		{[]string{"status", "--max-lag", "soon"}, nil, `invalid argument "soon" for "--max-lag"`},
		{[]string{"replay", "--rate", "-1"}, nil, "--rate must not be negative"},
		{[]string{"bench", "--relay-lag-batch", "0"}, nil, "--relay-lag-batch must be between 1 and 10000 events per transaction, not 0"},
		{[]string{"replay", "--queue", "badges"}, nil, "replay names no filter, so it would send every stored event again"},
		{[]string{"replay", "--server", "http://127.0.0.1:1", "--dry-run"}, nil, "or --all to replay the whole store"},
		{[]string{"serve", "--no-relay", "--relay-only"}, nil, "--no-relay and --relay-only exclude each other"},
		{[]string{"publish", "quiz.submitted", "{}", "--id", "42"}, nil, `--id "42" is not a UUID`},
		{[]string{"dlq", "requeue", "badges"}, nil, "give either --all or --id"},
		{[]string{"replay", "--server", "localhost:8080", "--dry-run", "--all"}, nil, "give the serve address as http://host:port"},
		{[]string{"--log-level", "loud", "status"}, nil, `--log-level "loud"`},
		{[]string{"events"}, []string{"EVENTBUS_DATABASE_URL=mysql://db/x"}, "must start with postgres://"},
		{[]string{"events"}, []string{"EVENTBUS_HTTP_ADDR=8080"}, "must be host:port"},
		{[]string{"serve"}, []string{"EVENTBUS_API_TOKENS=ci:short"}, "EVENTBUS_API_TOKENS"},
		{[]string{"events"}, []string{"EVENTBUS_DATABASE_URL=postgres://u:p@ss@db/x"}, "percent-encode"},
	} {
		r := runCLI(t, dir, tc.env, tc.args...)
		first, rest, _ := strings.Cut(r.stderr, "\n")
		if r.code != 2 || !strings.HasPrefix(first, "eventbus: ") || !strings.Contains(first, tc.want) ||
			!strings.Contains(first, " --help'") || rest != "" || r.stdout != "" {
			t.Errorf("eventbus %s: want exit 2 and one line with %q and where the help is; %v", strings.Join(tc.args, " "), tc.want, r)
		}
	}
}

// TestUnreachableServersGetOneLine: a database or broker that cannot be
// reached or refuses us fails with exit 1 and one line that names the host,
// says what to check, and holds no password.
func TestUnreachableServersGetOneLine(t *testing.T) {
	t.Parallel()
	const password = "Pa55-w0rd-never-shown"
	silent := silentListener(t)
	pg := testenv.PostgresURL()
	testenv.Need(t, "PostgreSQL", pg)
	amqp := testenv.AMQPURL()
	testenv.Need(t, "RabbitMQ", amqp)
	pgHost := hostOf(t, pg)
	amqpHost := hostOf(t, amqp)

	for _, tc := range []struct {
		name string
		env  string
		args []string
		want []string // in the one line
	}{
		{"PostgreSQL refused", "EVENTBUS_DATABASE_URL=postgres://eventbus:" + password + "@127.0.0.1:1/eventbus",
			[]string{"events"}, []string{"cannot reach PostgreSQL at 127.0.0.1:1", "connection refused", "check that PostgreSQL is running"}},
		{"PostgreSQL silent", "EVENTBUS_DATABASE_URL=postgres://eventbus:" + password + "@" + silent + "/eventbus?connect_timeout=1",
			[]string{"status"}, []string{"cannot reach PostgreSQL at " + silent, "no answer within 1s", "check"}},
		{"PostgreSQL unknown user", "EVENTBUS_DATABASE_URL=" + withUser(t, pg, "nobody_here", password),
			[]string{"events"}, []string{"cannot reach PostgreSQL at " + pgHost, `user "nobody_here"`, "does not exist", "check the user"}},
		{"PostgreSQL unknown database", "EVENTBUS_DATABASE_URL=" + withPath(t, withUser(t, pg, "", password), "/no_such_db"),
			[]string{"migrate"}, []string{"cannot reach PostgreSQL at " + pgHost, `"no_such_db" does not exist`, "check the database name"}},
		{"PostgreSQL key=value DSN refused", "EVENTBUS_DATABASE_URL=host=127.0.0.1 port=1 user=eventbus password=" + password + " dbname=eventbus",
			[]string{"events"}, []string{"cannot reach PostgreSQL at 127.0.0.1:1", "connection refused"}},
		{"RabbitMQ refused", "EVENTBUS_AMQP_URL=amqp://eventbus:" + password + "@127.0.0.1:1/",
			[]string{"dlq", "list", "badges"}, []string{"127.0.0.1:1", "connection refused", "check that RabbitMQ is running"}},
		{"RabbitMQ wrong password", "EVENTBUS_AMQP_URL=" + withUser(t, amqp, "", password),
			[]string{"dlq", "list", "badges"}, []string{amqpHost, "password", "check the user and password in EVENTBUS_AMQP_URL"}},
		{"RabbitMQ refused at serve", "EVENTBUS_AMQP_URL=amqp://eventbus:" + password + "@127.0.0.1:1/",
			[]string{"serve", "--http-addr", "127.0.0.1:0"}, []string{"127.0.0.1:1", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, t.TempDir(), []string{tc.env}, tc.args...)
			if r.code != 1 {
				t.Fatalf("want exit 1; %v", r)
			}
			errLine := lastLine(r.stderr)
			if !strings.HasPrefix(errLine, "eventbus: ") {
				t.Fatalf("the last line of stderr is not eventbus's message; %v", r)
			}
			for _, want := range tc.want {
				if !strings.Contains(errLine, want) {
					t.Errorf("message %q lacks %q", errLine, want)
				}
			}
			// serve logs where its store is before it fails; the other
			// commands say nothing else.
			if tc.args[0] != "serve" && strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("want exactly one line on stderr; %v", r)
			}
			if strings.Contains(r.stdout+r.stderr, password) {
				t.Errorf("the password shows; %v", r)
			}
		})
	}
}

// silentListener returns the address of a server that accepts connections
// and never says a word.
func silentListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// withUser returns raw with user (unless empty) and password.
func withUser(t *testing.T, raw, user, password string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if user == "" {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

func withPath(t *testing.T, raw, path string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = path
	return u.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestServeStopsGracefullyOnSIGTERM: serve on the embedded default exits 0
// on SIGTERM, having saved the relay's checkpoint and released its lease;
// status is healthy while it runs and exits 1 once no relay leads.
func TestServeStopsGracefullyOnSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, nil, "serve", "--http-addr", "127.0.0.1:0")
	serve.waitLog(func(l map[string]any) bool { return l["msg"] == "relay is the leader" }, "the relay to lead")
	for i := range 5 {
		mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quizJSON(90+i))
	}
	// The relay reads what other processes commit at its next poll.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := mustRunCLI(t, dir, nil, "status")
		if !strings.Contains(r.stdout, "(healthy)") {
			t.Fatalf("status while serving: %v", r)
		}
		if strings.Contains(r.stdout, "backlog        0 events") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay never caught up: %v", r)
		}
	}
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d on SIGTERM; its log:\n%s", code, serve.log())
	}
	for _, want := range []string{`"msg":"relay stopped"`, `"msg":"eventbus stopped"`} {
		if !strings.Contains(serve.log(), want) {
			t.Errorf("serve's log lacks %s:\n%s", want, serve.log())
		}
	}
	r := runCLI(t, dir, nil, "status", "--json")
	if r.code != 1 || !strings.Contains(r.stderr, "unhealthy: partition 0: no relay holds the lease") {
		t.Fatalf("status after the stop: want exit 1, unhealthy for want of a leader; %v", r)
	}
	if !strings.Contains(r.stdout, `"checkpoint_position": 5`) || !strings.Contains(r.stdout, `"leader": ""`) {
		t.Errorf("status after the stop: want the checkpoint at 5 and no leader; %v", r)
	}
}

// TestAuthScopes: with tokens configured, serve lets each token do what its
// scopes allow and nothing else, and says so at start-up; without tokens it
// warns that auth is off.
func TestAuthScopes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const (
		reader    = "reader-token-0123456789"
		publisher = "publisher-token-0123456789"
		admin     = "admin-token-0123456789"
	)
	serve := start(t, eventbusBin, dir, []string{
		"EVENTBUS_API_TOKENS=dashboard:" + reader + ":read,quizzes:" + publisher + ":publish,ops:" + admin + ":admin",
	}, "serve", "--http-addr", "127.0.0.1:0")
	if strings.Contains(serve.log(), "auth is OFF") {
		t.Error("serve warns that auth is off while tokens are configured")
	}
	event := `{"type":"quiz.submitted","data":` + quizJSON(95) + `}`
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token cannot read", "GET", "/v1/events", "", "", 401},
		{"an unknown token cannot read", "GET", "/v1/events", "not-a-token-of-ours", "", 401},
		{"read token reads", "GET", "/v1/events", reader, "", 200},
		{"read token cannot publish", "POST", "/v1/events", reader, event, 403},
		{"publish token publishes", "POST", "/v1/events", publisher, event, 201},
		{"publish token cannot read", "GET", "/v1/events", publisher, "", 403},
		{"publish token cannot replay", "POST", "/v1/replay?dry_run=true&all=true", publisher, "", 403},
		{"read token cannot replay", "POST", "/v1/replay?dry_run=true&all=true", reader, "", 403},
		{"admin token replays", "POST", "/v1/replay?dry_run=true&all=true", admin, "", 200},
		{"admin token reads", "GET", "/v1/status", admin, "", 200},
		{"probes need no token", "GET", "/healthz", "", "", 200},
	} {
		status, body := serve.call(tc.method, tc.path, tc.token, tc.body)
		if status != tc.want {
			t.Errorf("%s: %s %s answered %d, want %d: %s", tc.name, tc.method, tc.path, status, tc.want, body)
		}
	}
	// The CLI through --server: a publish token is refused, and told why.
	r := runCLI(t, dir, []string{"EVENTBUS_TOKEN=" + publisher}, "replay", "--server", serve.url(), "--dry-run", "--all")
	if r.code != 1 || !strings.Contains(r.stderr, "403 Forbidden") || !strings.Contains(r.stderr, "admin scope") {
		t.Errorf("replay --server with a publish token: want exit 1 and a 403 that names the admin scope; %v", r)
	}
	r = mustRunCLI(t, dir, []string{"EVENTBUS_TOKEN=" + admin}, "replay", "--server", serve.url(), "--dry-run", "--all")
	if !strings.Contains(r.stdout, "would replay 1 events to the server's exchange") {
		t.Errorf("replay --server --dry-run with the admin token: %v", r)
	}

	open := start(t, eventbusBin, t.TempDir(), nil, "serve", "--http-addr", "127.0.0.1:0")
	open.waitLog(func(l map[string]any) bool {
		return l["level"] == "WARN" && strings.Contains(fmt.Sprint(l["msg"]), "auth is OFF")
	}, "the warning that auth is off")
}

// TestServeRequestIDsAndBodyLimit: every answer carries a request ID (the
// client's, when sane) that the access log shows too, and a body over 1 MiB
// is refused with 413.
func TestServeRequestIDsAndBodyLimit(t *testing.T) {
	t.Parallel()
	serve := start(t, eventbusBin, t.TempDir(), nil, "serve", "--http-addr", "127.0.0.1:0")
	req, _ := http.NewRequest("GET", serve.url()+"/v1/events", nil)
	req.Header.Set("X-Request-ID", "trace-me-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-ID"); got != "trace-me-123" {
		t.Errorf("X-Request-ID %q, want the client's", got)
	}
	resp, err = http.Get(serve.url() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	generated := resp.Header.Get("X-Request-ID")
	if _, err := uuid.Parse(generated); err != nil {
		t.Errorf("generated X-Request-ID %q is not a UUID", generated)
	}
	for _, id := range []string{"trace-me-123", generated} {
		serve.waitLog(func(l map[string]any) bool { return l["msg"] == "http request" && l["request_id"] == id },
			"the access log line of request "+id)
	}
	big := `{"type":"quiz.submitted","data":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`
	if status, body := serve.call("POST", "/v1/events", "", big); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %d %s, want 413", status, body)
	}
}

// TestPublishRefusalsSayWhatToDo: publish refuses what does not fit, stores
// nothing, and says what to change.
func TestPublishRefusalsSayWhatToDo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish", "no.such.type", "{}"}, `"no.such.type" is not an event type this build knows; use one of badge.awarded, lesson.published, quiz.submitted`},
		{[]string{"publish", "quiz.submitted", `{"quiz_id":"x"}`}, `field "quiz_id" must be a UUID; fix the data`},
		{[]string{"publish", "quiz.submitted", quizJSON(1), "--subject", "s", "--expected-version", "3"}, `stream "s" is at version 0, expected 3; read the stream`},
		{[]string{"publish", "quiz.submitted", strings.TrimSuffix(quizJSON(1), "}") + `,"score_raw":2}`}, `data.score_raw appears twice in the same object`},
		{[]string{"publish", "quiz.submitted", strings.TrimSuffix(quizJSON(1), "}") + `,"note":"\ud800"}`}, `data.note holds the lone surrogate escape \ud800`},
	} {
		r := runCLI(t, dir, nil, tc.args...)
		// The first also warns that it created the store.
		if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), "eventbus: nothing stored: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("eventbus %s: want exit 1 and %q; %v", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	if r := mustRunCLI(t, dir, nil, "events"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("refused events were stored: %v", r)
	}
}

// TestReadOnlyCommandsCreateNoStore: run where no store is, the commands
// that only read say where they looked and what to do, exit 1, and create
// nothing; publish creates the store and says where; then they read it.
func TestReadOnlyCommandsCreateNoStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	abs := filepath.Join(dir, "eventbus-data", "eventbus.db")
	for _, args := range [][]string{{"events"}, {"tail"}, {"status"}, {"replay", "--dry-run", "--all"}, {"parked", "list"}, {"parked", "retry", "--all"}} {
		r := runCLI(t, dir, nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "no event store at "+abs) || !strings.Contains(r.stderr, "EVENTBUS_DATA_DIR") ||
			!strings.Contains(r.stderr, "EVENTBUS_DATABASE_URL") || !strings.Contains(r.stderr, "eventbus serve") {
			t.Errorf("eventbus %s where no store is: want exit 1 and where it looked; %v", strings.Join(args, " "), r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "eventbus-data")); !os.IsNotExist(err) {
		t.Fatalf("a read-only command created the data directory: %v", err)
	}
	r := mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quizJSON(70))
	if !strings.Contains(r.stderr, "the data lives in "+abs+" (a new, empty store, created now") {
		t.Errorf("publish created the store without saying where: %v", r)
	}
	if r := mustRunCLI(t, dir, nil, "events"); strings.Count(r.stdout, "\n") != 2 || r.stderr != "" {
		t.Errorf("events after publish: want the header and one event, and nothing on stderr; %v", r)
	}
}

// TestStatusOfAnUnknownRelay: status --relay with a name no relay has run
// under says so and names the relays there are, instead of reporting an
// unhealthy relay.
func TestStatusOfAnUnknownRelay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, nil, "serve", "--http-addr", "127.0.0.1:0")
	serve.waitLog(func(l map[string]any) bool { return l["msg"] == "relay is the leader" }, "the relay to lead")
	r := runCLI(t, dir, nil, "status", "--relay", "nosuch")
	if r.code != 1 || !strings.Contains(r.stderr, "no relay named nosuch") || !strings.Contains(r.stderr, "its relays: default") ||
		strings.Contains(r.stdout+r.stderr, "UNHEALTHY") {
		t.Errorf("status --relay nosuch: want exit 1, no relay named nosuch, and the relays there are; %v", r)
	}
	if r := runCLI(t, dir, nil, "status"); r.code != 0 || !strings.Contains(r.stdout, "(healthy)") {
		t.Errorf("status of the running relay: %v", r)
	}
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}

// TestServeRefusesAnotherPartitionCount: a relay process configured with
// another EVENTBUS_RELAY_PARTITIONS than the running ones exits 1 naming
// both counts; status shows each partition and the process holding it.
func TestServeRefusesAnotherPartitionCount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_RELAY_PARTITIONS=4"}, "serve", "--http-addr", "127.0.0.1:0")
	serve.waitLog(func(l map[string]any) bool { return l["msg"] == "relay is the leader" }, "the relay to lead")
	r := runCLI(t, dir, []string{"EVENTBUS_RELAY_PARTITIONS=2"}, "serve", "--relay-only", "--http-addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "runs with 4 partitions") || !strings.Contains(r.stderr, "configured with 2") {
		t.Errorf("serve --relay-only with 2 partitions beside one with 4: want exit 1 naming both counts; %v", r)
	}
	var st wire.Status
	settled := func() bool {
		r = runCLI(t, dir, nil, "status", "--json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
			return false
		}
		held := 0
		for _, p := range st.Partitions {
			if p.Leader != "" {
				held++
			}
		}
		return st.PartitionCount == 4 && held == 4 && len(st.Processes) == 1 && st.Processes[0].Partitions == 4
	}
	for deadline := time.Now().Add(30 * time.Second); !settled(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status never showed 4 partitions held by the one process: %v", r)
		}
	}
	if r := runCLI(t, dir, nil, "status"); r.code != 0 || !strings.Contains(r.stdout, "4 partitions, 1 processes") || !strings.Contains(r.stdout, "partition 3") {
		t.Errorf("status: want the 4 partitions and the process; %v", r)
	}
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}
