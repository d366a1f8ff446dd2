package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/sqlite"
)

// A producer records an event in the transaction of its business change
// with DispatchTx: both commit, or neither does. The relay (eventbus serve)
// publishes it once it has committed.
func ExampleBus_DispatchTx() {
	ctx := context.Background()
	pg, err := postgres.Open(ctx, os.Getenv("EVENTBUS_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	bus := eventbus.New(pg, eventbus.Config{Registry: edupulse.Registry(), Source: "quiz-service"})

	tx, err := pg.Pool().Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	// ... the business change, in tx ...
	quiz := edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: 93}
	env, err := bus.DispatchTx(ctx, tx, quiz,
		eventbus.Subject("quiz-"+quiz.QuizID.String()), eventbus.ExpectVersion(0))
	switch {
	case errors.Is(err, eventbus.ErrVersionConflict):
		log.Fatal("the stream moved on: read it again and decide again") // and roll back
	case err != nil:
		log.Fatal(err) // the transaction is aborted: roll it back
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored", env.ID, "at position", env.Position)
}

// Dispatch commits the event in a transaction of the bus's own; here on the
// embedded SQLite store, which needs no server. Dispatching the same ID
// again returns the original instead of storing a second event.
func ExampleBus_Dispatch() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eventbus-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lite, err := sqlite.Open(ctx, filepath.Join(dir, "eventbus.db"), sqlite.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer lite.Close()
	if err := lite.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	bus := eventbus.New(lite, eventbus.Config{Registry: edupulse.Registry(), Source: "lesson-service"})

	id := uuid.New()
	lesson := edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "Fractions"}
	for range 2 {
		env, err := bus.Dispatch(ctx, lesson, eventbus.WithID(id), eventbus.Subject("course-7"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(env.Type, env.Subject, "version", env.StreamVersion, "position", env.Position)
	}
	// Output:
	// lesson.published course-7 version 1 position 1
	// lesson.published course-7 version 1 position 1
}

// NewDraft checks a typed payload and encodes it as a draft, storing
// nothing: Append (or AppendTx, in the caller's transaction) stores several
// atomically, and fills the defaults (ID, time, correlation) that options
// leave unset.
func ExampleNewDraft() {
	d, err := eventbus.NewDraft(edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: uuid.New(), Reason: "quiz ace"},
		eventbus.Subject("learner-42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Type, d.Subject)

	_, err = eventbus.NewDraft(edupulse.BadgeAwarded{BadgeID: uuid.New(), RecipientID: uuid.New()})
	fmt.Println(errors.Is(err, eventbus.ErrInvalid))
	// Output:
	// badge.awarded learner-42
	// true
}
