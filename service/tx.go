package service

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
	"github.com/edupulse/eventbus/store/sqlite"
)

// Tx is a transaction of the store the service opened, PostgreSQL's or the
// embedded SQLite store's. It is the transaction type of the service's bus
// (Bus.DispatchTx, Bus.AppendTx) and of its inbox, so that a worker's
// consume.OnTx handler, written once for service.Tx, runs on either store:
//
//	consume.OnTx(func(ctx context.Context, tx service.Tx, env event.Envelope, q edupulse.QuizSubmitted) error {
//		_, err := svc.Bus.DispatchTx(ctx, tx, edupulse.BadgeAwarded{...})
//		return err
//	})
//
// A handler's own writes go through the store's transaction: Postgres or
// SQLite returns it. The zero Tx is no transaction; the bus refuses it.
type Tx struct {
	pg   pgx.Tx
	lite *sql.Tx
}

// PostgresTx wraps a transaction of the service's PostgreSQL store (begun
// on its pool, see Service.Postgres), for the service's bus.
func PostgresTx(tx pgx.Tx) Tx { return Tx{pg: tx} }

// SQLiteTx wraps a transaction of the service's embedded store (begun on
// its DB, see Service.SQLite), for the service's bus.
func SQLiteTx(tx *sql.Tx) Tx { return Tx{lite: tx} }

// Postgres returns the PostgreSQL transaction, when that is the store.
func (t Tx) Postgres() (pgx.Tx, bool) { return t.pg, t.pg != nil }

// SQLite returns the SQLite transaction, when that is the store.
func (t Tx) SQLite() (*sql.Tx, bool) { return t.lite, t.lite != nil }

// ErrWrongTx reports a Tx that is not a transaction of the service's store:
// the zero Tx, or one of the other store.
var ErrWrongTx = errors.New("service: not a transaction of the service's store")

// driver is the service's store as a store.TxStore[Tx]: it unwraps a Tx into
// the transaction of the store underneath, and wraps the store's own
// transactions for inbox handlers. It is the one place that knows both
// transaction types.
type driver[TTx any] struct {
	store.TxStore[TTx]
	name   string
	wrap   func(TTx) Tx
	unwrap func(Tx) (TTx, bool)
}

var (
	_ store.TxStore[Tx] = driver[pgx.Tx]{}
	_ store.TxStore[Tx] = driver[*sql.Tx]{}
)

func postgresDriver(s *postgres.Store) store.TxStore[Tx] {
	return driver[pgx.Tx]{TxStore: s, name: "PostgreSQL", wrap: PostgresTx, unwrap: Tx.Postgres}
}

func sqliteDriver(s *sqlite.Store) store.TxStore[Tx] {
	return driver[*sql.Tx]{TxStore: s, name: "SQLite", wrap: SQLiteTx, unwrap: Tx.SQLite}
}

// AppendTx appends drafts in tx, which must be a transaction of this store.
func (d driver[TTx]) AppendTx(ctx context.Context, tx Tx, drafts []event.Draft) ([]store.Appended, error) {
	t, ok := d.unwrap(tx)
	if !ok {
		return nil, fmt.Errorf("%w: give a %s transaction (a zero Tx is none: use Append or Dispatch)", ErrWrongTx, d.name)
	}
	return d.TxStore.AppendTx(ctx, t, drafts)
}

// HandleOnce runs fn in the store's inbox transaction, wrapped as a Tx.
func (d driver[TTx]) HandleOnce(ctx context.Context, group string, id uuid.UUID, fn func(ctx context.Context, tx Tx) error) (bool, error) {
	return d.TxStore.HandleOnce(ctx, group, id, func(ctx context.Context, tx TTx) error { return fn(ctx, d.wrap(tx)) })
}

// PutSubjectKeysTx creates subject keys in tx, which must be a transaction
// of this store, so that the erasure's sealing creates a subject's first
// key in the caller's transaction (store.SubjectKeysTx).
func (d driver[TTx]) PutSubjectKeysTx(ctx context.Context, tx Tx, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	t, ok := d.unwrap(tx)
	if !ok {
		return nil, fmt.Errorf("%w: give a %s transaction", ErrWrongTx, d.name)
	}
	inTx, ok := d.TxStore.(store.SubjectKeysTx[TTx])
	if !ok {
		return nil, fmt.Errorf("service: the %s store cannot create keys in a transaction", d.name)
	}
	return inTx.PutSubjectKeysTx(ctx, t, keys)
}
