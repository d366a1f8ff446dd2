package buildinfo_test

import (
	"maps"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/buildinfo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFromBuildInfoOfTheEventbusCommand(t *testing.T) {
	got := buildinfo.FromBuildInfo(&debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: buildinfo.ModulePath, Version: "v0.1.0"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "0c9658412345"},
			{Key: "vcs.time", Value: "2026-12-06T01:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	})
	want := buildinfo.Info{Version: "v0.1.0", Revision: "0c9658412345", RevisionTime: "2026-12-06T01:00:00Z",
		Modified: true, GoVersion: "go1.26.8", Platform: "linux/arm64"}
	if got != want {
		t.Fatalf("FromBuildInfo = %+v, want %+v", got, want)
	}
	text := got.String()
	for _, line := range []string{"version:   v0.1.0\n", "revision:  0c9658412345 (modified", "go:        go1.26.8\n", "platform:  linux/arm64\n"} {
		if !strings.Contains(text, line) {
			t.Errorf("String() = %q, want a line %q", text, line)
		}
	}
}

// A program that embeds the bus reports the bus's version, not its own.
func TestFromBuildInfoOfAProgramThatEmbedsTheBus(t *testing.T) {
	got := buildinfo.FromBuildInfo(&debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "example.com/worker", Version: "v3.0.0"},
		Deps: []*debug.Module{
			{Path: "github.com/google/uuid", Version: "v1.6.0"},
			{Path: buildinfo.ModulePath, Version: "v0.2.0"},
		},
	})
	if got.Version != "v0.2.0" || got.Revision != buildinfo.Unknown || got.Modified {
		t.Fatalf("FromBuildInfo = %+v, want version v0.2.0, revision %q, not modified", got, buildinfo.Unknown)
	}
	replaced := buildinfo.FromBuildInfo(&debug.BuildInfo{
		Main: debug.Module{Path: "example.com/worker"},
		Deps: []*debug.Module{{Path: buildinfo.ModulePath, Version: "v0.2.0",
			Replace: &debug.Module{Path: "example.com/fork/eventbus", Version: "v0.2.1-fork"}}},
	})
	if replaced.Version != "v0.2.1-fork" {
		t.Fatalf("replaced module: version %q, want v0.2.1-fork", replaced.Version)
	}
}

func TestFromBuildInfoWithoutAnyRecordsWhatItKnows(t *testing.T) {
	got := buildinfo.FromBuildInfo(nil)
	if got.Version != buildinfo.Unknown || got.Revision != buildinfo.Unknown ||
		got.GoVersion != runtime.Version() || got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("FromBuildInfo(nil) = %+v", got)
	}
	if strings.Contains(got.String(), "committed:") {
		t.Errorf("String() shows a commit time it does not have: %q", got.String())
	}
}

// The test binary is built by go test: Read sees this module as the main
// one, and the toolchain that runs the test.
func TestReadReportsTheRunningBinary(t *testing.T) {
	got := buildinfo.Read()
	if got.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", got.GoVersion, runtime.Version())
	}
	if got.Version == "" || got.Revision == "" {
		t.Errorf("Read() = %+v: empty version or revision (want a value or %q)", got, buildinfo.Unknown)
	}
}

func TestCollectorExportsOneGaugeWithTheBuildLabels(t *testing.T) {
	info := buildinfo.Info{Version: "v0.1.0", Revision: "abc123", GoVersion: "go1.26.8"}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(buildinfo.Collector(info)); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 || families[0].GetName() != buildinfo.MetricName || len(families[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one %s series", families, buildinfo.MetricName)
	}
	m := families[0].GetMetric()[0]
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Errorf("value %v, want 1", v)
	}
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	want := map[string]string{"version": "v0.1.0", "revision": "abc123", "goversion": "go1.26.8"}
	if !maps.Equal(labels, want) {
		t.Errorf("labels %v, want %v", labels, want)
	}
}
