package chaos

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/testenv"
	// The eventbus binary the tests build is made of these packages.
	// Importing them puts them in the test binary, so that go test's result
	// cache is invalidated when they change (see testenv.EventbusBinary).
	_ "github.com/edupulse/eventbus/service"
)

var (
	flagChaosDuration = flag.Duration("chaos.duration", 0,
		"how long TestChaos injects faults (default 2m when CI or "+testenv.RequireServicesEnv+"=1 is set, 20s otherwise, 10s with -short)")
	flagChaosSeed    = flag.Int64("chaos.seed", 0, "seed of TestChaos's schedule of faults (default: a fresh one, printed)")
	flagChaosRate    = flag.Int("chaos.rate", 300, "events per second TestChaos's producers aim at")
	flagPartitions   = flag.Int("chaos.partitions", 1, "EVENTBUS_RELAY_PARTITIONS of serve and the second relay: with more than 1 they share the partitions")
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
	// The eventbus binary the tests build is made of the command's files
	// and the packages imported above.
	testenv.TrackSources(commandDir)
	code := m.Run()
	testenv.RemoveEventbusBinary()
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

// eventbusBinary builds ./cmd/eventbus (with the race detector when the
// tests run with it) and returns its path.
func eventbusBinary(t testing.TB) string { return testenv.EventbusBinary(t, raceEnabled) }
