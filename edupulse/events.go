// Package edupulse holds the EduPulse Live domain events: one Go type per
// event type, each with its validation.
//
// These types are a contract with every consumer and with the event store's
// history. A type is never renamed or repurposed, and a field is never
// removed or given another meaning; new types are added by registering them.
//
// It sits just above package event, whose Registry it fills: [Registry] is
// the set the service and the eventbus command accept by default, and
// workers decode deliveries into these types (consume.On).
package edupulse

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
)

// Event type names.
const (
	TypeLessonPublished = "lesson.published"
	TypeQuizSubmitted   = "quiz.submitted"
	TypeBadgeAwarded    = "badge.awarded"
)

// LessonPublished says a teacher published a lesson.
type LessonPublished struct {
	LessonID  uuid.UUID `json:"lesson_id"`
	TeacherID uuid.UUID `json:"teacher_id"`
	Title     string    `json:"title"`
}

// EventType implements event.Payload.
func (LessonPublished) EventType() string { return TypeLessonPublished }

// PersonalData implements event.PersonalDeclarer: the teacher is the data
// subject, and nothing of the event is theirs to erase (DESIGN G10).
func (LessonPublished) PersonalData() event.PersonalSpec {
	return event.PersonalSpec{DataSubject: "teacher_id"}
}

// Validate implements event.Validator.
func (e LessonPublished) Validate() error {
	switch {
	case e.LessonID == uuid.Nil:
		return event.Invalid(TypeLessonPublished, "lesson_id", "must not be the nil UUID")
	case e.TeacherID == uuid.Nil:
		return event.Invalid(TypeLessonPublished, "teacher_id", "must not be the nil UUID")
	case strings.TrimSpace(e.Title) == "":
		return event.Invalid(TypeLessonPublished, "title", "must not be empty")
	}
	return nil
}

// QuizSubmitted says a learner submitted a quiz. ScoreRaw is the raw score
// before any curve; it may be zero or negative (penalties), never absent.
//
// It is version 2 of quiz.submitted, which added MaxScore: the most
// ScoreRaw could have been, at least 1; nil (JSON null) when it was not
// recorded. Every event written as version 1 reads as version 2 with
// max_score null: version 1 never said what the maximum was, and a made-up
// number such as 100 would be read as a fact.
type QuizSubmitted struct {
	QuizID    uuid.UUID `json:"quiz_id"`
	LearnerID uuid.UUID `json:"learner_id"`
	ScoreRaw  int32     `json:"score_raw"`
	MaxScore  *int32    `json:"max_score"`
}

// QuizSubmittedVersion is the version of quiz.submitted that QuizSubmitted
// is.
const QuizSubmittedVersion = 2

// EventType implements event.Payload.
func (QuizSubmitted) EventType() string { return TypeQuizSubmitted }

// PersonalData implements event.PersonalDeclarer: the score is the
// learner's personal data, stored encrypted and erased with them.
func (QuizSubmitted) PersonalData() event.PersonalSpec {
	return event.PersonalSpec{DataSubject: "learner_id", Fields: []string{"score_raw"}}
}

// Validate implements event.Validator.
func (e QuizSubmitted) Validate() error {
	switch {
	case e.QuizID == uuid.Nil:
		return event.Invalid(TypeQuizSubmitted, "quiz_id", "must not be the nil UUID")
	case e.LearnerID == uuid.Nil:
		return event.Invalid(TypeQuizSubmitted, "learner_id", "must not be the nil UUID")
	case e.MaxScore != nil && *e.MaxScore < 1:
		return event.Invalid(TypeQuizSubmitted, "max_score", "must be at least 1, or null when it is not known")
	}
	return nil
}

// UpcastQuizSubmittedV1 turns the data of quiz.submitted version 1 into
// version 2: it adds "max_score": null (not recorded), and keeps every
// other byte.
func UpcastQuizSubmittedV1(data json.RawMessage) (json.RawMessage, error) {
	return event.AddField(data, "max_score", json.RawMessage("null"))
}

//go:embed schemas/*.json
var schemaFiles embed.FS

// Schema returns the JSON Schema of version v of an EduPulse type, from
// the files in edupulse/schemas (named as EVENTBUS_SCHEMA_DIR's are).
func Schema(typ string, v int) json.RawMessage {
	b, err := schemaFiles.ReadFile(fmt.Sprintf("schemas/%s.v%d.json", typ, v))
	if err != nil {
		panic(fmt.Sprintf("edupulse: no schema of %s version %d: %v", typ, v, err))
	}
	return b
}

// BadgeAwarded says a badge was awarded to someone.
type BadgeAwarded struct {
	BadgeID     uuid.UUID `json:"badge_id"`
	RecipientID uuid.UUID `json:"recipient_id"`
	Reason      string    `json:"reason"`
}

// EventType implements event.Payload.
func (BadgeAwarded) EventType() string { return TypeBadgeAwarded }

// PersonalData implements event.PersonalDeclarer: the reason is the
// recipient's personal data, stored encrypted and erased with them.
func (BadgeAwarded) PersonalData() event.PersonalSpec {
	return event.PersonalSpec{DataSubject: "recipient_id", Fields: []string{"reason"}}
}

// Validate implements event.Validator.
func (e BadgeAwarded) Validate() error {
	switch {
	case e.BadgeID == uuid.Nil:
		return event.Invalid(TypeBadgeAwarded, "badge_id", "must not be the nil UUID")
	case e.RecipientID == uuid.Nil:
		return event.Invalid(TypeBadgeAwarded, "recipient_id", "must not be the nil UUID")
	case strings.TrimSpace(e.Reason) == "":
		return event.Invalid(TypeBadgeAwarded, "reason", "must not be empty")
	}
	return nil
}

// Register adds the EduPulse event types to r, with their versions.
func Register(r *event.Registry) error {
	if err := event.Register[LessonPublished](r, event.Version{Number: 1, Schema: Schema(TypeLessonPublished, 1)}); err != nil {
		return err
	}
	if err := event.Register[QuizSubmitted](r,
		event.Version{Number: 1, Schema: Schema(TypeQuizSubmitted, 1)},
		event.Version{Number: 2, Schema: Schema(TypeQuizSubmitted, 2), Upcast: UpcastQuizSubmittedV1},
	); err != nil {
		return err
	}
	return event.Register[BadgeAwarded](r, event.Version{Number: 1, Schema: Schema(TypeBadgeAwarded, 1)})
}

// Registry returns a new registry holding the EduPulse event types.
func Registry() *event.Registry {
	r := event.NewRegistry()
	if err := Register(r); err != nil {
		panic(err) // the three types above cannot clash
	}
	return r
}
