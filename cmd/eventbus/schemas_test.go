package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/event"
)

// exampleSchemas is the example schema directory, from this package.
var exampleSchemas, _ = filepath.Abs("../../examples/schemas")

// TestSchemasCheck: check exits 0 on a good directory and 1 naming each bad
// file on one line of its own; a missing argument is a usage error.
func TestSchemasCheck(t *testing.T) {
	dir := t.TempDir()
	r := mustRunCLI(t, dir, nil, "schemas", "check", exampleSchemas)
	if !strings.Contains(r.stdout, "2 types in 3 files, all valid") {
		t.Fatalf("check of the examples: %v", r)
	}
	bad := t.TempDir()
	for name, content := range map[string]string{
		"course.completed.v1.json": `{"type":"object"}`,
		"course.completed.v3.json": `{"type":"object"}`,
		"quiz.submitted.v3.json":   `{"type":"object"}`,
		"broken.v1.json":           `{"type":`,
		"notes.txt":                "hello",
	} {
		if err := os.WriteFile(filepath.Join(bad, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = runCLI(t, dir, nil, "schemas", "check", bad)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 1 || len(lines) != 5 {
		t.Fatalf("check of a bad directory: want exit 1 and 4 files and a summary on stderr; %v", r)
	}
	for i, want := range []string{"broken.v1.json: is not valid JSON", "course.completed.v3.json: is version 3 of course.completed, but there is no version 2",
		"notes.txt: is not named", "quiz.submitted.v3.json: declares quiz.submitted, a type registered in Go", "4 bad files"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want it to say %q", i, lines[i], want)
		}
	}
	if r := runCLI(t, dir, nil, "schemas", "check"); r.code != 2 {
		t.Fatalf("check without DIR: %v", r)
	}
	// serve refuses to start on the same directory, naming the files.
	r = runCLI(t, dir, []string{"EVENTBUS_SCHEMA_DIR=" + bad}, "serve", "--http-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "broken.v1.json: is not valid JSON") || !strings.Contains(r.stderr, "EVENTBUS_SCHEMA_DIR") {
		t.Fatalf("serve with a bad schema directory: %v", r)
	}
}

// TestSchemasList: list shows a directory, this build with
// EVENTBUS_SCHEMA_DIR, and a server, as a table or as the JSON of GET
// /v1/schemas.
func TestSchemasList(t *testing.T) {
	dir := t.TempDir()
	r := mustRunCLI(t, dir, nil, "schemas", "list", exampleSchemas)
	for _, want := range []string{"TYPE", "course.completed    file    1, 2      learner_id    grade, feedback", "forum.post.created  file    1         author_id     body"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list DIR does not show %q:\n%s", want, r.stdout)
		}
	}
	r = mustRunCLI(t, dir, []string{"EVENTBUS_SCHEMA_DIR=" + exampleSchemas}, "schemas", "list", "--output", "json")
	var local struct{ Types []event.TypeInfo }
	if err := json.Unmarshal([]byte(r.stdout), &local); err != nil || len(local.Types) != 5 {
		t.Fatalf("list --output json with EVENTBUS_SCHEMA_DIR: %v %v", err, r)
	}
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_SCHEMA_DIR=" + exampleSchemas}, "serve", "--http-addr", "127.0.0.1:0")
	r = mustRunCLI(t, dir, nil, "schemas", "list", "--server", serve.url(), "-o", "json")
	var remote struct{ Types []event.TypeInfo }
	if err := json.Unmarshal([]byte(r.stdout), &remote); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(local.Types)
	b, _ := json.Marshal(remote.Types)
	if string(a) != string(b) {
		t.Fatalf("the server lists\n%s\nthis build with the directory\n%s", b, a)
	}
	if r := runCLI(t, dir, nil, "schemas", "list", "--output", "yaml"); r.code != 2 {
		t.Fatalf("--output yaml: %v", r)
	}
}

// TestPythonSnippetPublishes: the Python snippet of docs/declared-types.md
// (examples/declared/publish.py) publishes a declared type to a running
// serve and shows the 422 with the path and rule of the error.
func TestPythonSnippetPublishes(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_SCHEMA_DIR=" + exampleSchemas}, "serve", "--http-addr", "127.0.0.1:0")
	ctx, cancel := contextWithTimeout(time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "../../examples/declared/publish.py", serve.url()).CombinedOutput()
	if err != nil {
		t.Fatalf("publish.py: %v\n%s", err, out)
	}
	want := `201 urn:edupulse:schema:course.completed:2`
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "422 invalid event course.completed (version 2): /grade: must be <= 100") ||
		!strings.Contains(string(out), "/grade maximum must be <= 100") {
		t.Fatalf("publish.py printed:\n%s", out)
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// TestNodeSnippetPublishes: the Node snippet (examples/declared/publish.mjs)
// publishes a declared type as a CloudEvent.
func TestNodeSnippetPublishes(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	serve := start(t, eventbusBin, dir, []string{"EVENTBUS_SCHEMA_DIR=" + exampleSchemas}, "serve", "--http-addr", "127.0.0.1:0")
	ctx, cancel := contextWithTimeout(time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "../../examples/declared/publish.mjs", serve.url()).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "fetch is not defined") {
			t.Skip("node is older than 18")
		}
		t.Fatalf("publish.mjs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "201 urn:edupulse:schema:forum.post.created:1") {
		t.Fatalf("publish.mjs printed:\n%s", out)
	}
}

// TestStoredFlag: publish --dataschema writes a version 1 event; events
// reads it as version 2, and as written with --stored; a bad version is
// refused, naming the path of each error.
func TestStoredFlag(t *testing.T) {
	dir := t.TempDir()
	const data = `{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":93}`
	mustRunCLI(t, dir, nil, "publish", "quiz.submitted", data, "--dataschema", "urn:edupulse:schema:quiz.submitted:1")
	latest := mustRunCLI(t, dir, nil, "events", "--json")
	if !strings.Contains(latest.stdout, `"dataschema":"urn:edupulse:schema:quiz.submitted:2"`) || !strings.Contains(latest.stdout, `"score_raw":93,"max_score":null}`) {
		t.Fatalf("events --json: %s", latest.stdout)
	}
	stored := mustRunCLI(t, dir, nil, "events", "--json", "--stored")
	if !strings.Contains(stored.stdout, `"dataschema":"urn:edupulse:schema:quiz.submitted:1"`) || !strings.Contains(stored.stdout, `"data":`+data+`}`) {
		t.Fatalf("events --json --stored: %s", stored.stdout)
	}
	r := runCLI(t, dir, nil, "publish", "quiz.submitted", `{"score_raw":"x"}`, "--dataschema", "urn:edupulse:schema:quiz.submitted:1")
	if r.code != 1 || !strings.Contains(r.stderr, "/score_raw: must be integer, not string") || !strings.Contains(r.stderr, "/quiz_id: is required") {
		t.Fatalf("publish of bad version 1 data: %v", r)
	}
}
