package cluster

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/testenv"
	// The eventbus binary the tests build is made of these packages.
	// Importing them puts them in the test binary, so that go test's result
	// cache is invalidated when they change (see testenv.EventbusBinary).
	_ "github.com/edupulse/eventbus/service"
)

// commandDir is the eventbus command's source, relative to this package.
const commandDir = "../../cmd/eventbus"

func TestMain(m *testing.M) {
	testenv.TrackSources(commandDir)
	code := m.Run()
	testenv.RemoveEventbusBinary()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
