package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RabbitServerBin is the RabbitMQ server script that StartRabbitNode runs
// directly: Debian's /usr/sbin wrapper switches user and reads /etc/rabbitmq,
// which pins the shared server's name and port.
const RabbitServerBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitNodeStartup bounds how long a private node may take to accept
// connections.
const rabbitNodeStartup = 90 * time.Second

// RabbitNode is a RabbitMQ node of one test's own, beside the shared server:
// its own name, ports, data directory, configuration and no plugins. Tests
// that need a broker configured otherwise than the shared one (a small
// max_message_size, say) start one instead of reconfiguring the shared
// server.
type RabbitNode struct {
	// URL is the node's AMQP URL (guest/guest).
	URL string
	// Name is the Erlang node name.
	Name string
	env  []string
}

// StartRabbitNode starts a private RabbitMQ node whose rabbitmq.conf holds
// config (lines in the new-style format, such as "max_message_size = 4096")
// and waits until it accepts AMQP connections. The node stops when the test
// ends. Without the RabbitMQ binaries the test skips, loudly, or fails when
// EVENTBUS_REQUIRE_SERVICES=1.
func StartRabbitNode(t testing.TB, config string) *RabbitNode {
	t.Helper()
	if _, err := os.Stat(RabbitServerBin); err != nil {
		missing(t, "RabbitMQ server binaries", fmt.Sprintf("%s: %v", RabbitServerBin, err))
	}
	dir := t.TempDir()
	amqpPort, distPort := freePort(t), freePort(t)
	name := Name("ebnode") + "@localhost"
	conf := fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\nloopback_users = none\n%s\n", amqpPort, config)
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"rabbitmq-env.conf": "",
		"enabled_plugins":   "[].\n",
		"advanced.config":   "[].\n",
		".erlang.cookie":    Name("cookie"),
	}
	for file, content := range files {
		mode := os.FileMode(0o600)
		if file == ".erlang.cookie" {
			mode = 0o400
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), mode); err != nil {
			t.Fatalf("testenv: rabbit node: %v", err)
		}
	}
	n := &RabbitNode{
		URL:  fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort),
		Name: name,
		env: append(os.Environ(),
			"HOME="+dir,
			"RABBITMQ_NODENAME="+name,
			"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
			"RABBITMQ_PID_FILE="+filepath.Join(dir, "node.pid"),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
			"ERL_EPMD_ADDRESS=127.0.0.1",
		),
	}
	cmd := exec.Command(RabbitServerBin)
	cmd.Env = n.env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop the whole group
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start rabbit node: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM stops the node cleanly; SIGKILL the group if it lingers.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// The Erlang runtime may leave helpers (erl_child_setup) in the
		// group; end them with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	deadline := time.Now().Add(rabbitNodeStartup)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", amqpPort), time.Second)
		if err == nil {
			conn.Close()
			return n
		}
		select {
		case err := <-exited:
			t.Fatalf("testenv: rabbit node %s exited during startup (%v):\n%s", name, err, tail(out.String(), 4000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: rabbit node %s did not accept connections within %s:\n%s", name, rabbitNodeStartup, tail(out.String(), 4000))
		}
	}
}

// Eval runs an Erlang expression on the node through rabbitmqctl eval, for
// changing its settings at run time, and returns the output.
func (n *RabbitNode) Eval(ctx context.Context, expr string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(RabbitServerBin), "rabbitmqctl"), "-n", n.Name, "eval", expr)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testenv: rabbitmqctl eval %q: %w: %s", expr, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// missing skips the test, or fails it when services are required.
func missing(t testing.TB, what, why string) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("testenv: %s required (%s=1) but missing: %s", what, RequireServicesEnv, why)
	}
	if _, seen := warnOnce.LoadOrStore(what, true); !seen {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING TESTS THAT NEED %s: %s.\n*** Install them, or set %s=1 to make this a failure.\n\n",
			strings.ToUpper(what), why, RequireServicesEnv)
	}
	t.Skipf("SKIPPED: %s missing: %s", what, why)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
