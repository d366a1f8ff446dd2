package erasure_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/service"
	"github.com/edupulse/eventbus/store"
)

// benchService opens a service on a store, with n quiz events of 10
// learners in it, sealed.
func benchService(b *testing.B, kind string, n int) *service.Service {
	b.Helper()
	be := backends()[0]
	if kind == "postgres" {
		be = backends()[1]
	}
	svc := open(b, be.cfg(b), true)
	ctx := context.Background()
	learners := make([]uuid.UUID, 10)
	for i := range learners {
		learners[i] = uuid.New()
	}
	drafts := make([]event.Draft, 0, 100)
	for i := 0; i < n; i++ {
		d, err := eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learners[i%10], ScoreRaw: int32(i)})
		if err != nil {
			b.Fatal(err)
		}
		drafts = append(drafts, d)
		if len(drafts) == cap(drafts) || i == n-1 {
			if _, err := svc.Bus.Append(ctx, drafts); err != nil {
				b.Fatal(err)
			}
			drafts = drafts[:0]
		}
	}
	testenv.Settle(b, svc.Store)
	return svc
}

// rawStore is svc's store without the read transform: it reads events as
// they are stored, sealed.
func rawStore(svc *service.Service) store.Store {
	if pg, ok := svc.Postgres(); ok {
		return pg
	}
	lite, _ := svc.SQLite()
	return lite
}

// BenchmarkReadPage reads a page of 100 quiz events (10 learners, keys
// cached) through the service's store, which decrypts ("decrypted"), and
// through the raw store, which does not ("raw"): the difference divided
// by 100 is the decryption's cost per event read, the erasure epoch's
// check (one query per page) included. ns/event is reported.
func BenchmarkReadPage(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			svc := benchService(b, kind, 100)
			raw := rawStore(svc)
			for _, r := range []struct {
				name string
				s    store.Reader
			}{{"raw", raw}, {"decrypted", svc.Store}} {
				b.Run(r.name, func(b *testing.B) {
					ctx := context.Background()
					b.ReportAllocs()
					for i := 0; i < b.N; i++ {
						page, err := r.s.Read(ctx, store.Filter{Limit: 100})
						if err != nil || len(page.Events) != 100 {
							b.Fatalf("%d events, %v", len(page.Events), err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
				})
			}
		})
	}
}

// BenchmarkOpenPage is the read transform alone on a page of 100 sealed
// events whose keys are cached: the CPU of decryption per event, plus the
// epoch check's query, spread over the page.
func BenchmarkOpenPage(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			svc := benchService(b, kind, 100)
			raw := rawStore(svc)
			ctx := context.Background()
			page, err := raw.Read(ctx, store.Filter{Limit: 100})
			if err != nil || len(page.Events) != 100 {
				b.Fatalf("%d events, %v", len(page.Events), err)
			}
			open := svc.Keyring().Transform()
			events := make([]event.Envelope, len(page.Events))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(events, page.Events)
				if err := open(ctx, events); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
		})
	}
}

// BenchmarkAppendBatch appends batches of 100 quiz events of 10 learners
// (keys cached after the first batch) through the service's bus, which
// seals ("sealed"), and through a bus on the raw store ("raw"): the
// difference per event is the encryption's cost on append.
func BenchmarkAppendBatch(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			svc := benchService(b, kind, 10)
			// The same bus without sealing, on the raw store: it checks the
			// drafts against the registry as the service's bus does.
			var rawAppend func(context.Context, []event.Draft) ([]store.Appended, error)
			if pg, ok := svc.Postgres(); ok {
				rawAppend = eventbus.New(pg, eventbus.Config{Registry: registry(b)}).Append
			} else {
				lite, _ := svc.SQLite()
				rawAppend = eventbus.New(lite, eventbus.Config{Registry: registry(b)}).Append
			}
			learners := make([]uuid.UUID, 10)
			for i := range learners {
				learners[i] = uuid.New()
			}
			batch := func() []event.Draft {
				drafts := make([]event.Draft, 100)
				for i := range drafts {
					drafts[i], _ = eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: learners[i%10], ScoreRaw: int32(i)})
				}
				if err := svc.Bus.Prepare(context.Background(), drafts); err != nil {
					b.Fatal(err)
				}
				return drafts
			}
			// Warm the keys: the first batch creates them, a read caches them.
			if _, err := svc.Bus.Append(context.Background(), batch()); err != nil {
				b.Fatal(err)
			}
			testenv.Settle(b, svc.Store)
			if _, err := svc.Store.Read(context.Background(), store.Filter{Limit: 1000}); err != nil {
				b.Fatal(err)
			}
			for _, w := range []struct {
				name   string
				append func(context.Context, []event.Draft) ([]store.Appended, error)
			}{{"raw", rawAppend}, {"sealed", svc.Bus.Append}} {
				b.Run(w.name, func(b *testing.B) {
					ctx := context.Background()
					b.ReportAllocs()
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						drafts := batch()
						b.StartTimer()
						if _, err := w.append(ctx, drafts); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
				})
			}
		})
	}
}
