package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestExample: the version 1 event reads as version 2 with max_score
// null, and as stored when asked.
func TestExample(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), t.TempDir(), &out); err != nil {
		t.Fatal(err)
	}
	want := `as every reader gets them (the latest version):
  1 urn:edupulse:schema:quiz.submitted:2 {"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000042","score_raw":7,"max_score":null}
  2 urn:edupulse:schema:quiz.submitted:2 {"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000002","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000042","score_raw":9,"max_score":10}
as stored (event.WithStoredVersions; ?stored=true over HTTP):
  1 urn:edupulse:schema:quiz.submitted:1 {"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000042","score_raw":7}
  2 urn:edupulse:schema:quiz.submitted:2 {"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000002","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000042","score_raw":9,"max_score":10}
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, strings.TrimSpace(want))
	}
}
