package promshare_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/edupulse/eventbus/internal/promshare"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newCounter(help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promshare_test_total", Help: help}, []string{"who"})
}

func TestRegisterReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, second := newCounter("Test."), newCounter("Test.")
	if err := promshare.Register(reg, &first); err != nil {
		t.Fatal(err)
	}
	registered := first
	if err := promshare.Register(reg, &second); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	if second != registered {
		t.Fatal("the second registration did not reuse the first collector")
	}
	first.WithLabelValues("a").Inc()
	second.WithLabelValues("a").Inc()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 || len(families[0].GetMetric()) != 1 || families[0].GetMetric()[0].GetCounter().GetValue() != 2 {
		t.Fatalf("gathered %v, want one series counting 2: both updates on it", families)
	}
}

func TestRegisterReportsAConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := newCounter("Test.")
	if err := promshare.Register(reg, &first); err != nil {
		t.Fatal(err)
	}
	// Same name, another help text: not the same metric.
	other := newCounter("Something else.")
	before := other
	if err := promshare.Register(reg, &other); err == nil {
		t.Fatal("registering a different metric under a taken name succeeded")
	}
	if other != before {
		t.Fatal("a failed registration changed the collector")
	}
	// Same description, another type: not reusable either.
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promshare_test_total", Help: "Test."}, []string{"who"})
	if err := promshare.Register(reg, &gauge); err == nil {
		t.Fatal("registering a gauge over a counter of the same description succeeded")
	}
}
