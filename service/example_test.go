package service_test

import (
	"context"
	"errors"
	"log"
	"os"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/service"
)

// A worker written once for service.Tx runs on whichever store the
// configuration names, PostgreSQL or the embedded SQLite store: its OnTx
// handler records the badge in the inbox's transaction, so the badge
// commits with the record that the quiz event was handled.
func ExampleTx() {
	ctx := context.Background()
	cfg, err := config.Load(os.LookupEnv, nil)
	if err != nil {
		log.Fatal(err)
	}
	svc, err := service.Open(ctx, cfg, service.Config{Migrate: true, Source: "badge-worker"})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	c, err := consume.New(svc.Broker, consume.Config{Group: "badges", Exchange: cfg.Exchange, Inbox: svc.Inbox()},
		consume.OnTx(func(ctx context.Context, tx service.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
			if q.ScoreRaw < 90 {
				return nil
			}
			_, err := svc.Bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{
				BadgeID: q.QuizID, RecipientID: q.LearnerID, Reason: "quiz ace",
			}, eventbus.Subject("learner-"+q.LearnerID.String()))
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
