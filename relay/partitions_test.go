package relay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/internal/testenv"
	"github.com/edupulse/eventbus/relay"
)

// TestPartitionsAreShared: relays of one name share its partitions, N/M
// each: one alone holds all four; a second gets two; a third gets one; when
// one stops the others take its partitions. Events flow on many streams
// throughout: every one is delivered, each stream in order. A relay with
// another partition count refuses to run beside them.
func TestPartitionsAreShared(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	s, b := embeddedRig(t, ctx)
	obs := testenv.NewStreamObserver()
	sub, err := b.Consume(ctx, "all", broker.ConsumeOptions{Prefetch: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for d := range sub.Deliveries() {
			env, err := broker.DecodeMessage(d.Message)
			if err != nil {
				t.Errorf("decode a delivery: %v", err)
			}
			obs.Record(env)
			_ = d.Ack()
		}
	}()

	const partitions = 4
	type proc struct {
		r    *relay.Relay
		stop func()
	}
	start := func(holder string, n int) proc {
		r, err := relay.New(s, b, relay.Config{Exchange: memoryExchange, Holder: holder, Partitions: n,
			LeaseTTL: time.Second, StandbyPoll: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cancel()
				if err := <-done; err != nil {
					t.Errorf("relay %s: %v", holder, err)
				}
			}
		}
		t.Cleanup(stop)
		return proc{r, stop}
	}
	// holders waits until the store's leases show each holder with the
	// given number of partitions, and every partition held.
	holders := func(want map[string]int) {
		t.Helper()
		waitUntil(t, 15*time.Second, func() bool {
			leases, err := s.Leases(ctx, relay.DefaultName)
			if err != nil {
				return false
			}
			got := map[string]int{}
			for _, l := range leases {
				if l.Holder != "" && l.Until.After(time.Now()) {
					got[l.Holder]++
				}
			}
			return fmt.Sprint(got) == fmt.Sprint(want)
		})
	}

	appended := 0
	produce := func(n int) {
		for i := range n {
			appendEvent(t, ctx, s, fmt.Sprintf("learner-%d", i%17), `{}`)
			appended++
		}
	}

	a := start("relay-a", partitions)
	holders(map[string]int{"relay-a": 4})
	produce(100)
	bProc := start("relay-b", partitions)
	produce(100)
	holders(map[string]int{"relay-a": 2, "relay-b": 2})
	produce(100)
	c := start("relay-c", partitions)
	produce(100)
	holders(map[string]int{"relay-a": 2, "relay-b": 1, "relay-c": 1})
	if got := a.r.Held(); len(got) != 2 {
		t.Errorf("relay-a publishes partitions %v, want 2 of them", got)
	}

	// Another partition count is refused while these run.
	odd, err := relay.New(s, b, relay.Config{Exchange: memoryExchange, Holder: "relay-odd", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := odd.Run(ctx); !errors.Is(err, relay.ErrPartitionCount) {
		t.Fatalf("a relay with 2 partitions beside relays with 4: Run = %v; want ErrPartitionCount", err)
	}

	a.stop()
	produce(100)
	holders(map[string]int{"relay-b": 2, "relay-c": 2})
	produce(100)
	waitUntil(t, 30*time.Second, func() bool { return obs.Distinct() == appended })
	sum := obs.Summary()
	if sum.Violations > 0 {
		t.Fatalf("%d deliveries out of stream order: %v", sum.Violations, sum.Examples)
	}
	t.Logf("%d events, %d deliveries (%d again after a handover)", appended, sum.Deliveries, sum.Redeliveries)
	bProc.stop()
	c.stop()
	_ = sub.Close()
	<-consumed
}
