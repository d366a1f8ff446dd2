package bench_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/cmd/eventbus/internal/bench"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/internal/testenv"
)

// BenchmarkCallers runs e2e-16 (Dispatch without a transaction, the
// library) and http-16 (POST /v1/events) with 1, 16 and 64 callers on the
// real servers, 5 s each, and reports events/s and the CPU per event of the
// bus, PostgreSQL and RabbitMQ. It shows what the group commit of the
// PostgreSQL store does as callers are added (BENCHMARKS.md):
//
//	go test ./cmd/eventbus/internal/bench -run '^$' -bench Callers -benchtime 1x
func BenchmarkCallers(b *testing.B) {
	testenv.Need(b, "PostgreSQL", testenv.PostgresURL())
	testenv.Need(b, "RabbitMQ", testenv.AMQPURL())
	cfg := config.Config{DatabaseURL: testenv.PostgresURL(), AMQPURLs: []string{testenv.AMQPURL()}, Exchange: broker.DefaultEventsExchange}
	for _, callers := range []int{1, 16, 64} {
		for _, scenario := range []string{bench.E2E16, bench.HTTP16} {
			b.Run(scenario+"/callers="+strconv.Itoa(callers), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				rep, err := bench.Run(ctx, cfg, bench.Options{Scenarios: []string{scenario}, Callers: callers,
					Duration: 5 * time.Second, CeilingDuration: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rep.Scenarios {
					b.ReportMetric(r.PerSecond, "events/s")
					if r.CPU != nil {
						b.ReportMetric(r.CPU.BusPerEvent, "bus-µs/event")
						b.ReportMetric(r.CPU.StorePerEvent, "pg-µs/event")
						b.ReportMetric(r.CPU.BrokerPerEvent, "mq-µs/event")
						b.ReportMetric(r.CPU.Others*100, "others-%")
					}
				}
			})
		}
	}
}
