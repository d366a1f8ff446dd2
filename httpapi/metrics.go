package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/eventbus/internal/promshare"
)

// metrics are the handler's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   *prometheus.CounterVec
	byOrigin *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventbus_http_requests_total",
			Help: "HTTP requests answered, by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventbus_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventbus_http_events_total",
			Help: "Events received through POST /v1/events, by outcome: stored, or duplicate (the id was already stored).",
		}, []string{"outcome"}),
		byOrigin: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventbus_http_events_stored_by_origin_total",
			Help: "Events stored through POST /v1/events (duplicates left out), by where their type comes from: go (registered in Go), file (declared by a schema file), unknown (neither, stored because EVENTBUS_ALLOW_UNKNOWN_TYPES is on).",
		}, []string{"origin"}),
	}
	// Two handlers on one registry share their metrics.
	for _, register := range []func() error{
		func() error { return promshare.Register(reg, &m.requests) },
		func() error { return promshare.Register(reg, &m.duration) },
		func() error { return promshare.Register(reg, &m.events) },
		func() error { return promshare.Register(reg, &m.byOrigin) },
	} {
		if err := register(); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(method, route string, status int, d time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// methodLabel keeps the method label's values few: clients choose methods.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}
