package httpapi_test

import (
	"encoding/json"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edupulse/eventbus/store/postgres"
)

// Stream fan-out figures: how many clients a process holds open.
const (
	benchIdleStreams   = 500
	benchActiveStreams = 50
)

// BenchmarkStreamFanOut opens 500 idle streams (a filter no event matches)
// and 50 active ones (every event), then publishes b.N events from 4
// clients. It reports what an idle stream costs the server (heap bytes,
// goroutines, and the store's connections in use, on PostgreSQL), and the
// delivery to the active streams: events/s each received, and the latency
// from an event's time (set when it is stored) to its arrival, p50 and p99.
//
//	go test -run '^$' -bench StreamFanOut -benchtime 2000x ./httpapi/
func BenchmarkStreamFanOut(b *testing.B) {
	for _, kind := range []string{"postgres", "sqlite"} {
		b.Run(kind, func(b *testing.B) {
			var rig *streamRig
			if kind == "postgres" {
				rig = newPostgresRig(b, nil)
			} else {
				rig = newSQLiteRig(b, nil)
			}
			rig.client.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			goroutines := runtime.NumGoroutine()
			idle := make([]*sseStream, benchIdleStreams)
			for i := range idle {
				idle[i] = rig.openStream("subject=nobody-publishes-here", "").opened()
			}
			active := make([]*sseStream, benchActiveStreams)
			for i := range active {
				active[i] = rig.openStream("", "").opened()
			}
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			streams := float64(benchIdleStreams + benchActiveStreams)
			// Both ends of each stream are in this process: the figures
			// are an upper bound of the server's share.
			heapPerStream := float64(after.HeapInuse-before.HeapInuse) / streams
			goroutinesPerStream := float64(runtime.NumGoroutine()-goroutines) / streams
			var conns, idleAcquires float64
			if pg, ok := rig.store.(*postgres.Store); ok {
				// What 550 streams with nothing to send cost the database:
				// the pool's connections, and its acquires over 2 s.
				acquires := pg.Pool().Stat().AcquireCount()
				time.Sleep(2 * time.Second)
				idleAcquires = float64(pg.Pool().Stat().AcquireCount()-acquires) / 2
				conns = float64(pg.Pool().Stat().TotalConns())
			}

			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			latencies := make([][]time.Duration, len(active))
			for i, st := range active {
				wg.Go(func() {
					for range b.N {
						m := st.next()
						var ce struct {
							Time time.Time `json:"time"`
						}
						if err := json.Unmarshal([]byte(m.data), &ce); err != nil {
							b.Error(err)
							return
						}
						latencies[i] = append(latencies[i], time.Since(ce.Time))
					}
				})
			}
			var pub sync.WaitGroup
			for p := range 4 {
				n := b.N / 4
				if p == 0 {
					n += b.N % 4
				}
				pub.Go(func() { rig.publishUnsettled("fan-out", n) })
			}
			pub.Wait()
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(latencies...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(b.N*len(active))/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(heapPerStream, "heapB/stream(both-ends)")
			b.ReportMetric(goroutinesPerStream, "goroutines/stream(both-ends)")
			if kind == "postgres" {
				b.ReportMetric(conns, "db-conns")
				b.ReportMetric(idleAcquires, "idle-db-queries/s")
			}
		})
	}
}
