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
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				drafts := make([]event.Draft, perTx)
				for pb.Next() {
					for i := range drafts {
						drafts[i] = BenchDraft()
					}
					if _, err := s.Append(ctx, drafts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*perTx)/time.Since(start).Seconds(), "events/s")
		})
	}
}
