package main

import (
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edupulse/eventbus/internal/testenv"
)

// TestSecretsNeverAppear runs commands, and serve with debug logs, with
// passwords in EVENTBUS_DATABASE_URL and EVENTBUS_AMQP_URL and tokens in
// EVENTBUS_API_TOKENS and EVENTBUS_TOKEN, through successes and failures
// alike, and checks that no secret shows in their output or logs.
func TestSecretsNeverAppear(t *testing.T) {
	t.Parallel()
	const (
		pgPassword   = "pg-Secret-4b1d9e"
		amqpPassword = "amqp-Secret-7c2a5f"
		readToken    = "read-Secret-token-9e8d7c"
		adminToken   = "admin:Secret:token-3f2e1d" // a colon in a token must not split it
		wrongToken   = "wrong-Secret-token-0a0b0c"
	)
	secrets := []string{pgPassword, amqpPassword, readToken, adminToken, wrongToken,
		url.QueryEscape(pgPassword), url.QueryEscape(amqpPassword)}
	pg := testenv.PostgresSchema(t) // trust authentication: the password is sent, and ignored
	amqp := testenv.AMQPURL()
	testenv.Need(t, "RabbitMQ", amqp)
	pgURL := withUser(t, pg, "", pgPassword)
	tokens := "EVENTBUS_API_TOKENS=dash:" + readToken + ":read,ops:" + adminToken + ":admin"
	dir := t.TempDir()
	var outputs []string
	check := func(what, out string) {
		t.Helper()
		outputs = append(outputs, out)
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, out)
			}
		}
	}
	runs := []struct {
		env  []string
		args []string
		code int
	}{
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL}, []string{"migrate"}, 0},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL, tokens}, []string{"publish", "quiz.submitted", quizJSON(91)}, 0},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL}, []string{"events", "--json"}, 0},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL}, []string{"publish", "no.such.type", "{}"}, 1},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL}, []string{"status", "--json"}, 1}, // no relay runs
		{[]string{"EVENTBUS_DATABASE_URL=" + withPath(t, pgURL, "/no_such_db")}, []string{"events"}, 1},
		{[]string{"EVENTBUS_DATABASE_URL=postgres://eventbus:" + pgPassword + "@127.0.0.1:1/eventbus"}, []string{"events"}, 1},
		{[]string{"EVENTBUS_DATABASE_URL=mysql://eventbus:" + pgPassword + "@127.0.0.1/eventbus"}, []string{"events"}, 2},
		{[]string{"EVENTBUS_DATABASE_URL=postgres://eventbus:" + pgPassword + "@127.0.0.1:5432/eventbus%zz"}, []string{"events"}, 2},
		{[]string{"EVENTBUS_DATABASE_URL=host=127.0.0.1 port=1 password=" + pgPassword}, []string{"events"}, 1},
		{[]string{"EVENTBUS_AMQP_URL=" + withUser(t, amqp, "", amqpPassword)}, []string{"dlq", "list", "badges"}, 1},
		// RabbitMQ takes seconds to refuse a password: the other cases
		// use closed ports.
		{[]string{"EVENTBUS_AMQP_URL=amqp://guest:" + amqpPassword + "@127.0.0.1:1/,amqp://guest:" + amqpPassword + "@127.0.0.1:2/"}, []string{"replay", "--queue", "q", "--all"}, 1},
		{[]string{"EVENTBUS_AMQP_URL=ftp://guest:" + amqpPassword + "@127.0.0.1/"}, []string{"dlq", "list", "badges"}, 2},
		{[]string{"EVENTBUS_API_TOKENS=dash:" + readToken + ":read,dash2:" + readToken + ":read"}, []string{"serve"}, 2},
		{[]string{"EVENTBUS_API_TOKENS=dash:" + readToken + ":fly"}, []string{"serve"}, 2},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL, "EVENTBUS_AMQP_URL=amqp://guest:" + amqpPassword + "@127.0.0.1:1/", tokens},
			[]string{"serve", "--http-addr", "127.0.0.1:0"}, 1},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL, "EVENTBUS_AMQP_URL=" + withUser(t, amqp, "", amqpPassword), tokens}, []string{"--help"}, 0},
		{[]string{"EVENTBUS_DATABASE_URL=" + pgURL, "EVENTBUS_AMQP_URL=" + withUser(t, amqp, "", amqpPassword), tokens}, []string{"serve", "--help"}, 0},
	}
	for _, r := range runs {
		res := runCLI(t, dir, r.env, r.args...)
		if res.code != r.code {
			t.Errorf("eventbus %s: want exit %d; %v", strings.Join(r.args, " "), r.code, res)
		}
		check("eventbus "+strings.Join(r.args, " "), res.stdout+res.stderr)
	}

	// serve, logging everything, with requests that carry tokens, right
	// and wrong.
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_DATABASE_URL=" + pgURL, tokens},
		"serve", "--http-addr", "127.0.0.1:0", "--log-level", "debug")
	for _, token := range []string{readToken, adminToken, wrongToken, ""} {
		serve.call("GET", "/healthz", token, "") // logged at debug level
		serve.call("GET", "/v1/events", token, "")
		serve.call("POST", "/v1/events", token, `{"type":"quiz.submitted","data":`+quizJSON(95)+`}`)
		serve.call("POST", "/v1/replay?dry_run=true&all=true", token, "")
	}
	for _, token := range []string{wrongToken, readToken, adminToken} {
		res := runCLI(t, dir, []string{"EVENTBUS_TOKEN=" + token}, "replay", "--server", serve.url(), "--dry-run", "--all")
		check("replay --server", res.stdout+res.stderr)
	}
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	check("serve's log", serve.log())
	if !strings.Contains(serve.log(), `"level":"DEBUG"`) || !strings.Contains(serve.log(), `"status":401`) {
		t.Errorf("serve logged less than the test needs (debug lines, the 401s):\n%s", serve.log())
	}
	// The test must have seen the places a secret could leak to.
	all := strings.Join(outputs, "\n")
	for _, want := range []string{"127.0.0.1:1", "no_such_db", "username or password", "given twice", `"token":"dash"`} {
		if !strings.Contains(all, want) {
			t.Errorf("no output mentions %q: the test misses a case", want)
		}
	}
}

// TestSpecialPasswordsNeverShowInTheCLI runs commands on database and
// broker URLs (one, and lists) whose passwords hold the characters URLs give
// a meaning to, as they are and percent-encoded, and serve on PostgreSQL
// and RabbitMQ with such passwords, and checks that no part of a password
// shows in the output or the logs.
func TestSpecialPasswordsNeverShowInTheCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	check := func(what, out string) {
		t.Helper()
		if part, shows := testenv.ShowsSecret(out); shows {
			t.Errorf("%s shows %q:\n%s", what, part, out)
		}
	}
	type run struct {
		env  string
		args []string
	}
	var runs []run
	for _, pw := range testenv.SpecialPasswords(true) {
		runs = append(runs,
			run{"EVENTBUS_DATABASE_URL=postgres://quiz:" + pw + "@127.0.0.1:1/quiz", []string{"events"}},
			run{"EVENTBUS_AMQP_URL=amqp://guest:" + pw + "@127.0.0.1:1/,amqp://guest:" + pw + "@127.0.0.1:2/", []string{"dlq", "list", "badges"}})
	}
	// A few at a time: each is a process of its own.
	results := make([]result, len(runs))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = runCLI(t, dir, []string{r.env}, r.args...)
		}()
	}
	wg.Wait()
	for i, r := range runs {
		if results[i].code == 0 {
			t.Errorf("%s eventbus %s: exit 0", r.env, strings.Join(r.args, " "))
		}
		check(r.env+" eventbus "+strings.Join(r.args, " "), results[i].stdout+results[i].stderr)
	}

	// Working URLs: the shared PostgreSQL trusts local connections, and
	// ignores the password; RabbitMQ refuses it.
	pw := "Alpha7/@:%#? Bravo8"
	pgURL := withUser(t, testenv.PostgresSchema(t), "", pw)
	amqpURL := withUser(t, testenv.AMQPURL(), "", pw)
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	res := runCLI(t, dir, []string{"EVENTBUS_AMQP_URL=" + amqpURL}, "dlq", "list", "badges", "--log-level", "debug")
	if res.code != 1 {
		t.Errorf("dlq list with a wrong RabbitMQ password: want exit 1; %v", res)
	}
	check("dlq list with a wrong RabbitMQ password", res.stdout+res.stderr)
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_DATABASE_URL=" + pgURL},
		"serve", "--http-addr", "127.0.0.1:0", "--log-level", "debug", "--migrate")
	serve.call("GET", "/v1/status", "", "")
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	check("serve's log", serve.log())
}
