package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/storetest"
)

func benchDraft() event.Draft { return storetest.BenchDraft() }

// BenchmarkAppend measures events/s through Append from 16 concurrent
// callers, with 1 and with 100 events per transaction.
func BenchmarkAppend(b *testing.B) {
	storetest.BenchmarkAppend(b, func(tb testing.TB) store.Store { return newStore(tb) })
}

// BenchmarkAppendInCallersTx measures events/s of one event appended in
// the caller's transaction from 16 concurrent callers: BEGIN, AppendTx,
// COMMIT, as a service records an event beside its own writes. Compare it
// with BenchmarkCeilingSingleRowCommitsInTx, run beside it:
//
//	go test ./store/postgres -run '^$' -bench 'AppendInCallersTx|InTx' -benchtime 5s -count 3
func BenchmarkAppendInCallersTx(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	storetest.Parallel(b, 1, "events/s", func() error {
		return pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			_, err := s.AppendTx(ctx, tx, []event.Draft{benchDraft()})
			return err
		})
	})
}

// BenchmarkCeilingSingleRowCommits is the PostgreSQL ceiling for one event
// per transaction: raw single-row INSERT commits from 16 connections into a
// bare table with the same columns and no function.
func BenchmarkCeilingSingleRowCommits(b *testing.B) {
	benchCeilingSingleRows(b, false)
}

// BenchmarkCeilingSingleRowCommitsInTx is the same inside a transaction of
// the caller's (BEGIN, INSERT, COMMIT): the ceiling of
// BenchmarkAppendInCallersTx.
func BenchmarkCeilingSingleRowCommitsInTx(b *testing.B) {
	benchCeilingSingleRows(b, true)
}

func benchCeilingSingleRows(b *testing.B, inTx bool) {
	s := newStore(b)
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE raw_events (id bigserial PRIMARY KEY, event_id uuid, type text, data json)`); err != nil {
		b.Fatal(err)
	}
	const insert = `INSERT INTO raw_events (event_id, type, data) VALUES ($1, $2, $3)`
	d := benchDraft()
	storetest.Parallel(b, 1, "rows/s", func() error {
		if inTx {
			return pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, insert, uuid.New(), d.Type, string(d.Data))
				return err
			})
		}
		_, err := s.Pool().Exec(ctx, insert, uuid.New(), d.Type, string(d.Data))
		return err
	})
}

// BenchmarkCeilingCopy is the PostgreSQL ceiling for bulk writes: COPY of
// 1,000 rows per transaction.
func BenchmarkCeilingCopy(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE raw_events (id bigserial PRIMARY KEY, event_id uuid, type text, data json)`); err != nil {
		b.Fatal(err)
	}
	d := benchDraft()
	rows := make([][]any, 1000)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := range rows {
			rows[j] = []any{uuid.New(), d.Type, string(d.Data)}
		}
		if _, err := s.Pool().CopyFrom(ctx, pgx.Identifier{"raw_events"}, []string{"event_id", "type", "data"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkNotifyCost measures what a NOTIFY in every write transaction
// costs, to decide how the relay should learn of new events. NOTIFY takes a
// global lock at commit, which serialises committing transactions.
func BenchmarkNotifyCost(b *testing.B) {
	for _, notify := range []bool{false, true} {
		name := "WithoutNotify"
		if notify {
			name = "WithNotify"
		}
		b.Run(name, func(b *testing.B) {
			s := newStore(b)
			ctx := context.Background()
			storetest.Parallel(b, 1, "commits/s", func() error {
				return pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
					if _, err := s.AppendTx(ctx, tx, []event.Draft{benchDraft()}); err != nil {
						return err
					}
					if notify {
						if _, err := tx.Exec(ctx, "SELECT pg_notify('eventbus_bench', '')"); err != nil {
							return err
						}
					}
					return nil
				})
			})
		})
	}
}
