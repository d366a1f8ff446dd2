package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestNoEnvironmentAtAll runs the binary with nothing but PATH and HOME in
// a fresh directory: serve runs on the embedded default and says so, events
// published through the CLI and through HTTP read back with `eventbus
// events`, and they are still there after a restart.
func TestNoEnvironmentAtAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Only the address is given, on the command line: the default port may
	// be taken on a shared machine.
	serve := start(t, eventbusBin, dir, nil, "serve", "--http-addr", "127.0.0.1:0")
	data, err := filepath.EvalSymlinks(filepath.Join(dir, "eventbus-data"))
	if err != nil {
		t.Fatalf("serve made no ./eventbus-data: %v", err)
	}
	serve.mu.Lock()
	first := slices.Clone(serve.lines[:2])
	serve.mu.Unlock()
	for i, want := range []string{"embedded default: SQLite event store; the data lives in " + data, "embedded default: in-process broker"} {
		if msg := fmt.Sprint(first[i]["msg"]); !strings.Contains(msg, want) {
			t.Errorf("log line %d is %q; want it to say %q", i+1, msg, want)
		}
	}

	cli := mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quizJSON(93), "--subject", "quiz-1")
	var published struct{ ID string }
	if err := json.Unmarshal([]byte(cli.stdout), &published); err != nil || published.ID == "" {
		t.Fatalf("publish printed no CloudEvent: %v", cli)
	}
	status, body := serve.call("POST", "/v1/events", "", `{"type":"quiz.submitted","subject":"quiz-1","data":`+quizJSON(40)+`}`)
	if status != 201 {
		t.Fatalf("POST /v1/events: %d %s", status, body)
	}
	var posted struct{ ID string }
	if err := json.Unmarshal([]byte(body), &posted); err != nil {
		t.Fatal(err)
	}
	want := []string{published.ID, posted.ID}
	readBack := func(when string) {
		t.Helper()
		r := mustRunCLI(t, dir, nil, "events", "--json")
		if got := eventIDs(t, r.stdout); !slices.Equal(got, want) {
			t.Fatalf("%s: eventbus events --json lists %v, want %v", when, got, want)
		}
		r = mustRunCLI(t, dir, nil, "events", "--subject", "quiz-1")
		if !strings.Contains(r.stdout, "POSITION") || strings.Count(r.stdout, "quiz.submitted") != len(want) {
			t.Fatalf("%s: eventbus events as a table: %v", when, r)
		}
	}
	readBack("while serving")
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d; its log:\n%s", code, serve.log())
	}
	readBack("after the stop")

	serve = start(t, eventbusBin, dir, nil, "serve", "--http-addr", "127.0.0.1:0")
	status, body = serve.call("POST", "/v1/events", "", `{"type":"quiz.submitted","subject":"quiz-1","expected_version":2,"data":`+quizJSON(77)+`}`)
	if status != 201 {
		t.Fatalf("POST /v1/events after the restart, at stream version 2: %d %s", status, body)
	}
	if err := json.Unmarshal([]byte(body), &posted); err != nil {
		t.Fatal(err)
	}
	want = append(want, posted.ID)
	readBack("after the restart")
	if code := serve.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d; its log:\n%s", code, serve.log())
	}
}

// TestKilledEmbeddedProcessDeliversEveryEventAfterRestart proves the
// documented limit of the in-process broker and its remedy. The embedworker
// runs the service with a consumer that records every event it receives,
// slowly. It is killed (SIGKILL) once the store holds all the events but
// the consumer has received only some: the messages in its in-process
// broker die with it. Restarted, its relay publishes again every event the
// consumer had not settled, and the consumer receives them all.
func TestKilledEmbeddedProcessDeliversEveryEventAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	record := filepath.Join(dir, "received.txt")
	env := []string{"EVENTBUS_HTTP_ADDR=127.0.0.1:0", "EMBEDWORKER_RECORD=" + record}
	worker := start(t, embedworkerBin, dir, append(env, "EMBEDWORKER_DELAY=10ms"))

	const n = 200
	var batch []string
	for i := range n {
		batch = append(batch, `{"type":"quiz.submitted","data":`+quizJSON(i)+`}`)
	}
	status, body := worker.call("POST", "/v1/events", "", `{"events":[`+strings.Join(batch, ",")+`]}`)
	if status != 201 {
		t.Fatalf("POST /v1/events: %d %s", status, body)
	}
	var stored struct{ Events []struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &stored); err != nil || len(stored.Events) != n {
		t.Fatalf("stored %d events (%v), want %d", len(stored.Events), err, n)
	}
	// Committed, and being delivered one every 10 ms: kill it midway.
	waitReceived(t, record, 20)
	if code := worker.stop(syscall.SIGKILL); code != -1 {
		t.Fatalf("the worker exited %d before the kill", code)
	}
	before := received(t, record)
	if len(distinct(before)) >= n {
		t.Fatalf("the consumer received all %d events before the kill: the test proves nothing; slow it down", n)
	}
	t.Logf("received %d of %d events before the kill", len(distinct(before)), n)

	start(t, embedworkerBin, dir, append(env, "EMBEDWORKER_DELAY=0"))
	waitReceived(t, record, n)
	got := distinct(received(t, record))
	for _, e := range stored.Events {
		if !got[e.ID] {
			t.Errorf("event %s was never received", e.ID)
		}
	}
}

// received returns the event IDs the embedworker recorded.
func received(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func distinct(ids []string) map[string]bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// waitReceived waits until the embedworker has recorded n distinct events.
func waitReceived(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(distinct(received(t, path))) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d distinct events, want %d", len(distinct(received(t, path))), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeadLettersThroughServerOnTheEmbeddedDefault reaches the in-process
// broker of a running embedded service through --server: dlq list shows the
// dead letters its consumer gave up on, dlq requeue puts them back, and the
// consumer, failing again, dead-letters them again.
func TestDeadLettersThroughServerOnTheEmbeddedDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const admin = "admin-token-for-dead-letters"
	env := []string{"EVENTBUS_HTTP_ADDR=127.0.0.1:0", "EMBEDWORKER_RECORD=" + filepath.Join(dir, "received.txt"),
		"EVENTBUS_API_TOKENS=ops:" + admin + ":admin"}
	worker := start(t, embedworkerBin, dir, env)
	cli := []string{"EVENTBUS_TOKEN=" + admin}

	var ids []string
	for i := range 3 {
		id := uuid.NewString()
		ids = append(ids, id)
		body := fmt.Sprintf(`{"id":%q,"type":"lesson.published","data":{"lesson_id":%q,"teacher_id":%q,"title":"Lesson %d"}}`,
			id, uuid.NewString(), uuid.NewString(), i)
		if status, answer := worker.call("POST", "/v1/events", admin, body); status != 201 {
			t.Fatalf("POST /v1/events: %d %s", status, answer)
		}
	}
	list := func() result {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r := mustRunCLI(t, dir, cli, "dlq", "list", "rejecter", "--server", worker.url())
			if strings.Count(r.stdout, "lesson.published") == len(ids) || time.Now().After(deadline) {
				return r
			}
		}
	}
	r := list()
	for _, id := range ids {
		if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "rejected by the test") {
			t.Fatalf("dlq list --server: want %s with its reason; %v", id, r)
		}
	}
	if r := mustRunCLI(t, dir, cli, "dlq", "list", "rejecter", "--server", worker.url(), "--json"); !json.Valid([]byte(r.stdout)) {
		t.Errorf("dlq list --json is not JSON: %v", r)
	}
	r = mustRunCLI(t, dir, cli, "dlq", "requeue", "rejecter", "--id", ids[0], "--server", worker.url())
	if strings.TrimSpace(r.stdout) != "requeued 1 dead letters to rejecter" {
		t.Fatalf("dlq requeue --id: %v", r)
	}
	r = mustRunCLI(t, dir, cli, "dlq", "requeue", "rejecter", "--all", "--server", worker.url())
	if !strings.HasPrefix(r.stdout, "requeued ") {
		t.Fatalf("dlq requeue --all: %v", r)
	}
	// Each went back to the queue, failed again, and is dead-lettered again.
	r = list()
	for _, id := range ids {
		if strings.Count(r.stdout, id) != 1 {
			t.Errorf("after requeue: want %s once in the dead letters; %v", id, r)
		}
	}
	// Without --server the CLI cannot reach another process's broker, and
	// says how to.
	r = runCLI(t, dir, cli, "dlq", "list", "rejecter")
	if r.code != 1 || !strings.Contains(r.stderr, "use --server") {
		t.Errorf("dlq list without --server on the embedded default: %v", r)
	}
}
