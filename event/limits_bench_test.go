package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edupulse/eventbus/event"
)

// typicalData is a quiz.submitted payload of about 200 bytes.
var typicalData = []byte(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"0190d1e2-7c4a-7b3e-8f00-000000000002","score_raw":93,"answers":[1,3,2,4],"note":"Ratios \u00e9 <b>ok</b>","tags":{"unit":"ratios","try":2}}`)

// BenchmarkCheckData is the strict check that every dispatch runs on its
// data: go test -run '^$' -bench CheckData -benchmem ./event/
func BenchmarkCheckData(b *testing.B) {
	b.SetBytes(int64(len(typicalData)))
	b.ReportAllocs()
	for b.Loop() {
		if err := event.CheckData(typicalData); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONValid is encoding/json's syntax check alone, for scale: the
// checks CheckData replaced were it, utf8.Valid and a depth scan.
func BenchmarkJSONValid(b *testing.B) {
	b.SetBytes(int64(len(typicalData)))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(typicalData) {
			b.Fatal("not valid")
		}
	}
}

// BenchmarkCheckDraft is every input limit of a typical draft.
func BenchmarkCheckDraft(b *testing.B) {
	d := event.Draft{Type: "quiz.submitted", Source: "quiz-service", Subject: "quiz-0190d1e2", OccurredAt: time.Now(),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Data: typicalData}
	b.ReportAllocs()
	for b.Loop() {
		if err := event.CheckDraft(&d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckSource is a source with a scheme, which net/url reads too.
func BenchmarkCheckSource(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := event.CheckSource("urn:edupulse:quiz"); err != nil {
			b.Fatal(err)
		}
	}
}
