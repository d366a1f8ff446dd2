// Command badgeworker awards the "quiz ace" badge: when a learner scores 90
// or more on a quiz, it records a badge.awarded event caused by the
// quiz.submitted event. It takes effect exactly once per quiz event, even when
// the broker delivers the quiz event again: its handler (consume.OnTx) records
// the badge in the inbox's transaction, on PostgreSQL and on the embedded
// SQLite store alike (service.Tx).
//
// It runs wherever the bus runs, configured as `eventbus` is:
//
//	go run ./examples/badgeworker     # the embedded default: no servers
//	EVENTBUS_DATABASE_URL=postgres://... EVENTBUS_AMQP_URL=amqp://... go run ./examples/badgeworker
//
// On the embedded default (no EVENTBUS_AMQP_URL) the broker lives inside
// this process, so the worker runs a relay of its own, named "badgeworker",
// which publishes the store's events to it. Events recorded by other
// processes on the same data directory (`eventbus publish`, `eventbus serve`)
// reach it through the store. With RabbitMQ, `eventbus serve` runs the relay.
//
// BADGEWORKER_SHARDS=N (1 to 64) splits the group into N shard queues, so
// that several badgeworker processes share the work and each learner's
// events are still handled in order (consume.Config.Shards; see "Scaling a
// consumer group" in docs/operations.md). Unset, the group has one queue.
//
// It stops on Ctrl-C or SIGTERM, after the handlers in flight finish.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/service"
)

// quizAce identifies the badge this worker awards.
var quizAce = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://edupulse.example/badges/quiz-ace"))

// group is the worker's consumer group.
const group = "badgeworker"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.LookupEnv, nil)
	if err != nil {
		log.Error("badgeworker: bad configuration", "err", err)
		os.Exit(2)
	}
	shards, err := shardsFromEnv(os.LookupEnv)
	if err != nil {
		log.Error("badgeworker: bad configuration", "err", err)
		os.Exit(2)
	}
	w, err := open(ctx, cfg, group, shards, log)
	if err != nil {
		log.Error("badgeworker cannot start", "err", err)
		os.Exit(1)
	}
	defer w.Close()
	if err := w.Run(ctx); err != nil {
		log.Error("badgeworker failed", "err", err)
		os.Exit(1)
	}
}

// worker is the badge worker: the service it runs on and its consumer.
type worker struct {
	svc      *service.Service
	consumer *consume.Consumer
	// ownRelay is set on the in-process broker, which only a relay in
	// this process can feed.
	ownRelay bool
	log      *slog.Logger
}

// envShards names the variable that sets the group's shards.
const envShards = "BADGEWORKER_SHARDS"

// shardsFromEnv reads BADGEWORKER_SHARDS: unset or empty is 0, the single
// queue.
func shardsFromEnv(lookup func(string) (string, bool)) (int, error) {
	v, ok := lookup(envShards)
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 64 {
		return 0, fmt.Errorf("%s=%q: want a whole number of shards from 1 to 64, or unset for one queue", envShards, v)
	}
	return n, nil
}

// open opens the store and the broker cfg names and builds the consumer.
func open(ctx context.Context, cfg config.Config, group string, shards int, log *slog.Logger) (*worker, error) {
	svc, err := service.Open(ctx, cfg, service.Config{
		Logger:  log,
		Migrate: true,
		Source:  "badgeworker",
		// Its own relay name: its broker is its own, and a relay of the
		// same name in another process (eventbus serve) would take turns
		// with it, publishing to the other process's broker.
		Relay: relay.Config{Name: "badgeworker"},
	})
	if err != nil {
		return nil, err
	}
	c, err := consume.New(svc.Broker, consume.Config{
		Group:       group,
		Exchange:    cfg.Exchange,
		Inbox:       svc.Inbox(),
		Concurrency: 4,
		Shards:      shards,
		Logger:      log,
	}, consume.OnTx(awardQuizAce(svc.Bus)))
	if err != nil {
		_ = svc.Close()
		return nil, err
	}
	return &worker{svc: svc, consumer: c, ownRelay: cfg.InProcessBroker(), log: log}, nil
}

// Run handles quiz events until ctx ends. With the in-process broker it
// starts the relay once the consumer's queue exists, so that no event is
// published before anyone can receive it.
func (w *worker) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- w.consumer.Run(ctx) }()
	running := 1
	select {
	case <-w.consumer.Ready():
	case err := <-errc:
		return err
	}
	w.log.Info("badgeworker: awarding the quiz ace badge for scores of 90 or more",
		"group", w.consumer.Group(), "relay_in_process", w.ownRelay)
	if w.ownRelay {
		running++
		go func() { errc <- w.svc.Run(ctx, service.RunOptions{Relay: true}) }()
	}
	var errs []error
	for ; running > 0; running-- {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		stop() // one part ending ends the other
	}
	return errors.Join(errs...)
}

// Close closes the broker and the store.
func (w *worker) Close() error { return w.svc.Close() }

// awardQuizAce is the handler. It runs inside the inbox's transaction, a
// service.Tx whichever the store, and records the badge in it: the badge and
// the record that the quiz event was handled commit together, so a quiz
// event delivered again awards nothing more. The badge's ID is derived from
// the quiz event's as well, so that recording it again by any other path
// stores nothing new. The handler's ctx carries the quiz event, so the
// badge gets it as causation and shares its correlation ID.
func awardQuizAce(bus *eventbus.Bus[service.Tx]) func(context.Context, service.Tx, event.Envelope, edupulse.QuizSubmitted) error {
	return func(ctx context.Context, tx service.Tx, quiz event.Envelope, q edupulse.QuizSubmitted) error {
		if q.ScoreRaw < 90 {
			return nil
		}
		_, err := bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{
			BadgeID:     quizAce,
			RecipientID: q.LearnerID,
			Reason:      fmt.Sprintf("scored %d on quiz %s", q.ScoreRaw, q.QuizID),
		}, eventbus.Subject("learner-"+q.LearnerID.String()), eventbus.WithID(badgeEventID(quiz.ID)))
		if errors.Is(err, eventbus.ErrInvalid) {
			// A badge this quiz cannot earn: retrying would not help.
			return consume.Permanent(err)
		}
		return err
	}
}

// badgeEventID is the ID of the badge event a quiz event earns.
func badgeEventID(quiz uuid.UUID) uuid.UUID { return uuid.NewSHA1(quizAce, quiz[:]) }
