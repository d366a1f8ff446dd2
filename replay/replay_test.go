package replay_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	eventbus "github.com/edupulse/eventbus"
	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
	"github.com/edupulse/eventbus/store/postgres"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type harness struct {
	store    *postgres.Store
	broker   *rabbitmq.Broker
	exchange string
	events   []event.Envelope
}

// newHarness stores n events in 10 streams and declares an exchange with
// the queues bound to every type.
func newHarness(t testing.TB, n int, queues ...string) *harness {
	t.Helper()
	return newHarnessIn(t, n, 10, queues...)
}

// newHarnessIn is newHarness with the events spread over streams streams.
func newHarnessIn(t testing.TB, n, streams int, queues ...string) *harness {
	t.Helper()
	testenv.Need(t, "RabbitMQ", testenv.AMQPURL())
	ctx := context.Background()
	s := testenv.PostgresStore(t)
	b, err := rabbitmq.Open(ctx, testenv.AMQPURL(), rabbitmq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := &harness{store: s, broker: b, exchange: testenv.Name("replay_test")}
	if err := b.DeclareExchange(ctx, h.exchange); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.DeleteExchange(context.Background(), h.exchange) })
	for _, q := range queues {
		if err := b.DeclareQueue(ctx, broker.QueueSpec{Name: q, Bindings: []broker.Binding{{Exchange: h.exchange, Pattern: "#"}}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.DeleteQueue(context.Background(), q) })
	}
	bus := eventbus.New(s, eventbus.Config{Registry: edupulse.Registry()})
	drafts := make([]event.Draft, 0, 1000)
	flush := func() {
		if len(drafts) == 0 {
			return
		}
		res, err := bus.Append(ctx, drafts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			h.events = append(h.events, r.Envelope)
		}
		drafts = drafts[:0]
	}
	for i := 0; i < n; i++ {
		d, err := eventbus.NewDraft(edupulse.QuizSubmitted{QuizID: uuid.New(), LearnerID: uuid.New(), ScoreRaw: int32(i)},
			eventbus.Subject("quiz-"+strconv.Itoa(i%streams)))
		if err != nil {
			t.Fatal(err)
		}
		if drafts = append(drafts, d); len(drafts) == cap(drafts) {
			flush()
		}
	}
	flush()
	testenv.Settle(t, s)
	return h
}

func TestReplayToOneQueueReachesOnlyThatQueue(t *testing.T) {
	qa, qb := testenv.Name("replay_a"), testenv.Name("replay_b")
	h := newHarness(t, 200, qa, qb)
	res, err := replay.Run(testenv.Context(t, time.Minute), h.store, h.broker, replay.Options{Target: replay.Target{Queue: qa}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Published != 200 || res.Total != 200 {
		t.Fatalf("result %+v; want 200 of 200, complete", res)
	}
	got := testenv.Drain(t, h.broker, qa)
	if len(got) != 200 {
		t.Fatalf("target queue got %d messages, want 200", len(got))
	}
	for i, d := range got {
		if d.Header(broker.HeaderReplay) != res.ID {
			t.Fatalf("message %d lacks the replay header: %v", i, d.Headers)
		}
		env, err := broker.DecodeMessage(d.Message)
		if err != nil {
			t.Fatal(err)
		}
		if env.ID != h.events[i].ID {
			t.Fatalf("message %d is event %s, want %s: replay keeps commit order", i, env.ID, h.events[i].ID)
		}
		// The queue-only publisher sends no bucket routing key, but the
		// message keeps its bucket, as the relay's messages do.
		if got, want := d.Header(broker.HeaderBucket), strconv.Itoa(broker.BucketOf(env)); got != want {
			t.Fatalf("message %d: bucket header %q, want %q", i, got, want)
		}
	}
	if other := testenv.Drain(t, h.broker, qb); len(other) != 0 {
		t.Fatalf("the other queue got %d messages, want none", len(other))
	}
}

func TestReplayToExchangeReachesEveryBoundQueue(t *testing.T) {
	qa, qb := testenv.Name("replay_a"), testenv.Name("replay_b")
	h := newHarness(t, 150, qa, qb)
	res, err := replay.Run(testenv.Context(t, time.Minute), h.store, h.broker, replay.Options{
		Target: replay.Target{Exchange: h.exchange},
		Filter: store.Filter{Types: []string{edupulse.TypeQuizSubmitted}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{qa, qb} {
		got := testenv.Drain(t, h.broker, q)
		if len(got) != 150 {
			t.Fatalf("queue %s got %d messages, want 150", q, len(got))
		}
		for _, d := range got {
			if d.Header(broker.HeaderReplay) != res.ID || d.RoutingKey != edupulse.TypeQuizSubmitted {
				t.Fatalf("replayed message: routing key %q, replay header %q", d.RoutingKey, d.Header(broker.HeaderReplay))
			}
		}
	}
}

// TestInterruptedReplayResumes: a replay stopped early says where it got
// to, and resuming from there delivers the rest: every event once, in order.
func TestInterruptedReplayResumes(t *testing.T) {
	q := testenv.Name("replay_resume")
	h := newHarness(t, 300, q)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	first, err := replay.Run(ctx, h.store, h.broker, replay.Options{Target: replay.Target{Queue: q}, Rate: 300})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || first.Complete {
		t.Fatalf("a replay cut short returned %+v, %v; want an incomplete result and the deadline", first, err)
	}
	if first.Published == 0 || first.Published >= 300 {
		t.Fatalf("the first run published %d events; the test wants it cut mid-way", first.Published)
	}
	second, err := replay.Run(testenv.Context(t, time.Minute), h.store, h.broker, replay.Options{
		Target: replay.Target{Queue: q},
		Filter: store.Filter{After: first.Resume},
	})
	if err != nil || !second.Complete {
		t.Fatalf("resumed replay: %+v, %v", second, err)
	}
	if first.Published+second.Published != 300 {
		t.Fatalf("published %d + %d, want 300 in all", first.Published, second.Published)
	}
	// Publishing is at least once: events the first run had sent but not
	// yet seen confirmed when it was cut are sent again by the second,
	// which resumes after the last confirmed one. So the queue holds the
	// first run's events, those in flight at the cut, then the second
	// run's from the resume point: every event, in order, and repeats only
	// of the ones in flight.
	got := testenv.Drain(t, h.broker, q)
	inFlight := len(got) - 300
	if inFlight < 0 {
		t.Fatalf("queue got %d messages, want every one of the 300 events", len(got))
	}
	p := int(first.Published)
	want := append(append([]event.Envelope{}, h.events[:p+inFlight]...), h.events[p:]...)
	for i, d := range got {
		if d.MessageID != want[i].ID.String() {
			t.Fatalf("message %d is %s, want %s (the first run confirmed %d, %d were in flight at the cut)",
				i, d.MessageID, want[i].ID, p, inFlight)
		}
	}
}

func TestPlanCountsAndSamples(t *testing.T) {
	h := newHarness(t, 40)
	total, sample, err := replay.Plan(context.Background(), h.store, store.Filter{Subject: "quiz-3"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if total != 4 || len(sample) != 2 || sample[0].Subject != "quiz-3" || sample[0].StreamVersion != 1 {
		t.Fatalf("Plan = %d, %d samples; want 4 events and 2 samples of quiz-3", total, len(sample))
	}
}

func TestReplayNeedsOneTarget(t *testing.T) {
	h := newHarness(t, 1)
	if _, err := replay.Run(context.Background(), h.store, h.broker, replay.Options{}); !errors.Is(err, replay.ErrBadTarget) {
		t.Fatal("a replay without a target ran")
	}
	_, err := replay.Run(context.Background(), h.store, h.broker, replay.Options{Target: replay.Target{Queue: testenv.Name("missing")}})
	if !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("replay to a missing queue: %v, want ErrNotFound", err)
	}
}

// TestReplayRefusesARetryQueue: a retry queue's events would come back
// late, and a sharded group's without their shard; names that only look
// alike are looked up as queues.
func TestReplayRefusesARetryQueue(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testenv.Context(t, 30*time.Second)
	for _, q := range []string{"badges.retry.1", "badges.retry.12", "a.retry.b.retry.3"} {
		_, err := replay.Run(ctx, h.store, h.broker, replay.Options{Target: replay.Target{Queue: q}})
		if !errors.Is(err, replay.ErrBadTarget) || !strings.Contains(err.Error(), "is a retry queue") {
			t.Errorf("replay to %q: %v, want a refusal naming the retry queue", q, err)
		}
	}
	if _, err := replay.Run(ctx, h.store, h.broker, replay.Options{Target: replay.Target{Queue: "badges.retry.1"}}); err == nil ||
		!strings.Contains(err.Error(), `"badges.shards"`) {
		t.Errorf("the refusal %v does not name the shard exchange badges.shards", err)
	}
	for _, q := range []string{".retry.", ".retry.1x", ".retry", ".retry1"} {
		name := testenv.Name("missing") + q
		if _, err := replay.Run(ctx, h.store, h.broker, replay.Options{Target: replay.Target{Queue: name}}); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("replay to %q: %v, want ErrNotFound (not a retry queue)", name, err)
		}
	}
}

// BenchmarkReplay measures replay throughput to one quorum queue, with the
// events in 10 streams and in 10,000. A stream has one event awaiting its
// confirm at a time (G3), so 10 streams go at about 10 confirm round trips
// at a time, while 10,000 fill the window:
//
//	go test ./replay -run '^$' -bench Replay -benchtime 3x
func BenchmarkReplay(b *testing.B) {
	for _, streams := range []int{10, 10000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			q := testenv.Name("replay_bench")
			const n = 50000
			h := newHarnessIn(b, n, streams, q)
			ctx := context.Background()
			b.ResetTimer()
			var (
				published int64
				elapsed   time.Duration
			)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := replay.Run(ctx, h.store, h.broker, replay.Options{Target: replay.Target{Queue: q}})
				if err != nil {
					b.Fatal(err)
				}
				published, elapsed = published+res.Published, elapsed+time.Since(start)
				b.StopTimer()
				_ = h.broker.DeleteQueue(ctx, q)
				_ = h.broker.DeclareQueue(ctx, broker.QueueSpec{Name: q})
				b.StartTimer()
			}
			b.ReportMetric(float64(published)/elapsed.Seconds(), "events/s")
		})
	}
}
