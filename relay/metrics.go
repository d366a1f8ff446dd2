package relay

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edupulse/eventbus/internal/promshare"
	"github.com/edupulse/eventbus/store"
)

// Metrics are a relay's own figures: what it published, how long each event
// took from commit to confirm, and what went wrong. The figures about the
// store (backlog, held-back events) come from StatusCollector, at scrape
// time.
type Metrics struct {
	published  prometheus.Counter
	errors     *prometheus.CounterVec
	unroutable *prometheus.CounterVec
	lag        prometheus.Histogram
	checkpoint *prometheus.GaugeVec
	leader     prometheus.Gauge
}

// NewMetrics returns unregistered relay metrics; register them with
// Register.
func NewMetrics() *Metrics {
	return &Metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "published_total",
			Help: "Events published and confirmed by the broker.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "errors_total",
			Help: "Relay errors by kind: nack, unroutable, broker, store, checkpoint, lease, encode, parked.",
		}, []string{"kind"}),
		unroutable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "unroutable_total",
			Help: "Events the broker returned because no queue is bound for their type, by type (_other past 1000 types).",
		}, []string{"type"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "lag_seconds",
			Help:    "Time from an event's recording in the store to the broker's confirm.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "checkpoint_position",
			Help: "Global position of the last event this process confirmed and saved, by partition.",
		}, []string{"partition"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "eventbus", Subsystem: "relay", Name: "leader",
			Help: "How many relay partitions this process holds the lease of and publishes (0 when it stands by).",
		}),
	}
}

// Errors returns how many errors of kind the relay has counted.
func (m *Metrics) Errors(kind string) float64 {
	var d dto.Metric
	_ = m.errors.WithLabelValues(kind).Write(&d)
	return d.GetCounter().GetValue()
}

// Unroutable returns how many events of type the broker returned for want
// of a queue bound to it.
func (m *Metrics) Unroutable(typ string) float64 {
	var d dto.Metric
	_ = m.unroutable.WithLabelValues(typ).Write(&d)
	return d.GetCounter().GetValue()
}

// Published returns how many events the relay has published and had
// confirmed.
func (m *Metrics) Published() float64 {
	var d dto.Metric
	_ = m.published.Write(&d)
	return d.GetCounter().GetValue()
}

// Register registers the metrics with reg. Relays of one process that
// register with the same registry share its series.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	return errors.Join(
		promshare.Register(reg, &m.published),
		promshare.Register(reg, &m.errors),
		promshare.Register(reg, &m.unroutable),
		promshare.Register(reg, &m.lag),
		promshare.Register(reg, &m.checkpoint),
		promshare.Register(reg, &m.leader),
	)
}

// StatusCollector exports a relay's Status as Prometheus gauges, read from
// the store at each scrape: backlog, lag, held-back events and the age of the
// oldest open transaction, which holds readers back.
type StatusCollector struct {
	store   store.Store
	relay   string
	timeout time.Duration

	backlog, lag, heldBack, oldestTx, events, healthy, parked *prometheus.Desc
	// By partition.
	partitions, processes, partBacklog, partLag, partCheckpoint, partLeader *prometheus.Desc
}

// NewStatusCollector returns a collector for relay's status in s.
func NewStatusCollector(s store.Store, relay string) *StatusCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("eventbus_relay_"+name, help, labels, prometheus.Labels{"relay": relay})
	}
	return &StatusCollector{
		store: s, relay: relay, timeout: 5 * time.Second,
		backlog:  desc("backlog_events", "Events committed but not yet confirmed by the broker."),
		lag:      desc("backlog_age_seconds", "Age of the oldest event not yet confirmed by the broker."),
		heldBack: desc("held_back_events", "Committed events readers cannot see yet because an older transaction is open."),
		oldestTx: desc("oldest_transaction_age_seconds", "Age of the oldest open writing transaction, which holds readers back."),
		events:   desc("store_events", "Events in the store (an estimate on large stores)."),
		healthy:  desc("healthy", "1 when a relay holds every partition's lease and nothing is parked."),
		parked:   desc("parked_events", "Events parked because the broker refuses them, with the events of their streams waiting behind them."),

		partitions:     desc("partitions", "The relay's partition count (EVENTBUS_RELAY_PARTITIONS)."),
		processes:      desc("processes", "Live relay processes sharing the partitions."),
		partBacklog:    desc("partition_backlog_events", "Events of the partition committed but not yet confirmed by the broker.", "partition"),
		partLag:        desc("partition_lag_seconds", "Age of the partition's oldest event not yet confirmed by the broker.", "partition"),
		partCheckpoint: desc("partition_checkpoint_position", "Global position of the partition's checkpoint.", "partition"),
		partLeader:     desc("partition_leader", "1 for the process holding the partition's lease (its holder: host/pid/suffix); 0 with leader=\"\" when none does.", "partition", "leader"),
	}
}

// Describe implements prometheus.Collector.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backlog, c.lag, c.heldBack, c.oldestTx, c.events, c.healthy, c.parked,
		c.partitions, c.processes, c.partBacklog, c.partLag, c.partCheckpoint, c.partLeader} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := ReadStatus(ctx, c.store, c.relay, 0)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	healthy := 0.0
	if st.Healthy {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, time.Duration(st.Lag).Seconds())
	ch <- prometheus.MustNewConstMetric(c.heldBack, prometheus.GaugeValue, float64(st.HeldBack))
	ch <- prometheus.MustNewConstMetric(c.oldestTx, prometheus.GaugeValue, time.Duration(st.OldestTxAge).Seconds())
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, float64(st.Events))
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy)
	ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(st.Parked))
	ch <- prometheus.MustNewConstMetric(c.partitions, prometheus.GaugeValue, float64(st.PartitionCount))
	ch <- prometheus.MustNewConstMetric(c.processes, prometheus.GaugeValue, float64(len(st.Processes)))
	for _, p := range st.Partitions {
		n := strconv.Itoa(p.Partition)
		ch <- prometheus.MustNewConstMetric(c.partBacklog, prometheus.GaugeValue, float64(p.Backlog), n)
		ch <- prometheus.MustNewConstMetric(c.partLag, prometheus.GaugeValue, time.Duration(p.Lag).Seconds(), n)
		ch <- prometheus.MustNewConstMetric(c.partCheckpoint, prometheus.GaugeValue, float64(p.Position), n)
		held := 0.0
		if p.Leader != "" {
			held = 1
		}
		ch <- prometheus.MustNewConstMetric(c.partLeader, prometheus.GaugeValue, held, n, p.Leader)
	}
}
