package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/internal/testenv"
)

// Issue 12, "Bounded answers": with PostgreSQL fallen silent (a proxy that
// accepts and forwards nothing), serve answers requests with a 503 within
// the request timeout, and stops within EVENTBUS_SHUTDOWN_TIMEOUT of
// SIGTERM. Before, a request hung for a minute and more, and the stop
// waited for it.
func TestServeStaysBoundedWhenPostgreSQLFallsSilent(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 3 * time.Second
	proxy, dbURL := postgresBehindProxy(t)
	env := []string{
		"EVENTBUS_DATABASE_URL=" + dbURL,
		"EVENTBUS_REQUEST_TIMEOUT=1s",
		"EVENTBUS_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
	}
	serve := start(t, eventbusBin, t.TempDir(), env, "serve", "--http-addr", "127.0.0.1:0", "--migrate")
	serve.waitLog(func(l map[string]any) bool { return l["msg"] == "relay is the leader" }, "the relay to lead")
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.ClearFaults)

	// A bound, not a speed claim: the client waits far longer than the
	// request timeout.
	client := &http.Client{Timeout: 15 * time.Second}
	for _, path := range []string{"/v1/status", "/v1/events", "/readyz"} {
		res, err := client.Get(serve.url() + path)
		if err != nil {
			t.Fatalf("GET %s with PostgreSQL silent: no answer: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("GET %s with PostgreSQL silent: %d %s; want 503 with Retry-After", path, res.StatusCode, body)
		}
	}
	// A request still waiting for the store when SIGTERM comes.
	go func() {
		res, err := client.Post(serve.url()+"/v1/events", "application/json",
			strings.NewReader(`{"type":"quiz.submitted","data":`+quizJSON(1)+`}`))
		if err == nil {
			res.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // let it reach the server; it is bounded either way

	sent := time.Now()
	if err := serve.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Again a bound: well past the shutdown timeout, well short of the
	// minute and more it took before.
	limit := shutdownTimeout + 10*time.Second
	select {
	case <-serve.done:
	case <-time.After(limit):
		t.Fatalf("serve still running %s after SIGTERM (EVENTBUS_SHUTDOWN_TIMEOUT %s); its log:\n%s", limit, shutdownTimeout, serve.log())
	}
	t.Logf("serve exited %d, %s after SIGTERM (EVENTBUS_SHUTDOWN_TIMEOUT %s)",
		serve.cmd.ProcessState.ExitCode(), time.Since(sent).Round(time.Millisecond), shutdownTimeout)
	if !strings.Contains(serve.log(), `"msg":"eventbus stopped"`) {
		t.Errorf("serve's log does not say it stopped:\n%s", serve.log())
	}
}

// eventbus status is what probes and cron jobs run: with PostgreSQL fallen
// silent it fails (exit 1, saying the store did not answer) within the
// request timeout, the bound the operator configured, rather than after
// the driver's own connect timeout or, on a connection that goes silent
// after the handshake, never.
func TestStatusFailsWhenPostgreSQLFallsSilent(t *testing.T) {
	t.Parallel()
	proxy, dbURL := postgresBehindProxy(t)
	env := []string{
		"EVENTBUS_DATABASE_URL=" + dbURL,
		"EVENTBUS_REQUEST_TIMEOUT=1s",
	}
	dir := t.TempDir()
	mustRunCLI(t, dir, env, "migrate")
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.ClearFaults)
	// runCLI kills the command after a minute.
	r := runCLI(t, dir, env, "status")
	if r.code != 1 || !strings.Contains(r.stderr, "the store did not answer within 1s (EVENTBUS_REQUEST_TIMEOUT)") {
		t.Fatalf("eventbus status with PostgreSQL silent: want exit 1 saying the store did not answer; %v", r)
	}
}

// postgresBehindProxy returns a fault proxy in front of the shared
// PostgreSQL server and the URL of a test schema of its own through it.
func postgresBehindProxy(t *testing.T) (*testenv.FaultProxy, string) {
	t.Helper()
	schemaURL := testenv.PostgresSchema(t)
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t, u.Host)
	return proxy, testenv.WithHost(schemaURL, proxy.Addr())
}
