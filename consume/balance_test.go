package consume

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/broker/memory"
	"github.com/edupulse/eventbus/event"
)

// TestBalanceOnceHandsOnTheSurplus: a process active on more busy shards
// than its share (shards / processes, rounded up) asks the surplus to be
// handed on, and only that; idle shards and a lone process hand nothing on.
func TestBalanceOnceHandsOnTheSurplus(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		shards, busy, processes int
		wantHandedOn            int
	}{
		{"alone", 6, 6, 1, 0},
		{"two processes, all busy", 6, 6, 2, 3},
		{"three processes, all busy", 6, 6, 3, 4},
		{"at its share", 6, 2, 3, 0},
		{"share rounded up", 4, 2, 3, 0},
		{"idle shards do not count", 8, 3, 2, 0},
		{"more processes than shards", 2, 2, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b := memory.New()
			defer b.Close()
			c, err := New(b, Config{Group: "g", Shards: tc.shards, Logger: slog.New(slog.DiscardHandler)}, OnAny(func(context.Context, event.Envelope) error { return nil }))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Declare(ctx); err != nil {
				t.Fatal(err)
			}
			for range tc.processes {
				s, err := b.Consume(ctx, MembersQueue("g"), broker.ConsumeOptions{Prefetch: 1})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
			}
			loops := make([]*queueLoop, tc.shards)
			for i := range loops {
				loops[i] = &queueLoop{c: c, queue: ShardQueue("g", i, tc.shards), yield: make(chan struct{}, 1)}
				sess := &session{}
				if i < tc.busy {
					sess.lastDelivery.Store(time.Now().UnixNano())
				}
				loops[i].active.Store(sess)
			}
			c.balanceOnce(ctx, loops, true)
			handedOn := 0
			for _, l := range loops[tc.busy:] {
				if len(l.yield) > 0 {
					t.Fatalf("an idle shard %s was handed on", l.queue)
				}
			}
			for _, l := range loops {
				handedOn += len(l.yield)
			}
			if handedOn != tc.wantHandedOn {
				t.Fatalf("handed on %d shards, want %d", handedOn, tc.wantHandedOn)
			}
			if got := c.Stats().ShardsActive; got != int64(tc.busy) {
				t.Fatalf("Stats.ShardsActive = %d, want %d", got, tc.busy)
			}
		})
	}
}

// TestHandOnWaitsForRunningHandlers: asked to hand its shard on while a
// handler of it still runs, a process keeps the shard (the next process
// waiting for it gets nothing) until the handler returns; then it hands the
// shard on with the events it had not started, in order.
func TestHandOnWaitsForRunningHandlers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := memory.New()
	defer b.Close()
	release := make(chan struct{})
	started := make(chan int64, 10)
	c, err := New(b, Config{Group: "g", Shards: 1, ShutdownTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		OnAny(func(_ context.Context, env event.Envelope) error {
			started <- env.StreamVersion
			if env.StreamVersion == 1 {
				<-release
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	queue := ShardQueue("g", 0, 1)
	w := &workers{shared: make(chan job, 16), own: []chan job{make(chan job, 16)}, stop: make(chan struct{})}
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); c.work(ctx, w.own[0], w) }()
	l := &queueLoop{c: c, queue: queue, w: w, yield: make(chan struct{}, 1)}
	loopCtx, stopLoop := context.WithCancel(ctx)
	subscribed := make(chan struct{})
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); l.run(loopCtx, func() { close(subscribed) }) }()
	<-subscribed
	// The next process, waiting for the shard.
	next, err := b.Consume(ctx, queue, broker.ConsumeOptions{Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()

	pub, err := b.NewPublisher(ctx, broker.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for v := int64(1); v <= 3; v++ {
		env := event.Envelope{ID: uuid.New(), Type: "quiz.submitted", Source: "t", Subject: "s", StreamVersion: v, Data: []byte(`{}`)}
		m, err := broker.EnvelopeMessage(env)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, ShardExchange("g"), env.Type, m); err != nil {
			t.Fatal(err)
		}
	}
	if v := <-started; v != 1 {
		t.Fatalf("first handled version %d, want 1", v)
	}
	l.yield <- struct{}{}
	// Longer than the drain's bound (ShutdownTimeout): the shard is kept.
	select {
	case d := <-next.Deliveries():
		t.Fatalf("the next process got %s while a handler of the shard still ran", d.MessageID)
	case <-time.After(time.Second):
	}
	close(release)
	if v := <-started; v != 2 {
		t.Fatalf("then handled version %d, want 2", v)
	}
	l.yield <- struct{}{}
	stopLoop()
	<-loopDone
	close(w.stop)
	<-workerDone
	if l.sub != nil {
		l.sess.ended.Store(true)
		_ = l.sub.Close()
	}
}
