package storetest

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// BenchDraft returns a quiz.submitted draft on a stream of its own, as the
// append benchmarks write.
func BenchDraft() event.Draft {
	return event.Draft{
		ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Source: "bench",
		Subject: "quiz-" + uuid.NewString()[:8], OccurredAt: time.Now(), CorrelationID: uuid.Must(uuid.NewV7()),
		Data: json.RawMessage(`{"quiz_id":"0190d1e2-0000-7000-8000-000000000001","learner_id":"0190d1e2-0000-7000-8000-000000000002","score_raw":90}`),
	}
}

// BenchmarkAppend measures events/s through Append from 16 concurrent
// callers, with 1 and with 100 events per call, on a fresh store from open
// for each.
func BenchmarkAppend(b *testing.B, open func(testing.TB) store.Store) {
	for _, perTx := range []int{1, 100} {
		b.Run(strconv.Itoa(perTx)+"PerTx", func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			Parallel(b, perTx, "events/s", func() error {
				drafts := make([]event.Draft, perTx)
				for i := range drafts {
					drafts[i] = BenchDraft()
				}
				_, err := s.Append(ctx, drafts)
				return err
			})
		})
	}
}

// Parallel runs op b.N times from 16 concurrent callers and reports the
// rate of the units (perOp of them per op, named unit) over the run. The
// first error stops that caller and fails the benchmark.
func Parallel(b *testing.B, perOp int, unit string, op func() error) {
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perOp)/time.Since(start).Seconds(), unit)
}
