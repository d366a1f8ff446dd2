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
	"sync"
	"syscall"
	"testing"
	"time"
)

// RabbitServerBin is the RabbitMQ server script that StartRabbitNode runs
// directly: Debian's /usr/sbin wrapper switches user and reads /etc/rabbitmq,
// which pins the shared server's name and port.
const RabbitServerBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitNodeWrapper starts the watcher, then becomes the server script
// ($1). The watcher reads stdin, a pipe from the test binary, which nothing
// ever writes: its read ends when the pipe closes, and then it kills its
// process group. A background command's stdin is /dev/null, hence fd 3; and
// the watcher holds no output, whose end the test waits for.
const rabbitNodeWrapper = `exec 3<&0
( read -r _ <&3; kill -s KILL 0 ) >/dev/null 2>&1 &
exec "$1" 3<&- </dev/null
`

// rabbitNodeStartup bounds how long a private node may take to accept
// connections.
const rabbitNodeStartup = 90 * time.Second

// RabbitNode is a RabbitMQ node of one test's own, beside the shared server:
// its own name, ports, data directory, configuration and no plugins. Tests
// that need a broker configured otherwise than the shared one (a small
// max_message_size, say) start one instead of reconfiguring the shared
// server; StartRabbitCluster starts several and clusters them.
type RabbitNode struct {
	// URL is the node's AMQP URL (guest/guest).
	URL string
	// Name is the Erlang node name.
	Name string
	env  []string
	addr string // the AMQP listener, host:port

	pid    int           // the server's process, leader of its group
	exited chan struct{} // closed once the server has exited
	out    *syncBuffer   // the server's output
}

// StartRabbitNode starts a private RabbitMQ node whose rabbitmq.conf holds
// config (lines in the new-style format, such as "max_message_size = 4096")
// and waits until it accepts AMQP connections. The node stops when the test
// ends. Without the RabbitMQ binaries the test skips, loudly, or fails when
// EVENTBUS_REQUIRE_SERVICES=1.
func StartRabbitNode(t testing.TB, config string) *RabbitNode {
	t.Helper()
	n := launchRabbitNode(t, rabbitNodeName(), config, Name("cookie"))
	if err := n.awaitAccepting(time.Now().Add(rabbitNodeStartup)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return n
}

// rabbitNodeName returns a node name unique to this test run.
func rabbitNodeName() string { return Name("ebnode") + "@localhost" }

// launchRabbitNode starts a node with the given Erlang cookie (nodes that
// share one may cluster) and returns without waiting for it. It stops when
// the test ends.
func launchRabbitNode(t testing.TB, name, config, cookie string) *RabbitNode {
	t.Helper()
	if _, err := os.Stat(RabbitServerBin); err != nil {
		missing(t, "RabbitMQ server binaries", fmt.Sprintf("%s: %v", RabbitServerBin, err))
	}
	dir := t.TempDir()
	amqpPort, distPort := freePort(t), freePort(t)
	conf := fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\nloopback_users = none\n%s\n", amqpPort, config)
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"rabbitmq-env.conf": "",
		"enabled_plugins":   "[].\n",
		"advanced.config":   "[].\n",
		".erlang.cookie":    cookie,
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
		addr: fmt.Sprintf("127.0.0.1:%d", amqpPort),
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
		exited: make(chan struct{}),
		out:    &syncBuffer{},
	}
	// The server script forks the Erlang VM, which Pdeathsig would not
	// reach: a watcher in the node's process group kills the group once the
	// test binary's end of its stdin closes, so that a node dies with a test
	// binary that dies without running its cleanups (a -timeout panic, a
	// kill).
	cmd := exec.Command("/bin/sh", "-c", rabbitNodeWrapper, "sh", RabbitServerBin)
	cmd.Env = n.env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop the whole group
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatalf("testenv: start rabbit node: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start rabbit node: %v", err)
	}
	n.pid = cmd.Process.Pid
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		// SIGTERM stops the node cleanly; SIGKILL the group if it lingers.
		_ = syscall.Kill(-n.pid, syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(20 * time.Second):
		}
		n.Kill()
	})
	return n
}

// awaitAccepting waits until the node accepts AMQP connections, or
// deadline, or the node's exit.
func (n *RabbitNode) awaitAccepting(deadline time.Time) error {
	for {
		conn, err := net.DialTimeout("tcp", n.addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("rabbit node %s exited during startup:\n%s", n.Name, tail(n.out.String(), 4000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rabbit node %s did not accept connections in time:\n%s", n.Name, tail(n.out.String(), 4000))
		}
	}
}

// Kill SIGKILLs the node's process group, a hard crash, and waits until
// the server has exited. Killing a node that has exited does nothing.
func (n *RabbitNode) Kill() {
	// The Erlang runtime may leave helpers (erl_child_setup) in the group;
	// they end with it.
	_ = syscall.Kill(-n.pid, syscall.SIGKILL)
	<-n.exited
}

// Eval runs an Erlang expression on the node through rabbitmqctl eval, for
// changing its settings at run time, and returns the output.
func (n *RabbitNode) Eval(ctx context.Context, expr string) (string, error) {
	return n.Ctl(ctx, "eval", expr)
}

// Ctl runs rabbitmqctl against the node, with the node's environment (its
// cookie), and returns the output.
func (n *RabbitNode) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(RabbitServerBin), "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Env = n.env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testenv: rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
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

// syncBuffer is a strings.Builder that a process writes to while a test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
