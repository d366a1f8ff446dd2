package service

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// BenchmarkAppendValidation measures Bus.Append of one event per call, one
// caller, on each store, for data of the same size: of a type neither
// registered nor declared (stored unchecked, EVENTBUS_ALLOW_UNKNOWN_TYPES),
// of a Go type (decoded into it), and of a type declared by a schema file
// (its compiled schema). The difference is the cost of validation per
// event; cpu-µs/op is this process's CPU time, which a loaded machine
// disturbs less than the wall time. BENCHMARKS.md has the figures.
func BenchmarkAppendValidation(b *testing.B) {
	const ids = `"learner_id":"0190d1e2-0000-7000-8000-000000000002"`
	declared := `{"course_id":"0190d1e2-0000-7000-8000-000000000001",` + ids + `,"grade":93,"completed_at":"2026-12-06T07:00:00Z"}`
	kinds := []struct{ name, typ, data string }{
		{"unknown", "survey.answered", declared},
		{"go", edupulse.TypeQuizSubmitted, `{"quiz_id":"0190d1e2-0000-7000-8000-000000000001",` + ids + `,"score_raw":93,"max_score":100}`},
		{"declared", "course.completed", declared},
	}
	for _, storeName := range []string{"sqlite", "postgres"} {
		b.Run(storeName, func(b *testing.B) {
			ctx := context.Background()
			cfg := config.Config{Exchange: broker.DefaultEventsExchange, DataDir: b.TempDir(), SchemaDir: exampleSchemas, AllowUnknownTypes: true}
			if storeName == "postgres" {
				cfg.DatabaseURL = testenv.PostgresSchema(b)
			}
			svc, err := Open(ctx, cfg, Config{Migrate: true, StoreOnly: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			for _, k := range benchOrder(kinds) {
				b.Run(k.name, func(b *testing.B) {
					d := []event.Draft{{Type: k.typ, Data: []byte(k.data)}}
					cpu := processCPU()
					start := time.Now()
					for b.Loop() {
						d[0].ID = uuid.Must(uuid.NewV7())
						if _, err := svc.Bus.Append(ctx, d); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
				})
			}
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchOrder runs the kinds in reverse when EVENTBUS_BENCH_REVERSE is set:
// a table that grows during the run must not favour the first kind.
func benchOrder[T any](kinds []T) []T {
	if os.Getenv("EVENTBUS_BENCH_REVERSE") == "" {
		return kinds
	}
	out := slices.Clone(kinds)
	slices.Reverse(out)
	return out
}
