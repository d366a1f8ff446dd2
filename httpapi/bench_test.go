package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/httpapi"
)

// benchClients is how many HTTP clients post at once.
const benchClients = 16

// BenchmarkPostEvents measures POST /v1/events through a real loopback
// listener, with auth and access logging on, from 16 concurrent clients:
// one event per request, and batches of 100. It reports events/s, requests/s
// and the request latency's p50 and p99.
//
//	go test -run '^$' -bench PostEvents -benchtime 5s ./httpapi/
func BenchmarkPostEvents(b *testing.B) {
	for _, perRequest := range []int{1, 100} {
		b.Run(fmt.Sprintf("%dPerRequest", perRequest), func(b *testing.B) {
			h := newHarness(b, harnessOption{config: func(c *httpapi.Config) {
				c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) // the access log's cost, not its output
			}})
			transport := &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}

			var next atomic.Int64
			latencies := make([][]time.Duration, benchClients)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := 0; c < benchClients; c++ {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						body := benchBody(perRequest)
						req, err := http.NewRequest("POST", h.srv.URL+"/v1/events", bytes.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer "+publishSecret)
						t0 := time.Now()
						res, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						_ = res.Body.Close()
						latencies[c] = append(latencies[c], time.Since(t0))
						if res.StatusCode != http.StatusCreated {
							b.Errorf("status %d", res.StatusCode)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()

			all := slices.Concat(latencies...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			pct := func(p float64) float64 {
				return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(len(all)*perRequest)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

// benchBody is a request of n quiz.submitted events, each in a stream of
// its own, as independent producers would send.
func benchBody(n int) []byte {
	one := func() string {
		return fmt.Sprintf(`{"type":"quiz.submitted","subject":"quiz-%s","data":{"quiz_id":%q,"learner_id":%q,"score_raw":90}}`,
			uuid.NewString()[:8], uuid.New(), uuid.New())
	}
	if n == 1 {
		return []byte(one())
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = one()
	}
	return []byte(`{"events":[` + strings.Join(parts, ",") + `]}`)
}
