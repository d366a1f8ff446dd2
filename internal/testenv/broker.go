package testenv

import (
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
