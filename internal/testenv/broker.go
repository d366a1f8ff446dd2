package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker"
)

// Drain takes every message now in queue through a browser, acks each (so
// they leave the queue), and returns them in queue order. Any failure fails
// t. It waits at most 30 s.
func Drain(t testing.TB, b broker.Broker, queue string) []broker.Delivery {
	t.Helper()
	ctx := Context(t, 30*time.Second)
	br, err := b.Browse(ctx, queue)
	if err != nil {
		t.Fatalf("browse %s: %v", queue, err)
	}
	defer br.Close()
	var out []broker.Delivery
	for {
		d, ok, err := br.Next(ctx)
		if err != nil {
			t.Fatalf("browse %s: next: %v", queue, err)
		}
		if !ok {
			return out
		}
		if err := d.Ack(); err != nil {
			t.Fatalf("browse %s: ack %s: %v", queue, d.MessageID, err)
		}
		out = append(out, d)
	}
}

// DrainIDs is Drain returning the messages' IDs.
func DrainIDs(t testing.TB, b broker.Broker, queue string) []string {
	t.Helper()
	ds := Drain(t, b, queue)
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.MessageID
	}
	return ids
}

// PublishAll publishes msgs with p and waits, until ctx ends, for every
// confirm, which must be positive. Any failure fails t.
func PublishAll(t testing.TB, ctx context.Context, p broker.Publisher, exchange, key string, msgs ...broker.Message) {
	t.Helper()
	confs := make([]broker.Confirmation, 0, len(msgs))
	for _, m := range msgs {
		c, err := p.Publish(ctx, exchange, key, m)
		if err != nil {
			t.Fatalf("Publish(%q, %q, %s): %v", exchange, key, m.MessageID, err)
		}
		confs = append(confs, c)
	}
	for i, c := range confs {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatalf("confirmation %d of %d never settled", i+1, len(confs))
		}
		if !c.Acked() {
			t.Fatalf("message %s was not acked by the broker", msgs[i].MessageID)
		}
	}
}
