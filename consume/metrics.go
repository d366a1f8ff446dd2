package consume

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/eventbus/internal/promshare"
)

// Stats counts what a Consumer did since New. The same figures go to
// Prometheus when Config.Registerer is set.
type Stats struct {
	Handled      int64 // events whose handler succeeded
	Duplicates   int64 // deliveries the inbox recognised as already handled
	Unrouted     int64 // events of a type no route handles, acknowledged
	Failed       int64 // handler calls that failed (panics included)
	Retried      int64 // messages sent to a retry queue
	DeadLettered int64 // messages sent to the dead-letter queue
	Resubscribes int64 // subscriptions opened again after one ended
	InFlight     int64 // handler calls running now
	// Abandoned counts handler calls that did not return when their
	// context ended (HandlerTimeout, or the shutdown timeout): the
	// consumer went on without them. Each is a goroutine that may still
	// run: a handler that ignores its context.
	Abandoned int64
	// ShardsActive is, for a group with shards, how many of them this
	// process was active on (they delivered to it lately) at its last
	// balancing round; ShardsHandedOn counts the shards it handed on to
	// another process of the group.
	ShardsActive, ShardsHandedOn int64
}

type counters struct {
	handled, duplicates, unrouted, failed, retried, deadLettered, resubscribes, inFlight atomic.Int64

	abandoned atomic.Int64

	shardsActive, shardsHandedOn atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Handled: c.handled.Load(), Duplicates: c.duplicates.Load(), Unrouted: c.unrouted.Load(),
		Failed: c.failed.Load(), Retried: c.retried.Load(), DeadLettered: c.deadLettered.Load(),
		Resubscribes: c.resubscribes.Load(), InFlight: c.inFlight.Load(), Abandoned: c.abandoned.Load(),
		ShardsActive: c.shardsActive.Load(), ShardsHandedOn: c.shardsHandedOn.Load(),
	}
}

// Reasons a message is dead-lettered, the "cause" label of
// eventbus_consumer_dead_lettered_total.
const (
	causeMalformed = "malformed" // not a CloudEvent, or the payload does not fit
	causePermanent = "permanent" // the handler returned a Permanent error
	causeExhausted = "exhausted" // every attempt failed
	causePoison    = "poison"    // delivered MaxDeliveries times, never settled
)

// metrics are the Prometheus series of one group.
type metrics struct {
	handled, duplicates, unrouted, failed, retried, resubscribes prometheus.Counter
	deadLettered                                                 *prometheus.CounterVec
	duration                                                     prometheus.Observer
	inFlight                                                     prometheus.Gauge
	shardsActive                                                 prometheus.Gauge
	shardsHandedOn                                               prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, group string) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "eventbus", Subsystem: "consumer", Name: name, Help: help,
		}, []string{"group"})
	}
	handled := counter("handled_total", "Events whose handler succeeded.")
	duplicates := counter("duplicates_total", "Deliveries suppressed because the inbox had already recorded the event.")
	unrouted := counter("unrouted_total", "Events of a type no route handles, acknowledged without effect.")
	failed := counter("failed_total", "Handler calls that failed, panics included.")
	retried := counter("retried_total", "Messages sent to a retry queue.")
	resubscribes := counter("resubscribes_total", "Subscriptions opened again after one ended.")
	deadLettered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "eventbus", Subsystem: "consumer", Name: "dead_lettered_total",
		Help: "Messages sent to the dead-letter queue, by cause (malformed, permanent, exhausted, poison).",
	}, []string{"group", "cause"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "eventbus", Subsystem: "consumer", Name: "handler_duration_seconds",
		Help:    "Time spent in handlers, the inbox transaction included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"group"})
	inFlight := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "eventbus", Subsystem: "consumer", Name: "in_flight",
		Help: "Handler calls running now.",
	}, []string{"group"})
	shardsActive := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "eventbus", Subsystem: "consumer", Name: "shards_active",
		Help: "Shards of the group this process was active on at its last balancing round (groups with shards).",
	}, []string{"group"})
	shardsHandedOn := counter("shards_handed_on_total", "Shards this process handed on to another process of the group, holding more than its share.")

	if reg != nil {
		// Consumers of several groups in one process share the series.
		for _, register := range []func() error{
			func() error { return promshare.Register(reg, &handled) },
			func() error { return promshare.Register(reg, &duplicates) },
			func() error { return promshare.Register(reg, &unrouted) },
			func() error { return promshare.Register(reg, &failed) },
			func() error { return promshare.Register(reg, &retried) },
			func() error { return promshare.Register(reg, &resubscribes) },
			func() error { return promshare.Register(reg, &deadLettered) },
			func() error { return promshare.Register(reg, &duration) },
			func() error { return promshare.Register(reg, &inFlight) },
			func() error { return promshare.Register(reg, &shardsActive) },
			func() error { return promshare.Register(reg, &shardsHandedOn) },
		} {
			if err := register(); err != nil {
				return nil, fmt.Errorf("consume: register metrics: %w", err)
			}
		}
	}
	return &metrics{
		handled:        handled.WithLabelValues(group),
		duplicates:     duplicates.WithLabelValues(group),
		unrouted:       unrouted.WithLabelValues(group),
		failed:         failed.WithLabelValues(group),
		retried:        retried.WithLabelValues(group),
		resubscribes:   resubscribes.WithLabelValues(group),
		deadLettered:   deadLettered.MustCurryWith(prometheus.Labels{"group": group}),
		duration:       duration.WithLabelValues(group),
		inFlight:       inFlight.WithLabelValues(group),
		shardsActive:   shardsActive.WithLabelValues(group),
		shardsHandedOn: shardsHandedOn.WithLabelValues(group),
	}, nil
}
