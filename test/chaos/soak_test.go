package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/internal/testenv"
)

// TestSoak holds a steady load on the bus, without faults, and fails when
// serve's resources keep growing (see the package doc).
func TestSoak(t *testing.T) {
	d := *flagSoakDuration
	if d <= 0 {
		t.Skip("soak is off; run it with -soak.duration=5m (and a -timeout that leaves room)")
	}
	every := *flagSoakSample
	if every <= 0 {
		every = min(max(d/30, 2*time.Second), 30*time.Second)
	}
	h := newHarness(t, harnessOptions{faults: false})
	ctx := testenv.Context(t, d+15*time.Minute)
	sys := h.startSystem(ctx)
	defer sys.stop()

	produce, stopProducing := context.WithTimeout(ctx, d)
	defer stopProducing()
	settle, stopSettling := context.WithCancel(ctx)
	defer stopSettling()
	l := newLoad(h, 1, *flagSoakRate, 1000, produce, settle)
	if err := l.start(16, 4, h.dbURL(proxyProducersPG, "chaos_producers")); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak: %v at %d events/s, a sample every %v", d, *flagSoakRate, every)
	t.Logf("%s", sampleHeader)
	start := time.Now()
	var samples []sample
	var prev sample
	tick := time.NewTicker(every)
	for done := false; !done; {
		select {
		case <-produce.Done():
			done = true
		case <-tick.C:
		}
		s := h.sample(ctx, l, start)
		s.rate = float64(s.acked-prev.acked) / (s.at - prev.at).Seconds()
		prev = s
		samples = append(samples, s)
		t.Logf("%s", s)
	}
	tick.Stop()
	l.wait()
	if err := h.waitSettled(ctx, sys.obs, 5*time.Minute); err != nil {
		t.Errorf("the system did not settle: %v", err)
	}
	sys.stop()

	v := h.check(ctx, run{load: l, obs: sys.obs, workerA: sys.workerA.c, observer: sys.observer.c})
	growth := levelOff(samples, d)
	report := fmt.Sprintf("soak report: %v at %d events/s\n%s\n%s\n%s", d, *flagSoakRate, sampleHeader, tableOf(samples), v) +
		"\n" + strings.Join(growth.lines, "\n")
	t.Log(report)
	saveReport(t, report)
	for _, f := range append(v.failures, growth.failures...) {
		t.Error(f)
	}
}

func tableOf(samples []sample) string {
	rows := make([]string, len(samples))
	for i, s := range samples {
		rows[i] = s.String()
	}
	return strings.Join(rows, "\n")
}

// sample is one row of the soak's table.
type sample struct {
	at                 time.Duration
	rssKiB             int64
	goroutines         int64
	pgConns            int64
	amqpConns          int64
	amqpChannels       int64 // -1 when rabbitmqctl cannot tell
	acked              int64
	rate               float64
	published, backlog int64
}

const sampleHeader = "    time   RSS MiB  goroutines  PG conns  AMQP conns  channels      acked   events/s   published  backlog"

func (s sample) String() string {
	ch := "n/a"
	if s.amqpChannels >= 0 {
		ch = strconv.FormatInt(s.amqpChannels, 10)
	}
	return fmt.Sprintf("%8s %9.1f %11d %9d %11d %9s %10d %10.0f %11d %8d",
		s.at.Round(time.Second), float64(s.rssKiB)/1024, s.goroutines, s.pgConns, s.amqpConns, ch, s.acked, s.rate, s.published, s.backlog)
}

// sample measures serve: its memory (/proc), goroutines and relay figures
// (its /metrics), its PostgreSQL connections (pg_stat_activity) and its
// RabbitMQ connections (its sockets) and channels (rabbitmqctl, when it
// works here).
func (h *harness) sample(ctx context.Context, l *load, start time.Time) sample {
	s := sample{at: time.Since(start), acked: l.led.acked.Load(), amqpChannels: -1}
	pid := h.serve.pid()
	s.rssKiB = procStatusKiB(pid, "VmRSS")
	m := h.scrape(ctx)
	s.goroutines = int64(m["go_goroutines"])
	s.published = int64(m["eventbus_relay_published_total"])
	s.backlog = int64(m["eventbus_relay_backlog_events"])
	_ = h.direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, h.appName("chaos_serve")).Scan(&s.pgConns)
	ports := tcpPeers(pid, amqpPort(h))
	s.amqpConns = int64(len(ports))
	s.amqpChannels = rabbitChannels(ctx, ports)
	return s
}

// scrape reads serve's /metrics into name -> value (the first series of
// each name).
func (h *harness) scrape(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.serveURL()+"/metrics", nil)
	if err != nil {
		return out
	}
	res, err := h.http.Do(req)
	if err != nil {
		return out
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if _, seen := out[name]; err == nil && !seen {
			out[name] = v
		}
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return out
}

func amqpPort(h *harness) int {
	_, port, _ := strings.Cut(hostPort(h.t, testenv.AMQPURL()), ":")
	n, _ := strconv.Atoi(port)
	return n
}

// procStatusKiB reads a "kB" field of /proc/<pid>/status.
func procStatusKiB(pid int, field string) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// tcpPeers returns the local ports of the established TCP connections of
// process pid to remotePort: its sockets (/proc/<pid>/fd) matched against
// the kernel's connection table.
func tcpPeers(pid, remotePort int) []int {
	if pid == 0 {
		return nil
	}
	inodes := map[string]bool{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "01" || !inodes[f[9]] { // 01: established
				continue
			}
			if hexPort(f[2]) == remotePort {
				ports = append(ports, hexPort(f[1]))
			}
		}
	}
	return ports
}

func hexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.ParseInt(p, 16, 32)
	return int(n)
}

// rabbitChannels counts the channels RabbitMQ has open on the connections
// from the given client ports, with rabbitmqctl when it is installed and
// allowed to talk to the node; -1 otherwise. It only lists.
func rabbitChannels(ctx context.Context, ports []int) int64 {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "list_connections", "peer_port", "channels", "-q", "--no-table-headers").Output()
	if err != nil {
		return -1
	}
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	var n int64
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) != 2 {
			continue
		}
		port, err1 := strconv.Atoi(f[0])
		ch, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil && want[port] {
			n += ch
		}
	}
	return n
}

// growth is the verdict on the soak's samples.
type growth struct {
	lines    []string
	failures []string
}

// levelOff checks that each resource levels off: after a warm-up (a fifth
// of the run, at least 30 s), the mean of the last third of the samples may
// exceed the middle third's by a tolerance, no more.
func levelOff(samples []sample, d time.Duration) growth {
	var g growth
	warmup := max(30*time.Second, d/5)
	var kept []sample
	for _, s := range samples {
		if s.at >= warmup {
			kept = append(kept, s)
		}
	}
	if len(kept) < 6 {
		g.lines = append(g.lines, fmt.Sprintf("growth: %d samples after the %v warm-up, too few to judge; soak longer", len(kept), warmup))
		return g
	}
	third := len(kept) / 3
	mid, last := kept[third:2*third], kept[len(kept)-third:]
	for _, m := range []struct {
		name     string
		value    func(sample) float64
		rel, abs float64
		unit     string
	}{
		{"RSS", func(s sample) float64 { return float64(s.rssKiB) / 1024 }, 0.15, 8, " MiB"},
		{"goroutines", func(s sample) float64 { return float64(s.goroutines) }, 0.15, 20, ""},
		{"PostgreSQL connections", func(s sample) float64 { return float64(s.pgConns) }, 0, 3, ""},
		{"AMQP connections", func(s sample) float64 { return float64(s.amqpConns) }, 0, 1, ""},
		{"AMQP channels", func(s sample) float64 { return float64(s.amqpChannels) }, 0, 2, ""},
	} {
		if m.name == "AMQP channels" && kept[0].amqpChannels < 0 {
			g.lines = append(g.lines, "growth: AMQP channels not measured (rabbitmqctl unavailable)")
			continue
		}
		a, b := mean(mid, m.value), mean(last, m.value)
		limit := a*(1+m.rel) + m.abs
		line := fmt.Sprintf("growth: %s: middle third %.1f%s, last third %.1f%s (limit %.1f%s)", m.name, a, m.unit, b, m.unit, limit, m.unit)
		g.lines = append(g.lines, line)
		if b > limit {
			g.failures = append(g.failures, "still growing after the warm-up: "+strings.TrimPrefix(line, "growth: "))
		}
	}
	return g
}

func mean(s []sample, f func(sample) float64) float64 {
	sum := 0.0
	for _, x := range s {
		sum += f(x)
	}
	return sum / float64(len(s))
}
