package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loadConfig loads the configuration from env alone.
func loadConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start opens the worker on cfg with the consumer group g and runs it
// until the test ends.
func start(t *testing.T, ctx context.Context, cfg config.Config, g string) *worker {
	t.Helper()
	return startSharded(t, ctx, cfg, g, 0)
}

// startSharded is start with the group split into shards (0: one queue).
func startSharded(t *testing.T, ctx context.Context, cfg config.Config, g string, shards int) *worker {
	t.Helper()
	w, err := open(ctx, cfg, g, shards, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-w.consumer.Ready():
	case <-ctx.Done():
		t.Fatal("the worker never subscribed")
	}
	return w
}

// TestAwardsQuizAceOnPostgresAndRabbitMQ runs the worker on an exchange and
// group of the test's own: a score of 95 earns one badge, caused by the
// quiz event, even when the broker delivers the quiz event twice; a score of
// 50 earns none.
func TestAwardsQuizAceOnPostgresAndRabbitMQ(t *testing.T) {
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := testenv.Context(t, time.Minute)
	exchange, g := testenv.Name("badge_x"), testenv.Name("badge_g")
	cfg := loadConfig(t, map[string]string{
		config.EnvDatabaseURL: testenv.PostgresSchema(t),
		config.EnvAMQPURL:     testenv.AMQPURL(),
		config.EnvExchange:    exchange,
		// The master key's file, made on first use, goes here, not
		// into the source tree.
		config.EnvDataDir: t.TempDir(),
	})
	w := start(t, ctx, cfg, g)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, q := range []string{g, consume.DeadLetterQueue(g), consume.RetryQueue(g, 1), consume.RetryQueue(g, 2), consume.RetryQueue(g, 3), consume.RetryQueue(g, 4)} {
			_ = w.svc.Broker.DeleteQueue(ctx, q)
		}
		_ = w.svc.Broker.DeleteExchange(ctx, exchange)
	})
	if w.ownRelay {
		t.Fatal("the worker runs a relay of its own on RabbitMQ; eventbus serve runs it")
	}
	ace, low := quiz(t, 95), quiz(t, 50)
	// The relay is not running here: publish as it would, the ace twice.
	publish(t, ctx, w, exchange, ace, low, ace)
	waitHandled(t, ctx, w, 3)
	checkOneBadge(t, ctx, w.svc.Store, ace, low)
}

// TestAwardsQuizAceOnTheEmbeddedDefault runs the worker with no
// configuration but a data directory: SQLite, the in-process broker and a
// relay of its own. Quiz events recorded in the store reach it through the
// relay; a redelivered one awards nothing more.
func TestAwardsQuizAceOnTheEmbeddedDefault(t *testing.T) {
	for _, shards := range []int{0, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) { awardsOnTheEmbeddedDefault(t, shards) })
	}
}

func awardsOnTheEmbeddedDefault(t *testing.T, shards int) {
	ctx := testenv.Context(t, time.Minute)
	cfg := loadConfig(t, map[string]string{config.EnvDataDir: t.TempDir()})
	w := startSharded(t, ctx, cfg, group, shards)
	if !w.ownRelay {
		t.Fatal("the worker runs no relay on the in-process broker")
	}
	ace, low := quiz(t, 95), quiz(t, 50)
	for _, q := range []event.Envelope{ace, low} {
		d := event.Draft{ID: q.ID, Type: q.Type, Source: q.Source, OccurredAt: q.OccurredAt, CorrelationID: q.CorrelationID, Data: q.Data}
		if _, err := w.svc.Bus.Append(ctx, []event.Draft{d}); err != nil {
			t.Fatal(err)
		}
	}
	waitHandled(t, ctx, w, 2)
	// The broker delivers the ace again, as after a lost ack.
	publish(t, ctx, w, cfg.Exchange, ace)
	waitHandled(t, ctx, w, 3)
	checkOneBadge(t, ctx, w.svc.Store, ace, low)
}

func publish(t *testing.T, ctx context.Context, w *worker, exchange string, envs ...event.Envelope) {
	t.Helper()
	pub, err := w.svc.Broker.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, env := range envs {
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
}

func waitHandled(t *testing.T, ctx context.Context, w *worker, n int64) {
	t.Helper()
	for {
		st := w.consumer.Stats()
		if st.Handled+st.Duplicates >= n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d quiz events handled, want %d", st.Handled+st.Duplicates, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOneBadge checks that the ace's learner has exactly one badge, and
// the low scorer's none.
func checkOneBadge(t *testing.T, ctx context.Context, st store.Store, ace, low event.Envelope) {
	t.Helper()
	// Read the learners' streams: a read in commit order would wait for
	// other tests' open transactions on the shared server.
	stream := func(quiz event.Envelope) (edupulse.QuizSubmitted, []event.Envelope) {
		var q edupulse.QuizSubmitted
		if err := json.Unmarshal(quiz.Data, &q); err != nil {
			t.Fatal(err)
		}
		badges, err := st.ReadStream(ctx, "learner-"+q.LearnerID.String(), 1, 10)
		if err != nil {
			t.Fatal(err)
		}
		return q, badges
	}
	q, badges := stream(ace)
	_, lowBadges := stream(low)
	if len(badges) != 1 || len(lowBadges) != 0 {
		t.Fatalf("%d badges for the ace, %d for the low score; want 1 and 0", len(badges), len(lowBadges))
	}
	badge := badges[0]
	var p edupulse.BadgeAwarded
	if err := json.Unmarshal(badge.Data, &p); err != nil {
		t.Fatal(err)
	}
	if badge.ID != badgeEventID(ace.ID) || badge.CausationID != ace.ID || badge.CorrelationID != ace.CorrelationID ||
		p.RecipientID != q.LearnerID || p.BadgeID != quizAce {
		t.Errorf("badge %+v %+v: want quiz ace %s for %s caused by %s", badge, p, badgeEventID(ace.ID), q.LearnerID, ace.ID)
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

// TestShardsFromEnv: BADGEWORKER_SHARDS unset is one queue; a number from 1
// to 64 is that many shards; anything else is a clear error.
func TestShardsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		value   string
		set     bool
		want    int
		wantErr bool
	}{
		{"", false, 0, false},
		{"", true, 0, false},
		{"8", true, 8, false},
		{"64", true, 64, false},
		{"0", true, 0, true},
		{"65", true, 0, true},
		{"-1", true, 0, true},
		{"eight", true, 0, true},
	} {
		got, err := shardsFromEnv(func(string) (string, bool) { return tc.value, tc.set })
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("BADGEWORKER_SHARDS=%q (set %v): %d, %v; want %d, error %v", tc.value, tc.set, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), envShards) {
			t.Errorf("the error %q does not name %s", err, envShards)
		}
	}
}
