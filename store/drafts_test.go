package store_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

func draftWithData(data string) event.Draft {
	return event.Draft{ID: uuid.New(), Type: "quiz.submitted", Source: "test", OccurredAt: time.Now(),
		CorrelationID: uuid.New(), Data: json.RawMessage(data)}
}

func nested(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

// TestDataDepthLimit: data that nests deeper than MaxDataDepth is refused,
// because the envelope around it could not be decoded by consumers; data at
// the limit goes through, and a consumer reads its envelope.
func TestDataDepthLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		ok   bool
	}{
		{"at the limit", nested(store.MaxDataDepth), true},
		{"an object at the limit", `{"a":` + nested(store.MaxDataDepth-1) + `}`, true},
		{"brackets in strings do not count", `{"a":"` + strings.Repeat("[{", 2000) + `","b":"\"[[[["}`, true},
		{"one level too deep", nested(store.MaxDataDepth + 1), false},
		{"in an object", `{"quiz_id":"x","deep":` + nested(store.MaxDataDepth) + `}`, false},
		// Valid for Go's decoder, which stops past 10,000 levels: stored,
		// its envelope would be one level too deep to decode.
		{"as deep as Go decodes", nested(10000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := draftWithData(tc.data)
			err := store.CheckDrafts([]event.Draft{d})
			if tc.ok {
				if err != nil {
					t.Fatalf("CheckDrafts: %v", err)
				}
				env := event.Envelope{ID: d.ID, Type: d.Type, Source: d.Source, OccurredAt: d.OccurredAt, CorrelationID: d.CorrelationID, Position: 1, Data: d.Data}
				m, err := broker.EnvelopeMessage(env)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := broker.DecodeMessage(m); err != nil {
					t.Fatalf("a consumer cannot decode an event the store accepts: %v", err)
				}
				return
			}
			if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "levels deep") {
				t.Fatalf("CheckDrafts: %v; want ErrInvalid saying the data nests too deep", err)
			}
		})
	}
	// Why the limit: what Go's decoder accepts as data, it cannot decode
	// inside an envelope.
	if !json.Valid([]byte(nested(10000))) {
		t.Fatal("Go's decoder no longer takes 10,000 levels; revisit this test")
	}
	m, err := broker.EnvelopeMessage(event.Envelope{ID: uuid.New(), Type: "t", Source: "s", Data: json.RawMessage(nested(10000))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.DecodeMessage(m); !errors.Is(err, event.ErrMalformed) {
		t.Fatalf("DecodeMessage of an envelope 10,001 levels deep: %v; want ErrMalformed", err)
	}
}

func TestCheckFilter(t *testing.T) {
	for _, f := range []store.Filter{
		{Subject: "a\x00b"},
		{Subject: "learner-\xc3"},
		{Types: []string{"quiz.submitted", "x\x00"}},
	} {
		if err := store.CheckFilter(f); !errors.Is(err, store.ErrBadFilter) {
			t.Errorf("CheckFilter(%+v) = %v; want ErrBadFilter", f, err)
		}
	}
	for _, f := range []store.Filter{
		{},
		{Subject: "x' OR '1'='1'; DROP TABLE event_store; --", Types: []string{"quiz.submitted'; --"}},
	} {
		if err := store.CheckFilter(f); err != nil {
			t.Errorf("CheckFilter(%+v) = %v; a filter that matches nothing is no error", f, err)
		}
	}
}
