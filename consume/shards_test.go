package consume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/internal/testenv"
)

// cleanupShards deletes the group's shard queues and shard exchange when
// the test ends.
func (e *env) cleanupShards(shards ...int) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, p := range shards {
			for i := range p {
				_ = e.b.DeleteQueue(ctx, consume.ShardQueue(e.group, i, p))
			}
		}
		_ = e.b.DeleteQueue(ctx, consume.MembersQueue(e.group))
		_ = e.b.DeleteExchange(ctx, consume.ShardExchange(e.group))
	})
}

// orderRecorder checks that every stream is handled in stream-version
// order by the processes of a group, together: a version is handled for
// the first time only once every earlier one was. A redelivery of a
// version handled already is allowed (at-least-once).
type orderRecorder struct {
	mu         sync.Mutex
	next       map[string]int64 // the next version expected per stream
	violations []string
	handled    []int  // per process
	dead       []bool // per process: a dead process has no effects
}

func newOrderRecorder(processes int) *orderRecorder {
	return &orderRecorder{next: map[string]int64{}, handled: make([]int, processes), dead: make([]bool, processes)}
}

func (r *orderRecorder) handle(ctx context.Context, p int, env event.Envelope) error {
	r.mu.Lock()
	if r.dead[p] {
		r.mu.Unlock()
		// As a killed process: no effect, ever. The broker delivers the
		// event again to another process.
		<-ctx.Done()
		return ctx.Err()
	}
	defer r.mu.Unlock()
	want := max(r.next[env.Subject], 1)
	switch {
	case env.StreamVersion == want:
		r.next[env.Subject] = want + 1
	case env.StreamVersion < want: // a redelivery
	default:
		r.violations = append(r.violations, fmt.Sprintf("process %d handled %s version %d before version %d", p, env.Subject, env.StreamVersion, want))
	}
	r.handled[p]++
	return nil
}

func (r *orderRecorder) kill(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead[p] = true
}

func (r *orderRecorder) snapshot() (handled []int, next map[string]int64, violations []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next = make(map[string]int64, len(r.next))
	for k, v := range r.next {
		next[k] = v
	}
	return append([]int(nil), r.handled...), next, append([]string(nil), r.violations...)
}

// shardStreams returns stream names such that every one of shards shards
// has perShard of them.
func shardStreams(prefix string, shards, perShard int) []string {
	count := make([]int, shards)
	var out []string
	for i := 0; len(out) < shards*perShard; i++ {
		s := fmt.Sprintf("%s-%d", prefix, i)
		sh := event.PartitionOf(s, uuid.Nil, broker.Buckets) % shards
		if count[sh] < perShard {
			count[sh]++
			out = append(out, s)
		}
	}
	return out
}

// publishSteadily publishes the next version of every stream every 10 ms
// (a steady flow, not a burst) until stop, which the test's cleanup also
// calls; published says how many versions of each stream were published.
func publishSteadily(t *testing.T, e *env, streams []string) (published func() int64, stop func()) {
	var n atomic.Int64
	stopPublishing := make(chan struct{})
	publisherDone := make(chan struct{})
	go func() {
		defer close(publisherDone)
		for v := int64(1); ; v++ {
			select {
			case <-stopPublishing:
				return
			case <-time.After(10 * time.Millisecond):
			}
			for _, s := range streams {
				if err := publishOne(e, quizEvent(s, v, 70)); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
			n.Store(v)
		}
	}()
	var stopOnce sync.Once
	stop = func() {
		stopOnce.Do(func() { close(stopPublishing) })
		<-publisherDone
	}
	t.Cleanup(stop)
	return n.Load, stop
}

// publishOne publishes env as the relay does and waits for the confirm;
// unlike env.publish, it may run on a goroutine of its own.
func publishOne(e *env, env event.Envelope) error {
	m, err := broker.EnvelopeMessage(env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := e.pub.Publish(ctx, e.exchange, env.Type, m)
	if err != nil {
		return err
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		return errors.New("no publisher confirm within 30 s")
	}
	if !c.Acked() {
		return errors.New("publish nacked")
	}
	return nil
}

// TestShardedGroupKeepsStreamOrderAcrossProcesses: three processes of a
// group with six shards share the shards between them while events of many
// streams flow; then one dies in the middle of the streams (its broker
// connection goes down on RabbitMQ, it stops on the in-process broker,
// with handlers in flight that never take effect). The others take its
// shards: every event is handled, and every stream in version order.
func TestShardedGroupKeepsStreamOrderAcrossProcesses(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		const shards, processes = 6, 3
		e.cleanupShards(shards)
		rec := newOrderRecorder(processes)
		stops := make([]func(), processes)
		consumers := make([]*consume.Consumer, processes)
		var down faults
		for p := range processes {
			b := k.connectAgain(t, e.b)
			cfg := e.config()
			cfg.Shards = shards
			cfg.Concurrency = 4
			if p == 0 {
				cfg.ShutdownTimeout = 2 * time.Second // its handlers hang, as a dead process's
				if k.openFaulty != nil {
					b, down = k.openFaulty(t)
				}
			}
			c := newConsumer(t, b, cfg, consume.On(func(ctx context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
				return rec.handle(ctx, p, env)
			}))
			consumers[p] = c
			stops[p] = e.start(c)
		}

		streams := shardStreams("learner", shards, 4)
		published, stopPublisher := publishSteadily(t, e, streams)

		// The processes share the shards: each gets work.
		eventually(t, 90*time.Second, "every process to handle events", func() bool {
			handled, _, _ := rec.snapshot()
			for _, n := range handled {
				if n < 20 {
					return false
				}
			}
			return true
		})
		before, _, _ := rec.snapshot()
		t.Logf("%s: handled per process before the death: %v", k.name, before)
		for p, c := range consumers {
			st := c.Stats()
			t.Logf("%s: process %d: %d shards active at its last round, %d handed on", k.name, p, st.ShardsActive, st.ShardsHandedOn)
		}

		// Process 0 dies in the middle of the streams.
		rec.kill(0)
		if down != nil {
			down.Down()
		} else {
			stops[0]()
		}
		atDeath := published()
		eventually(t, 60*time.Second, "more events published after the death", func() bool { return published() >= atDeath+20 })
		stopPublisher()
		last := published()

		eventually(t, 90*time.Second, "every published event to be handled", func() bool {
			_, next, _ := rec.snapshot()
			for _, s := range streams {
				if next[s] != last+1 {
					return false
				}
			}
			return true
		})
		after, _, violations := rec.snapshot()
		t.Logf("%s: %d versions of %d streams; handled per process at the end: %v", k.name, last, len(streams), after)
		for _, v := range violations {
			t.Error(v)
		}
		for p := 1; p < processes; p++ {
			if after[p] == before[p] {
				t.Errorf("process %d handled nothing after process 0 died", p)
			}
		}
	})
}

// TestShardedGroupRefusesAnotherLayout: a group whose queues were declared
// with one Shards (or as a single queue) refuses to run with another.
func TestShardedGroupRefusesAnotherLayout(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		e.cleanupShards(2, 3)
		route := consume.On(func(context.Context, event.Envelope, edupulse.QuizSubmitted) error { return nil })
		cfg := e.config()
		cfg.Shards = 2
		first := newConsumer(t, e.b, cfg, route)
		if err := first.Declare(testenv.Context(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, shards := range []int{3, 0} {
			cfg := e.config()
			cfg.Shards = shards
			c := newConsumer(t, e.b, cfg, route)
			ctx := testenv.Context(t, 30*time.Second)
			err := c.Run(ctx)
			if !errors.Is(err, consume.ErrLayoutChanged) {
				t.Fatalf("Run with Shards %d over a group of 2 shards: %v, want ErrLayoutChanged", shards, err)
			}
			if ctx.Err() != nil {
				t.Fatal("Run waited for its context instead of refusing")
			}
			t.Logf("Shards %d: %v", shards, err)
		}
		// The same layout runs.
		e.start(newConsumer(t, e.b, cfg, route))
	})
}

// TestShardedGroupRetriesAndRequeues: a failed attempt comes back through
// the retry queue to its shard, and a dead letter requeued goes back to its
// shard too.
func TestShardedGroupRetriesAndRequeues(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		const shards = 3
		e.cleanupShards(shards)
		var (
			mu      sync.Mutex
			calls   = map[string]int{}
			handled = map[string]bool{}
			refuse  atomic.Bool
		)
		refuse.Store(true)
		cfg := e.config()
		cfg.Shards = shards
		cfg.MaxAttempts = 2
		c := newConsumer(t, e.b, cfg, consume.On(func(_ context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			mu.Lock()
			defer mu.Unlock()
			calls[env.Subject]++
			switch {
			case env.Subject == "flaky" && calls["flaky"] == 1:
				return errors.New("transient")
			case env.Subject == "poison" && refuse.Load():
				return consume.Permanent(errors.New("refused"))
			}
			handled[env.Subject] = true
			return nil
		}))
		e.start(c)
		e.publish(quizEvent("flaky", 1, 10), quizEvent("poison", 1, 10))
		eventually(t, 30*time.Second, "the retried event to be handled and the other dead-lettered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return handled["flaky"] && e.queueLen(consume.DeadLetterQueue(e.group)) == 1
		})
		refuse.Store(false)
		n, err := consume.Requeue(testenv.Context(t, 30*time.Second), e.b, e.group, nil)
		if err != nil || n != 1 {
			t.Fatalf("Requeue = %d, %v; want 1", n, err)
		}
		eventually(t, 30*time.Second, "the requeued event to be handled", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return handled["poison"]
		})
	})
}

// TestShardedGroupWithTheLongestName: a group name of the most bytes
// allowed still makes valid shard queues, bindings and consumer tags.
func TestShardedGroupWithTheLongestName(t *testing.T) {
	forEachBroker(t, func(t *testing.T, k brokerKind) {
		e := newEnv(t, k)
		e.group = e.group + strings.Repeat("g", 200-len(e.group))
		const shards = 64
		e.cleanupShards(shards)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, q := range []string{consume.DeadLetterQueue(e.group), consume.RetryQueue(e.group, 1)} {
				_ = e.b.DeleteQueue(ctx, q)
			}
		})
		handled := make(chan string, 1)
		cfg := e.config()
		cfg.Shards = shards
		cfg.MaxAttempts = 2
		e.start(newConsumer(t, e.b, cfg, consume.On(func(_ context.Context, env event.Envelope, _ edupulse.QuizSubmitted) error {
			handled <- env.Subject
			return nil
		})))
		e.publish(quizEvent("long", 1, 1))
		select {
		case s := <-handled:
			if s != "long" {
				t.Fatalf("handled %q", s)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the event was not handled within 30 s")
		}
	})
}
