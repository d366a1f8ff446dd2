package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FaultProxyLeaks...) }

// newStore opens a migrated store in a schema of the test's own.
func newStore(t testing.TB) *postgres.Store {
	t.Helper()
	return testenv.PostgresStore(t)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness[pgx.Tx]{
		New: func(t *testing.T) store.TxStore[pgx.Tx] { return newStore(t) },
		Begin: func(ctx context.Context, s store.TxStore[pgx.Tx]) (pgx.Tx, error) {
			return s.(*postgres.Store).Pool().Begin(ctx)
		},
		Commit:   func(ctx context.Context, tx pgx.Tx) error { return tx.Commit(ctx) },
		Rollback: func(ctx context.Context, tx pgx.Tx) error { return tx.Rollback(ctx) },
		SetNextPosition: func(t *testing.T, s store.TxStore[pgx.Tx], n int64) {
			_, err := s.(*postgres.Store).Pool().Exec(context.Background(),
				"SELECT setval(pg_get_serial_sequence('event_store', 'id'), $1, false)", n)
			if err != nil {
				t.Fatal(err)
			}
		},
		ForgetStreamHashes: func(t *testing.T, s store.TxStore[pgx.Tx]) {
			// The table is the test's own: lift its append-only guard.
			_, err := s.(*postgres.Store).Pool().Exec(context.Background(), `
				ALTER TABLE event_store DISABLE TRIGGER event_store_no_update;
				UPDATE event_store SET stream_hash = NULL;
				ALTER TABLE event_store ENABLE TRIGGER event_store_no_update`)
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}
