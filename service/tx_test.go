package service

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
)

// TestTxOnEitherStore: the service's bus and inbox share one transaction
// type, Tx, on SQLite and on PostgreSQL alike. What a handler dispatches in
// the inbox's transaction commits with the inbox record, or rolls back with
// the handler's failure; a zero Tx is refused, not taken for "no
// transaction".
func TestTxOnEitherStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) config.Config
	}{
		{"SQLite", func(t *testing.T) config.Config { return embeddedConfig(t.TempDir()) }},
		{"PostgreSQL", func(t *testing.T) config.Config {
			return config.Config{DatabaseURL: testenv.PostgresSchema(t), Exchange: broker.DefaultEventsExchange}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testenv.Context(t, 30*time.Second)
			svc, err := Open(ctx, tc.store(t), Config{StoreOnly: true, Migrate: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			_, onPostgres := svc.Postgres()
			quiz := edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: 93}
			handledID, badgeID := uuid.New(), uuid.New()
			dispatch := func(ctx context.Context, tx Tx) error {
				if pg, ok := tx.Postgres(); ok != onPostgres || (ok && pg == nil) {
					t.Errorf("the handler's Tx is not a transaction of the service's store")
				}
				if _, ok := tx.SQLite(); ok == onPostgres {
					t.Errorf("the handler's Tx is not a transaction of the service's store")
				}
				_, err := svc.Bus.DispatchTx(ctx, tx, quiz, eventbus.WithID(badgeID))
				return err
			}

			failure := errors.New("the handler failed")
			_, err = svc.driver.HandleOnce(ctx, "g", handledID, func(ctx context.Context, tx Tx) error {
				if err := dispatch(ctx, tx); err != nil {
					return err
				}
				return failure
			})
			if !errors.Is(err, failure) {
				t.Fatalf("HandleOnce: %v, want the handler's failure", err)
			}
			if _, err := svc.Store.Get(ctx, badgeID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("an event dispatched by a failed handler was kept: %v", err)
			}

			handled, err := svc.driver.HandleOnce(ctx, "g", handledID, dispatch)
			if err != nil || !handled {
				t.Fatalf("HandleOnce: handled %v, %v", handled, err)
			}
			if _, err := svc.Store.Get(ctx, badgeID); err != nil {
				t.Fatalf("the event dispatched in the inbox's transaction: %v", err)
			}
			if seen, err := svc.driver.Handled(ctx, "g", handledID); err != nil || !seen {
				t.Fatalf("the inbox record: %v, %v", seen, err)
			}

			if _, err := svc.Bus.DispatchTx(ctx, Tx{}, quiz); !errors.Is(err, ErrWrongTx) {
				t.Fatalf("DispatchTx with a zero Tx: %v, want ErrWrongTx", err)
			}
		})
	}
}
