package sqlite_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/sqlite"
	"github.com/edupulse/eventbus/store/storetest"
)

func benchDraft() event.Draft { return storetest.BenchDraft() }

// BenchmarkAppend measures events/s through Append from 16 concurrent
// callers, with 1 and with 100 events per call, at the default
// synchronous=FULL.
func BenchmarkAppend(b *testing.B) { benchAppend(b, sqlite.Config{}) }

// BenchmarkAppendSynchronousNormal is BenchmarkAppend with the WAL synced
// only at checkpoints.
func BenchmarkAppendSynchronousNormal(b *testing.B) {
	benchAppend(b, sqlite.Config{Synchronous: sqlite.SynchronousNormal})
}

func benchAppend(b *testing.B, cfg sqlite.Config) {
	storetest.BenchmarkAppend(b, func(tb testing.TB) store.Store { return newStoreWith(tb, cfg) })
}

// BenchmarkAppendTx measures one event per transaction of the caller's own
// (begin, AppendTx, commit) from 16 callers: every commit is its own fsync.
func BenchmarkAppendTx(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	storetest.Parallel(b, 1, "events/s", func() error {
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := s.AppendTx(ctx, tx, []event.Draft{benchDraft()}); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// BenchmarkAppendOneCaller measures the latency of Append with a single
// caller and one event per call, with its median and 99th percentile.
func BenchmarkAppendOneCaller(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  sqlite.Config
	}{{"Full", sqlite.Config{}}, {"Normal", sqlite.Config{Synchronous: sqlite.SynchronousNormal}}} {
		b.Run(c.name, func(b *testing.B) {
			s := newStoreWith(b, c.cfg)
			ctx := context.Background()
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d := benchDraft()
				start := time.Now()
				if _, err := s.Append(ctx, []event.Draft{d}); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkRead measures events/s read in commit order, in pages of 1000
// (how the relay and replay read).
func BenchmarkRead(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	const total = 20000
	drafts := make([]event.Draft, 1000)
	for n := 0; n < total; n += len(drafts) {
		for i := range drafts {
			drafts[i] = benchDraft()
		}
		if _, err := s.Append(ctx, drafts); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	f := store.Filter{Limit: 1000}
	read := 0
	for i := 0; i < b.N; i++ {
		page, err := s.Read(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		read += len(page.Events)
		f.After = page.Next
		if len(page.Events) < f.Limit {
			f.After = store.Cursor{}
		}
	}
	b.ReportMetric(float64(read)/time.Since(start).Seconds(), "events/s")
}
