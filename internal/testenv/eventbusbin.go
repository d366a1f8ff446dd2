package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventbusCommand is the eventbus command's import path.
const eventbusCommand = "github.com/edupulse/eventbus/cmd/eventbus"

// binaryBuild is the eventbus binary, built once per test binary.
type binaryBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

var eventbusBuild binaryBuild

// EventbusBinary builds the eventbus command once per test binary (with the
// race detector when race is set, as when the tests run with it) and
// returns its path. RemoveEventbusBinary removes it, from TestMain.
//
// The command is built by go build, outside the test binary, so go test's
// result cache does not see a change to its sources: a test package that
// runs it imports the packages it is made of, or reads their files (see
// TrackSources).
func EventbusBinary(t testing.TB, race bool) string {
	t.Helper()
	b := &eventbusBuild
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "eventbus-bin-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "eventbus")
		args := []string{"build", "-o", b.path}
		if race {
			args = append(args, "-race")
		}
		args = append(args, eventbusCommand)
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		start := time.Now()
		out, err := exec.Command(goTool, args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "testenv: built the eventbus command (race detector %v) in %v\n", race, time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatalf("build the eventbus command: %v", b.err)
	}
	return b.path
}

// RemoveEventbusBinary removes the binary EventbusBinary built, if any.
func RemoveEventbusBinary() {
	if eventbusBuild.dir != "" {
		_ = os.RemoveAll(eventbusBuild.dir)
	}
}

// TrackSources reads the .go files of dir. go test caches a passing result
// keyed by the test binary and the files the test opened: reading the
// sources of a command the tests build with go build is what makes a change
// to them run the tests again.
func TrackSources(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") {
			_, _ = os.ReadFile(filepath.Join(dir, e.Name()))
		}
	}
}
