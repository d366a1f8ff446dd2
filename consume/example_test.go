package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/postgres"
)

// A worker writes its handlers; the runtime declares the group's queues,
// retries failures with backoff through the broker, dead-letters what keeps
// failing, and stops gracefully when its context ends.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	b, err := rabbitmq.Open(ctx, os.Getenv("EVENTBUS_AMQP_URL"), rabbitmq.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	c, err := consume.New(b, consume.Config{
		Group:           "leaderboard",
		Concurrency:     8,
		OrderedByStream: true, // one event of a stream at a time, in order
		MaxAttempts:     5,
		HandlerTimeout:  10 * time.Second,
	},
		consume.On(func(ctx context.Context, env event.Envelope, q edupulse.QuizSubmitted) error {
			if q.ScoreRaw < 0 {
				// Retrying cannot fix it: straight to leaderboard.dlq.
				return consume.Permanent(fmt.Errorf("negative score %d", q.ScoreRaw))
			}
			fmt.Println("learner", q.LearnerID, "scored", q.ScoreRaw, "in", env.Subject)
			return nil // an error here is retried, up to MaxAttempts
		}),
	)
	if err != nil {
		log.Fatal(err) // a Config or set of routes it cannot run: consume.ErrInvalidConfig
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// With an inbox, an OnTx handler's writes commit in the same transaction
// as the record that the event was handled: the effect happens once per
// event, even when the broker delivers it twice. Events the handler
// dispatches in that transaction are caused by the event it handles.
func ExampleOnTx() {
	ctx := context.Background()
	pg, err := postgres.Open(ctx, os.Getenv("EVENTBUS_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pg.Close()
	b, err := rabbitmq.Open(ctx, os.Getenv("EVENTBUS_AMQP_URL"), rabbitmq.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	bus := eventbus.New(pg, eventbus.Config{Registry: edupulse.Registry(), Source: "badge-worker"})

	c, err := consume.New(b, consume.Config{Group: "badges", Inbox: consume.NewInbox(pg)},
		consume.OnTx(func(ctx context.Context, tx pgx.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			if q.ScoreRaw < 90 {
				return nil
			}
			_, err := bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{
				BadgeID: q.QuizID, RecipientID: q.LearnerID, Reason: "quiz ace",
			})
			return err
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// Dead letters stay in GROUP.dlq until someone looks: list them with why
// each failed, fix the cause, then send them back to the group's queue.
func ExampleRequeue() {
	ctx := context.Background()
	b, err := rabbitmq.Open(ctx, os.Getenv("EVENTBUS_AMQP_URL"), rabbitmq.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	letters, err := consume.DeadLetters(ctx, b, "badges", 100)
	if err != nil {
		log.Fatal(err)
	}
	for _, dl := range letters {
		fmt.Println(dl.Message.MessageID, dl.Message.Headers["x-eventbus-failure-reason"])
	}
	n, err := consume.Requeue(ctx, b, "badges", nil) // nil: every dead letter
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("requeued", n)
}
