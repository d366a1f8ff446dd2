package httpapi_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/httpapi"
)

// Two handlers on one registry count into the same series; a registry where
// another metric holds one of the names is refused.
func TestHandlersShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	shared := func(c *httpapi.Config) { c.Metrics = reg }
	first := newHarness(t, harnessOption{config: shared})
	second := newHarness(t, harnessOption{config: shared})
	first.publish(`{"type":"quiz.submitted","data":` + quizData(1) + `}`)
	second.publish(`{"type":"quiz.submitted","data":` + quizData(2) + `}`)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	stored := 0.0
	for _, f := range families {
		if f.GetName() != "eventbus_http_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			stored += m.GetCounter().GetValue()
		}
	}
	if stored != 2 {
		t.Fatalf("eventbus_http_events_total = %v, want 2 (one per handler)", stored)
	}

	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "eventbus_http_events_total", Help: "Something else."}))
	cfg := httpapi.Config{Bus: eventbus.New(first.store, eventbus.Config{}), Reader: first.store, Metrics: clash}
	if _, err := httpapi.New(cfg); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("New on a registry where another metric holds a name: %v, want a registration error", err)
	}
}
