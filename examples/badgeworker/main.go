// Command badgeworker awards the "quiz ace" badge: when a learner scores 90
// or more on a quiz, it records a badge.awarded event, caused by the
// quiz.submitted event, in the same transaction that marks the quiz event
// handled. A redelivered quiz event therefore never awards a second badge.
//
//	EVENTBUS_DATABASE_URL=postgres://... EVENTBUS_AMQP_URL=amqp://... go run ./examples/badgeworker
//
// Without them it uses the local PostgreSQL and RabbitMQ. It stops on
// Ctrl-C, after the handlers in flight finish.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/postgres"
)

// quizAce identifies the badge this worker awards.
var quizAce = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://edupulse.example/badges/quiz-ace"))

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("badgeworker failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	st, err := postgres.Open(ctx, env("EVENTBUS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	b, err := rabbitmq.Open(ctx, env("EVENTBUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), rabbitmq.WithLogger(log))
	if err != nil {
		return err
	}
	defer b.Close()

	bus := eventbus.New(st, eventbus.WithRegistry(edupulse.Registry()), eventbus.WithSource("badgeworker"))
	worker, err := consume.New(b, consume.Config{
		Group:       "badgeworker",
		Inbox:       consume.NewInbox[pgx.Tx](st),
		Concurrency: 4,
		Logger:      log,
	}, consume.OnTx(awardQuizAce(bus)))
	if err != nil {
		return err
	}
	log.Info("badgeworker: awarding the quiz ace badge for scores of 90 or more", "group", worker.Group())
	return worker.Run(ctx)
}

// awardQuizAce is the handler. It runs in tx, the inbox's transaction: the
// badge event commits with the record that the quiz event was handled. The
// bus reads the quiz event from ctx, so the badge gets it as causation and
// shares its correlation ID and trace.
func awardQuizAce(bus *eventbus.Bus[pgx.Tx]) func(context.Context, pgx.Tx, event.Envelope, edupulse.QuizSubmitted) error {
	return func(ctx context.Context, tx pgx.Tx, quiz event.Envelope, q edupulse.QuizSubmitted) error {
		if q.ScoreRaw < 90 {
			return nil
		}
		_, err := bus.Dispatch(ctx, tx, edupulse.BadgeAwarded{
			BadgeID:     quizAce,
			RecipientID: q.LearnerID,
			Reason:      fmt.Sprintf("scored %d on quiz %s", q.ScoreRaw, q.QuizID),
		}, eventbus.Subject("learner-"+q.LearnerID.String()))
		return err
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
