package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
)

// TestMixedVersionsReplayInOrder: a stream of quiz.submitted events written
// as version 1 and version 2, mixed, is replayed in stream order, every
// event as version 2 (a version 1 event with max_score null, its other
// bytes as written), and the stored bytes never change; a replay that asks
// for the stored versions sends each event as written, with its version's
// dataschema. On both stores.
func TestMixedVersionsReplayInOrder(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cfg := config.Config{Exchange: broker.DefaultEventsExchange, DataDir: t.TempDir()}
			if name == "postgres" {
				cfg.DatabaseURL = testenv.PostgresSchema(t)
			}
			svc, err := Open(ctx, cfg, Config{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			testMixedVersions(t, ctx, svc, cfg)
		})
	}
}

type writtenEvent struct {
	id      uuid.UUID
	version int
	data    string
}

func testMixedVersions(t *testing.T, ctx context.Context, svc *Service, cfg config.Config) {
	const stream = "learner-7/quizzes"
	learner := uuid.MustParse("0190d1e2-0000-7000-8000-0000000000aa")
	var written []writtenEvent
	for i := range 12 {
		quiz := uuid.Must(uuid.NewV7())
		var d event.Draft
		switch i % 3 {
		case 0: // version 1, as an old producer wrote it: spaces and key order its own
			d = event.Draft{Type: edupulse.TypeQuizSubmitted, Subject: stream,
				DataSchema: event.SchemaURN(edupulse.TypeQuizSubmitted, 1),
				Data:       json.RawMessage(fmt.Sprintf(`{ "score_raw": %d,  "learner_id":"%s", "quiz_id":"%s" }`, i, learner, quiz))}
		case 1: // version 2 with a maximum
			d = event.Draft{Type: edupulse.TypeQuizSubmitted, Subject: stream,
				Data: json.RawMessage(fmt.Sprintf(`{"quiz_id":"%s","learner_id":"%s","score_raw":%d,"max_score":40}`, quiz, learner, i))}
		case 2: // version 2 dispatched from Go, without a maximum
			env, err := svc.Bus.Dispatch(ctx, edupulse.QuizSubmitted{QuizID: quiz, LearnerID: learner, ScoreRaw: int32(i)}, eventbus.Subject(stream))
			if err != nil {
				t.Fatal(err)
			}
			written = append(written, writtenEvent{env.ID, 2, string(env.Data)})
			continue
		}
		res, err := svc.Bus.Append(ctx, []event.Draft{d})
		if err != nil {
			t.Fatalf("append event %d: %v", i, err)
		}
		v := 2
		if d.DataSchema != "" {
			v = 1
		}
		written = append(written, writtenEvent{res[0].Envelope.ID, v, string(d.Data)})
	}

	// Replays read in commit order, up to what no open transaction can
	// still precede (G4): wait until every event is there.
	testenv.Settle(t, svc.Store)

	// The rows keep what was written, with the version it was written in.
	stored, err := svc.Store.ReadStream(event.WithStoredVersions(ctx), stream, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range stored {
		w := written[i]
		// score_raw is personal: stored sealed, it reads back as equal
		// JSON, not byte for byte (G6, G10).
		if !sameJSON(e.Data, []byte(w.data)) || e.DataSchema != event.SchemaURN(edupulse.TypeQuizSubmitted, w.version) {
			t.Fatalf("stored event %d: %s %s, want %s as written (version %d)", i, e.DataSchema, e.Data, w.data, w.version)
		}
	}

	got := make(chan event.Envelope, 100)
	c, err := consume.New(svc.Broker, consume.Config{Group: "versions", Exchange: cfg.Exchange, OrderedByStream: true,
		Logger: slog.New(slog.DiscardHandler)},
		consume.OnAny(func(ctx context.Context, env event.Envelope) error {
			got <- env
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-c.Ready():
	case <-ctx.Done():
		t.Fatal("consumer not ready")
	}
	target := replay.Target{Exchange: cfg.Exchange}

	// The default: every event as the latest version, in stream order.
	if _, err := replay.Run(ctx, svc.Store, svc.Broker, replay.Options{Filter: store.Filter{Subject: stream}, Target: target}); err != nil {
		t.Fatal(err)
	}
	for i, w := range written {
		e := receive(t, ctx, got)
		want := w.data
		if w.version == 1 {
			want = strings.TrimSuffix(w.data, " }") + `,"max_score":null }`
		}
		if e.ID != w.id || e.StreamVersion != int64(i+1) || !sameJSON(e.Data, []byte(want)) ||
			e.DataSchema != event.SchemaURN(edupulse.TypeQuizSubmitted, 2) {
			t.Fatalf("replayed event %d: %s v%d %s %s; want %s v%d %s as version 2", i, e.ID, e.StreamVersion, e.DataSchema, e.Data, w.id, i+1, want)
		}
		q, err := event.DecodeAs[edupulse.QuizSubmitted](e.Data)
		if err != nil {
			t.Fatalf("replayed event %d does not decode as version 2: %v", i, err)
		}
		if (q.MaxScore == nil) != (w.version == 1 || i%3 == 2) {
			t.Fatalf("replayed event %d: max_score %v", i, q.MaxScore)
		}
	}

	// Asked for: the stored versions, as written.
	if _, err := replay.Run(event.WithStoredVersions(ctx), svc.Store, svc.Broker, replay.Options{Filter: store.Filter{Subject: stream}, Target: target}); err != nil {
		t.Fatal(err)
	}
	for i, w := range written {
		e := receive(t, ctx, got)
		if e.ID != w.id || !sameJSON(e.Data, []byte(w.data)) || e.DataSchema != event.SchemaURN(edupulse.TypeQuizSubmitted, w.version) {
			t.Fatalf("stored replay, event %d: %s %s %s; want %s %s as written, version %d", i, e.ID, e.DataSchema, e.Data, w.id, w.data, w.version)
		}
	}
}

func receive(t *testing.T, ctx context.Context, got <-chan event.Envelope) event.Envelope {
	t.Helper()
	select {
	case e := <-got:
		return e
	case <-ctx.Done():
		t.Fatal("no delivery")
		return event.Envelope{}
	}
}
