package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/cmd/eventbus/internal/bench"
)

// TestBenchCommand runs a tiny bench on the embedded default and reads its
// JSON report; the figures themselves are never checked.
func TestBenchCommand(t *testing.T) {
	embeddedOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"bench", "--events", "300", "--scenario", "e2e-16,replay", "--json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the output is not a JSON report: %v\n%s", err, stdout.String())
	}
	if len(rep.Scenarios) != 2 || rep.Scenarios[0].Name != bench.E2E16 || rep.Scenarios[1].Name != bench.Replay {
		t.Fatalf("scenarios %+v, want e2e-16 and replay", rep.Scenarios)
	}
	for _, s := range rep.Scenarios {
		if s.Error != "" || s.Events != 300 {
			t.Errorf("%s: %d events, error %q; want 300 and none", s.Name, s.Events, s.Error)
		}
	}
	if !strings.Contains(stderr.String(), "e2e-16") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

// TestBenchCPUProfile runs a tiny bench with --cpuprofile: the file holds a
// profile, and a run's report is printed as without it.
func TestBenchCPUProfile(t *testing.T) {
	skipWhileProfiling(t)
	embeddedOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	profile := filepath.Join(t.TempDir(), "bench.pprof")
	code := run(ctx, []string{"bench", "--events", "100", "--scenario", "e2e-16", "--json", "--cpuprofile", profile}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	if !json.Valid(stdout.Bytes()) {
		t.Errorf("no JSON report:\n%s", stdout.String())
	}
	// A profile is gzip-compressed protocol buffers.
	if b, err := os.ReadFile(profile); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile wrote no profile: %d bytes, %v", len(b), err)
	}
}

// TestBenchProfileNotWritable checks that a profile that cannot be created
// stops the run before it starts, naming the flag: no report, no scenario.
func TestBenchProfileNotWritable(t *testing.T) {
	embeddedOnly(t)
	missing := filepath.Join(t.TempDir(), "no-such-dir", "bench.pprof")
	for _, args := range [][]string{
		{"bench", "--events", "10", "--scenario", "e2e-16", "--cpuprofile", missing},
		{"bench", "--scenario", "reads", "--sizes", "10", "--cpuprofile", missing},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), "--cpuprofile") || stdout.Len() != 0 || strings.Contains(stderr.String(), "opening the service") {
			t.Errorf("eventbus %s: exit %d, want a failure naming --cpuprofile before anything ran\nstdout:\n%s\nstderr:\n%s",
				strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}

// embeddedOnly points the bench at a fresh embedded default.
func embeddedOnly(t *testing.T) {
	for _, env := range []string{"EVENTBUS_DATABASE_URL", "EVENTBUS_AMQP_URL", "EVENTBUS_API_TOKENS", "EVENTBUS_EXCHANGE", "EVENTBUS_HTTP_ADDR"} {
		t.Setenv(env, "")
	}
	t.Setenv("EVENTBUS_DATA_DIR", t.TempDir())
}

// skipWhileProfiling skips a test that profiles when the test binary is
// profiled already (go test -cpuprofile): Go runs one CPU profile at a
// time.
func skipWhileProfiling(t *testing.T) {
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Skipf("a CPU profile is running already (go test -cpuprofile?): %v", err)
	}
	pprof.StopCPUProfile()
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--scenario", "e2e-99"},
		{"bench", "--duration", "-1s"},
		{"bench", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("eventbus %s: exit %d, want 2\n%s", strings.Join(args, " "), code, stderr.String())
		}
	}
}
