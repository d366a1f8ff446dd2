package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// BenchmarkCheckDrafts is what every append checks of one typical event
// (about 200 bytes of data), input limits included:
// go test -run '^$' -bench CheckDrafts -benchmem ./store/
func BenchmarkCheckDrafts(b *testing.B) {
	drafts := []event.Draft{{ID: uuid.New(), Type: "quiz.submitted", Source: "quiz-service", Subject: "quiz-0190d1e2",
		OccurredAt: time.Now(), CorrelationID: uuid.New(), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Data: json.RawMessage(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000002","score_raw":93,"answers":[1,3,2,4],"note":"Ratios \u00e9 <b>ok</b>","tags":{"unit":"ratios","try":2}}`)}}
	b.ReportAllocs()
	for b.Loop() {
		if err := store.CheckDrafts(drafts); err != nil {
			b.Fatal(err)
		}
	}
}
