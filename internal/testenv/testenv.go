// Package testenv connects tests to the shared PostgreSQL and RabbitMQ
// servers, isolates each test (a schema of its own, names of its own), and
// puts fault proxies between the bus and the servers. For tests that need
// servers configured otherwise, or several of them, it starts private ones
// beside the shared servers: a RabbitMQ node or cluster (StartRabbitNode,
// StartRabbitCluster) and a PostgreSQL primary with a streaming standby
// (StartPostgresPair). It also builds the eventbus command for tests that
// run it (EventbusBinary), and checks what a consumer receives
// (StreamObserver).
//
// On a developer machine without the servers, tests that need them skip and
// say so loudly. With EVENTBUS_REQUIRE_SERVICES=1 (as CI sets it) a missing
// server fails the test instead.
//
// Only tests import it: the conformance suites (store/storetest,
// broker/brokertest), each package's tests, test/chaos and test/cluster.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireServicesEnv names the variable that turns a missing server into a
// test failure.
const RequireServicesEnv = "EVENTBUS_REQUIRE_SERVICES"

// Defaults for the shared servers; EVENTBUS_TEST_DATABASE_URL and
// EVENTBUS_TEST_AMQP_URL override them.
const (
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/"
)

// PostgresURL returns the URL of the shared PostgreSQL server.
func PostgresURL() string { return envOr("EVENTBUS_TEST_DATABASE_URL", DefaultPostgresURL) }

// AMQPURL returns the URL of the shared RabbitMQ server.
func AMQPURL() string { return envOr("EVENTBUS_TEST_AMQP_URL", DefaultAMQPURL) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// RequireServices reports whether a missing server must fail the tests.
func RequireServices() bool { return os.Getenv(RequireServicesEnv) == "1" }

var warnOnce sync.Map

// Need checks that the server at rawURL accepts TCP connections. If it does
// not, the test fails when services are required and skips otherwise.
func Need(t testing.TB, service, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("testenv: %s URL: %v", service, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err == nil {
		conn.Close()
		return
	}
	if RequireServices() {
		t.Fatalf("testenv: %s at %s is required (%s=1) but unreachable: %v", service, u.Host, RequireServicesEnv, err)
	}
	if _, seen := warnOnce.LoadOrStore(service, true); !seen {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s TESTS: %s is unreachable at %s (%v).\n*** Start it, or set %s=1 to make this a failure.\n\n",
			strings.ToUpper(service), service, u.Host, err, RequireServicesEnv)
	}
	t.Skipf("SKIPPED: %s unreachable at %s: %v", service, u.Host, err)
}

// Name returns a name unique to this test run, for schemas, exchanges and
// queues: prefix, then random hex.
func Name(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Context returns a context that ends with the test, or after timeout.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// WithHost returns rawURL with its host:port replaced by addr, to route a
// client through a fault proxy.
func WithHost(rawURL, addr string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	u.Host = addr
	return u.String()
}
