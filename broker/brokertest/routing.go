package brokertest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
)

func testDeclareIdempotent(t *testing.T, h Harness) {
	b := h.open(t)
	ctx := ctxFor(t)
	x := exchange(t, b)
	if err := b.DeclareExchange(ctx, x); err != nil {
		t.Fatalf("second DeclareExchange: %v", err)
	}
	dlq := queue(t, b, broker.QueueSpec{Name: "bt_dlq"})
	spec := broker.QueueSpec{
		Name:            "bt_idem",
		Bindings:        []broker.Binding{{Exchange: x, Pattern: "a.#"}, {Exchange: x, Pattern: "*.b"}},
		DeadLetterQueue: dlq,
		MessageTTL:      time.Minute,
	}
	spec.Name = queue(t, b, spec)
	for i := 0; i < 2; i++ {
		if err := b.DeclareQueue(ctx, spec); err != nil {
			t.Fatalf("DeclareQueue again (%d): %v", i+2, err)
		}
	}
	info, err := b.InspectQueue(ctx, spec.Name)
	if err != nil {
		t.Fatalf("InspectQueue: %v", err)
	}
	if info.Name != spec.Name || info.Messages != 0 {
		t.Fatalf("InspectQueue = %+v, want an empty %s", info, spec.Name)
	}
	// Declaring again must not have doubled the bindings.
	publishTo(t, b, x, "a.b", "once")
	if got := testenv.DrainIDs(t, b, spec.Name); !slices.Equal(got, []string{"once"}) {
		t.Fatalf("queue holds %v, want [once]", got)
	}
}

// routingKeys are the keys the routing test publishes, one message each.
var routingKeys = []string{
	"a", "b", "c", "z", "a.b", "x.b", "a.c", "a.z", "a.x", "b.a",
	"a.b.c", "a.x.c", "a.b.b.c", "a.b.z", "a.b.c.z", "a.a.b",
}

// routingTable lists, for each binding pattern, the routing keys it
// matches, in AMQP topic semantics: words split on '.', '*' matches exactly
// one word, '#' zero or more.
var routingTable = []struct {
	pattern string
	matches []string
}{
	{"a.b.c", []string{"a.b.c"}},
	{"a.*.c", []string{"a.b.c", "a.x.c"}},
	{"a.#", []string{"a", "a.b", "a.c", "a.z", "a.x", "a.b.c", "a.x.c", "a.b.b.c", "a.b.z", "a.b.c.z", "a.a.b"}},
	{"#", routingKeys},
	{"a.#.z", []string{"a.z", "a.b.z", "a.b.c.z"}},
	{"*.b", []string{"a.b", "x.b"}},
	{"#.c", []string{"c", "a.c", "a.b.c", "a.x.c", "a.b.b.c"}},
	{"*", []string{"a", "b", "c", "z"}},
	{"a.*", []string{"a.b", "a.c", "a.z", "a.x"}},
	{"#.b.#", []string{"b", "a.b", "x.b", "b.a", "a.b.c", "a.b.b.c", "a.b.z", "a.b.c.z", "a.a.b"}},
	{"*.*.*", []string{"a.b.c", "a.x.c", "a.b.z", "a.a.b"}},
	{"q", nil},
}

func testTopicRouting(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	queues := make([]string, len(routingTable))
	for i, tc := range routingTable {
		queues[i] = queue(t, b, broker.QueueSpec{Name: "bt_route", Bindings: []broker.Binding{{Exchange: x, Pattern: tc.pattern}}})
	}
	p := publisher(t, b, broker.PublisherOptions{})
	for _, key := range routingKeys {
		publishAll(t, p, x, key, msg(key))
	}
	for i, tc := range routingTable {
		t.Run(tc.pattern, func(t *testing.T) {
			got := testenv.DrainIDs(t, b, queues[i])
			if !slices.Equal(sorted(got), sorted(tc.matches)) {
				t.Fatalf("pattern %q received %v, want %v", tc.pattern, sorted(got), sorted(tc.matches))
			}
		})
	}
}

func testSeveralBindingsDeliverOnce(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "a.#"}, {Exchange: x, Pattern: "#.c"}, {Exchange: x, Pattern: "a.b.c"}}})
	publishTo(t, b, x, "a.b.c", "m1")
	if got := testenv.DrainIDs(t, b, q); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("queue bound three times received %v, want [m1] once", got)
	}
}

func testNamelessExchange(t *testing.T, h Harness) {
	b := h.open(t)
	q1 := queue(t, b, broker.QueueSpec{})
	q2 := queue(t, b, broker.QueueSpec{})
	publishTo(t, b, broker.NamelessExchange, q1, "to-q1")
	publishTo(t, b, broker.NamelessExchange, q2, "to-q2a", "to-q2b")
	if got := testenv.DrainIDs(t, b, q1); !slices.Equal(got, []string{"to-q1"}) {
		t.Fatalf("%s received %v", q1, got)
	}
	if got := testenv.DrainIDs(t, b, q2); !slices.Equal(got, []string{"to-q2a", "to-q2b"}) {
		t.Fatalf("%s received %v", q2, got)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "quiz.*"}}})
	body := make([]byte, 300)
	for i := range body {
		body[i] = byte(i) // every byte value, including 0 and invalid UTF-8
	}
	ts := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	sent := broker.Message{
		MessageID:     "0195a3c0-7a1e-7b3c-9f00-000000000001",
		CorrelationID: "0195a3c0-7a1e-7b3c-9f00-000000000002",
		Type:          "quiz.submitted",
		AppID:         "brokertest",
		ContentType:   "application/cloudevents+json",
		Timestamp:     ts,
		Headers: map[string]any{
			broker.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			broker.HeaderPosition:    "9007199254740993",
			broker.HeaderAttempt:     int64(3),
			"big":                    int64(1) << 40,
			"negative":               int64(-7),
			"empty":                  "",
		},
		Body: body,
	}
	p := publisher(t, b, broker.PublisherOptions{})
	publishAll(t, p, x, "quiz.submitted", sent)
	s := subscribe(t, b, q, 1)
	got := receive(t, s, 1)[0]
	ack(t, got)

	check := func(field string, ok bool, g, w any) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %v, want %v", field, g, w)
		}
	}
	check("MessageID", got.MessageID == sent.MessageID, got.MessageID, sent.MessageID)
	check("CorrelationID", got.CorrelationID == sent.CorrelationID, got.CorrelationID, sent.CorrelationID)
	check("Type", got.Type == sent.Type, got.Type, sent.Type)
	check("AppID", got.AppID == sent.AppID, got.AppID, sent.AppID)
	check("ContentType", got.ContentType == sent.ContentType, got.ContentType, sent.ContentType)
	// AMQP timestamps have second precision.
	check("Timestamp", got.Timestamp.Equal(ts.Truncate(time.Second)), got.Timestamp, ts.Truncate(time.Second))
	check("Body", slices.Equal(got.Body, sent.Body), got.Body, sent.Body)
	check("Exchange", got.Exchange == x, got.Exchange, x)
	check("RoutingKey", got.RoutingKey == "quiz.submitted", got.RoutingKey, "quiz.submitted")
	check("Redelivered", !got.Redelivered, got.Redelivered, false)
	for k, want := range sent.Headers {
		g := got.Headers[k]
		check("header "+k, g == want, fmt.Sprintf("%v (%T)", g, g), fmt.Sprintf("%v (%T)", want, want))
	}
	check("Header()", got.Header(broker.HeaderPosition) == "9007199254740993", got.Header(broker.HeaderPosition), "9007199254740993")
	check("IntHeader()", got.IntHeader(broker.HeaderAttempt) == 3, got.IntHeader(broker.HeaderAttempt), 3)

	// A message with nothing set but a body comes back empty, not with
	// made-up values.
	publishAll(t, p, x, "quiz.bare", broker.Message{Body: []byte("bare")})
	bare := receive(t, s, 1)[0]
	ack(t, bare)
	if bare.MessageID != "" || bare.Type != "" || !bare.Timestamp.IsZero() || len(bare.Headers) != 0 || string(bare.Body) != "bare" {
		t.Errorf("bare message came back as %+v", bare.Message)
	}
}

func testConfirmsAcked(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{})
	p := publisher(t, b, broker.PublisherOptions{})
	ctx := ctxFor(t)
	const n = 500
	confs := make([]broker.Confirmation, n)
	for i := range confs {
		c, err := p.Publish(ctx, broker.NamelessExchange, q, msg(fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		confs[i] = c
	}
	// The broker settles confirmations in publish order: once the last is
	// done, all are.
	select {
	case <-confs[n-1].Done():
	case <-ctx.Done():
		t.Fatal("last confirmation never settled")
	}
	for i, c := range confs {
		select {
		case <-c.Done():
		default:
			t.Fatalf("confirmation %d not settled after the last one", i)
		}
		if !c.Acked() {
			t.Fatalf("confirmation %d not acked", i)
		}
	}
	wantMessages(t, b, q, n)
	select {
	case <-p.Done():
		t.Fatal("publisher Done before Close")
	default:
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("publisher Done not closed after Close")
	}
	if _, err := p.Publish(ctx, broker.NamelessExchange, q, msg("late")); !errorsIsClosed(err) {
		t.Fatalf("Publish after Close: error = %v, want one wrapping broker.ErrClosed", err)
	}
}

func testMandatoryReturn(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Bindings: []broker.Binding{{Exchange: x, Pattern: "routed"}}})
	var mu sync.Mutex
	var returns []broker.Returned
	got := make(chan struct{}, 10)
	p := publisher(t, b, broker.PublisherOptions{Mandatory: true, OnReturn: func(r broker.Returned) {
		mu.Lock()
		returns = append(returns, r)
		mu.Unlock()
		got <- struct{}{}
	}})
	lost := msg("unroutable")
	lost.Headers = map[string]any{"k": "v"}
	publishAll(t, p, x, "routed", msg("routed"))
	c, err := p.Publish(ctxFor(t), x, "nobody.listens", lost)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case <-got:
	case <-time.After(timeout):
		t.Fatal("OnReturn was not called for an unroutable mandatory message")
	}
	<-c.Done() // acked or not: the broker has dealt with it
	// Publish after the return to make sure no second return is on its way.
	publishAll(t, p, x, "routed", msg("routed2"))
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(returns) != 1 {
		t.Fatalf("OnReturn called %d times, want once", len(returns))
	}
	r := returns[0]
	if r.MessageID != "unroutable" || string(r.Body) != "unroutable" || r.Header("k") != "v" ||
		r.Exchange != x || r.RoutingKey != "nobody.listens" || r.Reason == "" {
		t.Fatalf("returned %+v", r)
	}
	if got := testenv.DrainIDs(t, b, q); !slices.Equal(got, []string{"routed", "routed2"}) {
		t.Fatalf("queue received %v", got)
	}
}

func testPublishMissingExchange(t *testing.T, h Harness) {
	b := h.open(t)
	p := publisher(t, b, broker.PublisherOptions{})
	c, err := p.Publish(ctxFor(t), "bt_no_such_exchange_here", "k", msg("m"))
	if err != nil {
		return // refused at once: fine
	}
	select {
	case <-c.Done():
	case <-time.After(timeout):
		t.Fatal("confirmation for a message to a missing exchange never settled")
	}
	if c.Acked() {
		t.Fatal("a message to a missing exchange was acked")
	}
}
