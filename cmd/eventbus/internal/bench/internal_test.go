package bench

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/sqlite"
)

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	samples := make([]time.Duration, 100000)
	for i := range samples {
		// Log-uniform from 1µs to 1s, as latencies spread.
		samples[i] = time.Duration(1e3 * math.Pow(10, rand.Float64()*6))
		h.record(samples[i])
	}
	slices.Sort(samples)
	qs := []float64{0.5, 0.99, 0.999}
	got := h.quantiles(qs...)
	for i, q := range qs {
		want := samples[int(q*float64(len(samples)))-1]
		if diff := float64(got[i]-want) / float64(want); diff > 0.01 || diff < -0.01 {
			t.Errorf("q%g: %v, want %v ± 1%%", q, got[i], want)
		}
	}
	if h.count() != int64(len(samples)) {
		t.Errorf("count %d", h.count())
	}
}

func TestHistogramEdges(t *testing.T) {
	var h histogram
	if q := h.quantiles(0.5); q[0] != 0 {
		t.Errorf("empty: %v", q)
	}
	for _, d := range []time.Duration{-5, 0, 1, 127, 128, 1 << 62} {
		h.record(d)
	}
	q := h.quantiles(0, 1)
	if q[0] != 0 || q[1] < time.Duration(1)<<40 {
		t.Errorf("extremes: %v", q)
	}
	for i := range numBuckets {
		if b := bucketOf(bucketValue(i)); b != i {
			t.Fatalf("bucket %d: middle %v lands in %d", i, bucketValue(i), b)
		}
	}
}

func TestBenchURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:p@h:5432/db?sslmode=disable", "postgres://u:p@h:5432/db?application_name=eventbus-bench&search_path=s&sslmode=disable"},
		{"postgres://u@h/db?search_path=public&application_name=me", "postgres://u@h/db?application_name=me&search_path=s"},
		{"host=h user=u dbname=db", "host=h user=u dbname=db search_path=s application_name=eventbus-bench"},
	} {
		got, err := benchURL(c.in, "s")
		if err != nil || got != c.want {
			t.Errorf("benchURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestOccurredAt(t *testing.T) {
	at, ok := occurredAt([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","time":"2025-01-02T03:04:05.123456Z","data":{}}`))
	if !ok || !at.Equal(time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)) {
		t.Errorf("occurredAt: %v, %v", at, ok)
	}
	if _, ok := occurredAt([]byte(`{"id":"x"}`)); ok {
		t.Error("occurredAt found a time where there is none")
	}
}

func TestConnectTakesPoolSettings(t *testing.T) {
	// pgx.Connect would send pool_max_conns to the server, which refuses
	// it; the URL must only fail for being unreachable.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := connect(ctx, "postgres://u@127.0.0.1:1/db?pool_max_conns=4&connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "not valid") {
		t.Fatalf("connect: %v, want a connection error", err)
	}
}

// TestCeilingMessageIsTheBusMessage: the ceilings publish what the relay
// publishes for the scenarios' events, with the same properties and
// headers, so that a ceiling costs the broker what the bus's messages do.
func TestCeilingMessageIsTheBusMessage(t *testing.T) {
	s, err := sqlite.Open(context.Background(), t.TempDir()+"/events.db", sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	bus := eventbus.New(s, eventbus.Config{Registry: edupulse.Registry()})
	d, err := eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: 90}, eventbus.Subject("quiz-1"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := bus.Append(context.Background(), []event.Draft{d})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := broker.EnvelopeMessage(res[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	ceiling := ceilingMessage()
	if got, want := slices.Sorted(maps.Keys(ceiling.Headers)), slices.Sorted(maps.Keys(stored.Headers)); !slices.Equal(got, want) {
		t.Errorf("the ceiling's headers are %v, the bus's %v", got, want)
	}
	if ceiling.Header(broker.HeaderDataSchema) != stored.Header(broker.HeaderDataSchema) {
		t.Errorf("the ceiling's dataschema is %q, the bus's %q", ceiling.Header(broker.HeaderDataSchema), stored.Header(broker.HeaderDataSchema))
	}
	if ceiling.CorrelationID == "" || ceiling.Type != stored.Type || ceiling.ContentType != stored.ContentType {
		t.Errorf("the ceiling's properties %+v differ from the bus's %+v", ceiling, stored)
	}
}
