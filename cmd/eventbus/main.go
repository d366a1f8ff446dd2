// Command eventbus runs and operates the EduPulse event bus: the HTTP API and
// relay (serve), schema migrations, publishing, querying and tailing events,
// replays, relay status, dead letters and benchmarks.
//
// Configuration comes from a YAML file (--config, EVENTBUS_CONFIG),
// overridden by EVENTBUS_* environment variables, overridden by flags;
// `eventbus config` shows the result. With none, it runs on the embedded default (SQLite under
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
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a, root := newApp(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	// One line, whatever the error's text, and never a secret: every
	// message we write leaves them out, this is the net under them.
	msg := redactSecrets(oneLine(err.Error()), a.secrets())
	msg = strings.TrimPrefix(msg, "eventbus: ") // ours comes first
	var usage *usageError
	if errors.As(err, &usage) {
		// One line: what was wrong, and where the usage is. The whole
		// usage would bury the one line that matters.
		help := "eventbus --help"
		if usage.cmd != nil {
			help = usage.cmd.CommandPath() + " --help"
		}
		fmt.Fprintf(stderr, "eventbus: %s (see '%s')\n", msg, help)
		return 2
	}
	fmt.Fprintf(stderr, "eventbus: %s\n", msg)
	return 1
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), "; ")
}

// redactSecrets replaces every occurrence of a secret in s.
func redactSecrets(s string, secrets []string) string {
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}
