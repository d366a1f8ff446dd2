package consume_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestNewRejectsBadConfig(t *testing.T) {
	// New checks its arguments without talking to the broker.
	var b *rabbitmq.Broker
	var s *postgres.Store
	quiz := consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error { return nil })
	quizTx := consume.OnTx(func(context.Context, pgx.Tx, event.Envelope, edupulse.QuizSubmitted) error { return nil })
	otherTx := consume.OnAnyTx(func(context.Context, *struct{}, event.Envelope) error { return nil })
	any := consume.OnAny(func(context.Context, event.Envelope) error { return nil })
	for _, tc := range []struct {
		name   string
		cfg    consume.Config
		routes []consume.Route
		want   string
	}{
		{"no group", consume.Config{}, []consume.Route{quiz}, "Group is required"},
		{"reserved group", consume.Config{Group: "amq.x"}, []consume.Route{quiz}, "reserved"},
		{"no routes", consume.Config{Group: "g"}, nil, "no routes"},
		{"tx route without inbox", consume.Config{Group: "g"}, []consume.Route{quizTx}, "needs Config.Inbox"},
		{"tx type mismatch", consume.Config{Group: "g", Inbox: consume.NewInbox[pgx.Tx](s)}, []consume.Route{otherTx}, "inbox's transactions are pgx.Tx"},
		{"two routes for a type", consume.Config{Group: "g"}, []consume.Route{quiz, quiz}, "two routes"},
		{"two any routes", consume.Config{Group: "g"}, []consume.Route{any, any}, "more than one OnAny"},
		{"unreachable route", consume.Config{Group: "g", Patterns: []string{"lesson.*"}}, []consume.Route{quiz}, "matches none of the patterns"},
		{"bad pattern", consume.Config{Group: "g", Patterns: []string{"quiz..x"}}, []consume.Route{quiz}, "empty word"},
		{"negative concurrency", consume.Config{Group: "g", Concurrency: -1}, []consume.Route{quiz}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consume.New(b, tc.cfg, tc.routes...)
			if !errors.Is(err, consume.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want ErrInvalidConfig saying %q", err, tc.want)
			}
		})
	}
}

func TestDefaultPatterns(t *testing.T) {
	var b *rabbitmq.Broker
	quiz := consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error { return nil })
	lesson := consume.On(func(context.Context, event.Envelope, edupulse.LessonPublished) error { return nil })
	any := consume.OnAny(func(context.Context, event.Envelope) error { return nil })
	for _, tc := range []struct {
		routes []consume.Route
		want   string
	}{
		{[]consume.Route{quiz, lesson}, "lesson.published quiz.submitted"},
		{[]consume.Route{quiz, any}, "#"},
	} {
		c, err := consume.New(b, consume.Config{Group: "g"}, tc.routes...)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(c.Patterns(), " "); got != tc.want {
			t.Errorf("patterns %q, want %q", got, tc.want)
		}
	}
	c, err := consume.New(b, consume.Config{Group: "g", Patterns: []string{"quiz.*", "#.published"}}, quiz, lesson)
	if err != nil {
		t.Fatalf("patterns that reach every route: %v", err)
	}
	if got := strings.Join(c.Patterns(), " "); got != "quiz.* #.published" {
		t.Errorf("patterns %q", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := consume.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3}
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := b.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := (consume.Backoff{}).Delay(1); got != consume.DefaultInitialBackoff {
		t.Errorf("default first delay %v", got)
	}
	if got := (consume.Backoff{}).Delay(1000); got != consume.DefaultMaxBackoff {
		t.Errorf("delay after many attempts %v, want the maximum", got)
	}
}

func TestPermanent(t *testing.T) {
	cause := errors.New("quiz deleted")
	err := consume.Permanent(cause)
	if !errors.Is(err, consume.ErrPermanent) || !errors.Is(err, cause) || err.Error() != "quiz deleted" {
		t.Fatalf("Permanent(%v) = %v", cause, err)
	}
	if consume.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
}

func TestMetricsShareARegistry(t *testing.T) {
	var b *rabbitmq.Broker
	reg := prometheus.NewRegistry()
	route := consume.OnAny(func(context.Context, event.Envelope) error { return nil })
	for _, group := range []string{"one", "two", "one"} {
		if _, err := consume.New(b, consume.Config{Group: group, Registerer: reg}, route); err != nil {
			t.Fatalf("group %s: %v", group, err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{"eventbus_consumer_handled_total", "eventbus_consumer_duplicates_total", "eventbus_consumer_retried_total", "eventbus_consumer_in_flight"} {
		if !names[want] {
			t.Errorf("metric %s not registered; have %v", want, names)
		}
	}
	// A foreign collector under one of the names is an error, not a panic.
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "eventbus_consumer_handled_total", Help: "not ours"}))
	if _, err := consume.New(b, consume.Config{Group: "g", Registerer: clash}, route); err == nil {
		t.Error("New accepted a registry where another metric holds a name")
	}
}
