package consume

import (
	"context"
	"log/slog"
	"testing"
	"time"

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
