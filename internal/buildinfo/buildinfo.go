// Package buildinfo says which build of the event bus is running: the
// module version, the VCS commit it was built from and whether the work tree
// had uncommitted changes, and the Go version, as runtime/debug.ReadBuildInfo
// reports them.
//
// It sits beside the service, below everything that reports a version:
// `eventbus version` prints Read, and the service registers Collector with
// its other metrics, as the gauge eventbus_build_info.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// ModulePath is the event bus's module.
const ModulePath = "github.com/edupulse/eventbus"

// Unknown stands for what the build does not record, such as the commit of
// a binary built outside a repository.
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	// Version is the event bus module's version: a tag such as v0.1.0 for
	// `go install ...@v0.1.0`, a pseudo-version, or "(devel)" for a
	// build from a work tree.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, or Unknown.
	Revision string `json:"revision"`
	// RevisionTime is the commit's time (RFC 3339), if recorded.
	RevisionTime string `json:"revision_time,omitempty"`
	// Modified is true when the work tree had uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from bi, which may be nil (a binary built
// without module support). The version is the event bus module's, whether
// it is the main module (the eventbus command) or a dependency of the
// program that embeds the bus; the VCS settings are the main module's.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: Unknown, Revision: Unknown, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return info
	}
	goos, goarch := runtime.GOOS, runtime.GOARCH
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if v := moduleVersion(bi); v != "" {
		info.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Revision = s.Value
			}
		case "vcs.time":
			info.RevisionTime = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	info.Platform = goos + "/" + goarch
	return info
}

// moduleVersion finds the event bus module among bi's modules.
func moduleVersion(bi *debug.BuildInfo) string {
	if bi.Main.Path == ModulePath {
		return bi.Main.Version
	}
	for _, dep := range bi.Deps {
		if dep.Path == ModulePath {
			if dep.Replace != nil && dep.Replace.Version != "" {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return ""
}

// String is the text `eventbus version` prints: one "key: value" line each.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version:   %s\n", i.Version)
	revision := i.Revision
	if i.Modified {
		revision += " (modified: built with uncommitted changes)"
	}
	fmt.Fprintf(&b, "revision:  %s\n", revision)
	if i.RevisionTime != "" {
		fmt.Fprintf(&b, "committed: %s\n", i.RevisionTime)
	}
	fmt.Fprintf(&b, "go:        %s\n", i.GoVersion)
	fmt.Fprintf(&b, "platform:  %s\n", i.Platform)
	return b.String()
}

// MetricName is the name of the build information gauge.
const MetricName = "eventbus_build_info"

// Collector returns the gauge eventbus_build_info for i: always 1, with the
// labels version, revision and goversion, so that dashboards can show which
// build runs where and join it to other series.
func Collector(i Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricName,
		Help: "Always 1; its labels say which build of the event bus is running (module version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.Revision,
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
