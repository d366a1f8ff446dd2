package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/testenv"
	// The eventbus binary the tests build is made of these packages.
	// Importing them puts them in the test binary, so that go test's result
	// cache is invalidated when they change (see trackCommandSources).
	_ "github.com/edupulse/eventbus/service"
)

var (
	flagChaosDuration = flag.Duration("chaos.duration", 0,
		"how long TestChaos injects faults (default 2m when CI or "+testenv.RequireServicesEnv+"=1 is set, 20s otherwise, 10s with -short)")
	flagChaosSeed    = flag.Int64("chaos.seed", 0, "seed of TestChaos's schedule of faults (default: a fresh one, printed)")
	flagChaosRate    = flag.Int("chaos.rate", 300, "events per second TestChaos's producers aim at")
	flagSoakDuration = flag.Duration("soak.duration", 0, "run TestSoak this long (default 0: skipped)")
	flagSoakRate     = flag.Int("soak.rate", 2000, "events per second during TestSoak")
	flagSoakSample   = flag.Duration("soak.sample", 0, "time between TestSoak's samples (default: a 30th of the duration, within 2s to 30s)")
)

// chaosDuration is -chaos.duration, or its default: a 2-minute run in CI, a
// short one for a developer's go test ./...
func chaosDuration() time.Duration {
	switch {
	case *flagChaosDuration > 0:
		return *flagChaosDuration
	case os.Getenv("CI") != "" || testenv.RequireServices():
		return 2 * time.Minute
	case testing.Short():
		return 10 * time.Second
	}
	return 20 * time.Second
}

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		// This binary was started again as a consumer process.
		os.Exit(runWorkerProcess())
	}
	flag.Parse()
	trackCommandSources()
	code := m.Run()
	build.cleanup()
	if code == 0 {
		if err := goleak.Find(testenv.FaultProxyLeaks...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// commandDir is the eventbus command's source, relative to this package.
const commandDir = "../../cmd/eventbus"

// trackCommandSources reads the command's source files. go test caches a
// passing result keyed by the test binary and the files the test opened;
// the command is built with go build, outside the test binary, so reading
// its sources here is what makes a change to them run the tests again.
func trackCommandSources() {
	entries, err := os.ReadDir(commandDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") {
			_, _ = os.ReadFile(filepath.Join(commandDir, e.Name()))
		}
	}
}

// binaryBuild is the eventbus binary, built once per test run.
type binaryBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

var build binaryBuild

// cleanup removes the binary.
func (b *binaryBuild) cleanup() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// eventbusBinary builds ./cmd/eventbus (with the race detector when the
// tests run with it) and returns its path.
func eventbusBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "eventbus-chaos-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "eventbus")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/edupulse/eventbus/cmd/eventbus")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		start := time.Now()
		out, err := exec.Command(goTool, args...).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "chaos: built the eventbus command (race detector %v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	})
	if build.err != nil {
		t.Fatalf("build the eventbus command: %v", build.err)
	}
	return build.path
}
