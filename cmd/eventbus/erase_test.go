package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/erasure"
)

// TestEraseCommand: 'erase' on the embedded store makes a learner's score
// read as null, marked erased, in 'events' (JSON and table), records who
// erased; 'erase --server' does the same through a running serve; 'keys
// rotate' moves the keys to a new master key, after which the new key
// alone reads them.
func TestEraseCommand(t *testing.T) {
	dir := t.TempDir()
	learner, other := uuid.NewString(), uuid.NewString()
	quiz := func(l string, score int) string {
		return `{"quiz_id":"` + uuid.NewString() + `","learner_id":"` + l + `","score_raw":` + string(rune('0'+score)) + `31337}`
	}
	mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quiz(learner, 1))
	mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quiz(other, 2))
	key, err := os.ReadFile(filepath.Join(dir, "eventbus-data", "master.key"))
	if err != nil {
		t.Fatalf("the embedded default keeps its master key in its data directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "eventbus-data", "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v %v, want mode 0600", fi.Mode(), err)
	}

	r := mustRunCLI(t, dir, nil, "erase", learner)
	if !strings.Contains(r.stdout, "erased "+learner) {
		t.Fatalf("erase: %v", r)
	}
	if r := runCLI(t, dir, nil, "erase", "a\x01b"); r.code != 2 {
		t.Errorf("erase with a control character: want exit 2; %v", r)
	}
	r = mustRunCLI(t, dir, nil, "events", "--json")
	var erasures, erased int
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e struct {
			Type   string         `json:"type"`
			Erased bool           `json:"erased"`
			Data   map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Type == "datasubject.erased":
			erasures++
			if e.Data["data_subject"] != learner || !strings.HasPrefix(e.Data["erased_by"].(string), "cli:") {
				t.Errorf("erasure event: %s", line)
			}
		case e.Data["learner_id"] == learner:
			erased++
			if v, ok := e.Data["score_raw"]; !ok || v != nil || !e.Erased {
				t.Errorf("erased quiz: %s", line)
			}
		default:
			if e.Erased || e.Data["score_raw"] == nil {
				t.Errorf("the other learner's quiz: %s", line)
			}
		}
	}
	if erasures != 1 || erased != 1 {
		t.Fatalf("%d erasure events and %d erased quizzes in %s", erasures, erased, r.stdout)
	}
	if r := mustRunCLI(t, dir, nil, "events"); !strings.Contains(r.stdout, "quiz.submitted [erased]") {
		t.Errorf("the table does not mark the erased event: %s", r.stdout)
	}

	serve := start(t, eventbusBin, dir, nil, "serve", "--http-addr", "127.0.0.1:0")
	r = mustRunCLI(t, dir, nil, "erase", "--server", serve.url(), other)
	if !strings.Contains(r.stdout, "erased "+other) {
		t.Fatalf("erase --server: %v", r)
	}
	serve.stop(15)
	if r := mustRunCLI(t, dir, nil, "events", "--json"); strings.Count(r.stdout, `"erased":true`) != 2 || !strings.Contains(r.stdout, `"erased_by":"http (auth off)"`) {
		t.Errorf("after erase --server: %s", r.stdout)
	}

	// Rotation: a third learner's key moves to a new master key.
	third := uuid.NewString()
	mustRunCLI(t, dir, nil, "publish", "quiz.submitted", quiz(third, 3))
	newKey, err := erasure.NewKEKText()
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"EVENTBUS_MASTER_KEY=" + newKey + "," + strings.TrimSpace(string(key))}
	if r := mustRunCLI(t, dir, both, "keys", "rotate"); !strings.Contains(r.stdout, "rewrapped 1 data subject keys") {
		t.Fatalf("keys rotate: %v", r)
	}
	r = mustRunCLI(t, dir, []string{"EVENTBUS_MASTER_KEY=" + newKey}, "events", "--json")
	if !strings.Contains(r.stdout, `"score_raw":331337`) {
		t.Errorf("after rotation the new key alone does not read the third quiz: %s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, newKey) {
		t.Error("the output shows the master key")
	}
}
