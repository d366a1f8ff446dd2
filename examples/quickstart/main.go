// Command quickstart records an event inside a business transaction and reads
// it back from the event store, printed as the CloudEvent the bus delivers.
//
//	go run ./examples/quickstart
//
// It uses EVENTBUS_DATABASE_URL, or the local PostgreSQL on 127.0.0.1:5432.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/postgres"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := os.Getenv("EVENTBUS_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	store, err := postgres.Open(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	bus := eventbus.New(store, eventbus.Config{Registry: edupulse.Registry(), Source: "quickstart"})

	// The business change and its event commit together.
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	lesson := edupulse.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: "Fractions, part 1"}
	env, err := bus.DispatchTx(ctx, tx, lesson, eventbus.Subject("lesson-"+lesson.LessonID.String()))
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}

	stored, err := store.Get(ctx, env.ID)
	if err != nil {
		return err
	}
	b, err := event.Encode(stored)
	if err != nil {
		return err
	}
	fmt.Printf("stored at position %d:\n%s\n", stored.Position, b)
	return nil
}
