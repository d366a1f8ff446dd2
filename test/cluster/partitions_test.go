package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/internal/testenv"
)

// takeover bounds how long the live relay processes take to hold every
// partition of one that died, and a process that joins takes to get its
// share (DESIGN "Partitions": within 10 s).
const takeover = 10 * time.Second

// TestPartitionedRelays runs the relay as two `serve --relay-only`
// processes sharing 4 partitions (EVENTBUS_RELAY_PARTITIONS=4) on the
// shared PostgreSQL and RabbitMQ, with the HTTP API in a `serve --no-relay`
// of its own and producers posting on many streams. Mid-stream one relay
// process is killed with SIGKILL: the other must hold all four partitions
// within 10 s, then a third process joins and must get its share (two
// each) within 10 s, while events flow. Every acknowledged and every
// stored event must reach the observer, each stream in order; deliveries
// of an event again (after the kill, from the last saved checkpoint) are
// allowed, and counted.
func TestPartitionedRelays(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	dbURL := testenv.PostgresSchema(t)
	ctx := testenv.Context(t, 5*time.Minute)
	const partitions = "EVENTBUS_RELAY_PARTITIONS=4"
	r := newRig(t, ctx, dbURL, testenv.AMQPURL(), serveOptions{args: []string{"--no-relay"}, env: []string{partitions}})
	env := []string{
		"EVENTBUS_DATABASE_URL=" + dbURL,
		"EVENTBUS_AMQP_URL=" + testenv.AMQPURL(),
		"EVENTBUS_EXCHANGE=" + r.exchange,
		partitions,
		masterKeyEnv,
	}
	a := startRelayOnly(t, "a", env)
	b := startRelayOnly(t, "b", env)
	r.waitShares(ctx, 60*time.Second, "two relay processes share the partitions", map[*relayProc]int{a: 2, b: 2})
	// A relay process's metrics show every partition with its leader, and
	// its own share.
	metrics := a.get(t, "/metrics")
	led := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "eventbus_relay_partition_leader{") && strings.HasSuffix(line, "} 1") {
			_, rest, _ := strings.Cut(line, `partition="`)
			n, _, _ := strings.Cut(rest, `"`)
			led[n] = true
		}
	}
	if len(led) != 4 {
		t.Errorf("relay a's /metrics shows a leader for partitions %v, want all 4:\n%s", led, metrics)
	}
	if !strings.Contains(metrics, "eventbus_relay_leader 2") {
		t.Errorf("relay a's /metrics does not say it holds 2 partitions")
	}
	if ready := a.get(t, "/readyz"); !strings.Contains(ready, `"ready"`) {
		t.Errorf("relay a's /readyz: %s", ready)
	}

	var tookOver, joined time.Duration
	var c *relayProc
	res := r.runWithFault(ctx, 8, 40, 300, 300, func() time.Time {
		a.kill(t)
		down := time.Now()
		r.waitShares(ctx, takeover, "the live relay process holds the partitions of the one killed", map[*relayProc]int{b: 4})
		tookOver = time.Since(down)
		c = startRelayOnly(t, "c", env)
		// The process starts (a binary built with the race detector, on
		// a loaded machine, takes a while), then announces itself: from
		// then on it must get its share within 10 s.
		r.waitProcess(ctx, 60*time.Second, c)
		started := time.Now()
		r.waitShares(ctx, takeover, "a relay process that joins gets its share", map[*relayProc]int{b: 2, c: 2})
		joined = time.Since(started)
		return down
	}, storedEventIDs(dbURL))
	for _, p := range []*relayProc{b, c} {
		if !p.running() {
			t.Errorf("relay process %s exited (%v):\n%s", p.name, p.err, p.tail())
			continue
		}
		// SIGTERM stops it cleanly: it saves its checkpoints, releases its
		// leases and exits 0.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("relay process %s did not stop cleanly on SIGTERM: %v\n%s", p.name, p.err, p.tail())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("relay process %s still running 30s after SIGTERM", p.name)
		}
	}
	res.report(t, "partitioned relays (4 partitions, SIGKILL of one of two relay processes, then a third joins)",
		fmt.Sprintf("partitioned relays: the live process held all 4 partitions %v after the kill; the process that joined held its 2 partitions %v after it announced itself; events delivered again (at least once): %d",
			tookOver.Round(time.Millisecond), joined.Round(time.Millisecond), res.summary.Redeliveries))
}

// relayProc is `eventbus serve --relay-only` running as a subprocess.
type relayProc struct {
	name   string
	url    string // where it serves /healthz, /readyz and /metrics
	pid    int
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

// startRelayOnly starts `eventbus serve --relay-only` with env. It stops
// (SIGTERM, then SIGKILL) when the test ends.
func startRelayOnly(t testing.TB, name string, env []string) *relayProc {
	t.Helper()
	p := &relayProc{name: name, log: filepath.Join(t.TempDir(), "relay-"+name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(testenv.EventbusBinary(t, raceEnabled), "serve", "--relay-only", "--log-format", "json", "--log-level", "info")
	port := freePort(t)
	p.url = "http://127.0.0.1:" + strconv.Itoa(port)
	p.cmd.Env = append(append(cleanEnv(), env...), "EVENTBUS_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port))
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.WaitDelay = 5 * time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start relay %s: %v", name, err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// get returns the body of GET path on the process's probes address.
func (p *relayProc) get(t testing.TB, path string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(p.url + path)
	if err != nil {
		t.Fatalf("relay %s: GET %s: %v", p.name, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("relay %s: GET %s: %d %s", p.name, path, res.StatusCode, b)
	}
	return string(b)
}

// kill kills the process with SIGKILL and waits until it is gone.
func (p *relayProc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill relay %s: %v", p.name, err)
	}
	<-p.exited
}

func (p *relayProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *relayProc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) == 0 {
		return "(its log " + p.log + " is empty)"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// holderPID returns the process ID in a lease holder's name,
// host/pid/suffix; 0 if there is none.
func holderPID(holder string) int {
	parts := strings.Split(holder, "/")
	if len(parts) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	return pid
}

// status reads GET /v1/status from the rig's serve.
func (r *rig) status(ctx context.Context) (wire.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.serve.url+"/v1/status", nil)
	if err != nil {
		return wire.Status{}, err
	}
	req.Header.Set("Authorization", "Bearer "+apiSecret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return wire.Status{}, err
	}
	defer res.Body.Close()
	var st wire.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET /v1/status: %d: %w", res.StatusCode, err)
	}
	return st, nil
}

// waitProcess waits until /v1/status lists p among the relay's live
// processes, for at most timeout.
func (r *rig) waitProcess(ctx context.Context, timeout time.Duration, p *relayProc) {
	r.t.Helper()
	var last string
	r.waitFor(ctx, timeout, "relay process "+p.name+" announces itself", func() bool {
		st, err := r.status(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprint(st.Processes)
		for _, q := range st.Processes {
			if holderPID(q.Holder) == p.pid {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("processes: %s; relay %s:\n%s", last, p.name, p.tail()) })
}

// waitShares waits until /v1/status shows every partition held, by the
// processes of want, each holding as many as want says, for at most
// timeout.
func (r *rig) waitShares(ctx context.Context, timeout time.Duration, what string, want map[*relayProc]int) {
	r.t.Helper()
	wantByPID := map[int]int{}
	for p, n := range want {
		wantByPID[p.pid] = n
	}
	var last string
	r.waitFor(ctx, timeout, what, func() bool {
		st, err := r.status(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		got := map[int]int{}
		var desc []string
		for _, p := range st.Partitions {
			got[holderPID(p.Leader)]++
			desc = append(desc, fmt.Sprintf("partition %d: %q (checkpoint %d, backlog %d, lag %v)", p.Partition, p.Leader, p.CheckpointPosition, p.Backlog, p.Lag.Duration()))
		}
		sort.Strings(desc)
		for _, p := range st.Processes {
			desc = append(desc, fmt.Sprintf("process %s holds %d", p.Holder, p.Partitions))
		}
		last = strings.Join(desc, "; ")
		return st.PartitionCount == 4 && len(st.Partitions) == 4 && fmt.Sprint(got) == fmt.Sprint(wantByPID)
	}, func() string {
		var logs []string
		for p := range want {
			logs = append(logs, fmt.Sprintf("relay %s (pid %d):\n%s", p.name, p.pid, p.tail()))
		}
		return fmt.Sprintf("status: %s; want %v by pid\n%s", last, wantByPID, strings.Join(logs, "\n"))
	})
}
