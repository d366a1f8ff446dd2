package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/internal/buildinfo"
)

// TestVersion runs the binary TestMain built: version needs no
// configuration, opens nothing, and prints the build in text and JSON.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	// A configuration it would refuse proves that version never loads one.
	env := []string{"EVENTBUS_DATABASE_URL=mysql://nope"}
	text := mustRunCLI(t, dir, env, "version")
	for _, want := range []string{"version:   ", "revision:  ", "go:        " + runtime.Version() + "\n",
		"platform:  " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("eventbus version: no %q in\n%s", want, text.stdout)
		}
	}
	if text.stderr != "" {
		t.Errorf("eventbus version wrote to stderr: %s", text.stderr)
	}
	var info buildinfo.Info
	r := mustRunCLI(t, dir, env, "version", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("eventbus version --json: %v\n%s", err, r.stdout)
	}
	// A build from a work tree is "(devel)", or a pseudo-version where Go
	// stamps the version from the VCS; either way the module's own.
	if info.Version == "" || info.Version == buildinfo.Unknown || info.GoVersion != runtime.Version() || info.Revision == "" {
		t.Errorf("eventbus version --json = %#v, want the module's version, go %s and a revision", info, runtime.Version())
	}
	if r := runCLI(t, dir, nil, "version", "extra"); r.code != 2 {
		t.Errorf("eventbus version extra: want exit 2 (usage), got %v", r)
	}
}

// TestVersionNamesTheCommit builds the command with VCS stamping on (this
// machine's go env may turn it off) and checks that version reports the
// commit checked out.
func TestVersionNamesTheCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("SKIP: not in a git work tree with git on PATH (%v): nothing to compare the revision with", err)
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	// go build stamps VCS information only where .git is a directory, not
	// in a linked work tree (git worktree add), whose .git is a file.
	if fi, err := os.Stat(filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), ".git")); err != nil || !fi.IsDir() {
		t.Skip("SKIP: the module's .git is not a directory (a linked git worktree?): go build records no commit there")
	}
	bin := filepath.Join(t.TempDir(), "eventbus")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("eventbus version --json: %v", err)
	}
	var info buildinfo.Info
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("eventbus version --json: %v\n%s", err, out)
	}
	if want := strings.TrimSpace(string(head)); info.Revision != want {
		t.Errorf("revision %q, want HEAD %q", info.Revision, want)
	}
	if info.RevisionTime == "" {
		t.Errorf("no commit time in %#v", info)
	}
}
