package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestTailFollowsFromAPosition: tail --from N prints the events from
// position N on, in commit order, then the ones that commit while it runs,
// and stops cleanly on SIGTERM.
func TestTailFollowsFromAPosition(t *testing.T) {
	dir := t.TempDir()
	var ids []string
	publish := func(score int) {
		r := mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quizJSON(score))
		ids = append(ids, eventIDs(t, r.stdout)...)
	}
	for i := 0; i < 3; i++ {
		publish(i)
	}
	cmd := exec.Command(eventbusBin, "tail", "--from", "2", "--json", "--poll", "20ms")
	cmd.Dir = dir
	cmd.Env = baseEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() (id string, position string) {
		t.Helper()
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("tail stopped printing")
			}
			var e struct{ ID, Position string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("tail printed %q: %v", line, err)
			}
			return e.ID, e.Position
		case <-time.After(30 * time.Second):
			t.Fatal("tail printed nothing for 30s")
		}
		return "", ""
	}
	for i, want := range ids[1:] {
		if id, pos := next(); id != want {
			t.Fatalf("tail line %d is event %s at position %s, want %s", i, id, pos, want)
		}
	}
	publish(3) // committed while tail follows
	if id, _ := next(); id != ids[3] {
		t.Fatalf("tail printed %s, want the new event %s", id, ids[3])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail after SIGTERM: %v, want exit 0", err)
	}
}
