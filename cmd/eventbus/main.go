// Command eventbus runs and operates the EduPulse event bus: the HTTP API and
// relay (serve), schema migrations, publishing, querying and tailing events,
// replays, relay status, dead letters and benchmarks.
//
// Configuration comes from EVENTBUS_* environment variables, overridden by
// flags; with none, it runs on the embedded default (SQLite under
// ./eventbus-data and an in-process broker). Exit codes: 0 success, 1 a
// runtime failure, 2 a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Fprintf(stderr, "eventbus: %v\n\n", err)
		if usage.cmd != nil {
			fmt.Fprint(stderr, usage.cmd.UsageString())
		}
		return 2
	}
	fmt.Fprintf(stderr, "eventbus: %v\n", err)
	return 1
}
