package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestAwardsQuizAce runs the worker's handler on an exchange and group of
// the test's own: a score of 95 earns one badge, caused by the quiz event; a
// score of 50 earns none.
func TestAwardsQuizAce(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := testenv.Context(t, time.Minute)
	st, err := postgres.Open(ctx, testenv.PostgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := rabbitmq.Open(ctx, testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	exchange, group := testenv.Name("badge_x"), testenv.Name("badge_g")
	defer func() {
		ctx := context.Background()
		for _, q := range []string{group, consume.DeadLetterQueue(group), consume.RetryQueue(group, 1), consume.RetryQueue(group, 2), consume.RetryQueue(group, 3), consume.RetryQueue(group, 4)} {
			_ = b.DeleteQueue(ctx, q)
		}
		_ = b.DeleteExchange(ctx, exchange)
	}()

	bus := eventbus.New(st, eventbus.WithRegistry(edupulse.Registry()), eventbus.WithSource("badgeworker"))
	worker, err := consume.New(b, consume.Config{
		Group: group, Exchange: exchange, Inbox: consume.NewInbox[pgx.Tx](st),
		Logger: slog.New(slog.DiscardHandler),
	}, consume.OnTx(awardQuizAce(bus)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- worker.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-worker.Ready()

	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ace := quiz(t, 95)
	for _, env := range []event.Envelope{ace, quiz(t, 50)} {
		m, err := broker.EnvelopeMessage(env)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pub.Publish(ctx, exchange, env.Type, m)
		if err != nil {
			t.Fatal(err)
		}
		<-c.Done()
	}
	for worker.Stats().Handled < 2 {
		if ctx.Err() != nil {
			t.Fatal("quizzes not handled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var q edupulse.QuizSubmitted
	_ = json.Unmarshal(ace.Data, &q)
	// Read the learner's stream: Read in commit order would wait for
	// other tests' open transactions on the shared server.
	badges, err := st.ReadStream(ctx, "learner-"+q.LearnerID.String(), 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var all int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM event_store").Scan(&all); err != nil {
		t.Fatal(err)
	}
	if len(badges) != 1 || all != 1 {
		t.Fatalf("%d badges for the ace, %d in all; want 1 and 1", len(badges), all)
	}
	badge := badges[0]
	var p edupulse.BadgeAwarded
	if err := json.Unmarshal(badge.Data, &p); err != nil {
		t.Fatal(err)
	}
	if badge.CausationID != ace.ID || badge.CorrelationID != ace.CorrelationID || p.RecipientID != q.LearnerID || p.BadgeID != quizAce {
		t.Errorf("badge %+v %+v: want quiz ace for %s caused by %s", badge, p, q.LearnerID, ace.ID)
	}
}

func quiz(t *testing.T, score int32) event.Envelope {
	data, err := json.Marshal(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: score})
	if err != nil {
		t.Fatal(err)
	}
	return event.Envelope{
		ID: uuid.Must(uuid.NewV7()), Type: edupulse.TypeQuizSubmitted, Source: "quiz-service",
		OccurredAt: time.Now().UTC().Truncate(event.TimePrecision), CorrelationID: uuid.Must(uuid.NewV7()), Data: data,
	}
}
