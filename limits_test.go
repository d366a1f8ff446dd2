package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// noteAdded carries raw JSON in a typed payload: encoding/json passes it
// through as it is, so a typed Dispatch must check it too.
type noteAdded struct {
	Note json.RawMessage `json:"note"`
}

func (noteAdded) EventType() string { return "note.added" }

// TestInputLimitsInTheLibrary: each input limit at its boundary, through
// Dispatch, DispatchTx, Append and AppendTx. A violation is a *eventbus.FieldError
// that names the field and wraps ErrInvalid and the rule, and nothing is
// stored; what is at the limit is stored.
func TestInputLimitsInTheLibrary(t *testing.T) {
	bus, s := newBusWith(t, eventbus.Config{AllowUnknownTypes: true})
	ctx := context.Background()
	q := quiz(7)
	quizData, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	source := func(n int) string { return "/" + strings.Repeat("s", n-1) }
	bad := []struct {
		name  string
		draft event.Draft
		field string
		rule  error
	}{
		{"source of 256 bytes", event.Draft{Source: source(256)}, "source", event.ErrTooLong},
		{"source %zz", event.Draft{Source: "%zz"}, "source", event.ErrNotURIReference},
		{"source with a tab", event.Draft{Source: "quiz\tservice"}, "source", event.ErrNotURIReference},
		{"source http://[::1", event.Draft{Source: "http://[::1"}, "source", event.ErrNotURIReference},
		{"source with CR LF", event.Draft{Source: "/quiz\r\nX-Evil: 1"}, "source", event.ErrNotURIReference},
		{"source with a space", event.Draft{Source: "quiz service"}, "source", event.ErrNotURIReference},
		{"type of 256 bytes", event.Draft{Type: strings.Repeat("t", 256)}, "type", event.ErrTooLong},
		{"type with a space", event.Draft{Type: "quiz submitted"}, "type", event.ErrBadCharacter},
		{"type with a control character", event.Draft{Type: "quiz.submitted\x01"}, "type", event.ErrBadCharacter},
		{"subject of white space", event.Draft{Subject: " \t"}, "subject", event.ErrEmpty},
		{"subject of 513 bytes", event.Draft{Subject: strings.Repeat("s", 513)}, "subject", event.ErrTooLong},
		{"duplicate key in data", event.Draft{Data: json.RawMessage(`{"quiz_id":"` + q.QuizID.String() + `","learner_id":"` + q.LearnerID.String() + `","score_raw":1,"score_raw":2}`)}, "data.score_raw", event.ErrDuplicateKey},
		{"duplicate key deep in data", event.Draft{Type: "quiz.annotated", Data: json.RawMessage(`{"a":[{"b":{"c":1,"c":1}}]}`)}, "data.a[0].b.c", event.ErrDuplicateKey},
		{"lone surrogate in data", event.Draft{Data: json.RawMessage(`{"quiz_id":"` + q.QuizID.String() + `","learner_id":"` + q.LearnerID.String() + `","score_raw":1,"note":"\ud800"}`)}, "data.note", event.ErrLoneSurrogate},
		{"lone surrogate in unknown data", event.Draft{Type: "quiz.annotated", Data: json.RawMessage(`["\udfff"]`)}, "data[0]", event.ErrLoneSurrogate},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.draft
			if d.Type == "" {
				d.Type = edupulse.TypeQuizSubmitted
			}
			if d.Data == nil {
				d.Data = quizData
			}
			good := event.Draft{Type: edupulse.TypeQuizSubmitted, Data: quizData}
			calls := map[string]func() error{
				"Append with a good draft": func() error { _, err := bus.Append(ctx, []event.Draft{good, d}); return err },
				"Append":                   func() error { _, err := bus.Append(ctx, []event.Draft{d}); return err },
				"AppendTx": func() error {
					tx, err := s.Pool().Begin(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = tx.Rollback(ctx) }()
					if _, err := bus.AppendTx(ctx, tx, []event.Draft{d}); err != nil {
						return err
					}
					return tx.Commit(ctx)
				},
			}
			if d.Type == edupulse.TypeQuizSubmitted && string(d.Data) == string(quizData) {
				// The envelope fields go through Dispatch's options too.
				calls["Dispatch"] = func() error {
					opts := []eventbus.DispatchOption{eventbus.Subject(d.Subject)}
					if d.Source != "" {
						opts = append(opts, eventbus.Source(d.Source))
					}
					_, err := bus.Dispatch(ctx, q, opts...)
					return err
				}
			}
			for name, call := range calls {
				err := call()
				var fe *eventbus.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, eventbus.ErrInvalid) || !errors.Is(err, tc.rule) {
					t.Errorf("%s: %v; want a FieldError for %s wrapping ErrInvalid and %v", name, err, tc.field, tc.rule)
				}
			}
		})
	}
	t.Run("typed payload with raw JSON", func(t *testing.T) {
		for _, note := range []string{`{"a":1,"a":2}`, `"\ud800"`} {
			_, err := bus.Dispatch(ctx, noteAdded{Note: json.RawMessage(note)})
			var fe *eventbus.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "data.note") {
				t.Errorf("Dispatch of a payload with note %s: %v; want a FieldError for data.note", note, err)
			}
		}
	})
	t.Run("default source", func(t *testing.T) {
		long := eventbus.New(s, eventbus.Config{Registry: edupulse.Registry(), Source: source(256)})
		_, err := long.Dispatch(ctx, q)
		var fe *eventbus.FieldError
		if !errors.As(err, &fe) || fe.Field != "source" {
			t.Errorf("Dispatch on a bus whose source is 256 bytes: %v; want a FieldError for source", err)
		}
	})
	if n := count(t, s, "event_store"); n != 0 {
		t.Fatalf("%d events stored by drafts over the limits", n)
	}

	// At the limits, and good URI-references: stored.
	for _, d := range []event.Draft{
		{Source: source(255)},
		{Source: "/svc"},
		{Source: "urn:edupulse:quiz"},
		{Source: "https://x.example/a?b#c"},
		{Type: strings.Repeat("t", 255)},
		{Type: "quiz.annotated", Data: json.RawMessage(`{"emoji":"\ud83d\ude00","a":{"a":1},"b":[{"a":1},{"a":2}]}`)},
		{Subject: strings.Repeat("s", 512)},
	} {
		if d.Type == "" {
			d.Type = edupulse.TypeQuizSubmitted
		}
		if d.Data == nil {
			d.Data = quizData
		}
		d.ID = uuid.New()
		if _, err := bus.Append(ctx, []event.Draft{d}); err != nil {
			t.Errorf("draft at the limits (type %d bytes, source %s, subject %d bytes): %v", len(d.Type), event.Quote(d.Source), len(d.Subject), err)
		}
	}
}
