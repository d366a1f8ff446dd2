package brokertest

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
)

// bucketMsg returns a message whose id and body are id, in bucket b (none
// when b is negative).
func bucketMsg(id string, b int) broker.Message {
	m := msg(id)
	if b >= 0 {
		m.Headers = map[string]any{broker.HeaderBucket: strconv.Itoa(b)}
	}
	return m
}

// testBucketRouting: bindings with buckets take only their buckets' messages,
// each once, beside plain bindings that take every message; a message
// without a bucket reaches no bucket binding.
func testBucketRouting(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	x2 := exchange(t, b)
	const shards = 3
	qs := make([]string, shards)
	for i := range qs {
		set := broker.ShardBuckets(i, shards)
		qs[i] = queue(t, b, broker.QueueSpec{Name: "bt_shard", Bindings: []broker.Binding{
			{Exchange: x, Pattern: "quiz.*", Buckets: set},
			{Exchange: x, Pattern: "#", Buckets: set}, // both match: still once
			{Exchange: x2, Pattern: "#", Buckets: set},
		}})
	}
	all := queue(t, b, broker.QueueSpec{Name: "bt_all", Bindings: []broker.Binding{{Exchange: x, Pattern: "#"}}})

	p := publisher(t, b, broker.PublisherOptions{})
	var msgs []broker.Message
	want := make([][]string, shards)
	for bucket := range broker.Buckets {
		id := "b" + strconv.Itoa(bucket)
		msgs = append(msgs, bucketMsg(id, bucket))
		want[bucket%shards] = append(want[bucket%shards], id)
	}
	for _, bad := range []string{"", "64", "-1", "07", "x", "1000"} {
		m := msg("bad" + bad)
		if bad != "" {
			m.Headers = map[string]any{broker.HeaderBucket: bad}
		}
		msgs = append(msgs, m)
	}
	before := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		before[i] = maps.Clone(m.Headers)
	}
	publishAll(t, p, x, "quiz.submitted", msgs...)
	// Publish leaves the caller's message as it was: what routes it by
	// bucket is the broker's own business.
	for i, m := range msgs {
		if !reflect.DeepEqual(m.Headers, before[i]) {
			t.Fatalf("message %s: headers %v after Publish, %v before", m.MessageID, m.Headers, before[i])
		}
	}
	for i, q := range qs {
		wantMessages(t, b, q, len(want[i]))
		if got := testenv.DrainIDs(t, b, q); !slices.Equal(got, want[i]) {
			t.Fatalf("shard %d holds %v, want %v", i, got, want[i])
		}
	}
	if got := testenv.DrainIDs(t, b, all); len(got) != len(msgs) {
		t.Fatalf("the queue without buckets holds %d messages, want all %d", len(got), len(msgs))
	}

	// Through the second exchange, by bucket only.
	publishAll(t, p, x2, "anything.at.all", bucketMsg("via-x2", 4))
	wantMessages(t, b, qs[4%shards], 1)
	if got := testenv.DrainIDs(t, b, qs[4%shards]); !slices.Equal(got, []string{"via-x2"}) {
		t.Fatalf("shard %d holds %v, want [via-x2]", 4%shards, got)
	}

	// Another set on another pattern of the same queue adds to it.
	if err := b.DeclareQueue(ctxFor(t), broker.QueueSpec{Name: qs[0], Bindings: []broker.Binding{
		{Exchange: x, Pattern: "extra.*", Buckets: broker.BucketSetOf(1)},
	}}); err != nil {
		t.Fatal(err)
	}
	publishAll(t, p, x, "extra.one", bucketMsg("extra-1", 1), bucketMsg("extra-2", 2))
	wantMessages(t, b, qs[0], 1)
	if got := testenv.DrainIDs(t, b, qs[0]); !slices.Equal(got, []string{"extra-1"}) {
		t.Fatalf("shard 0 holds %v, want [extra-1]", got)
	}
}

// testDeadLetterExchange: a queue that dead-letters through an exchange
// sends each expired message where that exchange's bindings say, by the
// message's routing key and bucket.
func testDeadLetterExchange(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	even := queue(t, b, broker.QueueSpec{Name: "bt_even", Bindings: []broker.Binding{{Exchange: x, Pattern: "#", Buckets: broker.ShardBuckets(0, 2)}}})
	odd := queue(t, b, broker.QueueSpec{Name: "bt_odd", Bindings: []broker.Binding{{Exchange: x, Pattern: "#", Buckets: broker.ShardBuckets(1, 2)}}})
	wait := queue(t, b, broker.QueueSpec{Name: "bt_wait", MessageTTL: 50 * time.Millisecond, DeadLetterExchange: x})
	p := publisher(t, b, broker.PublisherOptions{})
	publishAll(t, p, broker.NamelessExchange, wait, bucketMsg("e1", 10), bucketMsg("o1", 11), bucketMsg("e2", 12))
	s := subscribe(t, b, odd, 10)
	d := receive(t, s, 1)
	if d[0].MessageID != "o1" {
		t.Fatalf("the odd queue got %s, want o1", d[0].MessageID)
	}
	ack(t, d...)
	wantMessages(t, b, even, 2)
	if got := testenv.DrainIDs(t, b, even); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Fatalf("the even queue holds %v, want [e1 e2] in order", got)
	}
}

// testSingleActiveConsumer: one subscription at a time gets the queue's
// messages; when it closes, the next takes over with the messages it left
// unacknowledged first, in order.
func testSingleActiveConsumer(t *testing.T, h Harness) {
	b := h.open(t)
	q := queue(t, b, broker.QueueSpec{Name: "bt_sac", SingleActiveConsumer: true})
	first := subscribe(t, b, q, 100)
	second := subscribe(t, b, q, 100)
	want := numbered("m", 20)
	publishTo(t, b, broker.NamelessExchange, q, want...)
	got := receive(t, first, len(want))
	if !slices.Equal(ids(got), want) {
		t.Fatalf("the active consumer got %v, want %v", ids(got), want)
	}
	nothingFor(t, second, 200*time.Millisecond)
	ack(t, got[:5]...)
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rest := receive(t, second, len(want)-5)
	if !slices.Equal(ids(rest), want[5:]) {
		t.Fatalf("after the active consumer left, the next got %v, want %v in order", ids(rest), want[5:])
	}
	ack(t, rest...)

	// Declaring the queue again without single active consumer fails.
	if err := b.DeclareQueue(ctxFor(t), broker.QueueSpec{Name: q}); err == nil {
		t.Fatal("declaring a single-active-consumer queue as a plain one succeeded")
	}
}

// testQueueOnlyPublisher: a queue-only publisher delivers through the
// default exchange with the message's bucket header intact, and refuses,
// alone, a message to any other exchange.
func testQueueOnlyPublisher(t *testing.T, h Harness) {
	b := h.open(t)
	x := exchange(t, b)
	q := queue(t, b, broker.QueueSpec{Name: "bt_direct"})
	bound := queue(t, b, broker.QueueSpec{Name: "bt_bound", Bindings: []broker.Binding{{Exchange: x, Pattern: "#"}}})
	p := publisher(t, b, broker.PublisherOptions{QueueOnly: true})
	if _, err := p.Publish(ctxFor(t), x, "quiz.started", bucketMsg("via-x", 5)); !errors.Is(err, broker.ErrRefused) {
		t.Fatalf("Publish to the topic exchange %s: %v, want ErrRefused", x, err)
	}
	publishAll(t, p, broker.NamelessExchange, q, bucketMsg("m1", 5), bucketMsg("m2", 63), msg("m3"))
	s := subscribe(t, b, q, 10)
	d := receive(t, s, 3)
	if !slices.Equal(ids(d), []string{"m1", "m2", "m3"}) {
		t.Fatalf("the queue got %v, want [m1 m2 m3] in order", ids(d))
	}
	for i, want := range []string{"5", "63", ""} {
		if got := d[i].Header(broker.HeaderBucket); got != want {
			t.Errorf("%s: bucket header %q, want %q", d[i].MessageID, got, want)
		}
	}
	ack(t, d...)
	wantMessages(t, b, bound, 0)
}
