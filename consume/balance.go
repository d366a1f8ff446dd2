package consume

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/edupulse/eventbus/broker"
)

// balanceEvery is how often a process of a sharded group compares the
// shards it is active on with its fair share.
const balanceEvery = 3 * time.Second

// balance shares a sharded group's queues out between its processes. Every
// process subscribes to every shard queue, and the broker makes one
// subscription per queue active (single active consumer), the oldest: left
// alone, the first process would keep every shard and the others would only
// wait. So each process counts the processes (the consumers of the group's
// members queue, which each process subscribes to) and the shards it is
// active on (those that delivered to it lately); while it holds more than its fair share, rounded up, it hands
// one on: it stops taking that shard's deliveries, lets the jobs it took
// finish, and subscribes again, at the back of the queue's waiting line.
// It hands the whole surplus on in one round.
// The broker then makes the next waiting process active, and gives it
// first what this one had not yet taken, in order. A shard that delivers
// nothing is not counted: an idle share needs no balance.
//
// It returns, once ctx ends, its subscription to the members queue, for
// Run to close within the shutdown timeout.
func (c *Consumer) balance(ctx context.Context, loops []*queueLoop) (member broker.Subscription) {
	t := time.NewTimer(balanceDelay())
	defer t.Stop()
	for {
		if member == nil {
			var err error
			member, err = c.b.Consume(ctx, MembersQueue(c.cfg.Group), broker.ConsumeOptions{Prefetch: 1})
			if err != nil {
				member = nil
				if ctx.Err() == nil {
					c.log.Warn("consume: cannot join the group's members queue; the shards are not balanced meanwhile", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return member
		case _, ok := <-memberDeliveries(member):
			if !ok {
				closeWithin(member, c.cfg.ShutdownTimeout)
				member = nil // subscribe again at the next round
			}
			continue
		case <-t.C:
		}
		if c.balanceOnce(ctx, loops, member != nil) {
			// Let the shard settle with its new holder before looking again.
			t.Reset(2 * balanceDelay())
		} else {
			t.Reset(balanceDelay())
		}
	}
}

// memberDeliveries returns the members subscription's deliveries, or nil
// (never ready) without one. Nothing is published to the members queue: a
// delivery is someone's mistake, and it is left unacknowledged.
func memberDeliveries(s broker.Subscription) <-chan broker.Delivery {
	if s == nil {
		return nil
	}
	return s.Deliveries()
}

// balanceDelay is balanceEvery with jitter, so that processes started
// together do not hand shards on in step.
func balanceDelay() time.Duration {
	return balanceEvery/2 + rand.N(balanceEvery)
}

// balanceOnce hands one shard on if this process holds more than its
// share; it reports whether it did.
func (c *Consumer) balanceOnce(ctx context.Context, loops []*queueLoop, member bool) bool {
	recent := time.Now().Add(-2 * balanceEvery).UnixNano()
	var active []*queueLoop
	for _, l := range loops {
		if s := l.active.Load(); s != nil && (s.pending.Load() > 0 || s.lastDelivery.Load() > recent) {
			active = append(active, l)
		}
	}
	c.stats.shardsActive.Store(int64(len(active)))
	c.metrics.shardsActive.Set(float64(len(active)))
	if !member {
		return false // it cannot count the others
	}
	info, err := c.b.InspectQueue(ctx, MembersQueue(c.cfg.Group))
	if err != nil || info.Consumers < 2 {
		return false
	}
	processes := info.Consumers
	share := (len(loops) + processes - 1) / processes
	if len(active) <= share {
		return false
	}
	// Hand the surplus on at once: a process that joins a busy group gets
	// work within a round, not one shard per round.
	rand.Shuffle(len(active), func(i, j int) { active[i], active[j] = active[j], active[i] })
	yielded := 0
	for _, l := range active[share:] {
		select {
		case l.yield <- struct{}{}:
			yielded++
		default:
		}
	}
	c.stats.shardsHandedOn.Add(int64(yielded))
	c.metrics.shardsHandedOn.Add(float64(yielded))
	if yielded > 0 {
		c.log.Info("consume: holding more shards than a fair share; handing the surplus on",
			"handed_on", yielded, "active_shards", len(active), "processes", processes, "share", share)
	}
	return yielded > 0
}
