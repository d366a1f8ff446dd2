package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newBus(t *testing.T) (*eventbus.Bus[pgx.Tx], *postgres.Store) {
	return newBusWith(t, eventbus.Config{})
}

// newBusWith is newBus with cfg, whose registry and source default to the
// EduPulse types and "quiz-service".
func newBusWith(t *testing.T, cfg eventbus.Config) (*eventbus.Bus[pgx.Tx], *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	s := testenv.PostgresStore(t)
	if _, err := s.Pool().Exec(ctx, "CREATE TABLE quiz_results (learner_id uuid, score int)"); err != nil {
		t.Fatal(err)
	}
	if cfg.Registry == nil {
		cfg.Registry = edupulse.Registry()
	}
	if cfg.Source == "" {
		cfg.Source = "quiz-service"
	}
	return eventbus.New(s, cfg), s
}

func quiz(score int32) edupulse.QuizSubmitted {
	return edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: score}
}

func count(t *testing.T, s *postgres.Store, table string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBusinessChangeAndEventCommitTogether is the transactional outbox: G2.
func TestBusinessChangeAndEventCommitTogether(t *testing.T) {
	bus, s := newBus(t)
	ctx := context.Background()
	for _, commit := range []bool{false, true} {
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		q := quiz(95)
		if _, err := tx.Exec(ctx, "INSERT INTO quiz_results VALUES ($1, $2)", q.LearnerID, q.ScoreRaw); err != nil {
			t.Fatal(err)
		}
		env, err := bus.DispatchTx(ctx, tx, q, eventbus.Subject("quiz-"+q.QuizID.String()))
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, getErr := s.Get(ctx, env.ID)
		if commit && getErr != nil {
			t.Fatalf("committed event missing: %v", getErr)
		}
		if !commit && !errors.Is(getErr, store.ErrNotFound) {
			t.Fatalf("rolled-back event stored: %v", getErr)
		}
	}
	if n := count(t, s, "event_store"); n != 1 {
		t.Fatalf("%d events stored, want 1 (the committed one)", n)
	}
	if n := count(t, s, "quiz_results"); n != 1 {
		t.Fatalf("%d business rows, want 1", n)
	}
}

func TestDispatchFillsEnvelope(t *testing.T) {
	bus, _ := newBus(t)
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "submit quiz")
	defer span.End()

	q := quiz(80)
	env, err := bus.Dispatch(ctx, q, eventbus.Subject("quiz-1"))
	if err != nil {
		t.Fatal(err)
	}
	if env.ID.Version() != 7 || env.Type != edupulse.TypeQuizSubmitted || env.Source != "quiz-service" ||
		env.Subject != "quiz-1" || env.StreamVersion != 1 || env.Position == 0 || env.CorrelationID == uuid.Nil ||
		env.OccurredAt.IsZero() || env.RecordedAt.IsZero() {
		t.Fatalf("envelope not filled: %+v", env)
	}
	if !strings.Contains(env.TraceParent, span.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry the span's trace %s", env.TraceParent, span.SpanContext().TraceID())
	}
	got, err := event.DecodeAs[edupulse.QuizSubmitted](env.Data)
	if err != nil || got != q {
		t.Fatalf("data = %+v, %v; want %+v", got, err, q)
	}

	// An event dispatched while handling env is caused by it and shares its
	// correlation.
	handling := event.WithCause(context.Background(), env)
	badge, err := bus.Dispatch(handling, edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: q.LearnerID, Reason: "high score"})
	if err != nil {
		t.Fatal(err)
	}
	if badge.CausationID != env.ID || badge.CorrelationID != env.CorrelationID {
		t.Fatalf("caused event: causation %s correlation %s; want %s, %s", badge.CausationID, badge.CorrelationID, env.ID, env.CorrelationID)
	}
}

func TestDispatchIsIdempotent(t *testing.T) {
	bus, s := newBus(t)
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	q := quiz(70)
	first, err := bus.Dispatch(ctx, q, eventbus.WithID(id), eventbus.Subject("quiz-x"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := bus.Dispatch(ctx, q, eventbus.WithID(id), eventbus.Subject("quiz-x"))
	if err != nil {
		t.Fatalf("second dispatch: %v", err)
	}
	a, _ := event.Encode(first)
	b, _ := event.Encode(second)
	if string(a) != string(b) {
		t.Fatalf("the second dispatch returned another envelope:\n%s\n%s", a, b)
	}
	if n := count(t, s, "event_store"); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
	res, err := bus.Append(ctx, []event.Draft{{ID: id, Type: q.EventType(), Data: first.Data}})
	if err != nil || !res[0].Duplicate {
		t.Fatalf("Append of a stored id: %+v, %v; want a duplicate", res, err)
	}
}

// TestBadInputStoresNothing: G7.
func TestBadInputStoresNothing(t *testing.T) {
	bus, s := newBusWith(t, eventbus.Config{MaxDataBytes: 1024})
	ctx := context.Background()
	good := `{"lesson_id":"0190d1e2-0000-7000-8000-000000000001","teacher_id":"0190d1e2-0000-7000-8000-000000000002","title":"ok"}`
	cases := []struct {
		name string
		d    event.Draft
		want error
	}{
		{"missing payload", event.Draft{Type: edupulse.TypeLessonPublished}, event.ErrInvalid},
		{"missing field", event.Draft{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(`{"lesson_id":"0190d1e2-0000-7000-8000-000000000001","title":"x"}`)}, event.ErrInvalid},
		{"not a uuid", event.Draft{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(strings.Replace(good, `"0190d1e2-0000-7000-8000-000000000001"`, `"lesson-1"`, 1))}, event.ErrInvalid},
		{"empty title", event.Draft{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(strings.Replace(good, `"ok"`, `""`, 1))}, event.ErrInvalid},
		{"too large", event.Draft{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(strings.Replace(good, `"ok"`, `"`+strings.Repeat("x", 2000)+`"`, 1))}, event.ErrTooLarge},
		{"unknown type", event.Draft{Type: "quiz.graded", Data: json.RawMessage(`{}`)}, event.ErrUnknownType},
		{"expected version without subject", event.Draft{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(good), ExpectedVersion: event.Expect(1)}, event.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A good event rides along: the batch is all or nothing.
			_, err := bus.Append(ctx, []event.Draft{{Type: edupulse.TypeLessonPublished, Data: json.RawMessage(good)}, c.d})
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
	if _, err := bus.Dispatch(ctx, edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New()}); !errors.Is(err, eventbus.ErrInvalid) {
		t.Fatalf("typed payload with an empty title: %v, want ErrInvalid", err)
	}
	if n := count(t, s, "event_store"); n != 0 {
		t.Fatalf("%d events stored from bad input, want 0", n)
	}
}

func TestVersionConflictIsTyped(t *testing.T) {
	bus, _ := newBus(t)
	ctx := context.Background()
	if _, err := bus.Dispatch(ctx, quiz(1), eventbus.Subject("s"), eventbus.ExpectVersion(0)); err != nil {
		t.Fatal(err)
	}
	_, err := bus.Dispatch(ctx, quiz(2), eventbus.Subject("s"), eventbus.ExpectVersion(0))
	if !errors.Is(err, eventbus.ErrVersionConflict) {
		t.Fatalf("error %v, want ErrVersionConflict", err)
	}
	if !strings.Contains(err.Error(), "stream s is at version 1, expected 0") {
		t.Fatalf("conflict error does not say what happened: %v", err)
	}
}

func TestUnknownTypesPassWhenAllowed(t *testing.T) {
	bus, s := newBusWith(t, eventbus.Config{AllowUnknownTypes: true})
	raw := `{ "from" : "the future", "z":1, "a":2 }`
	res, err := bus.Append(context.Background(), []event.Draft{{Type: "curriculum.revised", Data: json.RawMessage(raw)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), res[0].Envelope.ID)
	if err != nil || string(got.Data) != raw {
		t.Fatalf("stored %q, %v; want %q", got.Data, err, raw)
	}
}

// TestTypedPayloadsDescribeThemselves: a bus with no registry records typed
// payloads, which check themselves; it refuses a nil payload with
// ErrInvalid rather than panicking.
func TestTypedPayloadsDescribeThemselves(t *testing.T) {
	s := testenv.PostgresStore(t)
	bus := eventbus.New(s, eventbus.Config{})
	ctx := context.Background()
	if _, err := bus.Dispatch(ctx, quiz(91)); err != nil {
		t.Fatalf("typed Dispatch on a bus without a registry: %v", err)
	}
	if _, err := bus.Dispatch(ctx, nil); !errors.Is(err, eventbus.ErrInvalid) {
		t.Fatalf("Dispatch of a nil payload: %v, want ErrInvalid", err)
	}
	var none *edupulse.QuizSubmitted
	if _, err := eventbus.NewDraft(none); !errors.Is(err, eventbus.ErrInvalid) {
		t.Fatalf("NewDraft of a nil pointer: %v, want ErrInvalid", err)
	}
	// Raw drafts of unknown types are still refused.
	if _, err := bus.Append(ctx, []event.Draft{{Type: "quiz.graded", Data: json.RawMessage(`{}`)}}); !errors.Is(err, eventbus.ErrUnknownType) {
		t.Fatalf("raw draft of an unregistered type: %v, want ErrUnknownType", err)
	}
}
