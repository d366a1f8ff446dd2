// Command versions shows type versions: a quiz.submitted event written as
// version 1 (before max_score existed) and one written as version 2 live in
// the same stream; every reader gets both as version 2, and the stored
// version when it asks for it.
//
//	go run ./examples/versions            # an embedded store in a temporary directory
//	go run ./examples/versions DIR        # or in DIR
//
// It prints each event as a reader sees it by default, then as stored.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/service"
)

func main() {
	dir := ""
	if len(os.Args) > 1 {
		dir = os.Args[1]
	} else {
		tmp, err := os.MkdirTemp("", "eventbus-versions-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if err := run(context.Background(), dir, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dir string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := config.Config{DataDir: dir}
	svc, err := service.Open(ctx, cfg, service.Config{StoreOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer svc.Close()
	const stream = "learner-42/quizzes"
	learner := uuid.MustParse("0190d1e2-7c4a-7b3e-8f00-000000000042")

	// An old producer wrote version 1: it names the version in the
	// dataschema (over HTTP: "dataschema" in the POST body).
	_, err = svc.Bus.Append(ctx, []event.Draft{{
		Type: edupulse.TypeQuizSubmitted, Subject: stream,
		DataSchema: event.SchemaURN(edupulse.TypeQuizSubmitted, 1),
		Data:       []byte(`{"quiz_id":"0190d1e2-7c4a-7b3e-8f00-000000000001","learner_id":"` + learner.String() + `","score_raw":7}`),
	}})
	if err != nil {
		return fmt.Errorf("append version 1: %w", err)
	}
	// Today's Go producer writes version 2, the Go type's.
	maxScore := int32(10)
	_, err = svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: uuid.MustParse("0190d1e2-7c4a-7b3e-8f00-000000000002"),
		LearnerID: learner, ScoreRaw: 9, MaxScore: &maxScore}, eventbus.Subject(stream))
	if err != nil {
		return fmt.Errorf("dispatch version 2: %w", err)
	}

	for _, view := range []struct {
		name string
		ctx  context.Context
	}{
		{"as every reader gets them (the latest version)", ctx},
		{"as stored (event.WithStoredVersions; ?stored=true over HTTP)", event.WithStoredVersions(ctx)},
	} {
		events, err := svc.Store.ReadStream(view.ctx, stream, 1, 10)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s:\n", view.name)
		for _, e := range events {
			fmt.Fprintf(out, "  %d %s %s\n", e.StreamVersion, e.DataSchema, e.Data)
		}
	}
	return nil
}
